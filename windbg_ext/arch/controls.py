"""VM-execution, VM-exit and VM-entry control bits, bit by bit.

Kinds: "pin" (SDM 25.6.1, Table 25-5), "proc" (primary, 25.6.2, Table 25-6),
"proc2" (secondary, Table 25-7), "proc3" (tertiary, 64-bit, Table 25-8),
"exit" (primary VM-exit controls, 25.7.1, Table 25-13), "exit2" (secondary
VM-exit controls, 64-bit, Table 25-14), "entry" (25.8.1, Table 25-15).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from windbg_ext.arch import capabilities as caps

KINDS = ("pin", "proc", "proc2", "proc3", "exit", "exit2", "entry")
WIDE_KINDS = ("proc3", "exit2")  # 64-bit control fields, allowed-1-only capability MSRs

KIND_TITLES = {"pin": "pin-based VM-execution controls", "proc": "primary processor-based VM-execution controls",
               "proc2": "secondary processor-based VM-execution controls",
               "proc3": "tertiary processor-based VM-execution controls",
               "exit": "primary VM-exit controls", "exit2": "secondary VM-exit controls",
               "entry": "VM-entry controls"}

CONTROL_BITS: Dict[str, Dict[int, Tuple[str, str]]] = {
    "pin": {
        0: ("EXTERNAL_INTERRUPT_EXITING", "external interrupts cause VM exits"),
        3: ("NMI_EXITING", "NMIs cause VM exits"),
        5: ("VIRTUAL_NMIS", "virtual-NMI blocking is tracked"),
        6: ("ACTIVATE_PREEMPTION_TIMER", "the VMX-preemption timer counts down in non-root operation"),
        7: ("PROCESS_POSTED_INTERRUPTS", "posted-interrupt processing"),
    },
    "proc": {
        2: ("INTERRUPT_WINDOW_EXITING", "exit at the start of any instruction when RFLAGS.IF=1 and no blocking"),
        3: ("USE_TSC_OFFSETTING", "RDTSC/RDTSCP/IA32_TSC reads add the TSC offset"),
        7: ("HLT_EXITING", "HLT causes VM exits"),
        9: ("INVLPG_EXITING", "INVLPG causes VM exits"),
        10: ("MWAIT_EXITING", "MWAIT causes VM exits"),
        11: ("RDPMC_EXITING", "RDPMC causes VM exits"),
        12: ("RDTSC_EXITING", "RDTSC/RDTSCP cause VM exits"),
        15: ("CR3_LOAD_EXITING", "MOV to CR3 exits unless the value is a CR3 target"),
        16: ("CR3_STORE_EXITING", "MOV from CR3 causes VM exits"),
        17: ("ACTIVATE_TERTIARY_CONTROLS", "the tertiary processor-based controls are used"),
        19: ("CR8_LOAD_EXITING", "MOV to CR8 causes VM exits"),
        20: ("CR8_STORE_EXITING", "MOV from CR8 causes VM exits"),
        21: ("USE_TPR_SHADOW", "TPR virtualization through the virtual-APIC page"),
        22: ("NMI_WINDOW_EXITING", "exit when there is no virtual-NMI blocking"),
        23: ("MOV_DR_EXITING", "MOV DR causes VM exits"),
        24: ("UNCONDITIONAL_IO_EXITING", "every I/O instruction exits (ignored with I/O bitmaps)"),
        25: ("USE_IO_BITMAPS", "I/O bitmaps decide which ports exit"),
        27: ("MONITOR_TRAP_FLAG", "monitor trap flag debugging (exit after one instruction)"),
        28: ("USE_MSR_BITMAPS", "the MSR bitmap decides which RDMSR/WRMSR exit (else all do)"),
        29: ("MONITOR_EXITING", "MONITOR causes VM exits"),
        30: ("PAUSE_EXITING", "PAUSE causes VM exits"),
        31: ("ACTIVATE_SECONDARY_CONTROLS", "the secondary processor-based controls are used"),
    },
    "proc2": {
        0: ("VIRTUALIZE_APIC_ACCESSES", "accesses to the APIC-access page are virtualized"),
        1: ("ENABLE_EPT", "extended page tables"),
        2: ("DESCRIPTOR_TABLE_EXITING", "LGDT/LIDT/LLDT/LTR/SGDT/SIDT/SLDT/STR exit"),
        3: ("ENABLE_RDTSCP", "RDTSCP is allowed (else #UD)"),
        4: ("VIRTUALIZE_X2APIC_MODE", "x2APIC MSR accesses are virtualized"),
        5: ("ENABLE_VPID", "linear translations are tagged with the VPID"),
        6: ("WBINVD_EXITING", "WBINVD/WBNOINVD cause VM exits"),
        7: ("UNRESTRICTED_GUEST", "guest may run in unpaged protected mode or real mode"),
        8: ("APIC_REGISTER_VIRTUALIZATION", "APIC register reads come from the virtual-APIC page"),
        9: ("VIRTUAL_INTERRUPT_DELIVERY", "virtual-interrupt delivery"),
        10: ("PAUSE_LOOP_EXITING", "PAUSE loops longer than PLE_WINDOW exit"),
        11: ("RDRAND_EXITING", "RDRAND causes VM exits"),
        12: ("ENABLE_INVPCID", "INVPCID is allowed (else #UD)"),
        13: ("ENABLE_VM_FUNCTIONS", "VMFUNC is allowed"),
        14: ("VMCS_SHADOWING", "VMREAD/VMWRITE in non-root use the shadow VMCS"),
        15: ("ENABLE_ENCLS_EXITING", "ENCLS exits per the ENCLS-exiting bitmap"),
        16: ("RDSEED_EXITING", "RDSEED causes VM exits"),
        17: ("ENABLE_PML", "page-modification logging"),
        18: ("EPT_VIOLATION_VE", "EPT violations may cause #VE instead of exits"),
        19: ("CONCEAL_VMX_FROM_PT", "Intel PT suppresses VMX-transition packets"),
        20: ("ENABLE_XSAVES_XRSTORS", "XSAVES/XRSTORS are allowed"),
        21: ("PASID_TRANSLATION", "ENQCMD/ENQCMDS PASID translation"),
        22: ("MODE_BASED_EXECUTE_CONTROL", "EPT execute permission split by user/supervisor"),
        23: ("SUB_PAGE_WRITE_PERMISSIONS", "EPT sub-page write permissions"),
        24: ("PT_USE_GUEST_PHYSICAL", "Intel PT output addresses are guest-physical"),
        25: ("USE_TSC_SCALING", "TSC reads are scaled by the TSC multiplier"),
        26: ("ENABLE_USER_WAIT_PAUSE", "UMWAIT/TPAUSE/UMONITOR are allowed"),
        27: ("ENABLE_PCONFIG", "PCONFIG is allowed"),
        28: ("ENABLE_ENCLV_EXITING", "ENCLV exits per the ENCLV-exiting bitmap"),
        30: ("VMM_BUS_LOCK_DETECTION", "bus locks cause VM exits"),
        31: ("INSTRUCTION_TIMEOUT", "exit when an instruction does not complete in time"),
    },
    "proc3": {
        0: ("LOADIWKEY_EXITING", "LOADIWKEY causes VM exits"),
        1: ("ENABLE_HLAT", "hypervisor-managed linear-address translation"),
        2: ("EPT_PAGING_WRITE_CONTROL", "EPT paging-write control"),
        3: ("GUEST_PAGING_VERIFICATION", "guest-paging verification"),
        4: ("IPI_VIRTUALIZATION", "IPI virtualization"),
        6: ("ENABLE_MSR_LIST_INSTRUCTIONS", "RDMSRLIST/WRMSRLIST are allowed"),
        7: ("VIRTUALIZE_IA32_SPEC_CTRL", "IA32_SPEC_CTRL virtualization (mask and shadow)"),
    },
    "exit": {
        2: ("SAVE_DEBUG_CONTROLS", "DR7 and IA32_DEBUGCTL are saved at VM exit"),
        9: ("HOST_ADDRESS_SPACE_SIZE", "the host runs in 64-bit mode after VM exit (x64 hosts: set)"),
        12: ("LOAD_IA32_PERF_GLOBAL_CTRL", "IA32_PERF_GLOBAL_CTRL is loaded at VM exit"),
        15: ("ACKNOWLEDGE_INTERRUPT_ON_EXIT", "the interrupt controller is acknowledged on exit"),
        18: ("SAVE_IA32_PAT", "IA32_PAT is saved at VM exit"),
        19: ("LOAD_IA32_PAT", "IA32_PAT is loaded at VM exit"),
        20: ("SAVE_IA32_EFER", "IA32_EFER is saved at VM exit"),
        21: ("LOAD_IA32_EFER", "IA32_EFER is loaded at VM exit"),
        22: ("SAVE_PREEMPTION_TIMER", "the VMX-preemption timer value is saved"),
        23: ("CLEAR_IA32_BNDCFGS", "IA32_BNDCFGS is cleared at VM exit"),
        24: ("CONCEAL_VMX_FROM_PT", "no PIP/VMCS packets for VM exits"),
        25: ("CLEAR_IA32_RTIT_CTL", "IA32_RTIT_CTL is cleared at VM exit"),
        26: ("CLEAR_IA32_LBR_CTL", "IA32_LBR_CTL is cleared at VM exit"),
        27: ("CLEAR_UINV", "UINV is cleared at VM exit"),
        28: ("LOAD_CET_STATE", "host CET state is loaded at VM exit"),
        29: ("LOAD_PKRS", "host IA32_PKRS is loaded at VM exit"),
        30: ("SAVE_IA32_PERF_GLOBAL_CTRL", "IA32_PERF_GLOBAL_CTRL is saved at VM exit"),
        31: ("ACTIVATE_SECONDARY_CONTROLS", "the secondary VM-exit controls are used"),
    },
    "exit2": {
        0: ("SAVE_IA32_FRED", "FRED MSRs are saved at VM exit"),
        1: ("LOAD_IA32_FRED", "FRED MSRs are loaded at VM exit"),
        2: ("PREMATURELY_BUSY_SHADOW_STACK", "report a prematurely busy shadow stack in the exit reason"),
    },
    "entry": {
        2: ("LOAD_DEBUG_CONTROLS", "DR7 and IA32_DEBUGCTL are loaded at VM entry"),
        9: ("IA32E_MODE_GUEST", "the guest runs in IA-32e mode (64-bit Windows guests: set)"),
        10: ("ENTRY_TO_SMM", "VM entry into SMM"),
        11: ("DEACTIVATE_DUAL_MONITOR", "deactivate the dual-monitor treatment of SMM"),
        13: ("LOAD_IA32_PERF_GLOBAL_CTRL", "IA32_PERF_GLOBAL_CTRL is loaded at VM entry"),
        14: ("LOAD_IA32_PAT", "IA32_PAT is loaded at VM entry"),
        15: ("LOAD_IA32_EFER", "IA32_EFER is loaded at VM entry"),
        16: ("LOAD_IA32_BNDCFGS", "IA32_BNDCFGS is loaded at VM entry"),
        17: ("CONCEAL_VMX_FROM_PT", "no PIP/VMCS packets for VM entries"),
        18: ("LOAD_IA32_RTIT_CTL", "IA32_RTIT_CTL is loaded at VM entry"),
        19: ("LOAD_UINV", "UINV is loaded at VM entry"),
        20: ("LOAD_CET_STATE", "guest CET state is loaded at VM entry"),
        21: ("LOAD_GUEST_IA32_LBR_CTL", "IA32_LBR_CTL is loaded at VM entry"),
        22: ("LOAD_PKRS", "guest IA32_PKRS is loaded at VM entry"),
        23: ("LOAD_IA32_FRED", "FRED MSRs are loaded at VM entry"),
    },
}

CONTROL_FIELD: Dict[str, str] = {
    "pin": "PIN_BASED_VM_EXEC_CONTROL", "proc": "CPU_BASED_VM_EXEC_CONTROL",
    "proc2": "SECONDARY_VM_EXEC_CONTROL", "proc3": "TERTIARY_VM_EXEC_CONTROL",
    "exit": "VM_EXIT_CONTROLS", "exit2": "SECONDARY_VM_EXIT_CONTROLS", "entry": "VM_ENTRY_CONTROLS",
}

CAPABILITY_MSR: Dict[str, Tuple[int, Optional[int]]] = {
    "pin": (caps.IA32_VMX_PINBASED_CTLS, caps.IA32_VMX_TRUE_PINBASED_CTLS),
    "proc": (caps.IA32_VMX_PROCBASED_CTLS, caps.IA32_VMX_TRUE_PROCBASED_CTLS),
    "proc2": (caps.IA32_VMX_PROCBASED_CTLS2, None),
    "proc3": (caps.IA32_VMX_PROCBASED_CTLS3, None),
    "exit": (caps.IA32_VMX_EXIT_CTLS, caps.IA32_VMX_TRUE_EXIT_CTLS),
    "exit2": (caps.IA32_VMX_EXIT_CTLS2, None),
    "entry": (caps.IA32_VMX_ENTRY_CTLS, caps.IA32_VMX_TRUE_ENTRY_CTLS),
}

# The "default1" class (A.2): reserved bits that the non-TRUE MSRs report as
# must-be-1; the TRUE_* MSRs may allow some of them to be 0.
DEFAULT1: Dict[str, int] = {"pin": 0x00000016, "proc": 0x0401E172, "exit": 0x00036DFF, "entry": 0x000011FF}

# Which control enables the next level (the field is only used when it is set).
ACTIVATED_BY: Dict[str, Tuple[str, int]] = {"proc2": ("proc", 31), "proc3": ("proc", 17), "exit2": ("exit", 31)}


def bit_name(kind: str, bit: int) -> str:
    entry = CONTROL_BITS[kind].get(bit)
    return entry[0] if entry else "RESERVED_%d" % bit


def decode_controls(kind: str, value: int) -> List[Tuple[int, str, bool]]:
    """Every defined bit of a control field, plus any reserved bit that is set:
    (bit, NAME, set)."""
    if kind not in CONTROL_BITS:
        raise ValueError("unknown control kind %r (one of %s)" % (kind, ", ".join(KINDS)))
    width = 64 if kind in WIDE_KINDS else 32
    bits = set(CONTROL_BITS[kind]) | {b for b in range(width) if value >> b & 1}
    return [(b, bit_name(kind, b), bool(value >> b & 1)) for b in sorted(bits)]


def capability_msr_for(kind: str, basic: int) -> int:
    """The MSR that reports allowed settings for a kind: TRUE_* when
    IA32_VMX_BASIC bit 55 is set (A.3.1, A.3.2, A.4.1, A.5)."""
    msr, true_msr = CAPABILITY_MSR[kind]
    if true_msr is not None and caps.has_true_controls(basic):
        return true_msr
    return msr
