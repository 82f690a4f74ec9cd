"""windbg_ext.arch.entry_checks.msr_rules, value by value (issue 16, mutation testing).

Expected values are worked out by hand from the SDM: IA32_PAT memory types (Vol. 3 13.12.2: 0 UC,
1 WC, 4 WT, 5 WP, 6 WB, 7 UC-; 2, 3 and 8-FFH reserved), IA32_EFER (Vol. 3 2.2.1: SCE 0, LME 8,
LMA 10, NXE 11), IA32_PERF_GLOBAL_CTRL (bits 48:0 may exist), IA32_PKRS (bits 63:32 reserved) and
the CET rules of 27.2.2 / 27.3.1.1 (IA32_S_CET bits 9:6 reserved, SUPPRESS bit 10, TRACKER bit 11;
SSP bits 1:0). `cet_rules` is called here with a registry of the test's own, so its mutants are
active (mutmut cannot activate them at import, where host.py and guest_regs.py call it)."""
import pytest

from windbg_ext.arch.entry_checks import msr_rules as mr
from windbg_ext.arch.entry_checks.model import NOT_APPLICABLE, EntryState, Registry
from windbg_ext.arch.vmcs_fields import by_name

VALID_TYPES = {0, 1, 4, 5, 6, 7}


def _state(**named):
    return EntryState({by_name(k).encoding: v for k, v in named.items()}, {})


@pytest.mark.parametrize("t", range(256))
def test_pat_each_type_in_the_lowest_and_highest_entry(t):
    if t in VALID_TYPES:
        assert mr.pat_problem(t) is None
        assert mr.pat_problem(t << 56) is None
    else:
        assert mr.pat_problem(t) == (
            "entry PA0 (bits 7:0) = %d is not a memory type (valid: 0, 1, 4, 5, 6, 7)" % t)
        assert mr.pat_problem(t << 56) == (
            "entry PA7 (bits 63:56) = %d is not a memory type (valid: 0, 1, 4, 5, 6, 7)" % t)


def test_pat_each_entry_and_the_first_bad_one():
    assert mr.pat_problem(0x0007040600070406) is None  # the power-on default (SDM 13.12.4)
    assert mr.pat_problem(0) is None
    assert mr.pat_problem(0x0707070707070707) is None
    want = ["entry PA0 (bits 7:0) = 2", "entry PA1 (bits 15:8) = 2", "entry PA2 (bits 23:16) = 2",
            "entry PA3 (bits 31:24) = 2", "entry PA4 (bits 39:32) = 2", "entry PA5 (bits 47:40) = 2",
            "entry PA6 (bits 55:48) = 2", "entry PA7 (bits 63:56) = 2"]
    for i in range(8):
        assert mr.pat_problem(0x0606060606060606 & ~(0xFF << (8 * i)) | (2 << (8 * i))) == (
            want[i] + " is not a memory type (valid: 0, 1, 4, 5, 6, 7)")
    # two bad entries: the lower one is named
    assert mr.pat_problem(0x0300000000000800) == (
        "entry PA1 (bits 15:8) = 8 is not a memory type (valid: 0, 1, 4, 5, 6, 7)")
    assert mr.pat_problem(0x0300000000000000) == (
        "entry PA7 (bits 63:56) = 3 is not a memory type (valid: 0, 1, 4, 5, 6, 7)")


def test_efer_reserved():
    assert mr.efer_reserved(0) == 0
    assert mr.efer_reserved(0xD01) == 0                      # SCE, LME, LMA, NXE
    assert mr.efer_reserved(0xFFFFFFFFFFFFFFFF) == 0xFFFFFFFFFFFFF2FE
    assert mr.efer_reserved(0x2) == 0x2
    assert mr.efer_reserved(0x200) == 0x200                  # bit 9
    assert mr.efer_reserved(0x1000 | 0x501) == 0x1000        # bit 12 (SVME on AMD; reserved on Intel)
    assert mr.efer_reserved(1 << 63) == 1 << 63
    assert mr.efer_reserved((1 << 64) | 0x2) == 0x2          # only the 64 bits of the field count


def test_perf_global_reserved():
    assert mr.perf_global_reserved(0) == 0
    assert mr.perf_global_reserved((1 << 49) - 1) == 0      # 32 GP counters, 16 fixed, PERF_METRICS
    assert mr.perf_global_reserved(1 << 48) == 0
    assert mr.perf_global_reserved(1 << 49) == 1 << 49
    assert mr.perf_global_reserved(0xFFFFFFFFFFFFFFFF) == 0xFFFE000000000000
    assert mr.perf_global_reserved((1 << 64) | 1) == 0


def test_pkrs_reserved():
    assert mr.pkrs_reserved(0) == 0
    assert mr.pkrs_reserved(0xFFFFFFFF) == 0
    assert mr.pkrs_reserved(1 << 32) == 1
    assert mr.pkrs_reserved(1 << 33) == 2
    assert mr.pkrs_reserved(0xFFFFFFFF00000000) == 0xFFFFFFFF


class _Cet:
    """cet_rules on a registry of its own; gate, is_64 and linear_bits are set per test and
    record the state they are given."""

    def __init__(self, gate=True, is_64=True, bits=48):
        self.gate, self.is_64, self.bits, self.seen = gate, is_64, bits, []
        self.R = Registry("zgroup")
        mr.cet_rules(self.R, "zz", "9.9.9", "HOST_S_CET", "HOST_SSP", "HOST_INTR_SSP_TABLE",
                     self._gate, self._is_64, self._bits)
        self.by_id = {c.id: c for c in self.R.checks}

    def _gate(self, s):
        self.seen.append(("gate", s))
        return self.gate

    def _is_64(self, s):
        self.seen.append(("is_64", s))
        return self.is_64

    def _bits(self, s):
        self.seen.append(("bits", s))
        return self.bits

    def run(self, id, **named):
        s = _state(**named)
        r = self.by_id["zz." + id].test(s)
        assert self.seen and all(x is s for _, x in self.seen)
        del self.seen[:]
        return r


def test_cet_rules_table():
    c = _Cet()
    assert [(x.id, x.group, x.sdm, x.fields, x.explain, x.qualification) for x in c.R.checks] == [
        ("zz.s_cet.canonical", "zgroup", "9.9.9", ("HOST_S_CET",),
         "If 'load CET state' is 1, IA32_S_CET must be canonical (and bits 63:32 0 outside 64-bit mode).", 0),
        ("zz.s_cet.reserved", "zgroup", "9.9.9", ("HOST_S_CET",),
         "If 'load CET state' is 1, IA32_S_CET bits 9:6 (reserved) must be 0.", 0),
        ("zz.s_cet.suppress_tracker", "zgroup", "9.9.9", ("HOST_S_CET",),
         "If 'load CET state' is 1, IA32_S_CET bit 10 (SUPPRESS) and bit 11 (TRACKER) must not both be 1.", 0),
        ("zz.ssp.canonical", "zgroup", "9.9.9", ("HOST_SSP",),
         "If 'load CET state' is 1, SSP must be canonical (and bits 63:32 0 outside 64-bit mode).", 0),
        ("zz.ssp.aligned", "zgroup", "9.9.9", ("HOST_SSP",), "If 'load CET state' is 1, SSP bits 1:0 must be 0.", 0),
        ("zz.ssp_table.canonical", "zgroup", "9.9.9", ("HOST_INTR_SSP_TABLE",),
         "If 'load CET state' is 1, the interrupt SSP table address must be canonical.", 0),
    ]


def test_cet_rules_not_applicable_when_the_gate_is_0():
    c = _Cet(gate=False)
    bad = dict(HOST_S_CET=0xFFFFFFFFFFFFFFFF ^ (1 << 50), HOST_SSP=0x0000800000000003,
               HOST_INTR_SSP_TABLE=0x0000800000000000)
    for id in ("s_cet.canonical", "s_cet.reserved", "s_cet.suppress_tracker", "ssp.canonical", "ssp.aligned",
               "ssp_table.canonical"):
        assert c.run(id, **bad) is NOT_APPLICABLE


@pytest.mark.parametrize("id,field", [("s_cet.canonical", "HOST_S_CET"), ("ssp.canonical", "HOST_SSP")])
def test_cet_canonical_in_64bit_mode(id, field):
    c = _Cet()
    for ok in (0, 0x00007FFFFFFFFFF8, 0xFFFF800000000000, 0xFFFFFFFFFFFFFFF8, 0x100000000):
        assert c.run(id, **{field: ok}) is None, hex(ok)
    for bad, text in ((0x0000800000000000, "0000800000000000"), (0xFFFF7FFFFFFFFFF8, "ffff7ffffffffff8"),
                      (0x8000000000000000, "8000000000000000"), (0x0001000000000000, "0001000000000000")):
        assert c.run(id, **{field: bad}) == "%s = 0x%s: must be canonical" % (field, text)
    c = _Cet(bits=57)  # 5-level paging: bits 63:56 must equal bit 56
    assert c.run(id, **{field: 0x0000800000000000}) is None
    assert c.run(id, **{field: 0x00FFFFFFFFFFFFF8}) is None
    assert c.run(id, **{field: 0xFF00000000000000}) is None
    assert c.run(id, **{field: 0x0100000000000000}) == "%s = 0x0100000000000000: must be canonical" % field


@pytest.mark.parametrize("id,field", [("s_cet.canonical", "HOST_S_CET"), ("ssp.canonical", "HOST_SSP")])
def test_cet_canonical_outside_64bit_mode(id, field):
    c = _Cet(is_64=False)
    assert c.run(id, **{field: 0xFFFFFFF8}) is None
    assert c.run(id, **{field: 0}) is None
    for bad, text in ((0x100000000, "0000000100000000"), (0xFFFFFFFFFFFFFFF8, "fffffffffffffff8"),
                      (0x8000000000000000, "8000000000000000"), (0x0000800000000000, "0000800000000000")):
        assert c.run(id, **{field: bad}) == (
            "%s = 0x%s: must be canonical with bits 63:32 = 0" % (field, text))


def test_cet_s_cet_reserved():
    c = _Cet()
    assert c.run("s_cet.reserved", HOST_S_CET=0) is None
    assert c.run("s_cet.reserved", HOST_S_CET=0xFFFFFFFFFFFFFC3F) is None  # every bit but 9:6
    assert c.run("s_cet.reserved", HOST_S_CET=0x40) == "HOST_S_CET = 0x0000000000000040: reserved bit 6 must be 0"
    assert c.run("s_cet.reserved", HOST_S_CET=0x200) == "HOST_S_CET = 0x0000000000000200: reserved bit 9 must be 0"
    assert c.run("s_cet.reserved", HOST_S_CET=0xFFF) == (
        "HOST_S_CET = 0x0000000000000fff: reserved bits 9, 8, 7, 6 must be 0")


def test_cet_suppress_and_tracker():
    c = _Cet()
    for ok in (0, 0x400, 0x800, 0x1400, 0x3FF, 0xFFFFFFFFFFFFF3FF):
        assert c.run("s_cet.suppress_tracker", HOST_S_CET=ok) is None, hex(ok)
    assert c.run("s_cet.suppress_tracker", HOST_S_CET=0xC00) == (
        "HOST_S_CET = 0x0000000000000c00: SUPPRESS (bit 10) and TRACKER (bit 11) must not both be 1")
    assert c.run("s_cet.suppress_tracker", HOST_S_CET=0x1C00) == (
        "HOST_S_CET = 0x0000000000001c00: SUPPRESS (bit 10) and TRACKER (bit 11) must not both be 1")


def test_cet_ssp_aligned():
    c = _Cet()
    assert c.run("ssp.aligned", HOST_SSP=0x1004) is None
    assert c.run("ssp.aligned", HOST_SSP=0xFFFFFFFFFFFFFFFC) is None
    assert c.run("ssp.aligned", HOST_SSP=0x1001) == "HOST_SSP = 0x0000000000001001: bits 1:0 must be 0"
    assert c.run("ssp.aligned", HOST_SSP=0x1002) == "HOST_SSP = 0x0000000000001002: bits 1:0 must be 0"


def test_cet_ssp_table_canonical():
    for is_64 in (True, False):  # only canonical: no bits 63:32 rule for the table, even outside 64-bit mode
        c = _Cet(is_64=is_64)
        assert c.run("ssp_table.canonical", HOST_INTR_SSP_TABLE=0xFFFF800000000000) is None
        assert c.run("ssp_table.canonical", HOST_INTR_SSP_TABLE=0x00007FFFFFFFFFFF) is None
        assert c.run("ssp_table.canonical", HOST_INTR_SSP_TABLE=0x0000800000000000) == (
            "HOST_INTR_SSP_TABLE = 0x0000800000000000: must be canonical")
    c = _Cet(bits=57)
    assert c.run("ssp_table.canonical", HOST_INTR_SSP_TABLE=0x0000800000000000) is None
    assert c.run("ssp_table.canonical", HOST_INTR_SSP_TABLE=0x0100000000000000) == (
        "HOST_INTR_SSP_TABLE = 0x0100000000000000: must be canonical")


def test_cet_messages_name_their_field():
    c = _Cet()
    s = _state(HOST_SSP=3)
    assert c.by_id["zz.ssp.aligned"].test(s) == "HOST_SSP = 0x0000000000000003: bits 1:0 must be 0"
    assert s.named == ["HOST_SSP"]
