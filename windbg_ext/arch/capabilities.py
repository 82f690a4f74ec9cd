"""VMX capability MSRs (SDM Vol. 3 Appendix A) and IA32_FEATURE_CONTROL.

How to read a control capability MSR (A.3-A.5): bits 31:0 are the allowed-0
settings (a 1 there means the control bit must be 1), bits 63:32 the
allowed-1 settings (a 0 there means the control bit must be 0). The 64-bit
tertiary and secondary-exit controls (A.3.4, A.4.2) have allowed-1 bits only.
CR0/CR4 (A.7, A.8): a 1 in FIXED0 must be 1; a 0 in FIXED1 must be 0.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

IA32_FEATURE_CONTROL = 0x3A
IA32_VMX_BASIC = 0x480
IA32_VMX_PINBASED_CTLS = 0x481
IA32_VMX_PROCBASED_CTLS = 0x482
IA32_VMX_EXIT_CTLS = 0x483
IA32_VMX_ENTRY_CTLS = 0x484
IA32_VMX_MISC = 0x485
IA32_VMX_CR0_FIXED0 = 0x486
IA32_VMX_CR0_FIXED1 = 0x487
IA32_VMX_CR4_FIXED0 = 0x488
IA32_VMX_CR4_FIXED1 = 0x489
IA32_VMX_VMCS_ENUM = 0x48A
IA32_VMX_PROCBASED_CTLS2 = 0x48B
IA32_VMX_EPT_VPID_CAP = 0x48C
IA32_VMX_TRUE_PINBASED_CTLS = 0x48D
IA32_VMX_TRUE_PROCBASED_CTLS = 0x48E
IA32_VMX_TRUE_EXIT_CTLS = 0x48F
IA32_VMX_TRUE_ENTRY_CTLS = 0x490
IA32_VMX_VMFUNC = 0x491
IA32_VMX_PROCBASED_CTLS3 = 0x492
IA32_VMX_EXIT_CTLS2 = 0x493

# Every VMX capability MSR in order, with its SDM Appendix A section.
VMX_MSRS: Dict[int, Tuple[str, str]] = {
    IA32_VMX_BASIC: ("IA32_VMX_BASIC", "A.1"),
    IA32_VMX_PINBASED_CTLS: ("IA32_VMX_PINBASED_CTLS", "A.3.1"),
    IA32_VMX_PROCBASED_CTLS: ("IA32_VMX_PROCBASED_CTLS", "A.3.2"),
    IA32_VMX_EXIT_CTLS: ("IA32_VMX_EXIT_CTLS", "A.4.1"),
    IA32_VMX_ENTRY_CTLS: ("IA32_VMX_ENTRY_CTLS", "A.5"),
    IA32_VMX_MISC: ("IA32_VMX_MISC", "A.6"),
    IA32_VMX_CR0_FIXED0: ("IA32_VMX_CR0_FIXED0", "A.7"),
    IA32_VMX_CR0_FIXED1: ("IA32_VMX_CR0_FIXED1", "A.7"),
    IA32_VMX_CR4_FIXED0: ("IA32_VMX_CR4_FIXED0", "A.8"),
    IA32_VMX_CR4_FIXED1: ("IA32_VMX_CR4_FIXED1", "A.8"),
    IA32_VMX_VMCS_ENUM: ("IA32_VMX_VMCS_ENUM", "A.9"),
    IA32_VMX_PROCBASED_CTLS2: ("IA32_VMX_PROCBASED_CTLS2", "A.3.3"),
    IA32_VMX_EPT_VPID_CAP: ("IA32_VMX_EPT_VPID_CAP", "A.10"),
    IA32_VMX_TRUE_PINBASED_CTLS: ("IA32_VMX_TRUE_PINBASED_CTLS", "A.3.1"),
    IA32_VMX_TRUE_PROCBASED_CTLS: ("IA32_VMX_TRUE_PROCBASED_CTLS", "A.3.2"),
    IA32_VMX_TRUE_EXIT_CTLS: ("IA32_VMX_TRUE_EXIT_CTLS", "A.4.1"),
    IA32_VMX_TRUE_ENTRY_CTLS: ("IA32_VMX_TRUE_ENTRY_CTLS", "A.5"),
    IA32_VMX_VMFUNC: ("IA32_VMX_VMFUNC", "A.11"),
    IA32_VMX_PROCBASED_CTLS3: ("IA32_VMX_PROCBASED_CTLS3", "A.3.4"),
    IA32_VMX_EXIT_CTLS2: ("IA32_VMX_EXIT_CTLS2", "A.4.2"),
}

# The 32-bit-control generation, 0x480-0x491: what the driver records and the lab captures.
# 0x492/0x493 exist only when the others say so (A.3.4, A.4.2): read them after these.
VMX_MSRS_BEFORE_WIDE = tuple(m for m in VMX_MSRS if m < IA32_VMX_PROCBASED_CTLS3)
VMX_MSR_SPAN = "0x%x-0x%x" % (min(VMX_MSRS), max(VMX_MSRS))  # for messages: "0x480-0x493"

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF
MEMORY_TYPES = {0: "UC (uncacheable)", 1: "WC", 4: "WT", 5: "WP", 6: "WB (write-back)"}


def _bit(v: int, n: int) -> bool:
    return bool(v >> n & 1)


BASIC_TRUE_CONTROLS_BIT = 55  # A.1: the TRUE_* control MSRs exist (default1 controls may be 0)


def has_true_controls(basic: int) -> bool:
    """IA32_VMX_BASIC says the IA32_VMX_TRUE_* control MSRs exist (A.1, A.2)."""
    return _bit(basic, BASIC_TRUE_CONTROLS_BIT)


def decode_basic(v: int) -> Dict[str, Any]:
    """IA32_VMX_BASIC (A.1)."""
    memtype = (v >> 50) & 0xF
    return {
        "revision_id": v & 0x7FFFFFFF,
        "bit31_zero": not _bit(v, 31),
        "region_size": (v >> 32) & 0x1FFF,
        "phys_addr_32bit_only": _bit(v, 48),
        "dual_monitor_smm": _bit(v, 49),
        "memtype": memtype,
        "memtype_name": MEMORY_TYPES.get(memtype, "reserved (%d)" % memtype),
        "ins_outs_info": _bit(v, 54),
        "true_controls": has_true_controls(v),
        "no_error_code_check": _bit(v, 56),
    }


def allowed_settings(msr_value: int, wide: bool = False) -> Tuple[int, int]:
    """(must_be_one, may_be_one) for a control capability MSR. `wide` is for
    the 64-bit tertiary / secondary-exit MSRs, whose 64 bits are all allowed-1."""
    if wide:
        return 0, msr_value & _M64
    return msr_value & _M32, (msr_value >> 32) & _M32


def adjust_controls(wanted: int, msr_value: int, wide: bool = False) -> int:
    """The value a driver should write: wanted bits, plus those that must be
    1, minus those that cannot be 1 (the usual AdjustControls)."""
    must, may = allowed_settings(msr_value, wide)
    return (wanted | must) & may


def control_problems(value: int, msr_value: int, wide: bool = False) -> Tuple[int, int]:
    """(missing, forbidden): bits that must be 1 but are 0, bits set that may not be 1."""
    must, may = allowed_settings(msr_value, wide)
    return must & ~value, value & ~may & (_M64 if wide else _M32)


def fixed_bits(fixed0: int, fixed1: int) -> Tuple[int, int]:
    """(must_be_one, must_be_zero) for CR0/CR4 in VMX operation (A.7, A.8)."""
    return fixed0 & fixed1 & _M64, ~fixed1 & _M64


def fixed_bit_violations(value: int, fixed0: int, fixed1: int) -> Dict[str, int]:
    """A CR0/CR4 value against IA32_VMX_CR0/CR4_FIXED0/FIXED1 (SDM 24.8, A.7, A.8): the masks
    VMX operation requires and the bits of `value` that break them. VMXON raises #GP(0) while
    any bit is missing or forbidden (SDM Vol. 3 31.3 VMXON); CR4.VMXE = 0 gives #UD first."""
    must1, must0 = fixed_bits(fixed0, fixed1)
    return {"must_be_one": must1, "must_be_zero": must0,
            "missing": must1 & ~value & _M64, "forbidden": value & must0}


def decode_misc(v: int) -> Dict[str, Any]:
    """IA32_VMX_MISC (A.6)."""
    return {
        "preemption_timer_rate": v & 0x1F,
        "stores_lma": _bit(v, 5),
        "activity_hlt": _bit(v, 6),
        "activity_shutdown": _bit(v, 7),
        "activity_wait_sipi": _bit(v, 8),
        "intel_pt_in_vmx": _bit(v, 14),
        "rdmsr_smbase_in_smm": _bit(v, 15),
        "cr3_target_count": (v >> 16) & 0x1FF,
        "max_msr_list": 512 * (((v >> 25) & 7) + 1),
        "smm_monitor_ctl_bit2": _bit(v, 28),
        "vmwrite_any_field": _bit(v, 29),
        "inject_zero_length": _bit(v, 30),
        "mseg_revision_id": (v >> 32) & _M32,
    }


EPT_VPID_CAP_BITS = {
    0: "EPT execute-only translations", 6: "EPT page-walk length 4", 7: "EPT page-walk length 5",
    8: "EPT uncacheable (UC) memory type", 14: "EPT write-back (WB) memory type",
    16: "EPT 2-MByte pages", 17: "EPT 1-GByte pages", 20: "INVEPT", 21: "EPT accessed/dirty flags",
    22: "advanced VM-exit information for EPT violations", 23: "supervisor shadow-stack control",
    25: "INVEPT single-context", 26: "INVEPT all-context", 32: "INVVPID",
    40: "INVVPID individual-address", 41: "INVVPID single-context", 42: "INVVPID all-context",
    43: "INVVPID single-context-retaining-globals",
}


def decode_ept_vpid_cap(v: int) -> Dict[str, Any]:
    """IA32_VMX_EPT_VPID_CAP (A.10)."""
    out: Dict[str, Any] = {name: _bit(v, bit) for bit, name in EPT_VPID_CAP_BITS.items()}
    out["max HLAT prefix size"] = (v >> 48) & 0x3F
    return out


VMFUNC_BITS = {0: "EPTP switching"}


def decode_vmfunc(v: int) -> Dict[str, Any]:
    """IA32_VMX_VMFUNC (A.11): which VM functions may be enabled."""
    out: Dict[str, Any] = {name: _bit(v, bit) for bit, name in VMFUNC_BITS.items()}
    out["other functions"] = "0x%x" % (v & ~1 & _M64)
    return out


FEATURE_CONTROL_BITS = {
    0: ("lock", "locked: writes fault until reset; VMXON needs it set"),
    1: ("vmx_inside_smx", "VMXON allowed inside SMX operation"),
    2: ("vmx_outside_smx", "VMXON allowed outside SMX operation (what a normal driver needs)"),
    15: ("senter_global", "SENTER global enable"),
    17: ("sgx_launch_control", "SGX launch control enable"),
    18: ("sgx_global", "SGX global enable"),
    20: ("lmce", "local machine-check exception on"),
}


def decode_feature_control(v: int) -> Dict[str, Any]:
    """IA32_FEATURE_CONTROL (MSR 0x3A, SDM Vol. 3 23.7 / Vol. 4)."""
    out: Dict[str, Any] = {key: _bit(v, bit) for bit, (key, _) in FEATURE_CONTROL_BITS.items()}
    out["senter_local_functions"] = (v >> 8) & 0x7F
    return out


def decode_vmcs_enum(v: int) -> Dict[str, Any]:
    """IA32_VMX_VMCS_ENUM (A.9): highest index used in any VMCS encoding."""
    return {"max_index": (v >> 1) & 0x1FF}
