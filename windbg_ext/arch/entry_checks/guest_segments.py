"""Guest-state checks on segment registers (SDM Vol. 3, 27.3.1.2: selector,
base, limit and every access-rights rule) and descriptor-table registers
(27.3.1.3). Access rights are in the VMX format (25.4.1): type 3:0, S 4,
DPL 6:5, P 7, AVL 12, L 13, D/B 14, G 15, unusable 16."""
from __future__ import annotations

from windbg_ext.arch.entry_checks.model import NOT_APPLICABLE, Registry, bits_text, canonical, hexv
from windbg_ext.arch.registers import AR_RESERVED_MASK, decode_access_rights

R = Registry("guest")
SEG, DT = "27.3.1.2", "27.3.1.3"
DATA_SEGS = ("ES", "DS", "FS", "GS")
SIX = ("ES", "CS", "SS", "DS", "FS", "GS")


def sel(s, seg):
    return s.f("GUEST_%s_SELECTOR" % seg)


def ar(s, seg):
    return decode_access_rights(s.f("GUEST_%s_AR_BYTES" % seg))


def usable(s, seg) -> bool:
    return not ar(s, seg)["unusable"]


def arv(s, seg) -> str:
    return hexv(s, "GUEST_%s_AR_BYTES" % seg)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _protected(fn):
    """Access-rights rules apply only when the guest will not be in virtual-8086 mode."""
    def test(s):
        if s.v8086:
            return NOT_APPLICABLE
        return fn(s)
    return test


def _usable(seg, fn):
    """Rules on a data segment (or SS) apply only when it is usable; CS is always checked."""
    def test(s):
        if s.v8086 or (seg != "CS" and not usable(s, seg)):
            return NOT_APPLICABLE
        return fn(s)
    return test


# -- selectors ------------------------------------------------------------------
@R.rule("guest.tr.selector_ti", SEG, ["GUEST_TR_SELECTOR"], "The TI flag (bit 2) of the guest TR selector must be 0 (TR lives in the GDT).")
def _tr_ti(s):
    return "%s: TI (bit 2) must be 0" % hexv(s, "GUEST_TR_SELECTOR") if sel(s, "TR") & 4 else None


@R.rule("guest.ldtr.selector_ti", SEG, ["GUEST_LDTR_SELECTOR", "GUEST_LDTR_AR_BYTES"], "If LDTR is usable, the TI flag (bit 2) of its selector must be 0.")
def _ldtr_ti(s):
    if not usable(s, "LDTR"):
        return NOT_APPLICABLE
    return "%s: TI (bit 2) must be 0" % hexv(s, "GUEST_LDTR_SELECTOR") if sel(s, "LDTR") & 4 else None


@R.rule("guest.ss.rpl_equals_cs_rpl", SEG, ["GUEST_SS_SELECTOR", "GUEST_CS_SELECTOR", "GUEST_RFLAGS", "SECONDARY_VM_EXEC_CONTROL"],
        "Unless the guest is virtual-8086 or 'unrestricted guest' is 1, SS.RPL must equal CS.RPL.")
def _ss_rpl(s):
    if s.v8086 or s.unrestricted:
        return NOT_APPLICABLE
    if sel(s, "SS") & 3 != sel(s, "CS") & 3:
        return "%s: RPL %d must equal CS.RPL %d (GUEST_CS_SELECTOR = 0x%04x)" % (
            hexv(s, "GUEST_SS_SELECTOR"), sel(s, "SS") & 3, sel(s, "CS") & 3, sel(s, "CS"))
    return None


# -- virtual-8086 guests: base, limit, access rights fixed --------------------------
for _seg in SIX:
    def _v86_base(s, seg=_seg):
        if not s.v8086:
            return NOT_APPLICABLE
        want = sel(s, seg) << 4
        if s.f("GUEST_%s_BASE" % seg) != want:
            return "%s: must be selector << 4 = 0x%x in virtual-8086 mode" % (hexv(s, "GUEST_%s_BASE" % seg), want)
        return None

    def _v86_limit(s, seg=_seg):
        if not s.v8086:
            return NOT_APPLICABLE
        f = "GUEST_%s_LIMIT" % seg
        return "%s: must be 0xffff in virtual-8086 mode" % hexv(s, f) if s.f(f) != 0xFFFF else None

    def _v86_ar(s, seg=_seg):
        if not s.v8086:
            return NOT_APPLICABLE
        f = "GUEST_%s_AR_BYTES" % seg
        return "%s: must be 0xf3 (present, DPL 3, read/write accessed data) in virtual-8086 mode" % hexv(s, f) if s.f(f) != 0xF3 else None

    lo = _seg.lower()
    R.add("guest.%s.v8086_base" % lo, SEG, ["GUEST_RFLAGS", "GUEST_%s_SELECTOR" % _seg, "GUEST_%s_BASE" % _seg],
          "In a virtual-8086 guest (RFLAGS.VM = 1), the %s base must be the selector shifted left by 4." % _seg, _v86_base)
    R.add("guest.%s.v8086_limit" % lo, SEG, ["GUEST_RFLAGS", "GUEST_%s_LIMIT" % _seg],
          "In a virtual-8086 guest, the %s limit must be 0000FFFFH." % _seg, _v86_limit)
    R.add("guest.%s.v8086_ar" % lo, SEG, ["GUEST_RFLAGS", "GUEST_%s_AR_BYTES" % _seg],
          "In a virtual-8086 guest, the %s access rights must be 000000F3H." % _seg, _v86_ar)


# -- bases ------------------------------------------------------------------------
for _seg in ("TR", "FS", "GS", "LDTR"):
    def _base_canonical(s, seg=_seg):
        if seg == "LDTR" and not usable(s, "LDTR"):
            return NOT_APPLICABLE
        f = "GUEST_%s_BASE" % seg
        return None if canonical(s.f(f), s.guest_linear_bits()) else "%s: not canonical" % hexv(s, f)
    R.add("guest.%s.base_canonical" % _seg.lower(), SEG, ["GUEST_%s_BASE" % _seg],
          "The guest %s base must be canonical%s." % (_seg, " if LDTR is usable" if _seg == "LDTR" else ""), _base_canonical)

for _seg in ("CS", "SS", "DS", "ES"):
    def _base_high(s, seg=_seg):
        if seg != "CS" and not usable(s, seg):
            return NOT_APPLICABLE
        f = "GUEST_%s_BASE" % seg
        return "%s: bits 63:32 must be 0" % hexv(s, f) if s.f(f) >> 32 else None
    R.add("guest.%s.base_high" % _seg.lower(), SEG, ["GUEST_%s_BASE" % _seg],
          "Bits 63:32 of the guest %s base must be 0%s." % (_seg, "" if _seg == "CS" else " if the register is usable"), _base_high)


# -- access rights: types ---------------------------------------------------------
def _cs_type(s):
    t = ar(s, "CS")["type"]
    ok = (9, 11, 13, 15) + ((3,) if s.unrestricted else ())
    if t not in ok:
        return "%s: type %d must be one of %s" % (arv(s, "CS"), t, ", ".join(str(x) for x in ok))
    return None


R.add("guest.cs.type", SEG, ["GUEST_CS_AR_BYTES", "SECONDARY_VM_EXEC_CONTROL"],
      "The CS type must be 9, 11, 13 or 15 (accessed code), or 3 (accessed read/write data) with 'unrestricted guest'.",
      _protected(_cs_type))


def _ss_type(s):
    t = ar(s, "SS")["type"]
    return "%s: type %d must be 3 or 7 (read/write accessed data)" % (arv(s, "SS"), t) if t not in (3, 7) else None


R.add("guest.ss.type", SEG, ["GUEST_SS_AR_BYTES"], "If SS is usable, its type must be 3 or 7 (read/write, accessed).", _usable("SS", _ss_type))

for _seg in DATA_SEGS:
    def _accessed(s, seg=_seg):
        t = ar(s, seg)["type"]
        return "%s: type %d must have bit 0 (accessed) set" % (arv(s, seg), t) if not t & 1 else None

    def _readable(s, seg=_seg):
        t = ar(s, seg)["type"]
        return "%s: type %d is code: bit 1 (readable) must be set" % (arv(s, seg), t) if t & 8 and not t & 2 else None

    R.add("guest.%s.type_accessed" % _seg.lower(), SEG, ["GUEST_%s_AR_BYTES" % _seg],
          "If %s is usable, its type must have bit 0 (accessed) set." % _seg, _usable(_seg, _accessed))
    R.add("guest.%s.type_readable" % _seg.lower(), SEG, ["GUEST_%s_AR_BYTES" % _seg],
          "If %s is usable and holds a code segment, the type must be readable (bit 1 set)." % _seg, _usable(_seg, _readable))


# -- S, P, reserved bits, granularity: one rule each per register -------------------
def _access_rights_rules(seg: str, system: bool, cond: str, gate) -> None:
    """The S / P / reserved / G rules of one register's access rights: S must be 1 for
    CS, SS and the data segments, 0 for TR and LDTR (system segments); cond starts each
    rule's text, gate decides when a rule applies."""
    lo, f = seg.lower(), "GUEST_%s_AR_BYTES" % seg
    s_want = 0 if system else 1
    s_kind = "system segment" if system else "code or data segment"

    def s_bit(s):
        return ("%s: S (bit 4) must be %d (%s)" % (arv(s, seg), s_want, s_kind)
                if ar(s, seg)["s"] != s_want else None)

    def p_bit(s):
        return "%s: P (bit 7) must be 1 (present)" % arv(s, seg) if not ar(s, seg)["p"] else None

    def reserved(s):
        bad = s.f(f) & AR_RESERVED_MASK
        return "%s: reserved %s (of 11:8, 31:17) must be 0" % (arv(s, seg), bits_text(bad)) if bad else None

    def g_clear(s):
        limit = s.f("GUEST_%s_LIMIT" % seg)
        if limit & 0xFFF != 0xFFF and ar(s, seg)["g"]:
            return "%s: G (bit 15) must be 0 because GUEST_%s_LIMIT = 0x%x has a 0 in bits 11:0" % (arv(s, seg), seg, limit)
        return None

    def g_set(s):
        limit = s.f("GUEST_%s_LIMIT" % seg)
        if limit & 0xFFF00000 and not ar(s, seg)["g"]:
            return "%s: G (bit 15) must be 1 because GUEST_%s_LIMIT = 0x%x has a 1 in bits 31:20" % (arv(s, seg), seg, limit)
        return None

    R.add("guest.%s.s" % lo, SEG, [f], _cap(cond + "the %s S flag (bit 4) must be %d." % (seg, s_want)), gate(s_bit))
    R.add("guest.%s.present" % lo, SEG, [f],
          _cap(cond + "the %s P flag (bit 7) must be 1." % seg), gate(p_bit))
    R.add("guest.%s.reserved" % lo, SEG, [f],
          _cap(cond + "%s access-rights bits 11:8 and 31:17 must be 0." % seg), gate(reserved))
    R.add("guest.%s.g_clear" % lo, SEG, [f, "GUEST_%s_LIMIT" % seg],
          _cap(cond + "if any of %s limit bits 11:0 is 0, G must be 0." % seg), gate(g_clear))
    R.add("guest.%s.g_set" % lo, SEG, [f, "GUEST_%s_LIMIT" % seg],
          _cap(cond + "if any of %s limit bits 31:20 is 1, G must be 1." % seg), gate(g_set))


def _flag_rules(seg: str) -> None:
    _access_rights_rules(seg, False, "" if seg == "CS" else "If %s is usable, " % seg,
                         lambda fn: _usable(seg, fn))


for _seg in SIX:
    _flag_rules(_seg)


# -- DPL rules -----------------------------------------------------------------------
@R.rule("guest.cs.dpl_data", SEG, ["GUEST_CS_AR_BYTES"], "If the CS type is 3 (unrestricted guest, read/write data), CS.DPL must be 0.")
def _cs_dpl3(s):
    a = ar(s, "CS")
    if s.v8086 or a["type"] != 3:
        return NOT_APPLICABLE
    return "%s: DPL %d must be 0 when CS type is 3" % (arv(s, "CS"), a["dpl"]) if a["dpl"] else None


@R.rule("guest.cs.dpl_nonconforming", SEG, ["GUEST_CS_AR_BYTES", "GUEST_SS_AR_BYTES"],
        "If CS is a non-conforming code segment (type 9 or 11), CS.DPL must equal SS.DPL.")
def _cs_dpl_nc(s):
    a, b = ar(s, "CS"), ar(s, "SS")
    if s.v8086 or a["type"] not in (9, 11):
        return NOT_APPLICABLE
    if a["dpl"] != b["dpl"]:
        return "%s: DPL %d must equal SS.DPL %d (GUEST_SS_AR_BYTES = 0x%04x)" % (arv(s, "CS"), a["dpl"], b["dpl"], b["value"])
    return None


@R.rule("guest.cs.dpl_conforming", SEG, ["GUEST_CS_AR_BYTES", "GUEST_SS_AR_BYTES"],
        "If CS is a conforming code segment (type 13 or 15), CS.DPL must not exceed SS.DPL.")
def _cs_dpl_c(s):
    a, b = ar(s, "CS"), ar(s, "SS")
    if s.v8086 or a["type"] not in (13, 15):
        return NOT_APPLICABLE
    if a["dpl"] > b["dpl"]:
        return "%s: DPL %d must be <= SS.DPL %d" % (arv(s, "CS"), a["dpl"], b["dpl"])
    return None


@R.rule("guest.ss.dpl_rpl", SEG, ["GUEST_SS_AR_BYTES", "GUEST_SS_SELECTOR", "SECONDARY_VM_EXEC_CONTROL"],
        "Unless 'unrestricted guest' is 1, SS.DPL must equal the RPL of the SS selector.")
def _ss_dpl_rpl(s):
    if s.v8086 or s.unrestricted:
        return NOT_APPLICABLE
    d, r = ar(s, "SS")["dpl"], sel(s, "SS") & 3
    return "%s: DPL %d must equal SS.RPL %d (GUEST_SS_SELECTOR = 0x%04x)" % (arv(s, "SS"), d, r, sel(s, "SS")) if d != r else None


@R.rule("guest.ss.dpl_real_mode", SEG, ["GUEST_SS_AR_BYTES", "GUEST_CS_AR_BYTES", "GUEST_CR0"],
        "If the CS type is 3 or guest CR0.PE is 0, SS.DPL must be 0.")
def _ss_dpl0(s):
    if s.v8086 or not (ar(s, "CS")["type"] == 3 or not s.f("GUEST_CR0") & 1):
        return NOT_APPLICABLE
    d = ar(s, "SS")["dpl"]
    return "%s: DPL %d must be 0 (real-mode or CS type 3 guest)" % (arv(s, "SS"), d) if d else None


for _seg in DATA_SEGS:
    def _data_dpl(s, seg=_seg):
        a = ar(s, seg)
        if s.unrestricted or a["type"] > 11:
            return NOT_APPLICABLE
        if a["dpl"] < sel(s, seg) & 3:
            return "%s: DPL %d must be >= RPL %d (GUEST_%s_SELECTOR = 0x%04x)" % (arv(s, seg), a["dpl"], sel(s, seg) & 3, seg, sel(s, seg))
        return None
    R.add("guest.%s.dpl_rpl" % _seg.lower(), SEG, ["GUEST_%s_AR_BYTES" % _seg, "GUEST_%s_SELECTOR" % _seg],
          "If %s is usable, 'unrestricted guest' is 0 and the type is 0-11 (data or non-conforming code), DPL must be >= RPL." % _seg,
          _usable(_seg, _data_dpl))


@R.rule("guest.cs.l_db", SEG, ["GUEST_CS_AR_BYTES", "VM_ENTRY_CONTROLS"],
        "If 'IA-32e mode guest' is 1 and CS.L (bit 13) is 1, CS.D/B (bit 14) must be 0.")
def _cs_l_db(s):
    a = ar(s, "CS")
    if s.v8086 or not s.ia32e_guest or not a["l"]:
        return NOT_APPLICABLE
    return "%s: L = 1 and D/B = 1 together are reserved (64-bit code needs D/B = 0)" % arv(s, "CS") if a["db"] else None


# -- TR ---------------------------------------------------------------------------
TSS16_BUSY, TSS32_BUSY, LDT = 3, 11, 2


@R.rule("guest.tr.type_legacy", SEG, ["GUEST_TR_AR_BYTES", "VM_ENTRY_CONTROLS"],
        "If 'IA-32e mode guest' is 0, the TR type must be 3 (busy 16-bit TSS) or 11 (busy 32-bit TSS).")
def _tr_type_legacy(s):
    if s.ia32e_guest:
        return NOT_APPLICABLE
    t = ar(s, "TR")["type"]
    return "%s: type %d must be 3 or 11 (busy TSS)" % (arv(s, "TR"), t) if t not in (TSS16_BUSY, TSS32_BUSY) else None


@R.rule("guest.tr.type_ia32e", SEG, ["GUEST_TR_AR_BYTES", "VM_ENTRY_CONTROLS"],
        "If 'IA-32e mode guest' is 1, the TR type must be 11 (busy 64-bit TSS).")
def _tr_type_64(s):
    if not s.ia32e_guest:
        return NOT_APPLICABLE
    t = ar(s, "TR")["type"]
    return "%s: type must be 11 (busy 64-bit TSS) in IA-32e mode, not %d" % (arv(s, "TR"), t) if t != TSS32_BUSY else None


@R.rule("guest.ldtr.type", SEG, ["GUEST_LDTR_AR_BYTES"], "If LDTR is usable, its type must be 2 (LDT).")
def _ldtr_type(s):
    if not usable(s, "LDTR"):
        return NOT_APPLICABLE
    t = ar(s, "LDTR")["type"]
    return "%s: type %d must be 2 (LDT)" % (arv(s, "LDTR"), t) if t != LDT else None


def _system_rules(seg: str) -> None:
    def gate(fn):
        def test(s):
            if seg == "LDTR" and not usable(s, "LDTR"):
                return NOT_APPLICABLE
            return fn(s)
        return test

    _access_rights_rules(seg, True, "If LDTR is usable, " if seg == "LDTR" else "", gate)


_system_rules("TR")


@R.rule("guest.tr.usable", SEG, ["GUEST_TR_AR_BYTES"], "TR must be usable (access-rights bit 16 = 0).")
def _tr_usable(s):
    return "%s: bit 16 (unusable) must be 0: a guest always has a task register" % arv(s, "TR") if ar(s, "TR")["unusable"] else None


_system_rules("LDTR")


# -- 27.3.1.3 GDTR, IDTR ---------------------------------------------------------
for _dt in ("GDTR", "IDTR"):
    def _dt_base(s, dt=_dt):
        f = "GUEST_%s_BASE" % dt
        return None if canonical(s.f(f), s.guest_linear_bits()) else "%s: not canonical" % hexv(s, f)

    def _dt_limit(s, dt=_dt):
        f = "GUEST_%s_LIMIT" % dt
        return "%s: bits 31:16 must be 0 (a descriptor-table limit is 16 bits)" % hexv(s, f) if s.f(f) >> 16 else None

    R.add("guest.%s.base_canonical" % _dt.lower(), DT, ["GUEST_%s_BASE" % _dt], "The guest %s base must be canonical." % _dt, _dt_base)
    R.add("guest.%s.limit" % _dt.lower(), DT, ["GUEST_%s_LIMIT" % _dt], "Bits 31:16 of the guest %s limit must be 0." % _dt, _dt_limit)


CHECKS = tuple(R.checks)
