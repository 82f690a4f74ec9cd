"""Control bits (25.6-25.8), capability MSRs (App. A), registers."""
import pytest
from hypothesis import given, strategies as st

from windbg_ext.arch import capabilities as C
from windbg_ext.arch import controls as K
from windbg_ext.arch import registers as R
from windbg_ext.arch.capability_report import dependent_msrs, describe
from windbg_ext.arch.vmcs_fields import by_name

from .bochs_caps import BOCHS_MSRS

u64 = st.integers(0, 2 ** 64 - 1)
u32 = st.integers(0, 2 ** 32 - 1)


def test_every_kind_has_a_field_and_an_msr():
    assert set(K.CONTROL_BITS) == set(K.CONTROL_FIELD) == set(K.CAPABILITY_MSR) == set(K.KINDS)
    for kind in K.KINDS:
        field = by_name(K.CONTROL_FIELD[kind])
        assert field.type == "control"
        assert field.width == ("64" if kind in K.WIDE_KINDS else "32")
        msr, true_msr = K.CAPABILITY_MSR[kind]
        assert msr in C.VMX_MSRS and (true_msr is None or true_msr in C.VMX_MSRS)
        names = [n for n, _ in K.CONTROL_BITS[kind].values()]
        assert len(set(names)) == len(names)


@pytest.mark.parametrize("kind,bit,name", [
    ("pin", 0, "EXTERNAL_INTERRUPT_EXITING"), ("pin", 7, "PROCESS_POSTED_INTERRUPTS"),
    ("proc", 7, "HLT_EXITING"), ("proc", 17, "ACTIVATE_TERTIARY_CONTROLS"), ("proc", 28, "USE_MSR_BITMAPS"),
    ("proc", 31, "ACTIVATE_SECONDARY_CONTROLS"), ("proc2", 1, "ENABLE_EPT"), ("proc2", 3, "ENABLE_RDTSCP"),
    ("proc2", 5, "ENABLE_VPID"), ("proc2", 7, "UNRESTRICTED_GUEST"), ("proc2", 12, "ENABLE_INVPCID"),
    ("proc2", 20, "ENABLE_XSAVES_XRSTORS"), ("proc2", 26, "ENABLE_USER_WAIT_PAUSE"), ("proc3", 4, "IPI_VIRTUALIZATION"),
    ("exit", 9, "HOST_ADDRESS_SPACE_SIZE"), ("exit", 15, "ACKNOWLEDGE_INTERRUPT_ON_EXIT"),
    ("exit", 31, "ACTIVATE_SECONDARY_CONTROLS"), ("entry", 9, "IA32E_MODE_GUEST"), ("entry", 15, "LOAD_IA32_EFER"),
])
def test_control_bit_positions(kind, bit, name):
    assert K.CONTROL_BITS[kind][bit][0] == name


@given(st.sampled_from(K.KINDS), u64)
def test_decode_controls_reports_every_set_bit(kind, value):
    width = 64 if kind in K.WIDE_KINDS else 32
    value &= (1 << width) - 1
    rows = K.decode_controls(kind, value)
    assert sum(1 << b for b, _, s in rows if s) == value
    assert {b for b, _, _ in rows} >= set(K.CONTROL_BITS[kind])


@given(u64)
def test_allowed_settings_halves(v):
    must, may = C.allowed_settings(v)
    assert must == v & 0xFFFFFFFF and may == v >> 32
    assert C.allowed_settings(v, wide=True) == (0, v)


@given(u32, u32, u32)
def test_adjust_controls_satisfies_the_msr(wanted, allowed0, allowed1):
    allowed1 |= allowed0  # a consistent MSR: a bit that must be 1 may be 1
    msr = allowed0 | (allowed1 << 32)
    v = C.adjust_controls(wanted, msr)
    assert v & allowed0 == allowed0          # every must-be-1 bit is set
    assert v & ~allowed1 == 0                # nothing that may not be 1
    assert v & wanted & allowed1 == wanted & allowed1  # wanted bits kept where allowed
    assert C.control_problems(v, msr) == (0, 0)
    missing, forbidden = C.control_problems(wanted, msr)
    assert missing == allowed0 & ~wanted and forbidden == wanted & ~allowed1


@given(u64, u64)
def test_fixed_bits(f0, f1):
    f0 &= f1
    one, zero = C.fixed_bits(f0, f1)
    assert one == f0 and zero == ~f1 & (2 ** 64 - 1) and one & zero == 0


def test_bochs_basic_and_misc():
    b = C.decode_basic(BOCHS_MSRS[0x480])
    assert (b["revision_id"], b["region_size"], b["memtype"], b["true_controls"]) == (4, 4096, 6, True)
    m = C.decode_misc(BOCHS_MSRS[0x485])
    assert m["stores_lma"] and m["activity_hlt"] and m["cr3_target_count"] == 4
    assert C.decode_vmcs_enum(BOCHS_MSRS[0x48A])["max_index"] == 0x28
    e = C.decode_ept_vpid_cap(BOCHS_MSRS[0x48C])
    assert e["EPT page-walk length 4"] and e["EPT write-back (WB) memory type"] and e["INVVPID"]
    fc = C.decode_feature_control(5)
    assert fc["lock"] and fc["vmx_outside_smx"] and not fc["vmx_inside_smx"]


def test_capability_msr_for_uses_true_msrs_with_basic_bit_55():
    assert K.capability_msr_for("proc", 1 << 55) == C.IA32_VMX_TRUE_PROCBASED_CTLS
    assert K.capability_msr_for("proc", 0) == C.IA32_VMX_PROCBASED_CTLS
    assert K.capability_msr_for("proc2", 1 << 55) == C.IA32_VMX_PROCBASED_CTLS2


def test_dependent_msrs_follow_appendix_a():
    deps = dependent_msrs(BOCHS_MSRS)
    assert deps[0x48B][0] and deps[0x48C][0] and deps[0x491][0] and deps[0x48D][0]
    assert not deps[0x492][0] and "bit 17" in deps[0x492][1]
    assert not deps[0x493][0] and "bit 31" in deps[0x493][1]
    no_sec = dict(BOCHS_MSRS)
    no_sec.update({0x482: BOCHS_MSRS[0x482] & ~(1 << 63), 0x480: BOCHS_MSRS[0x480] & ~(1 << 55)})
    deps = dependent_msrs(no_sec)
    assert not deps[0x48B][0] and not deps[0x48C][0] and not deps[0x48D][0]


def test_describe_uses_true_msrs_and_reports_default1_relief():
    rep = describe(BOCHS_MSRS)
    proc = rep["controls"]["proc"]
    assert proc["msr"] == "0x48e"
    # the TRUE MSR lets CR3-load/store exiting (bits 15, 16) and bits 0.. be 0
    assert int(proc["default1_clearable"], 16) == 0x0401E172 & ~0x04006172
    assert "ACTIVATE_TERTIARY_CONTROLS" in proc["unavailable_names"]
    assert rep["cr0"]["must_set_names"] == ["PE", "NE", "PG"]
    assert rep["cr4"]["must_set_names"] == ["VMXE"]
    assert rep["controls"]["proc3"]["missing"] == "not given"


def test_access_rights_layout():
    ar = R.decode_access_rights(0xA09B)  # 64-bit ring-0 code
    assert (ar["type"], ar["s"], ar["dpl"], ar["p"], ar["l"], ar["db"], ar["g"], ar["unusable"]) == \
        (11, True, 0, True, True, False, True, False)
    assert R.decode_access_rights(0x10000)["unusable"]
    assert R.decode_access_rights(0x8B)["type_name"] == "64/32-bit TSS (busy)"
    assert R.decode_access_rights(0xF00)["reserved_bits"] == 0xF00


@given(st.integers(0, 2 ** 64 - 1))
def test_access_rights_from_descriptor(desc):
    ar = R.access_rights_from_descriptor(desc)
    d = R.decode_access_rights(ar)
    assert d["type"] == (desc >> 40) & 0xF and d["dpl"] == (desc >> 45) & 3
    assert d["g"] == bool(desc >> 55 & 1) and d["l"] == bool(desc >> 53 & 1)
    assert d["unusable"] == (not desc >> 47 & 1) and d["reserved_bits"] == 0


def test_register_tables():
    assert R.bit_names(R.CR0_BITS, 0x80000021) == "PE NE PG"
    assert R.CR4_BITS[13][0] == "VMXE" and R.CPUID1_ECX_BITS[5][0] == "VMX"
    assert R.set_bits(R.EFER_BITS, 0xD01) == ["SCE", "LME", "LMA", "NXE"]
    assert R.decode_selector(0x2B) == {"value": 0x2B, "index": 5, "ti": "GDT", "rpl": 3}
    assert R.decode_rflags(0x3202)["IOPL"] == 3 and R.decode_rflags(0x202)["IF"]
    d = R.decode_dr7(0x400 | 1 | (1 << 16) | (3 << 18))
    assert d["L0"] and d["RW0"] == "write" and d["LEN0"] == 4


def test_fixed_bit_violations_name_the_bits_vmxon_refuses():
    """SDM A.7/A.8: a bit 1 in FIXED0 must be 1, a bit 0 in FIXED1 must be 0 (lab CPU's values)."""
    v = C.fixed_bit_violations(0x80050013, 0x80000021, 0xFFFFFFFF)   # CR0 without NE
    assert v == {"must_be_one": 0x80000021, "must_be_zero": 0xFFFFFFFF00000000, "missing": 0x20, "forbidden": 0}
    v = C.fixed_bit_violations(0x406A0 | 1 << 22 | 1 << 40, 0x2000, 0x372FFF)   # no VMXE, two bits not allowed
    assert v["missing"] == 0x2000 and v["forbidden"] == 1 << 22 | 1 << 40
    assert C.fixed_bit_violations(0x426A0, 0x2000, 0x372FFF)["missing"] == 0
