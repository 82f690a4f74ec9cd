"""windbg_ext.arch.entry_checks.guest_segments: helpers, the CS/SS type rules and the access-rights
rule factories (issue 16, mutation testing).

`_protected`, `_usable`, `_access_rights_rules`, `_flag_rules` and `_system_rules` run at import,
where mutmut cannot activate their mutants, so they are called here again with guest_segments.R
replaced by a registry of the test's own. Expected values by hand from SDM Vol. 3 25.4.1 (VMX
access rights: type 3:0, S 4, DPL 6:5, P 7, bits 11:8 reserved, AVL 12, L 13, D/B 14, G 15,
unusable 16, bits 31:17 reserved) and 27.3.1.2 (CS type 9, 11, 13 or 15, or 3 with 'unrestricted
guest'; SS type 3 or 7; S 1 for CS/SS/data, 0 for TR/LDTR; P 1; G 0 if a limit bit 11:0 is 0, G 1
if a limit bit 31:20 is 1; rules of a data segment only while it is usable, none in virtual-8086
mode, RFLAGS.VM = bit 17)."""
import pytest

from windbg_ext.arch.entry_checks import guest_segments as gs
from windbg_ext.arch.entry_checks.model import NOT_APPLICABLE, EntryState, Registry
from windbg_ext.arch.vmcs_fields import by_name

C, C2 = "CPU_BASED_VM_EXEC_CONTROL", "SECONDARY_VM_EXEC_CONTROL"
UNRESTRICTED = {C: 1 << 31, C2: 1 << 7}
V86 = {"GUEST_RFLAGS": 0x20002}
UNUSABLE = 0x10000


def _state(**named):
    return EntryState({by_name(k).encoding: v for k, v in named.items()}, {})


def _row(c):
    return (c.id, c.group, c.sdm, c.fields, c.explain, c.qualification)


@pytest.fixture
def R(monkeypatch):
    reg = Registry("guest")
    monkeypatch.setattr(gs, "R", reg)
    return reg


# -- helpers ---------------------------------------------------------------------------------------
def test_sel_ar_usable_arv():
    s = _state(GUEST_TR_SELECTOR=0x40, GUEST_CS_AR_BYTES=0xA09B, GUEST_LDTR_AR_BYTES=UNUSABLE,
               GUEST_SS_AR_BYTES=0x1C093)
    assert gs.sel(s, "TR") == 0x40 and gs.sel(s, "CS") == 0
    a = gs.ar(s, "CS")
    assert (a["type"], a["s"], a["dpl"], a["p"], a["l"], a["db"], a["g"], a["unusable"]) == (
        11, True, 0, True, True, False, True, False)
    assert gs.usable(s, "CS") is True
    assert gs.usable(s, "LDTR") is False
    assert gs.usable(s, "SS") is False
    assert gs.usable(s, "DS") is True           # absent: 0, and bit 16 of 0 is 0
    assert gs.arv(s, "CS") == "GUEST_CS_AR_BYTES = 0xa09b"
    assert gs.arv(s, "SS") == "GUEST_SS_AR_BYTES = 0x0001c093"
    assert s.named == ["GUEST_CS_AR_BYTES", "GUEST_SS_AR_BYTES"]


def test_cap():
    assert gs._cap("if DS is usable, x") == "If DS is usable, x"
    assert gs._cap("the CS S flag") == "The CS S flag"
    assert gs._cap("CS access-rights") == "CS access-rights"
    assert gs._cap("") == ""
    assert gs._cap("a") == "A"


def test_protected():
    seen = []
    test = gs._protected(lambda s: seen.append(s) or "ran")
    s = _state(GUEST_RFLAGS=0x2)
    assert test(s) == "ran" and seen == [s]
    assert test(_state(**V86)) is NOT_APPLICABLE
    assert test(_state(GUEST_RFLAGS=0x10002)) == "ran"      # bit 16 (RF), not VM
    assert len(seen) == 2


def test_usable_gate():
    t_ds = gs._usable("DS", lambda s: "ran")
    t_cs = gs._usable("CS", lambda s: "ran")
    assert t_ds(_state(GUEST_DS_AR_BYTES=0xC093)) == "ran"
    assert t_ds(_state(GUEST_DS_AR_BYTES=UNUSABLE)) is NOT_APPLICABLE
    assert t_ds(_state(GUEST_DS_AR_BYTES=0xC093, GUEST_ES_AR_BYTES=UNUSABLE)) == "ran"   # its own register
    assert t_ds(_state(GUEST_DS_AR_BYTES=0xC093, **V86)) is NOT_APPLICABLE
    assert t_cs(_state(GUEST_CS_AR_BYTES=UNUSABLE)) == "ran"                          # CS always checked
    assert t_cs(_state(GUEST_CS_AR_BYTES=0xA09B, **V86)) is NOT_APPLICABLE


# -- CS and SS types -------------------------------------------------------------------------------
@pytest.mark.parametrize("t", range(16))
def test_cs_type(t):
    s = _state(GUEST_CS_AR_BYTES=0xA090 | t)
    if t in (9, 11, 13, 15):
        assert gs._cs_type(s) is None
    else:
        assert gs._cs_type(s) == "GUEST_CS_AR_BYTES = 0x%04x: type %d must be one of 9, 11, 13, 15" % (0xA090 | t, t)
    s = _state(GUEST_CS_AR_BYTES=0xA090 | t, **UNRESTRICTED)
    if t in (3, 9, 11, 13, 15):
        assert gs._cs_type(s) is None
    else:
        assert gs._cs_type(s) == (
            "GUEST_CS_AR_BYTES = 0x%04x: type %d must be one of 9, 11, 13, 15, 3" % (0xA090 | t, t))


@pytest.mark.parametrize("t", range(16))
def test_ss_type(t):
    s = _state(GUEST_SS_AR_BYTES=0xC090 | t)
    if t in (3, 7):
        assert gs._ss_type(s) is None
    else:
        assert gs._ss_type(s) == (
            "GUEST_SS_AR_BYTES = 0x%04x: type %d must be 3 or 7 (read/write accessed data)" % (0xC090 | t, t))


# -- _access_rights_rules --------------------------------------------------------------------------
def test_access_rights_rules_table(R):
    gs._access_rights_rules("CS", False, "", lambda fn: fn)
    gs._access_rights_rules("LDTR", True, "If LDTR is usable, ", lambda fn: fn)
    assert [_row(c) for c in R.checks] == [
        ("guest.cs.s", "guest", "27.3.1.2", ("GUEST_CS_AR_BYTES",), "The CS S flag (bit 4) must be 1.", 0),
        ("guest.cs.present", "guest", "27.3.1.2", ("GUEST_CS_AR_BYTES",), "The CS P flag (bit 7) must be 1.", 0),
        ("guest.cs.reserved", "guest", "27.3.1.2", ("GUEST_CS_AR_BYTES",),
         "CS access-rights bits 11:8 and 31:17 must be 0.", 0),
        ("guest.cs.g_clear", "guest", "27.3.1.2", ("GUEST_CS_AR_BYTES", "GUEST_CS_LIMIT"),
         "If any of CS limit bits 11:0 is 0, G must be 0.", 0),
        ("guest.cs.g_set", "guest", "27.3.1.2", ("GUEST_CS_AR_BYTES", "GUEST_CS_LIMIT"),
         "If any of CS limit bits 31:20 is 1, G must be 1.", 0),
        ("guest.ldtr.s", "guest", "27.3.1.2", ("GUEST_LDTR_AR_BYTES",),
         "If LDTR is usable, the LDTR S flag (bit 4) must be 0.", 0),
        ("guest.ldtr.present", "guest", "27.3.1.2", ("GUEST_LDTR_AR_BYTES",),
         "If LDTR is usable, the LDTR P flag (bit 7) must be 1.", 0),
        ("guest.ldtr.reserved", "guest", "27.3.1.2", ("GUEST_LDTR_AR_BYTES",),
         "If LDTR is usable, LDTR access-rights bits 11:8 and 31:17 must be 0.", 0),
        ("guest.ldtr.g_clear", "guest", "27.3.1.2", ("GUEST_LDTR_AR_BYTES", "GUEST_LDTR_LIMIT"),
         "If LDTR is usable, if any of LDTR limit bits 11:0 is 0, G must be 0.", 0),
        ("guest.ldtr.g_set", "guest", "27.3.1.2", ("GUEST_LDTR_AR_BYTES", "GUEST_LDTR_LIMIT"),
         "If LDTR is usable, if any of LDTR limit bits 31:20 is 1, G must be 1.", 0)]


def test_access_rights_rules_each_rule_through_the_gate(R):
    wrapped = []

    def gate(fn):
        wrapped.append(fn)
        return lambda s: ("gated", fn(s))
    gs._access_rights_rules("CS", False, "", gate)
    assert len(wrapped) == 5
    s = _state(GUEST_CS_AR_BYTES=0xA09B, GUEST_CS_LIMIT=0xFFFFFFFF)
    assert [c.test(s) for c in R.checks] == [("gated", None)] * 5


def _rules(R, seg, system):
    gs._access_rights_rules(seg, system, "", lambda fn: fn)
    return {c.id.rsplit(".", 1)[1]: c.test for c in R.checks}


def test_s_bit(R):
    cs = _rules(R, "CS", False)["s"]
    assert cs(_state(GUEST_CS_AR_BYTES=0xA09B)) is None
    assert cs(_state(GUEST_CS_AR_BYTES=0xA08B)) == "GUEST_CS_AR_BYTES = 0xa08b: S (bit 4) must be 1 (code or data segment)"
    tr = _rules(R, "TR", True)["s"]
    assert tr(_state(GUEST_TR_AR_BYTES=0x8B)) is None
    assert tr(_state(GUEST_TR_AR_BYTES=0x9B)) == "GUEST_TR_AR_BYTES = 0x009b: S (bit 4) must be 0 (system segment)"


def test_p_bit(R):
    p = _rules(R, "SS", False)["present"]
    assert p(_state(GUEST_SS_AR_BYTES=0xC093)) is None
    assert p(_state(GUEST_SS_AR_BYTES=0xC013)) == "GUEST_SS_AR_BYTES = 0xc013: P (bit 7) must be 1 (present)"
    assert p(_state(GUEST_SS_AR_BYTES=0xC07F)) == "GUEST_SS_AR_BYTES = 0xc07f: P (bit 7) must be 1 (present)"


def test_reserved(R):
    r = _rules(R, "DS", False)["reserved"]
    assert r(_state(GUEST_DS_AR_BYTES=0xF0FF)) is None          # every defined bit 15:12, 7:0
    assert r(_state(GUEST_DS_AR_BYTES=0x1C093)) is None         # bit 16 (unusable) is not reserved
    assert r(_state(GUEST_DS_AR_BYTES=0xC193)) == (
        "GUEST_DS_AR_BYTES = 0xc193: reserved bit 8 (of 11:8, 31:17) must be 0")
    assert r(_state(GUEST_DS_AR_BYTES=0xCF93)) == (
        "GUEST_DS_AR_BYTES = 0xcf93: reserved bits 11, 10, 9, 8 (of 11:8, 31:17) must be 0")
    assert r(_state(GUEST_DS_AR_BYTES=0x2C093)) == (
        "GUEST_DS_AR_BYTES = 0x0002c093: reserved bit 17 (of 11:8, 31:17) must be 0")
    assert r(_state(GUEST_DS_AR_BYTES=0x8000C093)) == (
        "GUEST_DS_AR_BYTES = 0x8000c093: reserved bit 31 (of 11:8, 31:17) must be 0")


def test_g_clear(R):
    g = _rules(R, "ES", False)["g_clear"]
    for limit in (0xFFF, 0xFFFFFFFF, 0x1FFF):
        assert g(_state(GUEST_ES_AR_BYTES=0x8093, GUEST_ES_LIMIT=limit)) is None
    for limit in (0, 0x7FF, 0xFFE, 0xFFFFF000):
        assert g(_state(GUEST_ES_AR_BYTES=0x0093, GUEST_ES_LIMIT=limit)) is None     # G = 0
    assert g(_state(GUEST_ES_AR_BYTES=0x8093, GUEST_ES_LIMIT=0xFFE)) == (
        "GUEST_ES_AR_BYTES = 0x8093: G (bit 15) must be 0 because GUEST_ES_LIMIT = 0xffe has a 0 in bits 11:0")
    assert g(_state(GUEST_ES_AR_BYTES=0x8093, GUEST_ES_LIMIT=0x7FF)) == (
        "GUEST_ES_AR_BYTES = 0x8093: G (bit 15) must be 0 because GUEST_ES_LIMIT = 0x7ff has a 0 in bits 11:0")
    assert g(_state(GUEST_ES_AR_BYTES=0x8093, GUEST_ES_LIMIT=0xFFFFFF7F)) == (
        "GUEST_ES_AR_BYTES = 0x8093: G (bit 15) must be 0 because GUEST_ES_LIMIT = 0xffffff7f has a 0 in bits 11:0")


def test_g_set(R):
    g = _rules(R, "FS", False)["g_set"]
    for limit in (0, 0xFFFFF, 0x1234):
        assert g(_state(GUEST_FS_AR_BYTES=0x0093, GUEST_FS_LIMIT=limit)) is None
    for limit in (0x100000, 0xFFFFFFFF):
        assert g(_state(GUEST_FS_AR_BYTES=0x8093, GUEST_FS_LIMIT=limit)) is None     # G = 1
    assert g(_state(GUEST_FS_AR_BYTES=0x0093, GUEST_FS_LIMIT=0x100000)) == (
        "GUEST_FS_AR_BYTES = 0x0093: G (bit 15) must be 1 because GUEST_FS_LIMIT = 0x100000 has a 1 in bits 31:20")
    assert g(_state(GUEST_FS_AR_BYTES=0x0093, GUEST_FS_LIMIT=0x80000000)) == (
        "GUEST_FS_AR_BYTES = 0x0093: G (bit 15) must be 1 because GUEST_FS_LIMIT = 0x80000000 has a 1 in bits 31:20")
    # a limit wider than 32 bits: only bits 31:20 count
    assert g(_state(GUEST_FS_AR_BYTES=0x0093, GUEST_FS_LIMIT=0x100000000)) is None


# -- _flag_rules, _system_rules --------------------------------------------------------------------
BAD_DATA = 0x4F03  # S = 0, P = 0, reserved bits 11:8, G = 0 with limit bits 31:20 set


def test_flag_rules_data_segment(R):
    gs._flag_rules("DS")
    assert [c.explain for c in R.checks] == [
        "If DS is usable, the DS S flag (bit 4) must be 1.", "If DS is usable, the DS P flag (bit 7) must be 1.",
        "If DS is usable, DS access-rights bits 11:8 and 31:17 must be 0.",
        "If DS is usable, if any of DS limit bits 11:0 is 0, G must be 0.",
        "If DS is usable, if any of DS limit bits 31:20 is 1, G must be 1."]
    assert [c.id for c in R.checks] == ["guest.ds.s", "guest.ds.present", "guest.ds.reserved", "guest.ds.g_clear",
                                        "guest.ds.g_set"]
    bad = _state(GUEST_DS_AR_BYTES=BAD_DATA, GUEST_DS_LIMIT=0xFFF00000)
    assert [c.test(bad) for c in R.checks] == [
        "GUEST_DS_AR_BYTES = 0x4f03: S (bit 4) must be 1 (code or data segment)",
        "GUEST_DS_AR_BYTES = 0x4f03: P (bit 7) must be 1 (present)",
        "GUEST_DS_AR_BYTES = 0x4f03: reserved bits 11, 10, 9, 8 (of 11:8, 31:17) must be 0",
        None,
        "GUEST_DS_AR_BYTES = 0x4f03: G (bit 15) must be 1 because GUEST_DS_LIMIT = 0xfff00000 has a 1 in bits 31:20"]
    unusable = _state(GUEST_DS_AR_BYTES=UNUSABLE | BAD_DATA, GUEST_DS_LIMIT=0xFFF00000)
    assert [c.test(unusable) for c in R.checks] == [NOT_APPLICABLE] * 5
    v86 = _state(GUEST_DS_AR_BYTES=BAD_DATA, GUEST_DS_LIMIT=0xFFF00000, **V86)
    assert [c.test(v86) for c in R.checks] == [NOT_APPLICABLE] * 5


def test_flag_rules_cs(R):
    gs._flag_rules("CS")
    assert [c.explain for c in R.checks] == [
        "The CS S flag (bit 4) must be 1.", "The CS P flag (bit 7) must be 1.",
        "CS access-rights bits 11:8 and 31:17 must be 0.", "If any of CS limit bits 11:0 is 0, G must be 0.",
        "If any of CS limit bits 31:20 is 1, G must be 1."]
    unusable = _state(GUEST_CS_AR_BYTES=UNUSABLE | 0x0003, GUEST_CS_LIMIT=0)
    assert [c.test(unusable) for c in R.checks] == [
        "GUEST_CS_AR_BYTES = 0x00010003: S (bit 4) must be 1 (code or data segment)",
        "GUEST_CS_AR_BYTES = 0x00010003: P (bit 7) must be 1 (present)", None, None, None]
    assert [c.test(_state(GUEST_CS_AR_BYTES=3, **V86)) for c in R.checks] == [NOT_APPLICABLE] * 5


def test_system_rules_tr(R):
    gs._system_rules("TR")
    assert [(c.id, c.explain) for c in R.checks] == [
        ("guest.tr.s", "The TR S flag (bit 4) must be 0."), ("guest.tr.present", "The TR P flag (bit 7) must be 1."),
        ("guest.tr.reserved", "TR access-rights bits 11:8 and 31:17 must be 0."),
        ("guest.tr.g_clear", "If any of TR limit bits 11:0 is 0, G must be 0."),
        ("guest.tr.g_set", "If any of TR limit bits 31:20 is 1, G must be 1.")]
    # TR is checked even when unusable (and in virtual-8086 mode: the gate is not _usable's)
    bad = _state(GUEST_TR_AR_BYTES=UNUSABLE | 0x811B, GUEST_TR_LIMIT=0x67, **V86)
    assert [c.test(bad) for c in R.checks] == [
        "GUEST_TR_AR_BYTES = 0x0001811b: S (bit 4) must be 0 (system segment)",
        "GUEST_TR_AR_BYTES = 0x0001811b: P (bit 7) must be 1 (present)",
        "GUEST_TR_AR_BYTES = 0x0001811b: reserved bit 8 (of 11:8, 31:17) must be 0",
        "GUEST_TR_AR_BYTES = 0x0001811b: G (bit 15) must be 0 because GUEST_TR_LIMIT = 0x67 has a 0 in bits 11:0",
        None]
    assert [c.test(_state(GUEST_TR_AR_BYTES=0x8B, GUEST_TR_LIMIT=0x67)) for c in R.checks] == [None] * 5


def test_system_rules_ldtr(R):
    gs._system_rules("LDTR")
    assert [(c.id, c.explain) for c in R.checks] == [
        ("guest.ldtr.s", "If LDTR is usable, the LDTR S flag (bit 4) must be 0."),
        ("guest.ldtr.present", "If LDTR is usable, the LDTR P flag (bit 7) must be 1."),
        ("guest.ldtr.reserved", "If LDTR is usable, LDTR access-rights bits 11:8 and 31:17 must be 0."),
        ("guest.ldtr.g_clear", "If LDTR is usable, if any of LDTR limit bits 11:0 is 0, G must be 0."),
        ("guest.ldtr.g_set", "If LDTR is usable, if any of LDTR limit bits 31:20 is 1, G must be 1.")]
    assert [c.test(_state(GUEST_LDTR_AR_BYTES=UNUSABLE | 0x111, GUEST_LDTR_LIMIT=0x100000)) for c in R.checks] == (
        [NOT_APPLICABLE] * 5)
    assert [c.test(_state(GUEST_LDTR_AR_BYTES=0x112, GUEST_LDTR_LIMIT=0x100000)) for c in R.checks] == [
        "GUEST_LDTR_AR_BYTES = 0x0112: S (bit 4) must be 0 (system segment)",
        "GUEST_LDTR_AR_BYTES = 0x0112: P (bit 7) must be 1 (present)",
        "GUEST_LDTR_AR_BYTES = 0x0112: reserved bit 8 (of 11:8, 31:17) must be 0",
        None,
        "GUEST_LDTR_AR_BYTES = 0x0112: G (bit 15) must be 1 because GUEST_LDTR_LIMIT = 0x100000 has a 1 in bits 31:20"]
    assert [c.test(_state(GUEST_LDTR_AR_BYTES=0x82, GUEST_LDTR_LIMIT=0xFFFF, **V86)) for c in R.checks] == [None] * 5
