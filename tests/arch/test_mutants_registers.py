"""windbg_ext/arch/registers.py, one function at a time (issue 16, mutation tests).

Every expected value is typed in here from the SDM (section named at each test) or worked out by
hand from it; nothing is computed with the module under test."""
import pytest

from windbg_ext.arch import registers as R

# SDM Vol. 1 3.4.3, Figure 3-8: the one-bit RFLAGS flags (bit 1 is reserved and reads 1).
RFLAGS_FLAGS = [("CF", 0), ("RESERVED1", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8), ("IF", 9),
                ("DF", 10), ("OF", 11), ("NT", 14), ("RF", 16), ("VM", 17), ("AC", 18), ("VIF", 19),
                ("VIP", 20), ("ID", 21)]

# SDM Vol. 3 18.2.4, Figure 18-1: the one-bit DR7 flags (bit 10 is reserved and reads 1).
DR7_FLAGS = [("L0", 0), ("G0", 1), ("L1", 2), ("G1", 3), ("L2", 4), ("G2", 5), ("L3", 6), ("G3", 7),
             ("LE", 8), ("GE", 9), ("RESERVED1", 10), ("RTM", 11), ("GD", 13)]


# --- set_bits / bit_names / bit_of -------------------------------------------------------------

def test_set_bits_lists_named_and_unnamed_bits_from_low_to_high():
    # CR0 = PE | bit 6 (not architectural) | NE | bit 17 | PG (SDM Vol. 3 2.5: bits 6 and 17 are reserved)
    assert R.set_bits(R.CR0_BITS, 0x80020061) == ["PE", "NE", "bit6", "bit17", "PG"]


def test_set_bits_of_nothing_and_of_one_bit():
    assert R.set_bits(R.CR0_BITS, 0) == []
    assert R.set_bits(R.CR0_BITS, 1) == ["PE"]              # bit 0 alone
    assert R.set_bits(R.CR0_BITS, 2) == ["MP"]              # bit 1 alone: the bit counter starts at 0
    assert R.set_bits(R.CR0_BITS, 0x8) == ["TS"]            # bit 3: a counter stepping by 2 would miss it
    assert R.set_bits(R.CR4_BITS, 1 << 32) == ["FRED"]      # SDM 2.5: CR4.FRED is bit 32
    assert R.set_bits(R.EFER_BITS, 1 << 63) == ["bit63"]


def test_bit_names():
    assert R.bit_names(R.CR0_BITS, 0) == "-"
    assert R.bit_names(R.CR0_BITS, 0x80000001) == "PE PG"
    assert R.bit_names(R.EFER_BITS, 0x500) == "LME LMA"     # IA32_EFER bits 8 and 10 (SDM Vol. 4, MSR C000_0080H)
    assert R.bit_names(R.EFER_BITS, 0x2) == "bit1"


@pytest.mark.parametrize("table, name, bit", [
    (R.CR0_BITS, "PE", 0), (R.CR0_BITS, "NE", 5), (R.CR0_BITS, "PG", 31),
    (R.CR4_BITS, "VME", 0), (R.CR4_BITS, "VMXE", 13), (R.CR4_BITS, "FRED", 32),
    (R.EFER_BITS, "NXE", 11), (R.DR7_BITS, "GD", 13), (R.CPUID1_ECX_BITS, "VMX", 5),
    (R.CPUID1_ECX_BITS, "HYPERVISOR", 31),
])
def test_bit_of(table, name, bit):
    assert R.bit_of(table, name) == bit


def test_bit_of_an_unknown_name_raises_key_error_naming_it():
    with pytest.raises(KeyError) as err:
        R.bit_of(R.CR0_BITS, "VMXE")        # a CR4 name, not a CR0 one
    assert err.value.args == ("VMXE",)
    with pytest.raises(KeyError):
        R.bit_of(R.CR0_BITS, "protection enable")   # a description is not a name


# --- decode_rflags -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, bit", RFLAGS_FLAGS)
def test_decode_rflags_one_flag_at_a_time(name, bit):
    expected = {n: n == name for n, _ in RFLAGS_FLAGS}
    expected["IOPL"] = 0
    assert R.decode_rflags(1 << bit) == expected


@pytest.mark.parametrize("value, iopl", [(0x1000, 1), (0x2000, 2), (0x3000, 3), (0x800, 0), (0x4000, 0),
                                         (0x7FFF & ~0x3000, 0)])
def test_decode_rflags_iopl_is_bits_13_12(value, iopl):
    assert R.decode_rflags(value)["IOPL"] == iopl


# --- decode_dr7 --------------------------------------------------------------------------------

def _dr7(**fields):
    """The decoded DR7 of a value with nothing set, with `fields` changed."""
    out = {n: False for n, _ in DR7_FLAGS}
    for n in range(4):
        out["RW%d" % n] = "execute"
        out["LEN%d" % n] = 1
    out.update(fields)
    return out


@pytest.mark.parametrize("name, bit", DR7_FLAGS)
def test_decode_dr7_one_flag_at_a_time(name, bit):
    assert R.decode_dr7(1 << bit) == _dr7(**{name: True})


# SDM 18.2.4: R/Wn at bits 17:16 + 4n (00 execute, 01 write, 10 I/O, 11 read/write), LENn at bits
# 19:18 + 4n (00 1 byte, 01 2 bytes, 10 8 bytes, 11 4 bytes).
@pytest.mark.parametrize("n", range(4))
@pytest.mark.parametrize("code, rw, length", [(1, "write", 2), (2, "I/O", 8), (3, "read/write", 4)])
def test_decode_dr7_condition_and_length_fields(n, code, rw, length):
    assert R.decode_dr7(code << (16 + 4 * n)) == _dr7(**{"RW%d" % n: rw})
    assert R.decode_dr7(code << (18 + 4 * n)) == _dr7(**{"LEN%d" % n: length})


# --- decode_selector ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (0xFFFF, {"value": 0xFFFF, "index": 0x1FFF, "ti": "LDT", "rpl": 3}),
    (0x10, {"value": 0x10, "index": 2, "ti": "GDT", "rpl": 0}),         # the Windows x64 kernel CS
    (0x4, {"value": 0x4, "index": 0, "ti": "LDT", "rpl": 0}),
    (0x2, {"value": 0x2, "index": 0, "ti": "GDT", "rpl": 2}),
    (0x1_0053, {"value": 0x53, "index": 10, "ti": "GDT", "rpl": 3}),   # only 16 bits are a selector
])
def test_decode_selector(value, expected):
    """SDM Vol. 3 3.4.2, Figure 3-6: index 15:3, TI bit 2 (1 = LDT), RPL 1:0."""
    assert R.decode_selector(value) == expected


# --- decode_access_rights ----------------------------------------------------------------------

# SDM Vol. 3 3.4.5.1, Table 3-1 (code and data segments, S = 1) and Table 3-2 (system, IA-32e mode).
CODE_DATA_TYPES = ["read-only", "read-only, accessed", "read/write", "read/write, accessed",
                   "read-only, expand-down", "read-only, expand-down, accessed",
                   "read/write, expand-down", "read/write, expand-down, accessed",
                   "execute-only", "execute-only, accessed", "execute/read", "execute/read, accessed",
                   "execute-only, conforming", "execute-only, conforming, accessed",
                   "execute/read, conforming", "execute/read, conforming, accessed"]
SYSTEM = {0: "reserved system type", 1: "16-bit TSS (available)", 2: "LDT", 3: "16-bit TSS (busy)",
          4: "16-bit call gate", 5: "task gate", 6: "16-bit interrupt gate", 7: "16-bit trap gate",
          8: "reserved system type", 9: "64/32-bit TSS (available)", 10: "reserved system type",
          11: "64/32-bit TSS (busy)", 12: "64/32-bit call gate", 13: "reserved system type",
          14: "64/32-bit interrupt gate", 15: "64/32-bit trap gate"}


def _ar(value, **fields):
    out = {"value": value, "type": 0, "type_name": "reserved system type", "s": False, "dpl": 0, "p": False,
           "avl": False, "l": False, "db": False, "g": False, "unusable": False, "reserved_bits": 0}
    out.update(fields)
    return out


@pytest.mark.parametrize("seg_type", range(16))
def test_access_rights_type_names(seg_type):
    assert R.decode_access_rights(0x10 | seg_type) == _ar(0x10 | seg_type, type=seg_type, s=True,
                                                          type_name=CODE_DATA_TYPES[seg_type])
    assert R.decode_access_rights(seg_type) == _ar(seg_type, type=seg_type, type_name=SYSTEM[seg_type])


# SDM Vol. 3 25.4.1, Table 25-2: DPL 6:5, P 7, AVL 12, L 13, D/B 14, G 15, unusable 16; 11:8 and 31:17 reserved.
@pytest.mark.parametrize("value, fields", [
    (0x20, {"dpl": 1}), (0x40, {"dpl": 2}), (0x60, {"dpl": 3}), (0x80, {"p": True}),
    (0x1000, {"avl": True}), (0x2000, {"l": True}), (0x4000, {"db": True}), (0x8000, {"g": True}),
    (0x10000, {"unusable": True}),
    (0x100, {"reserved_bits": 0x100}), (0x800, {"reserved_bits": 0x800}),
    (0x20000, {"reserved_bits": 0x20000}), (0x80000000, {"reserved_bits": 0x80000000}),
])
def test_access_rights_fields_one_at_a_time(value, fields):
    assert R.decode_access_rights(value) == _ar(value, **fields)


def test_access_rights_keep_only_32_bits():
    assert R.decode_access_rights(0x1_0000_A09B) == _ar(0xA09B, type=11, type_name="execute/read, accessed",
                                                        s=True, p=True, l=True, g=True)


# --- access_rights_from_descriptor -------------------------------------------------------------

@pytest.mark.parametrize("descriptor, ar", [
    (0x00209B0000000000, 0x209B),        # Windows x64 KGDT64_R0_CODE: P, DPL 0, code, L
    (0x00CFF3000000FFFF, 0xC0F3),        # flat 32-bit ring-3 data: G, D/B, DPL 3
    (0x0000130000000000, 0x10013),       # not present (P = 0): unusable
    (0x00F0800000000000, 0xF080),        # the four flag bits 55:52 move to 15:12
    (0xFF0F7F00FFFFFFFF, 0x1007F),       # limit, base and bits 51:48 are not access rights
])
def test_access_rights_from_descriptor(descriptor, ar):
    """SDM Vol. 3 3.4.5, Figure 3-8 (descriptor) and 25.4.1, Table 25-2 (the VMCS format)."""
    assert R.access_rights_from_descriptor(descriptor) == ar


# --- cr_seen_by_guest --------------------------------------------------------------------------

@pytest.mark.parametrize("real, mask, shadow, seen", [
    (0x80050033, 0, 0xFFFFFFFF, 0x80050033),     # nothing host-owned: the register itself
    (0x80050033, 0x20, 0, 0x80050013),           # NE host-owned, shadow says 0
    (0x80050013, 0x20, 0x20, 0x80050033),        # NE host-owned, shadow says 1
    (0x406A0 | 0x2000, 0x2000, 0, 0x406A0),      # the usual CR4: VMXE hidden from the guest
    (0x0F, 0xFF, 0xF0, 0xF0),                    # everything owned: the shadow's bits only
])
def test_cr_seen_by_guest(real, mask, shadow, seen):
    """SDM Vol. 3 25.6.6: owned bits read from the shadow, the others from the register."""
    assert R.cr_seen_by_guest(real, mask, shadow) == seen
