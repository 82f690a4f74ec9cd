"""Validity rules for MSR values that VM entry loads from the VMCS, shared by
the host (27.2.2) and guest (27.3.1.1) checks."""
from __future__ import annotations

from windbg_ext.arch.registers import EFER_BITS
from windbg_ext.arch.entry_checks.model import NOT_APPLICABLE, bits_text, canonical, hexv

PAT_VALID_TYPES = (0, 1, 4, 5, 6, 7)  # UC, WC, WT, WP, WB, UC- (SDM 13.12.2); 2 and 3 are reserved
EFER_DEFINED = sum(1 << b for b in EFER_BITS)  # SCE, LME, LMA, NXE (SDM 2.2.1)
# IA32_PERF_GLOBAL_CTRL: enables for up to 32 general-purpose counters (bits 31:0), up to 16 fixed
# counters (bits 47:32) and PERF_METRICS (bit 48); how many exist is CPUID leaf 0AH, not visible
# here, so only bits no processor defines are flagged (SDM 20.2.2 / 20.6.2).
PERF_GLOBAL_DEFINED = (1 << 49) - 1
S_CET_RESERVED = 0x3C0  # bits 9:6 (SDM 18.3.1, IA32_S_CET)


def pat_problem(value: int):
    for i in range(8):
        t = (value >> (8 * i)) & 0xFF
        if t not in PAT_VALID_TYPES:
            return "entry PA%d (bits %d:%d) = %d is not a memory type (valid: 0, 1, 4, 5, 6, 7)" % (i, 8 * i + 7, 8 * i, t)
    return None


def efer_reserved(value: int) -> int:
    return value & ~EFER_DEFINED & 0xFFFFFFFFFFFFFFFF


def perf_global_reserved(value: int) -> int:
    return value & ~PERF_GLOBAL_DEFINED & 0xFFFFFFFFFFFFFFFF


def pkrs_reserved(value: int) -> int:
    return value >> 32


def cet_rules(R, area: str, sdm: str, s_cet: str, ssp: str, ssp_table: str, gate, is_64, linear_bits) -> None:
    """The CET-state rules, identical for host (27.2.2) and guest (27.3.1.1),
    when the 'load CET state' control of that side is 1."""
    def rule(id, fields, explain):
        def deco(fn):
            def test(s):
                if not gate(s):
                    return NOT_APPLICABLE
                return fn(s)
            R.add("%s.%s" % (area, id), sdm, fields, explain, test)
            return fn
        return deco

    def canonical_problem(s, field):
        """Canonical, and bits 63:32 clear outside 64-bit mode (IA32_S_CET, SSP)."""
        v = s.f(field)
        if not canonical(v, linear_bits(s)) or (not is_64(s) and v >> 32):
            return "%s: must be canonical%s" % (hexv(s, field), "" if is_64(s) else " with bits 63:32 = 0")
        return None

    @rule("s_cet.canonical", [s_cet], "If 'load CET state' is 1, IA32_S_CET must be canonical (and bits 63:32 0 outside 64-bit mode).")
    def _s_cet_canonical(s):
        return canonical_problem(s, s_cet)

    @rule("s_cet.reserved", [s_cet], "If 'load CET state' is 1, IA32_S_CET bits 9:6 (reserved) must be 0.")
    def _s_cet_reserved(s):
        v = s.f(s_cet)
        if v & S_CET_RESERVED:
            return "%s: reserved %s must be 0" % (hexv(s, s_cet), bits_text(v & S_CET_RESERVED))
        return None

    @rule("s_cet.suppress_tracker", [s_cet], "If 'load CET state' is 1, IA32_S_CET bit 10 (SUPPRESS) and bit 11 (TRACKER) must not both be 1.")
    def _s_cet_st(s):
        if (s.f(s_cet) >> 10) & 3 == 3:
            return "%s: SUPPRESS (bit 10) and TRACKER (bit 11) must not both be 1" % hexv(s, s_cet)
        return None

    @rule("ssp.canonical", [ssp], "If 'load CET state' is 1, SSP must be canonical (and bits 63:32 0 outside 64-bit mode).")
    def _ssp_canonical(s):
        return canonical_problem(s, ssp)

    @rule("ssp.aligned", [ssp], "If 'load CET state' is 1, SSP bits 1:0 must be 0.")
    def _ssp_aligned(s):
        return "%s: bits 1:0 must be 0" % hexv(s, ssp) if s.f(ssp) & 3 else None

    @rule("ssp_table.canonical", [ssp_table], "If 'load CET state' is 1, the interrupt SSP table address must be canonical.")
    def _ssp_table(s):
        return None if canonical(s.f(ssp_table), linear_bits(s)) else "%s: must be canonical" % hexv(s, ssp_table)
