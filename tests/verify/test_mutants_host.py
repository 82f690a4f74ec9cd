"""windbg_ext.arch.entry_checks.host: the rule factories `_fixed_rules`, `_canonical_rule` and
`_efer_bit` (issue 16, mutation testing).

They run at import, where mutmut cannot activate their mutants, so each is called here again with
host.R replaced by a registry of the test's own and the arguments the module passes. Expected values
by hand from SDM Vol. 3 27.2.2 (host CR0/CR4 against IA32_VMX_CR0/CR4_FIXED0/FIXED1, A.7/A.8;
canonical addresses, Vol. 1 3.3.7.1, bits 63:47 equal with 4-level paging, 63:56 with CR4.LA57 =
bit 12; with 'load IA32_EFER' (VM-exit control bit 21), EFER.LMA (bit 10) and EFER.LME (bit 8) must
equal 'host address-space size' (VM-exit control bit 9))."""
import pytest

from windbg_ext.arch.entry_checks import host
from windbg_ext.arch.entry_checks.model import NOT_APPLICABLE, EntryState, Registry
from windbg_ext.arch.vmcs_fields import by_name

CR0_F0, CR0_F1, CR4_F0, CR4_F1 = 0x486, 0x487, 0x488, 0x489
X = "VM_EXIT_CONTROLS"
LOAD_EFER, HOST_64 = 1 << 21, 1 << 9


def _state(caps=None, **named):
    return EntryState({by_name(k).encoding: v for k, v in named.items()}, caps or {})


@pytest.fixture
def build(monkeypatch):
    def run(factory, *args):
        R = Registry("host")
        monkeypatch.setattr(host, "R", R)
        getattr(host, factory)(*args)
        return R.checks
    return run


def _row(c):
    return (c.id, c.group, c.sdm, c.fields, c.explain, c.qualification)


def test_fixed_rules_cr0(build):
    one, zero = build("_fixed_rules", "CR0", CR0_F0, CR0_F1)
    assert [_row(one), _row(zero)] == [
        ("host.cr0.fixed0", "host", "27.2.2", ("HOST_CR0",),
         "Every bit set in IA32_VMX_CR0_FIXED0 must be 1 in the host CR0 field.", 0),
        ("host.cr0.fixed1", "host", "27.2.2", ("HOST_CR0",),
         "Every bit clear in IA32_VMX_CR0_FIXED1 must be 0 in the host CR0 field.", 0)]
    caps = {CR0_F0: 0x80000021, CR0_F1: 0xFFFFFFFF}
    assert one.test(_state(caps, HOST_CR0=0x80000031)) is None
    assert one.test(_state(caps, HOST_CR0=0xFFFFFFFFFFFFFFFF)) is None
    assert one.test(_state(caps, HOST_CR0=0x80000001)) == (
        "HOST_CR0 = 0x0000000080000001: bit 5 must be 1 (IA32_VMX_CR0_FIXED0 = 0x80000021)")
    assert one.test(_state(caps, HOST_CR0=0)) == (
        "HOST_CR0 = 0x0000000000000000: bits 31, 5, 0 must be 1 (IA32_VMX_CR0_FIXED0 = 0x80000021)")
    assert zero.test(_state(caps, HOST_CR0=0)) is None
    assert zero.test(_state(caps, HOST_CR0=0xFFFFFFFF)) is None
    assert zero.test(_state(caps, HOST_CR0=0x180000031)) == (
        "HOST_CR0 = 0x0000000180000031: bit 32 must be 0 (clear in IA32_VMX_CR0_FIXED1 = 0xffffffff)")
    # must-be-1 is FIXED0 & FIXED1 (A.7): bit 1 set in FIXED0 but clear in FIXED1 is not required
    caps = {CR0_F0: 0x80000023, CR0_F1: 0x8005003D}
    assert one.test(_state(caps, HOST_CR0=0x80000021)) is None
    assert zero.test(_state(caps, HOST_CR0=0x80000023)) == (
        "HOST_CR0 = 0x0000000080000023: bit 1 must be 0 (clear in IA32_VMX_CR0_FIXED1 = 0x8005003d)")
    s = _state(caps, HOST_CR0=0x80000022)
    one.test(s)
    assert s.named == ["HOST_CR0"]


def test_fixed_rules_cr4(build):
    one, zero = build("_fixed_rules", "CR4", CR4_F0, CR4_F1)
    assert [_row(one), _row(zero)] == [
        ("host.cr4.fixed0", "host", "27.2.2", ("HOST_CR4",),
         "Every bit set in IA32_VMX_CR4_FIXED0 must be 1 in the host CR4 field.", 0),
        ("host.cr4.fixed1", "host", "27.2.2", ("HOST_CR4",),
         "Every bit clear in IA32_VMX_CR4_FIXED1 must be 0 in the host CR4 field.", 0)]
    caps = {CR4_F0: 0x2000, CR4_F1: 0x1FFFFF}
    assert one.test(_state(caps, HOST_CR4=0x2020)) is None
    assert one.test(_state(caps, HOST_CR4=0x20)) == (
        "HOST_CR4 = 0x0000000000000020: bit 13 must be 1 (IA32_VMX_CR4_FIXED0 = 0x2000)")
    assert zero.test(_state(caps, HOST_CR4=0x1FFFFF)) is None
    assert zero.test(_state(caps, HOST_CR4=0x602000)) == (
        "HOST_CR4 = 0x0000000000602000: bits 22, 21 must be 0 (clear in IA32_VMX_CR4_FIXED1 = 0x1fffff)")


@pytest.mark.parametrize("field,what", [("HOST_IA32_SYSENTER_ESP", "IA32_SYSENTER_ESP"), ("HOST_FS_BASE", "FS base")])
def test_canonical_rule(build, field, what):
    (c,) = build("_canonical_rule", "host.zz.canonical", "9.8.7", field, what)
    assert _row(c) == ("host.zz.canonical", "host", "9.8.7", (field,), "The host %s must be canonical." % what, 0)
    for ok in (0, 0x00007FFFFFFFFFFF, 0xFFFF800000000000, 0xFFFFFFFFFFFFFFFF):
        assert c.test(_state(**{field: ok})) is None, hex(ok)
    for bad, text in ((0x0000800000000000, "0000800000000000"), (0xFFFF7FFFFFFFFFFF, "ffff7fffffffffff"),
                      (0x8000000000000000, "8000000000000000"), (0x0001000000000000, "0001000000000000")):
        assert c.test(_state(**{field: bad})) == (
            "%s = 0x%s: not canonical (bits 63:47 must equal bit 47)" % (field, text))
    la57 = {"HOST_CR4": 1 << 12}
    assert c.test(_state(**dict(la57, **{field: 0x0000800000000000}))) is None
    assert c.test(_state(**dict(la57, **{field: 0xFF00000000000000}))) is None
    assert c.test(_state(**dict(la57, **{field: 0x0100000000000000}))) == (
        "%s = 0x0100000000000000: not canonical (bits 63:56 must equal bit 56)" % field)
    assert c.test(_state(**dict(la57, **{field: 0xFEFFFFFFFFFFFFFF}))) == (
        "%s = 0xfeffffffffffffff: not canonical (bits 63:56 must equal bit 56)" % field)


@pytest.fixture
def efer(build):
    lma = build("_efer_bit", "host.efer.lma", 10, "LMA")[0]
    lme = build("_efer_bit", "host.efer.lme", 8, "LME")[0]
    return lma, lme


def test_efer_bit_table(efer):
    lma, lme = efer
    assert [_row(lma), _row(lme)] == [
        ("host.efer.lma", "host", "27.2.2", ("VM_EXIT_CONTROLS", "HOST_IA32_EFER"),
         "If 'load IA32_EFER' is 1, host EFER.LMA must equal the 'host address-space size' VM-exit control.", 0),
        ("host.efer.lme", "host", "27.2.2", ("VM_EXIT_CONTROLS", "HOST_IA32_EFER"),
         "If 'load IA32_EFER' is 1, host EFER.LME must equal the 'host address-space size' VM-exit control.", 0)]


def test_efer_bit_not_applicable_without_load_efer(efer):
    for c in efer:
        assert c.test(_state(**{X: HOST_64, "HOST_IA32_EFER": 0})) is NOT_APPLICABLE
        assert c.test(_state(**{X: 0xFFFFFFFF & ~LOAD_EFER, "HOST_IA32_EFER": 0})) is NOT_APPLICABLE


def test_efer_bit_64bit_host(efer):
    lma, lme = efer
    ctl = {X: LOAD_EFER | HOST_64}
    for c in efer:
        assert c.test(_state(HOST_IA32_EFER=0x500, **ctl)) is None
        assert c.test(_state(HOST_IA32_EFER=0xD01, **ctl)) is None
    assert lma.test(_state(HOST_IA32_EFER=0x100, **ctl)) == (
        "HOST_IA32_EFER = 0x0000000000000100: EFER.LMA (bit 10) = 0 must equal 'host address-space size' = 1")
    assert lme.test(_state(HOST_IA32_EFER=0x100, **ctl)) is None
    assert lme.test(_state(HOST_IA32_EFER=0x400, **ctl)) == (
        "HOST_IA32_EFER = 0x0000000000000400: EFER.LME (bit 8) = 0 must equal 'host address-space size' = 1")
    # the bits next to each: 11 and 9 (NXE, reserved), 7
    assert lma.test(_state(HOST_IA32_EFER=0xA80, **ctl)) == (
        "HOST_IA32_EFER = 0x0000000000000a80: EFER.LMA (bit 10) = 0 must equal 'host address-space size' = 1")
    assert lme.test(_state(HOST_IA32_EFER=0xA80, **ctl)) == (
        "HOST_IA32_EFER = 0x0000000000000a80: EFER.LME (bit 8) = 0 must equal 'host address-space size' = 1")


def test_efer_bit_32bit_host(efer):
    lma, lme = efer
    ctl = {X: LOAD_EFER}
    for c in efer:
        assert c.test(_state(HOST_IA32_EFER=0, **ctl)) is None
        assert c.test(_state(HOST_IA32_EFER=0xA81, **ctl)) is None
    assert lma.test(_state(HOST_IA32_EFER=0x400, **ctl)) == (
        "HOST_IA32_EFER = 0x0000000000000400: EFER.LMA (bit 10) = 1 must equal 'host address-space size' = 0")
    assert lme.test(_state(HOST_IA32_EFER=0x400, **ctl)) is None
    assert lme.test(_state(HOST_IA32_EFER=0x100, **ctl)) == (
        "HOST_IA32_EFER = 0x0000000000000100: EFER.LME (bit 8) = 1 must equal 'host address-space size' = 0")
    s = _state(HOST_IA32_EFER=0x100, **ctl)
    lme.test(s)
    assert s.named == ["HOST_IA32_EFER"]


def test_module_table_of_factory_rules():
    """What the module's own calls built, as the import left them."""
    ids = [c.id for c in host.CHECKS]
    assert ids[:4] == ["host.cr0.fixed0", "host.cr0.fixed1", "host.cr4.fixed0", "host.cr4.fixed1"]
    assert {"host.sysenter_esp.canonical", "host.sysenter_eip.canonical", "host.fs_base.canonical",
            "host.gs_base.canonical", "host.gdtr_base.canonical", "host.idtr_base.canonical",
            "host.tr_base.canonical", "host.efer.lma", "host.efer.lme"} <= set(ids)
