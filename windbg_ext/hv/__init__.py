"""The driver's structures, known only through its debug descriptor.

descriptor.py parses the descriptor (pure); model.py turns bytes into VMM /
vCPU / snapshot objects (pure); regions.py checks VMXON/VMCS/MSR-bitmap pages
and decodes a VMCS region with the layout map (pure); state_text.py words the
driver's state (pure); walker.py is the only module here that reads driver
structures from the target, and vcpu_checks.py, vmcs_source.py and
processor.py ask it (or the target's recorded CPUID) for what commands need.
"""
