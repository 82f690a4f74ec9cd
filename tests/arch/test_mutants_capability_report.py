"""windbg_ext/arch/capability_report.py, whole results compared (issue 16, mutation tests).

Oracles: the capability MSRs the Bochs CPU model reports (tests/arch/bochs_caps.py, re-measured by
test_caps_lab.py) and hand-made MSR values; every expected field is worked out here by hand from
SDM Appendix A (A.1-A.11) and Vol. 3 2.5 (CR0/CR4 bit names), never computed by the module."""
import pytest

from windbg_ext.arch.capability_report import control_report, dependent_msrs, describe, fixed_report

from .bochs_caps import BOCHS_MSRS

TRUE_MSRS = (0x48D, 0x48E, 0x48F, 0x490)


def _deps(true_controls, secondary, tertiary, exit2, ept, vmfunc):
    """dependent_msrs' answer, written out: each argument is (exists, the end of its reason)."""
    out = {m: (true_controls, "IA32_VMX_BASIC bit 55 is %s" % ("1" if true_controls else "0 (or unknown)"))
           for m in TRUE_MSRS}
    out[0x48B] = (secondary[0], "primary control bit 31 (activate secondary controls) " + secondary[1])
    out[0x492] = (tertiary[0], "primary control bit 17 (activate tertiary controls) " + tertiary[1])
    out[0x493] = (exit2[0], "VM-exit control bit 31 (activate secondary controls) " + exit2[1])
    out[0x48C] = ept
    out[0x491] = vmfunc
    return out


YES, NO = (True, "may be 1"), (False, "cannot be 1")
NO_SECONDARY = (False, "no secondary controls")


def test_dependent_msrs_of_the_bochs_model():
    # 0x480 bit 55 = 1 (0xD8 in bits 55:48); 0x482 allowed-1 0xFFF9FFFE: bit 31 yes, bit 17 no;
    # 0x483 allowed-1 0x407FFFFF: bit 31 no; 0x48B allowed-1 0x02D77FFF: bits 1, 5 and 13 yes.
    assert dependent_msrs(BOCHS_MSRS) == _deps(
        True, YES, NO, NO, (True, "secondary bit 1 (EPT) or 5 (VPID) may be 1"),
        (True, "secondary bit 13 (VM functions) may be 1"))


def test_dependent_msrs_of_nothing():
    assert dependent_msrs({}) == _deps(False, NO, NO, NO, NO_SECONDARY, NO_SECONDARY)


@pytest.mark.parametrize("values, expected", [
    # only the allowed-1 half (bits 63:32) counts (A.3.2, A.4.1): the same bits in the allowed-0 half do not
    ({0x480: 1 << 54, 0x482: (1 << 31) | (1 << 17), 0x483: 1 << 31},
     _deps(False, NO, NO, NO, NO_SECONDARY, NO_SECONDARY)),
    ({0x480: 1 << 55, 0x482: 1 << 49, 0x483: 1 << 63}, _deps(True, NO, YES, YES, NO_SECONDARY, NO_SECONDARY)),
    ({0x482: 1 << 63, 0x48B: 0x2022}, _deps(False, YES, NO, NO, (False, "secondary bit 1 (EPT) or 5 (VPID) "
                                                                        "cannot be 1"),
                                            (False, "secondary bit 13 (VM functions) cannot be 1"))),
    ({0x482: 1 << 63, 0x48B: 1 << 33}, _deps(False, YES, NO, NO, (True, "secondary bit 1 (EPT) or 5 (VPID) "
                                                                        "may be 1"),
                                             (False, "secondary bit 13 (VM functions) cannot be 1"))),
    ({0x482: 1 << 63, 0x48B: 1 << 37}, _deps(False, YES, NO, NO, (True, "secondary bit 1 (EPT) or 5 (VPID) "
                                                                        "may be 1"),
                                             (False, "secondary bit 13 (VM functions) cannot be 1"))),
    ({0x482: 1 << 63, 0x48B: 1 << 45}, _deps(False, YES, NO, NO, (False, "secondary bit 1 (EPT) or 5 (VPID) "
                                                                         "cannot be 1"),
                                             (True, "secondary bit 13 (VM functions) may be 1"))),
    # secondary controls exist but were not read: EPT_VPID_CAP and VMFUNC may exist (reader must try)
    ({0x482: 1 << 63}, _deps(False, YES, NO, NO, (True, "secondary bit 1 (EPT) or 5 (VPID) unknown"),
                             (True, "secondary bit 13 (VM functions) unknown"))),
    ({0x482: 1 << 63, 0x48B: None}, _deps(False, YES, NO, NO, (True, "secondary bit 1 (EPT) or 5 (VPID) unknown"),
                                          (True, "secondary bit 13 (VM functions) unknown"))),
])
def test_dependent_msrs_one_bit_at_a_time(values, expected):
    assert dependent_msrs(values) == expected


def _row(bit, name, allowed0, allowed1, setting):
    return {"bit": bit, "name": name, "allowed0": allowed0, "allowed1": allowed1, "setting": setting}


def test_control_report_every_setting():
    # Hand-made pin-based MSR (A.3.1): allowed-0 half 0x21E (bits 1-4, 9 must be 1), allowed-1 half 0x109
    # (bits 0, 3, 8 may be 1). Bits 1, 2, 4, 9 must be 1 and cannot be: "impossible".
    rep = control_report("pin", 0x481, 0x00000109_0000021E)
    assert rep == {
        "kind": "pin", "title": "pin-based VM-execution controls", "field": "PIN_BASED_VM_EXEC_CONTROL",
        "msr": "0x481", "msr_name": "IA32_VMX_PINBASED_CTLS", "value": "0x1090000021e",
        "must_be_one": "0x21e", "may_be_one": "0x109", "must_be_zero": "0xfffffef6",
        "must_set_names": ["RESERVED_1", "RESERVED_2", "NMI_EXITING", "RESERVED_4", "RESERVED_9"],
        "unavailable_names": ["VIRTUAL_NMIS", "ACTIVATE_PREEMPTION_TIMER", "PROCESS_POSTED_INTERRUPTS"],
        "bits": [_row(0, "EXTERNAL_INTERRUPT_EXITING", True, True, "either"),
                 _row(1, "RESERVED_1", False, False, "impossible"),
                 _row(2, "RESERVED_2", False, False, "impossible"),
                 _row(3, "NMI_EXITING", False, True, "must be 1"),
                 _row(4, "RESERVED_4", False, False, "impossible"),
                 _row(5, "VIRTUAL_NMIS", True, False, "must be 0"),
                 _row(6, "ACTIVATE_PREEMPTION_TIMER", True, False, "must be 0"),
                 _row(7, "PROCESS_POSTED_INTERRUPTS", True, False, "must be 0"),
                 _row(8, "RESERVED_8", True, True, "either"),
                 _row(9, "RESERVED_9", False, False, "impossible")]}


def test_control_report_of_the_bochs_pin_msr():
    # 0x481 = 0xFF_00000016: default1 bits 1, 2, 4 must be 1; bits 0-7 may be 1 (A.3.1)
    rep = control_report("pin", 0x481, BOCHS_MSRS[0x481])
    assert (rep["must_be_one"], rep["may_be_one"], rep["must_be_zero"]) == ("0x16", "0xff", "0xffffff00")
    assert rep["must_set_names"] == ["RESERVED_1", "RESERVED_2", "RESERVED_4"] and rep["unavailable_names"] == []
    assert [(r["bit"], r["setting"]) for r in rep["bits"]] == [
        (0, "either"), (1, "must be 1"), (2, "must be 1"), (3, "either"), (4, "must be 1"), (5, "either"),
        (6, "either"), (7, "either")]


def test_control_report_reaches_bit_31():
    rep = control_report("proc", 0x482, 1 << 63)      # only bit 31 (activate secondary controls) may be 1
    assert rep["bits"][-1] == _row(31, "ACTIVATE_SECONDARY_CONTROLS", True, True, "either")
    assert rep["must_be_zero"] == "0x7fffffff" and rep["must_set_names"] == []
    # the 22 defined primary controls (SDM 25.6.2, Table 25-6) other than bit 31 cannot be 1
    assert len(rep["bits"]) == 22 and len(rep["unavailable_names"]) == 21
    assert rep["unavailable_names"][0] == "INTERRUPT_WINDOW_EXITING" and rep["unavailable_names"][-1] == "PAUSE_EXITING"


def test_control_report_of_a_64_bit_allowed_1_msr():
    # IA32_VMX_EXIT_CTLS2 (A.4.2): all 64 bits are allowed-1 bits, nothing must be 1
    rep = control_report("exit2", 0x493, 0x80000100_00000002)
    assert rep == {
        "kind": "exit2", "title": "secondary VM-exit controls", "field": "SECONDARY_VM_EXIT_CONTROLS",
        "msr": "0x493", "msr_name": "IA32_VMX_EXIT_CTLS2", "value": "0x8000010000000002",
        "must_be_one": "0x0", "may_be_one": "0x8000010000000002", "must_be_zero": "0x7ffffefffffffffd",
        "must_set_names": [], "unavailable_names": ["SAVE_IA32_FRED", "PREMATURELY_BUSY_SHADOW_STACK"],
        "bits": [_row(0, "SAVE_IA32_FRED", True, False, "must be 0"),
                 _row(1, "LOAD_IA32_FRED", True, True, "either"),
                 _row(2, "PREMATURELY_BUSY_SHADOW_STACK", True, False, "must be 0"),
                 _row(40, "RESERVED_40", True, True, "either"),
                 _row(63, "RESERVED_63", True, True, "either")]}


# SDM Vol. 3 2.5: the CR4 bits and their names, low to high.
CR4_NAMES = [(0, "VME"), (1, "PVI"), (2, "TSD"), (3, "DE"), (4, "PSE"), (5, "PAE"), (6, "MCE"), (7, "PGE"),
             (8, "PCE"), (9, "OSFXSR"), (10, "OSXMMEXCPT"), (11, "UMIP"), (12, "LA57"), (13, "VMXE"),
             (14, "SMXE"), (16, "FSGSBASE"), (17, "PCIDE"), (18, "OSXSAVE"), (19, "KL"), (20, "SMEP"),
             (21, "SMAP"), (22, "PKE"), (23, "CET"), (24, "PKS"), (25, "UINTR"), (27, "LASS"), (28, "LAM_SUP"),
             (32, "FRED")]


def _fixed_row(bit, name, f0, f1, setting):
    return {"bit": bit, "name": name, "fixed0": f0, "fixed1": f1, "setting": setting}


def test_fixed_report_of_the_bochs_cr0():
    # A.7: 0x486 = 0x80000021 (PE, NE, PG must be 1), 0x487 = 0xFFFFFFFF (bits 63:32 must be 0)
    either = [(1, "MP"), (2, "EM"), (3, "TS"), (4, "ET"), (16, "WP"), (18, "AM"), (29, "NW"), (30, "CD")]
    rows = [_fixed_row(b, n, False, True, "either") for b, n in either]
    rows += [_fixed_row(0, "PE", True, True, "must be 1"), _fixed_row(5, "NE", True, True, "must be 1"),
             _fixed_row(31, "PG", True, True, "must be 1")]
    assert fixed_report("cr0", 0x80000021, 0xFFFFFFFF) == {
        "register": "CR0", "fixed0": "0x80000021", "fixed1": "0xffffffff", "must_be_one": "0x80000021",
        "must_be_zero": "0xffffffff00000000", "must_set_names": ["PE", "NE", "PG"], "must_clear_names": [],
        "bits": sorted(rows, key=lambda r: r["bit"])}


def test_fixed_report_of_a_hand_made_cr4():
    # A.8, hand-made: FIXED0 = VMXE | bit 15 | bit 40 (undocumented bits are listed when they must be 1),
    # FIXED1 = VME | VMXE | bit 15 | bit 40: every other documented bit must be 0.
    fixed0, fixed1 = 0x2000 | 1 << 15 | 1 << 40, 0x1 | 0x2000 | 1 << 15 | 1 << 40
    rows = [_fixed_row(b, n, False, False, "must be 0") for b, n in CR4_NAMES]
    rows[0] = _fixed_row(0, "VME", False, True, "either")
    rows[13] = _fixed_row(13, "VMXE", True, True, "must be 1")
    rows += [_fixed_row(15, "bit15", True, True, "must be 1"), _fixed_row(40, "bit40", True, True, "must be 1")]
    assert fixed_report("cr4", fixed0, fixed1) == {
        "register": "CR4", "fixed0": "0x1000000a000", "fixed1": "0x1000000a001", "must_be_one": "0x1000000a000",
        "must_be_zero": "0xfffffeffffff5ffe",  # bits 0, 13, 15, 40 may be 1
        "must_set_names": ["VMXE", "bit15", "bit40"],
        "must_clear_names": [n for b, n in CR4_NAMES if b not in (0, 13)],
        "bits": sorted(rows, key=lambda r: r["bit"])}


def test_fixed_report_with_nothing_fixed():
    rep = fixed_report("cr4", 0, 0xFFFFFFFFFFFFFFFF)
    assert rep["must_set_names"] == [] and rep["must_clear_names"] == [] and rep["must_be_zero"] == "0x0"
    assert [(r["name"], r["setting"]) for r in rep["bits"]] == [(n, "either") for _, n in CR4_NAMES]


# --- describe ----------------------------------------------------------------------------------

ALL_MSRS = [0x3A] + list(range(0x480, 0x494))


def test_describe_the_bochs_model():
    rep = describe(BOCHS_MSRS, {0x492: "not supported: primary bit 17 cannot be 1"})
    assert list(rep) == ["msrs", "feature_control", "basic", "controls", "cr0", "cr4", "misc", "vmcs_enum",
                         "ept_vpid", "vmfunc"]
    assert rep["msrs"] == {"0x%x" % m: (None if m in (0x492, 0x493) else "0x%x" % BOCHS_MSRS[m]) for m in ALL_MSRS}
    assert rep["msrs"]["0x480"] == "0xd8100000000004" and rep["msrs"]["0x3a"] == "0x5"
    # IA32_FEATURE_CONTROL 5: lock and VMXON outside SMX
    assert (rep["feature_control"]["lock"], rep["feature_control"]["vmx_inside_smx"],
            rep["feature_control"]["vmx_outside_smx"]) == (True, False, True)
    assert rep["basic"]["revision_id"] == 4 and rep["basic"]["true_controls"]
    ctl = rep["controls"]
    assert list(ctl) == ["pin", "proc", "proc2", "proc3", "exit", "exit2", "entry"]
    # basic bit 55 = 1 and the TRUE MSRs were read: they are used (A.2)
    assert [ctl[k]["msr"] for k in ("pin", "proc", "proc2", "exit", "entry")] == [
        "0x48d", "0x48e", "0x48b", "0x48f", "0x490"]
    # default1 bits the TRUE MSR lets be 0: legacy allowed-0 & ~TRUE allowed-0
    # pin 0x16 vs 0x16; proc 0x0401E172 vs 0x04006172; exit 0x36DFF vs 0x36DFB; entry 0x11FF vs 0x11FB
    assert [ctl[k]["default1_clearable"] for k in ("pin", "proc", "exit", "entry")] == ["0x0", "0x18000", "0x4", "0x4"]
    assert "default1_clearable" not in ctl["proc2"]
    assert ctl["proc3"] == {"kind": "proc3", "title": "tertiary processor-based VM-execution controls",
                            "msr": "0x492", "msr_name": "IA32_VMX_PROCBASED_CTLS3",
                            "missing": "not supported: primary bit 17 cannot be 1"}
    assert ctl["exit2"]["missing"] == "not given"
    assert rep["cr0"]["must_set_names"] == ["PE", "NE", "PG"]
    assert rep["cr4"]["must_set_names"] == ["VMXE"] and rep["cr4"]["fixed1"] == "0x372fff"
    # 0x485 = 0x600401E0: HLT, shutdown, wait-for-SIPI; 4 CR3 targets; 512 MSRs; VMWRITE to any field
    misc = rep["misc"]
    assert (misc["activity_hlt"], misc["activity_wait_sipi"], misc["cr3_target_count"], misc["max_msr_list"],
            misc["vmwrite_any_field"]) == (True, True, 4, 512, True)
    assert rep["vmcs_enum"] == {"max_index": 0x28}          # 0x48A = 0x50: bits 9:1
    assert rep["ept_vpid"]["EPT page-walk length 4"] and rep["ept_vpid"]["INVVPID"]
    assert rep["vmfunc"] == {"EPTP switching": True, "other functions": "0x0"}


def test_describe_legacy_msrs_without_basic_bit_55():
    values = dict(BOCHS_MSRS)
    values[0x480] = BOCHS_MSRS[0x480] & ~(1 << 55)
    ctl = describe(values)["controls"]
    assert [ctl[k]["msr"] for k in ("pin", "proc", "exit", "entry")] == ["0x481", "0x482", "0x483", "0x484"]
    assert not any("default1_clearable" in ctl[k] for k in ("pin", "proc", "exit", "entry"))


def test_describe_falls_back_to_the_legacy_msr_when_the_true_one_was_not_read():
    values = {0x480: BOCHS_MSRS[0x480], 0x482: BOCHS_MSRS[0x482], 0x48D: BOCHS_MSRS[0x48D]}
    ctl = describe(values)["controls"]
    assert ctl["proc"]["msr"] == "0x482" and "default1_clearable" not in ctl["proc"]
    # the TRUE pin MSR without its legacy one: used, nothing to compare with
    assert ctl["pin"]["msr"] == "0x48d" and "default1_clearable" not in ctl["pin"]
    assert ctl["pin"]["must_be_one"] == "0x16"
    # no basic at all: the legacy MSR is named as missing
    assert describe({})["controls"]["pin"]["msr"] == "0x481"


def test_describe_names_each_missing_msr_with_its_reason():
    absent = {m: "reason %x" % m for m in ALL_MSRS}
    rep = describe({}, absent)
    assert rep["msrs"] == {"0x%x" % m: None for m in ALL_MSRS}
    for key, msr in (("feature_control", 0x3A), ("basic", 0x480), ("misc", 0x485), ("vmcs_enum", 0x48A),
                     ("ept_vpid", 0x48C), ("vmfunc", 0x491)):
        assert rep[key] == {"missing": "reason %x" % msr}
    assert rep["cr0"] == {"register": "CR0", "missing": "reason 486"}
    assert rep["cr4"] == {"register": "CR4", "missing": "reason 488"}
    assert rep["controls"]["entry"] == {"kind": "entry", "title": "VM-entry controls", "msr": "0x484",
                                        "msr_name": "IA32_VMX_ENTRY_CTLS", "missing": "reason 484"}
    # FIXED1 missing alone: its own reason
    rep = describe({0x486: 0x80000021, 0x488: 0x2000}, absent)
    assert rep["cr0"] == {"register": "CR0", "missing": "reason 487"}
    assert rep["cr4"] == {"register": "CR4", "missing": "reason 489"}
    assert describe({})["basic"] == {"missing": "not given"}
