"""windbg_ext.arch.entry_checks.guest_regs: the CR0 must-be-1 mask and the fixed-bit rule factory
(issue 16, mutation testing).

`_fixed_rule` runs at import (mutmut cannot activate its mutants there), so it is called here again
with guest_regs.R replaced by a registry of the test's own and the arguments the module passes.
Expected values by hand from SDM Vol. 3 A.7/A.8 (a bit set in FIXED0 must be 1, a bit clear in FIXED1
must be 0) and 27.3.1.1 (with 'unrestricted guest', CR0.PE (bit 0) and CR0.PG (bit 31) may be 0)."""
import pytest

from windbg_ext.arch.entry_checks import guest_regs as gr
from windbg_ext.arch.entry_checks.model import EntryState, Registry
from windbg_ext.arch.vmcs_fields import by_name

CR0_F0, CR0_F1, CR4_F0, CR4_F1 = 0x486, 0x487, 0x488, 0x489  # SDM Vol. 4 Table 2-2 / App. A.7, A.8
PROC, PROC2 = "CPU_BASED_VM_EXEC_CONTROL", "SECONDARY_VM_EXEC_CONTROL"
UNRESTRICTED = {PROC: 1 << 31, PROC2: 1 << 7}  # activate secondary controls; unrestricted guest (Table 25-7)


def _state(caps, **named):
    return EntryState({by_name(k).encoding: v for k, v in named.items()}, caps)


def test_cr0_must_one():
    caps = {CR0_F0: 0x80000021, CR0_F1: 0xFFFFFFFF}
    assert gr._cr0_must_one(_state(caps)) == 0x80000021
    assert gr._cr0_must_one(_state(caps, **UNRESTRICTED)) == 0x20          # PE and PG dropped, NE kept
    # secondary controls not activated: 'unrestricted guest' is ignored
    assert gr._cr0_must_one(_state(caps, **{PROC2: 1 << 7})) == 0x80000021
    # a bit of FIXED0 that FIXED1 lacks is not required (A.7: must-be-1 = FIXED0 & FIXED1)
    caps = {CR0_F0: 0x80000023, CR0_F1: 0x80000021}
    assert gr._cr0_must_one(_state(caps)) == 0x80000021
    caps = {CR0_F0: 0xFFFFFFFFFFFFFFFF, CR0_F1: 0xFFFFFFFFFFFFFFFF}
    assert gr._cr0_must_one(_state(caps, **UNRESTRICTED)) == 0xFFFFFFFF7FFFFFFE
    assert gr._cr0_must_one(_state({})) == 0


@pytest.fixture
def build(monkeypatch):
    def run(*args):
        R = Registry("guest")
        monkeypatch.setattr(gr, "R", R)
        gr._fixed_rule(*args)
        assert len(R.checks) == 1
        return R.checks[0]
    return run


def test_fixed_rule_cr0_fixed1(build):
    c = build("CR0", 0, "Explain CR0.")
    assert (c.id, c.group, c.sdm, c.fields, c.explain, c.qualification) == (
        "guest.cr0.fixed1", "guest", "27.3.1.1", ("GUEST_CR0",), "Explain CR0.", 0)
    caps = {CR0_F0: 0x80000021, CR0_F1: 0xFFFFFFFF}
    assert c.test(_state(caps, GUEST_CR0=0xFFFFFFFF)) is None
    assert c.test(_state(caps, GUEST_CR0=0)) is None             # fixed1 says nothing of missing bits
    assert c.test(_state(caps, GUEST_CR0=0x180000031)) == (
        "GUEST_CR0 = 0x0000000180000031: bit 32 must be 0 (IA32_VMX_CR0_FIXED1 = 0xffffffff)")
    caps = {CR0_F0: 0x21, CR0_F1: 0x8005003F}
    assert c.test(_state(caps, GUEST_CR0=0x80050031)) is None
    assert c.test(_state(caps, GUEST_CR0=0xE0000031)) == (
        "GUEST_CR0 = 0x00000000e0000031: bits 30, 29 must be 0 (IA32_VMX_CR0_FIXED1 = 0x8005003f)")


def test_fixed_rule_cr4_fixed0(build):
    c = build("CR4", 1, "Explain CR4 fixed0.")
    assert (c.id, c.group, c.sdm, c.fields, c.explain, c.qualification) == (
        "guest.cr4.fixed0", "guest", "27.3.1.1", ("GUEST_CR4",), "Explain CR4 fixed0.", 0)
    caps = {CR4_F0: 0x2000, CR4_F1: 0x1FFFFF}
    assert c.test(_state(caps, GUEST_CR4=0x2000)) is None
    assert c.test(_state(caps, GUEST_CR4=0xFFFFFFFFFFFFFFFF)) is None   # fixed0 says nothing of extra bits
    assert c.test(_state(caps, GUEST_CR4=0x20)) == (
        "GUEST_CR4 = 0x0000000000000020: bit 13 must be 1 (IA32_VMX_CR4_FIXED0 = 0x2000)")
    caps = {CR4_F0: 0x2021, CR4_F1: 0x2021}
    assert c.test(_state(caps, GUEST_CR4=0x1)) == (
        "GUEST_CR4 = 0x0000000000000001: bits 13, 5 must be 1 (IA32_VMX_CR4_FIXED0 = 0x2021)")
    caps = {CR4_F0: 0x2021, CR4_F1: 0x2000}     # bits 5 and 0 of FIXED0 that FIXED1 clears: not required
    assert c.test(_state(caps, GUEST_CR4=0x2000)) is None


def test_fixed_rule_cr4_fixed1(build):
    c = build("CR4", 0, "Explain CR4 fixed1.")
    assert (c.id, c.fields, c.explain) == ("guest.cr4.fixed1", ("GUEST_CR4",), "Explain CR4 fixed1.")
    caps = {CR4_F0: 0x2000, CR4_F1: 0x1FFFFF}
    assert c.test(_state(caps, GUEST_CR4=0)) is None
    assert c.test(_state(caps, GUEST_CR4=0x1FFFFF)) is None
    assert c.test(_state(caps, GUEST_CR4=0x602000)) == (
        "GUEST_CR4 = 0x0000000000602000: bits 22, 21 must be 0 (IA32_VMX_CR4_FIXED1 = 0x1fffff)")
    s = _state(caps, GUEST_CR4=0x200000)
    c.test(s)
    assert s.named == ["GUEST_CR4"]


def test_module_table_of_fixed_rules():
    """What the module's own calls built, as the import left them."""
    got = [(c.id, c.fields) for c in gr.CHECKS if ".fixed" in c.id]
    assert got == [("guest.cr0.fixed0", ("GUEST_CR0", "SECONDARY_VM_EXEC_CONTROL")), ("guest.cr0.fixed1", ("GUEST_CR0",)),
                   ("guest.cr4.fixed0", ("GUEST_CR4",)), ("guest.cr4.fixed1", ("GUEST_CR4",))]
