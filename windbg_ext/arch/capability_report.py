"""Decodes a set of VMX capability MSR values into one structured report
(the tables `caps` prints and `--json` returns). Pure: {msr: value} in.

Which MSRs exist depends on others (SDM Appendix A): the TRUE_* MSRs only
when IA32_VMX_BASIC bit 55 is 1 (A.1); PROCBASED_CTLS2 only when primary
control bit 31 may be 1 (A.3.3); PROCBASED_CTLS3 when bit 17 may be 1
(A.3.4); EXIT_CTLS2 when exit-control bit 31 may be 1 (A.4.2); EPT_VPID_CAP
when secondary bit 1 (EPT) or 5 (VPID) may be 1 (A.10); VMFUNC when
secondary bit 13 may be 1 (A.11). Reading an MSR the CPU lacks faults, so a
reader asks `dependent_msrs` what to read after the first batch.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

from windbg_ext.arch import capabilities as C
from windbg_ext.arch import controls as K
from windbg_ext.arch.registers import CR0_BITS, CR4_BITS, bit_names

# Always architectural on a CPU with VMX (CPUID.1:ECX.VMX = 1).
FIRST_READ: Tuple[int, ...] = (C.IA32_FEATURE_CONTROL, C.IA32_VMX_BASIC, C.IA32_VMX_PINBASED_CTLS,
                               C.IA32_VMX_PROCBASED_CTLS, C.IA32_VMX_EXIT_CTLS, C.IA32_VMX_ENTRY_CTLS,
                               C.IA32_VMX_MISC, C.IA32_VMX_CR0_FIXED0, C.IA32_VMX_CR0_FIXED1,
                               C.IA32_VMX_CR4_FIXED0, C.IA32_VMX_CR4_FIXED1, C.IA32_VMX_VMCS_ENUM)

_M32 = 0xFFFFFFFF

# Which MSR's allowed-1 bits say whether another exists (A.3.3, A.3.4, A.4.2, A.10, A.11): see dependent_msrs.
DECIDED_BY: Dict[int, int] = {C.IA32_VMX_PROCBASED_CTLS2: C.IA32_VMX_PROCBASED_CTLS,
                              C.IA32_VMX_PROCBASED_CTLS3: C.IA32_VMX_PROCBASED_CTLS,
                              C.IA32_VMX_EXIT_CTLS2: C.IA32_VMX_EXIT_CTLS,
                              C.IA32_VMX_EPT_VPID_CAP: C.IA32_VMX_PROCBASED_CTLS2,
                              C.IA32_VMX_VMFUNC: C.IA32_VMX_PROCBASED_CTLS2}


def _may_be_one(values: Mapping[int, Optional[int]], msr: int, bit: int) -> Optional[bool]:
    v = values.get(msr)
    if v is None:
        return None
    return bool(v >> (32 + bit) & 1)


def dependent_msrs(values: Mapping[int, Optional[int]]) -> Dict[int, Tuple[bool, str]]:
    """{msr: (exists, why)} for the MSRs whose existence the first batch decides."""
    out: Dict[int, Tuple[bool, str]] = {}
    basic = values.get(C.IA32_VMX_BASIC)
    true_ok = basic is not None and C.has_true_controls(basic)
    for msr in (C.IA32_VMX_TRUE_PINBASED_CTLS, C.IA32_VMX_TRUE_PROCBASED_CTLS, C.IA32_VMX_TRUE_EXIT_CTLS,
                C.IA32_VMX_TRUE_ENTRY_CTLS):
        out[msr] = (true_ok, "IA32_VMX_BASIC bit 55 is %s" % ("1" if true_ok else "0 (or unknown)"))
    sec = _may_be_one(values, C.IA32_VMX_PROCBASED_CTLS, 31)
    out[C.IA32_VMX_PROCBASED_CTLS2] = (bool(sec), "primary control bit 31 (activate secondary controls) %s"
                                       % ("may be 1" if sec else "cannot be 1"))
    ter = _may_be_one(values, C.IA32_VMX_PROCBASED_CTLS, 17)
    out[C.IA32_VMX_PROCBASED_CTLS3] = (bool(ter), "primary control bit 17 (activate tertiary controls) %s"
                                       % ("may be 1" if ter else "cannot be 1"))
    ex2 = _may_be_one(values, C.IA32_VMX_EXIT_CTLS, 31)
    out[C.IA32_VMX_EXIT_CTLS2] = (bool(ex2), "VM-exit control bit 31 (activate secondary controls) %s"
                                  % ("may be 1" if ex2 else "cannot be 1"))
    if sec:
        ept = _may_be_one(values, C.IA32_VMX_PROCBASED_CTLS2, 1)
        vpid = _may_be_one(values, C.IA32_VMX_PROCBASED_CTLS2, 5)
        vmfunc = _may_be_one(values, C.IA32_VMX_PROCBASED_CTLS2, 13)
        unknown = values.get(C.IA32_VMX_PROCBASED_CTLS2) is None
        out[C.IA32_VMX_EPT_VPID_CAP] = (unknown or bool(ept or vpid),
                                        "secondary bit 1 (EPT) or 5 (VPID) %s" % (
                                            "unknown" if unknown else "may be 1" if (ept or vpid) else "cannot be 1"))
        out[C.IA32_VMX_VMFUNC] = (unknown or bool(vmfunc), "secondary bit 13 (VM functions) %s" % (
            "unknown" if unknown else "may be 1" if vmfunc else "cannot be 1"))
    else:
        out[C.IA32_VMX_EPT_VPID_CAP] = (False, "no secondary controls")
        out[C.IA32_VMX_VMFUNC] = (False, "no secondary controls")
    return out


def _setting(allowed0: bool, allowed1: bool) -> str:
    if allowed0 and allowed1:
        return "either"
    if allowed1:
        return "must be 1"
    if allowed0:
        return "must be 0"
    return "impossible"  # a 1 in allowed-0 with a 0 in allowed-1: the MSR is inconsistent


def control_report(kind: str, msr: int, value: int) -> Dict[str, Any]:
    wide = kind in K.WIDE_KINDS
    must, may = C.allowed_settings(value, wide)
    width = 64 if wide else 32
    rows = []
    for bit in range(width):
        defined = bit in K.CONTROL_BITS[kind]
        allowed0 = not must >> bit & 1
        allowed1 = bool(may >> bit & 1)
        if not defined and allowed0 and not allowed1:
            continue  # reserved and 0: nothing to say
        rows.append({"bit": bit, "name": K.bit_name(kind, bit), "allowed0": allowed0, "allowed1": allowed1,
                     "setting": _setting(allowed0, allowed1)})
    must_clear = ~may & ((1 << width) - 1)
    defined_mask = sum(1 << b for b in K.CONTROL_BITS[kind])
    return {"kind": kind, "title": K.KIND_TITLES[kind], "field": K.CONTROL_FIELD[kind],
            "msr": "0x%x" % msr, "msr_name": C.VMX_MSRS[msr][0], "value": "0x%x" % value,
            "must_be_one": "0x%x" % must, "may_be_one": "0x%x" % may, "must_be_zero": "0x%x" % must_clear,
            "must_set_names": [K.bit_name(kind, b) for b in range(width) if must >> b & 1],
            "unavailable_names": [K.bit_name(kind, b) for b in range(width)
                                  if (must_clear & defined_mask) >> b & 1],
            "bits": rows}


def fixed_report(reg: str, fixed0: int, fixed1: int) -> Dict[str, Any]:
    table = CR0_BITS if reg == "cr0" else CR4_BITS
    must1, must0 = C.fixed_bits(fixed0, fixed1)
    rows = []
    for bit in range(64):
        f0, f1 = bool(fixed0 >> bit & 1), bool(fixed1 >> bit & 1)
        if bit not in table and not f0:
            continue  # undocumented bits matter only when they must be 1
        setting = "must be 1" if f0 else ("either" if f1 else "must be 0")
        rows.append({"bit": bit, "name": table[bit][0] if bit in table else "bit%d" % bit,
                     "fixed0": f0, "fixed1": f1, "setting": setting})
    return {"register": reg.upper(), "fixed0": "0x%x" % fixed0, "fixed1": "0x%x" % fixed1,
            "must_be_one": "0x%x" % must1, "must_be_zero": "0x%x" % must0,
            "must_set_names": bit_names(table, must1).split() if must1 else [],
            "must_clear_names": [table[b][0] for b in sorted(table) if must0 >> b & 1],
            "bits": rows}


def describe(values: Mapping[int, Optional[int]],
             absent: Optional[Mapping[int, str]] = None) -> Dict[str, Any]:
    """The whole report. `values` maps MSR -> value (None or missing = not
    read); `absent` gives the reason an MSR was not read ("not supported: ...")."""
    absent = dict(absent or {})

    def get(msr: int) -> Optional[int]:
        return values.get(msr)

    def why(msr: int) -> str:
        return absent.get(msr, "not given")

    out: Dict[str, Any] = {"msrs": {"0x%x" % m: (None if get(m) is None else "0x%x" % get(m))
                                    for m in (C.IA32_FEATURE_CONTROL,) + tuple(C.VMX_MSRS)}}
    fc = get(C.IA32_FEATURE_CONTROL)
    out["feature_control"] = C.decode_feature_control(fc) if fc is not None else {"missing": why(C.IA32_FEATURE_CONTROL)}
    basic = get(C.IA32_VMX_BASIC)
    out["basic"] = C.decode_basic(basic) if basic is not None else {"missing": why(C.IA32_VMX_BASIC)}
    true_controls = basic is not None and C.has_true_controls(basic)
    ctl: Dict[str, Any] = {}
    for kind in K.KINDS:
        msr, true_msr = K.CAPABILITY_MSR[kind]
        use = true_msr if (true_controls and true_msr is not None and get(true_msr) is not None) else msr
        v = get(use)
        if v is None:
            ctl[kind] = {"kind": kind, "title": K.KIND_TITLES[kind], "msr": "0x%x" % use,
                         "msr_name": C.VMX_MSRS[use][0], "missing": why(use)}
            continue
        rep = control_report(kind, use, v)
        if use != msr and get(msr) is not None:
            # bits the TRUE MSR lets a driver clear that the legacy MSR reports as default1
            rep["default1_clearable"] = "0x%x" % (get(msr) & _M32 & ~(v & _M32))
        ctl[kind] = rep
    out["controls"] = ctl
    for reg, f0m, f1m in (("cr0", C.IA32_VMX_CR0_FIXED0, C.IA32_VMX_CR0_FIXED1),
                          ("cr4", C.IA32_VMX_CR4_FIXED0, C.IA32_VMX_CR4_FIXED1)):
        f0, f1 = get(f0m), get(f1m)
        out[reg] = fixed_report(reg, f0, f1) if f0 is not None and f1 is not None else {
            "register": reg.upper(), "missing": why(f0m if f0 is None else f1m)}
    misc = get(C.IA32_VMX_MISC)
    out["misc"] = C.decode_misc(misc) if misc is not None else {"missing": why(C.IA32_VMX_MISC)}
    enum = get(C.IA32_VMX_VMCS_ENUM)
    out["vmcs_enum"] = C.decode_vmcs_enum(enum) if enum is not None else {"missing": why(C.IA32_VMX_VMCS_ENUM)}
    ept = get(C.IA32_VMX_EPT_VPID_CAP)
    out["ept_vpid"] = C.decode_ept_vpid_cap(ept) if ept is not None else {"missing": why(C.IA32_VMX_EPT_VPID_CAP)}
    vmfunc = get(C.IA32_VMX_VMFUNC)
    out["vmfunc"] = C.decode_vmfunc(vmfunc) if vmfunc is not None else {"missing": why(C.IA32_VMX_VMFUNC)}
    return out
