"""The driver's pure core (core/vmx_logic.c, core/segment.c) compiled with
the host compiler and called through ctypes. Expected values come from the
SDM rules restated here, and from real descriptors (Windows x64 GDT)."""
import ctypes
import os
import re
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from .support import INCLUDE, HvGuestFeature, HvSegment

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)

HV_FC_READY, HV_FC_WRITE, HV_FC_REFUSED = 0, 1, 2
FLAG_FOUND, FLAG_ROTATED8, FLAG_UNMATCHED = 0x01, 0x02, 0x08


# ---- CR0/CR4 fixed bits (SDM 24.8, App. A.7/A.8) --------------------------
@settings(max_examples=300)
@given(u64, u64, u64)
def test_adjust_cr_obeys_fixed_bits(host_core, value, fixed0, fixed1):
    fixed0 &= fixed1  # a real CPU never forces a bit both on and off
    out = host_core.HvAdjustCr(value, fixed0, fixed1)
    assert out & fixed0 == fixed0            # every FIXED0 bit is 1
    assert out & ~fixed1 & (2**64 - 1) == 0  # every bit clear in FIXED1 is 0
    free = fixed1 & ~fixed0
    assert out & free == value & free        # everything else untouched


def test_adjust_cr_bochs_values(host_core):
    # Typical capability values: CR0 PE, NE, PG forced on; CR4 VMXE forced on.
    cr0_fixed0, cr0_fixed1 = 0x80000021, 0xFFFFFFFF
    assert host_core.HvAdjustCr(0x80050033, cr0_fixed0, cr0_fixed1) == 0x80050033
    assert host_core.HvAdjustCr(0x80050013, cr0_fixed0, cr0_fixed1) == 0x80050033  # NE set
    cr4_fixed0, cr4_fixed1 = 0x2000, 0x3727FF
    assert host_core.HvAdjustCr(0x000406F8, cr4_fixed0, cr4_fixed1) == 0x000426F8
    assert host_core.HvAdjustCr(0x800000 | 0x20, cr4_fixed0, cr4_fixed1) == 0x2020  # bit 23 not allowed


# ---- VMX controls (App. A.3-A.5) --------------------------------------------
@settings(max_examples=300)
@given(u32, u32, u32)
def test_adjust_controls(host_core, allowed0, allowed1, desired):
    allowed0 &= allowed1
    cap = (allowed1 << 32) | allowed0
    out = host_core.HvAdjustControls(cap, desired)
    assert out & allowed0 == allowed0
    assert out & ~allowed1 & 0xFFFFFFFF == 0
    assert out & allowed1 & desired == desired & allowed1  # every allowed wish granted
    assert host_core.HvControlsValid(cap, out) == 1


def test_controls_valid_rejects(host_core):
    cap = (0x0000007F << 32) | 0x16  # allowed-1 bits 6:0, allowed-0 bits 1,2,4
    assert host_core.HvControlsValid(cap, 0x16) == 1
    assert host_core.HvControlsValid(cap, 0x12) == 0   # bit 2 must be 1
    assert host_core.HvControlsValid(cap, 0x96) == 0   # bit 7 must be 0


def test_true_control_msrs_only_with_basic_bit_55(host_core):
    bochs_basic = 0x00D8100000000004  # measured (docs/lab.md): bit 55 set
    assert [host_core.HvControlCapabilityMsr(bochs_basic, m) for m in (0x481, 0x482, 0x483, 0x484)] == \
        [0x48D, 0x48E, 0x48F, 0x490]
    no_true = bochs_basic & ~(1 << 55)
    assert [host_core.HvControlCapabilityMsr(no_true, m) for m in (0x481, 0x482, 0x483, 0x484)] == \
        [0x481, 0x482, 0x483, 0x484]
    assert host_core.HvControlCapabilityMsr(bochs_basic, 0x48B) == 0x48B  # secondary: no TRUE variant


# ---- IA32_FEATURE_CONTROL (24.7) --------------------------------------------
def _fc(host_core, value):
    new = ctypes.c_uint64(0xDEAD)
    action = host_core.HvFeatureControlAction(value, ctypes.byref(new))
    return action, new.value


def test_feature_control(host_core):
    assert _fc(host_core, 0) == (HV_FC_WRITE, 0x5)            # unlocked: lock + outside SMX
    assert _fc(host_core, 0x2) == (HV_FC_WRITE, 0x7)          # keeps inside-SMX
    assert _fc(host_core, 0x5) == (HV_FC_READY, 0x5)
    assert _fc(host_core, 0xFF07)[0] == HV_FC_READY
    assert _fc(host_core, 0x1)[0] == HV_FC_REFUSED            # locked, VMX off (BIOS)
    assert _fc(host_core, 0x3)[0] == HV_FC_REFUSED            # locked, SMX only


# ---- access rights and GDT parsing (SDM 3.4.5, 25.4.1) ---------------------
# A Windows x64 GDT: null, KGDT64_R0_CODE 0x10, R0 data 0x18, R3 code32 0x20,
# R3 data 0x28, R3 code 0x30, TSS 0x40 (16 bytes), R3 TEB (FS) 0x50.
GDT = [0, 0, 0x00209B0000000000, 0x00CF93000000FFFF, 0x00CFFB000000FFFF, 0x00CFF3000000FFFF,
       0x0020FB0000000000, 0, 0xF8008B5C70000067, 0x00000000FFFFF806, 0x0040F30000003C00]
GDT_BYTES = struct.pack("<%dQ" % len(GDT), *GDT)


def segment(host_core, selector, gdt=GDT_BYTES, limit=None):
    out = HvSegment()
    rc = host_core.HvSegmentFromGdt(gdt, len(gdt) - 1 if limit is None else limit, selector, ctypes.byref(out))
    return rc, out


def test_access_rights_from_descriptor(host_core):
    assert host_core.HvAccessRightsFromDescriptor(0x00209B0000000000) == 0x209B  # 64-bit code, L=1
    assert host_core.HvAccessRightsFromDescriptor(0x00CF93000000FFFF) == 0xC093  # flat data, G, D/B
    assert host_core.HvAccessRightsFromDescriptor(0xF8008B5C70000067) == 0x008B  # busy TSS


@given(u64)
def test_access_rights_bit_mapping(host_core, desc):
    ar = host_core.HvAccessRightsFromDescriptor(desc)
    assert ar & 0xFF == (desc >> 40) & 0xFF
    assert (ar >> 12) & 0xF == (desc >> 52) & 0xF
    assert ar & 0xFFFF0F00 == 0  # reserved bits 11:8 and 31:16 (unusable is not set here)


def test_segments_of_a_windows_gdt(host_core):
    rc, cs = segment(host_core, 0x10)
    assert rc == 0 and (cs.AccessRights, cs.Base, cs.Limit) == (0x209B, 0, 0)
    rc, ds = segment(host_core, 0x2B)  # RPL 3 selector of the R3 data segment
    assert rc == 0 and (ds.AccessRights, ds.Base, ds.Limit, ds.Selector) == (0xC0F3, 0, 0xFFFFFFFF, 0x2B)
    rc, tr = segment(host_core, 0x40)
    assert rc == 0 and tr.AccessRights == 0x8B and tr.Limit == 0x67
    assert tr.Base == 0xFFFFF806F85C7000  # base 63:32 from the second qword
    rc, fs = segment(host_core, 0x53)
    assert rc == 0 and fs.Base == 0 and fs.Limit == 0x3C00 and fs.AccessRights == 0x40F3


def test_null_selector_is_unusable(host_core):
    for sel in (0, 1, 2, 3):
        rc, s = segment(host_core, sel)
        assert rc == 0 and s.AccessRights == 0x10000 and s.Base == 0 and s.Limit == 0


def test_bad_selectors_refused(host_core):
    assert segment(host_core, 0x0C)[0] == -1                      # TI = 1: LDT
    assert segment(host_core, 0x58)[0] == -1                      # beyond the GDT limit
    assert segment(host_core, 0x40, limit=0x47)[0] == -1          # TSS needs 16 bytes
    not_present = struct.pack("<2Q", 0, 0x00CF13000000FFFF)
    rc, s = segment(host_core, 0x08, gdt=not_present)
    assert rc == 0 and s.AccessRights & 0x10000


# ---- layout discovery classification ----------------------------------------
def classify(host_core, encoding, value):
    off = ctypes.c_uint16(0xFFFF)
    flags = host_core.HvLayoutClassify(encoding, value, ctypes.byref(off))
    return flags, off.value


def test_layout_classify(host_core):
    # 16-bit field in dword 7 -> offset 28
    assert classify(host_core, 0x0802, 7) == (FLAG_FOUND, 28)
    # 32-bit field in dword 100
    assert classify(host_core, 0x4002, 100) == (FLAG_FOUND, 400)
    # natural/64-bit field spanning dwords 40 and 41
    assert classify(host_core, 0x681E, (41 << 32) | 40) == (FLAG_FOUND, 160)
    assert classify(host_core, 0x2800, (99 << 32) | 40)[0] == FLAG_UNMATCHED
    # access rights stored rotated left by 8 (Bochs): VMREAD returns ror8(index)
    idx = 0x123
    ror8 = ((idx >> 8) | (idx << 24)) & 0xFFFFFFFF
    assert classify(host_core, 0x4816, ror8) == (FLAG_FOUND | FLAG_ROTATED8, idx * 4)
    assert classify(host_core, 0x4816, 0)[0] == FLAG_UNMATCHED      # dword 0 is the revision id
    assert classify(host_core, 0x4816, 5000)[0] == FLAG_UNMATCHED


@given(st.integers(1, 1023))
def test_layout_classify_every_index(host_core, idx):
    assert classify(host_core, 0x4400, idx) == (FLAG_FOUND, 4 * idx)
    assert classify(host_core, 0x0000, idx) == (FLAG_FOUND, 4 * idx)
    assert classify(host_core, 0x6C16, ((idx + 1) << 32) | idx) == (FLAG_FOUND, 4 * idx)


# ---- XSETBV (SDM Vol. 1 13.3) --------------------------------------------------
def test_xcr0_validity(host_core):
    supported = 0x2E7  # x87 SSE AVX + AVX-512 (5-7) + PKRU (9)
    ok = host_core.HvXcr0Valid
    assert ok(0x7, supported) and ok(0x1, supported) and ok(0xE7, supported)
    assert not ok(0x6, supported)      # x87 bit clear
    assert not ok(0x5, supported)      # AVX without SSE
    assert not ok(0x27, supported)     # AVX-512 partially
    assert not ok(0xE3, supported)     # AVX-512 without AVX
    assert not ok(0x10007, supported)  # unsupported component


# HvGuestFeatures order (core/vmx_logic.c): RDTSCP, RDPID, INVPCID, XSAVES, WAITPKG
RDTSCP, RDPID, INVPCID, XSAVES, WAITPKG = (1 << i for i in range(5))
CPU2_RDTSCP, CPU2_INVPCID, CPU2_XSAVES, CPU2_USER_WAIT = 1 << 3, 1 << 12, 1 << 20, 1 << 26
BOCHS_PROCBASED, BOCHS_PROCBASED2 = 0xfff9fffe0401e172, 0x2d77fff00000000   # IA32_VMX_(TRUE_)PROCBASED_CTLS(2)


def _features(host_core, advertised, cap1, cap2):
    wanted = ctypes.c_uint32(0)
    missing = host_core.HvFeatureControlsCheck(advertised, cap1, cap2, ctypes.byref(wanted))
    return missing, wanted.value


def test_feature_controls_follow_what_cpuid_advertises(host_core):
    assert _features(host_core, 0, BOCHS_PROCBASED, BOCHS_PROCBASED2) == (0, 0)
    assert _features(host_core, RDTSCP | RDPID | INVPCID | XSAVES, BOCHS_PROCBASED, BOCHS_PROCBASED2) == \
        (0, CPU2_RDTSCP | CPU2_INVPCID | CPU2_XSAVES)
    # WAITPKG needs "enable user wait and pause", which Bochs does not allow: feature 5 missing
    assert _features(host_core, RDTSCP | WAITPKG, BOCHS_PROCBASED, BOCHS_PROCBASED2) == \
        (5, CPU2_RDTSCP | CPU2_USER_WAIT)
    assert _features(host_core, RDTSCP | WAITPKG, BOCHS_PROCBASED, BOCHS_PROCBASED2 | CPU2_USER_WAIT << 32)[0] == 0


def test_feature_controls_missing_when_forbidden(host_core):
    no_rdtscp = BOCHS_PROCBASED2 & ~(CPU2_RDTSCP << 32)
    assert _features(host_core, INVPCID | RDPID, BOCHS_PROCBASED, no_rdtscp)[0] == 2     # RDPID needs it too
    # without "activate secondary controls" allowed, every such feature is missing
    no_secondary = BOCHS_PROCBASED & ~(1 << 63)
    assert _features(host_core, XSAVES, no_secondary, BOCHS_PROCBASED2)[0] == 4


def test_vmx_basic_region_requirements(host_core):
    bochs = 0x00d8100000000004            # 4096-byte regions, write-back, no 4 GiB limit
    assert host_core.HvVmxBasicProblem(bochs) == 0
    assert host_core.HvVmxBasicProblem((bochs & ~(0x1FFF << 32)) | (0x1000 + 8) << 32) == 1   # bigger than a page
    assert host_core.HvVmxBasicProblem(bochs & ~(0xF << 50)) == 2                            # uncacheable
    assert host_core.HvVmxBasicProblem(bochs | 1 << 48) == 3                                 # below 4 GiB only


def test_cr_adjust_clears_only_when_a_set_bit_is_forbidden(host_core):
    cr4_fixed0, cr4_fixed1 = 0x2000, 0x372fff            # Bochs
    assert host_core.HvCrAdjustClears(0x000406A0 | 0x2000, cr4_fixed0, cr4_fixed1) == 0
    assert host_core.HvCrAdjustClears(0x000406A0, cr4_fixed0, cr4_fixed1) == 0       # VMXE is only forced on
    assert host_core.HvCrAdjustClears(0x000406A0 | 1 << 23, cr4_fixed0, cr4_fixed1) == 1   # CET: not allowed here


def _header_define(name):
    text = open(os.path.join(INCLUDE, "hv_core.h")).read()
    return int(re.search(r"#define %s (\w+)" % name, text).group(1).rstrip("u"), 0)


REFUSE, GO_WITHOUT = _header_define("HV_FEATURE_REFUSE_LOAD"), _header_define("HV_FEATURE_GO_WITHOUT")
ACTIVATE_SECONDARY = 1 << 31            # primary processor-based control bit 31 (SDM 25.6.2, Table 25-6)


def _choose(host_core, rows, advertised, cap1, cap2):
    table = (HvGuestFeature * len(rows))(*[HvGuestFeature(b"f%d" % i, 7, 0, 1, i, control, action)
                                           for i, (control, action) in enumerate(rows)])
    wanted = ctypes.c_uint32(0)
    missing = host_core.HvChooseFeatureControls(table, len(rows), advertised, cap1, cap2, ctypes.byref(wanted))
    return missing, wanted.value


def test_choice_takes_what_is_allowed_and_refuses_or_goes_without_the_rest(host_core):
    cap1 = ACTIVATE_SECONDARY << 32                       # allowed-1 half: secondary controls may be on
    cap2 = (CPU2_RDTSCP | CPU2_INVPCID) << 32             # only these two secondary controls allowed
    rows = [(CPU2_RDTSCP, REFUSE), (CPU2_USER_WAIT, GO_WITHOUT), (CPU2_INVPCID, REFUSE), (CPU2_XSAVES, REFUSE)]
    # the forbidden GO_WITHOUT feature is left out, not refused; not advertised = not wanted
    assert _choose(host_core, rows, 0b0111, cap1, cap2) == (0, CPU2_RDTSCP | CPU2_INVPCID)
    assert _choose(host_core, rows, 0b0010, cap1, cap2) == (0, 0)
    # the first forbidden REFUSE feature is named (1 + index), its control reported wanted
    assert _choose(host_core, rows, 0b1001, cap1, cap2) == (4, CPU2_RDTSCP | CPU2_XSAVES)
    # count bounds the table: with three rows, row 3 is not looked at
    assert _choose(host_core, rows[:3], 0b1001, cap1, cap2) == (0, CPU2_RDTSCP)


def test_choice_without_activate_secondary_allows_no_secondary_control(host_core):
    cap2 = (CPU2_RDTSCP | CPU2_INVPCID) << 32
    rows = [(CPU2_RDTSCP, GO_WITHOUT), (CPU2_INVPCID, REFUSE)]
    assert _choose(host_core, rows, 0b11, 0, cap2) == (2, CPU2_INVPCID)
    assert _choose(host_core, rows, 0b01, 0, cap2) == (0, 0)


def test_the_feature_table_is_the_one_the_driver_uses(host_core):
    """HvFeatureControlsCheck is the choice over HvGuestFeatures: same answers for every advertised mask."""
    count = 5
    table = (HvGuestFeature * count).in_dll(host_core, "HvGuestFeatures")
    assert [t.Name.split(b" ")[0] for t in table] == [b"RDTSCP", b"RDPID", b"INVPCID", b"XSAVES/XRSTORS", b"WAITPKG"]
    assert all(t.Unavailable in (REFUSE, GO_WITHOUT) and t.Control for t in table)
    for advertised in range(1 << count):
        for cap2 in (BOCHS_PROCBASED2, BOCHS_PROCBASED2 | CPU2_USER_WAIT << 32, 0):
            w1, w2 = ctypes.c_uint32(0), ctypes.c_uint32(0)
            a = host_core.HvFeatureControlsCheck(advertised, BOCHS_PROCBASED, cap2, ctypes.byref(w1))
            b = host_core.HvChooseFeatureControls(table, count, advertised, BOCHS_PROCBASED, cap2, ctypes.byref(w2))
            assert (a, w1.value) == (b, w2.value)


def test_every_status_has_its_message(host_core):
    text = open(os.path.join(INCLUDE, "hv_status.h")).read()
    names = re.findall(r"X\((HV_STATUS_\w+),", text)
    assert names[0] == "HV_STATUS_SUCCESS" and len(names) == len(set(names)) >= 5
    messages = [host_core.HvStatusMessage(i) for i in range(len(names))]
    assert all(messages) and len(set(messages)) == len(names)
    assert host_core.HvStatusMessage(len(names)) == b"unknown status"
