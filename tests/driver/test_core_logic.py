"""The driver's pure core (core/vmx_logic.c, core/segment.c) compiled with
the host compiler and called through ctypes. Expected values come from the
SDM rules restated here, and from real descriptors (Windows x64 GDT)."""
import ctypes
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from .support import HvSegment

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
