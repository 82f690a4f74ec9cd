"""VM-instruction error numbers (SDM Vol. 3, 31.4, Table 31-1) and VMX-abort
indicator codes (28.7).

Read from the VM_INSTRUCTION_ERROR field (0x4400) after a VMX instruction
fails with VMfailValid (ZF=1). Numbers 14, 21 and 27 are not assigned.
"""
from __future__ import annotations

from typing import Dict, Tuple

# number -> (name, the SDM's description)
VM_INSTRUCTION_ERRORS: Dict[int, Tuple[str, str]] = {
    1: ("VMCALL_IN_VMX_ROOT", "VMCALL executed in VMX root operation"),
    2: ("VMCLEAR_INVALID_ADDRESS", "VMCLEAR with invalid physical address"),
    3: ("VMCLEAR_VMXON_POINTER", "VMCLEAR with VMXON pointer"),
    4: ("VMLAUNCH_NONCLEAR_VMCS", "VMLAUNCH with non-clear VMCS"),
    5: ("VMRESUME_NONLAUNCHED_VMCS", "VMRESUME with non-launched VMCS"),
    6: ("VMRESUME_AFTER_VMXOFF", "VMRESUME after VMXOFF"),
    7: ("ENTRY_INVALID_CONTROL_FIELD", "VM entry with invalid control field(s)"),
    8: ("ENTRY_INVALID_HOST_STATE_FIELD", "VM entry with invalid host-state field(s)"),
    9: ("VMPTRLD_INVALID_ADDRESS", "VMPTRLD with invalid physical address"),
    10: ("VMPTRLD_VMXON_POINTER", "VMPTRLD with VMXON pointer"),
    11: ("VMPTRLD_INCORRECT_REVISION_ID", "VMPTRLD with incorrect VMCS revision identifier"),
    12: ("UNSUPPORTED_VMCS_COMPONENT", "VMREAD/VMWRITE from/to unsupported VMCS component"),
    13: ("VMWRITE_READ_ONLY_COMPONENT", "VMWRITE to read-only VMCS component"),
    14: ("RESERVED_14", "(not assigned)"),
    15: ("VMXON_IN_VMX_ROOT", "VMXON executed in VMX root operation"),
    16: ("ENTRY_INVALID_EXECUTIVE_VMCS_POINTER", "VM entry with invalid executive-VMCS pointer"),
    17: ("ENTRY_NONLAUNCHED_EXECUTIVE_VMCS", "VM entry with non-launched executive VMCS"),
    18: ("ENTRY_EXECUTIVE_VMCS_NOT_VMXON_POINTER", "VM entry with executive-VMCS pointer not VMXON pointer "
         "(when attempting to deactivate the dual-monitor treatment of SMIs and SMM)"),
    19: ("VMCALL_NONCLEAR_VMCS", "VMCALL with non-clear VMCS (when attempting to activate the dual-monitor "
         "treatment of SMIs and SMM)"),
    20: ("VMCALL_INVALID_EXIT_CONTROLS", "VMCALL with invalid VM-exit control fields"),
    21: ("RESERVED_21", "(not assigned)"),
    22: ("VMCALL_INCORRECT_MSEG_REVISION_ID", "VMCALL with incorrect MSEG revision identifier"),
    23: ("VMXOFF_UNDER_DUAL_MONITOR", "VMXOFF under dual-monitor treatment of SMIs and SMM"),
    24: ("VMCALL_INVALID_SMM_MONITOR_FEATURES", "VMCALL with invalid SMM-monitor features"),
    25: ("ENTRY_INVALID_EXECUTIVE_CONTROLS", "VM entry with invalid VM-execution control fields in executive VMCS"),
    26: ("ENTRY_EVENTS_BLOCKED_BY_MOV_SS", "VM entry with events blocked by MOV SS"),
    27: ("RESERVED_27", "(not assigned)"),
    28: ("INVALID_INVEPT_INVVPID_OPERAND", "invalid operand to INVEPT/INVVPID"),
}

# What to do about some of them (ours, not the SDM's words)
VM_ERROR_ADVICE: Dict[int, str] = {
    4: "use VMRESUME, or VMCLEAR first",
    5: "use VMLAUNCH first",
    6: "VMXOFF and VMXON between VMLAUNCH and VMRESUME",
    7: "SDM 27.2.1: check controls against the capability MSRs",
    8: "SDM 27.2.2-27.2.4",
    11: "write IA32_VMX_BASIC[30:0] into the region's first dword",
}


def vm_error_meaning(n: int) -> str:
    """The SDM's description of error n, with our advice in parentheses where we have some."""
    meaning = VM_INSTRUCTION_ERRORS[n][1]
    return "%s (%s)" % (meaning, VM_ERROR_ADVICE[n]) if n in VM_ERROR_ADVICE else meaning


# SDM 28.7 (VMX aborts): the abort indicator the processor writes to VMCS dword 1.
VMX_ABORT_CODES: Dict[int, str] = {
    1: "error saving guest MSRs",
    2: "host checking of the PDPTE",
    3: "the current VMCS has been corrupted",
    4: "error loading host MSRs",
    5: "machine-check event during VM exit",
    6: "the processor was in IA-32e mode before the VM exit and the \"host address-space size\" control was 0",
}
