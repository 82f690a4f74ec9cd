"""arch/entry_checks/model.py against hand-made states (issue 16: kills the mutants the probe-backed
tests let live). Every expected value is typed in here: VMCS encodings and widths from SDM Vol. 3
Appendix B, control bit positions from 25.6-25.8 (Tables 25-5..25-7, 25-9, 25-10, 25-12, 25-14),
capability MSR numbers from Appendix A (0x480 BASIC, 0x481 PINBASED, 0x482 PROCBASED, 0x48B
PROCBASED2, 0x48D TRUE_PINBASED, 0x48E TRUE_PROCBASED, 0x492 PROCBASED3, 0x493 EXIT2), bit 55 of
IA32_VMX_BASIC (A.1), a canonical address (Vol. 1, 3.3.7.1)."""
from __future__ import annotations

import pytest

from tests.verify.rebuild import rebuilt
from windbg_ext.arch.entry_checks import model
from windbg_ext.arch.entry_checks.model import (NOT_APPLICABLE, Check, EntryState, NotChecked, Registry, bits_text,
                                                canonical, control_bit, field_encoding, field_width, hexv)

PIN, PROC, PROC2, PROC3, EXIT, EXIT2, ENTRY = 0x4000, 0x4002, 0x401E, 0x2034, 0x400C, 0x2044, 0x4012
GUEST_RIP, GUEST_RFLAGS, GUEST_CR4, HOST_CR4 = 0x681E, 0x6820, 0x6804, 0x6C04
GUEST_ES_SELECTOR, GUEST_ES_AR_BYTES, VMCS_LINK_POINTER, GUEST_ACTIVITY_STATE = 0x800, 0x4814, 0x2800, 0x4826
BASIC_TRUE_CONTROLS = 1 << 55


def test_not_applicable_and_not_checked_show_themselves():
    assert repr(NOT_APPLICABLE) == "NOT_APPLICABLE"
    n = NotChecked("needs memory")
    assert (n.why, n.warning, repr(n)) == ("needs memory", "", "NotChecked('needs memory')")
    w = NotChecked("why", "careful")
    assert (w.why, w.warning) == ("why", "careful")


def test_field_encoding_and_width_come_from_appendix_b():
    assert field_encoding("GUEST_RIP") == GUEST_RIP
    assert field_encoding("VMCS_LINK_POINTER") == VMCS_LINK_POINTER
    assert [field_width(n) for n in ("GUEST_ES_SELECTOR", "GUEST_ES_AR_BYTES", "VMCS_LINK_POINTER", "GUEST_RIP")] == [
        "16", "32", "64", "natural"]


def test_control_bit_positions_and_the_unknown_name():
    assert control_bit("proc", "ACTIVATE_SECONDARY_CONTROLS") == 31
    assert control_bit("proc", "ACTIVATE_TERTIARY_CONTROLS") == 17
    assert control_bit("entry", "IA32E_MODE_GUEST") == 9
    assert control_bit("pin", "VIRTUAL_NMIS") == 5
    with pytest.raises(KeyError) as e:
        control_bit("proc", "NO_SUCH_CONTROL")
    assert e.value.args == ("no proc control named NO_SUCH_CONTROL",)


def test_entry_state_defaults():
    s = EntryState({}, {})
    assert (s.fields, s.caps, s.maxphyaddr, s.read_physical, s.vmcs_address) == ({}, {}, 52, None, None)
    assert (s.host_in_ia32e, s.in_smm, s.sgx, s.linear_address_bits) == (True, False, None, 48)
    assert (s.missing, s.named) == ([], [])
    f, c = {GUEST_RIP: 1}, {0x480: 2}
    s = EntryState(f, c, maxphyaddr=40, vmcs_address=0x1000, host_in_ia32e=False, in_smm=True, sgx=True,
                   linear_address_bits=57)
    assert (s.fields, s.caps, s.maxphyaddr, s.vmcs_address) == (f, c, 40, 0x1000)
    assert (s.host_in_ia32e, s.in_smm, s.sgx, s.linear_address_bits) == (False, True, True, 57)
    f[GUEST_RIP] = 9
    assert s.f("GUEST_RIP") == 1  # the state keeps its own copy


def test_f_reads_a_field_once_and_remembers_the_absent_ones():
    s = EntryState({GUEST_RIP: 0x1234, GUEST_RFLAGS: 0}, {})
    assert s.f("GUEST_RIP") == 0x1234
    assert s.f("GUEST_RFLAGS") == 0
    assert s.f("GUEST_CR4") == 0
    assert s.f("GUEST_CR4") == 0 and s.f("GUEST_RIP") == 0x1234  # second reads come from the cache
    assert s.missing == ["GUEST_CR4"]
    s.fields[GUEST_RIP] = 5
    assert s.f("GUEST_RIP") == 0x1234


def test_read_gives_exactly_size_bytes_or_none():
    assert EntryState({}, {}).read(0x1000, 4) is None
    calls = []

    def memory(address, size):
        calls.append((address, size))
        return {0x1000: b"\x01\x02\x03\x04", 0x2000: b"\x01\x02", 0x3000: b"\x01\x02\x03\x04\x05"}.get(address)

    s = EntryState({}, {}, read_physical=memory)
    assert s.read(0x1000, 4) == b"\x01\x02\x03\x04"
    assert s.read(0x2000, 4) is None   # short
    assert s.read(0x3000, 4) is None   # long
    assert s.read(0x4000, 4) is None   # not there
    assert calls == [(0x1000, 4), (0x2000, 4), (0x3000, 4), (0x4000, 4)]


def test_cap_reads_an_msr_or_zero():
    s = EntryState({}, {0x481: 0x3F00000016})
    assert (s.cap(0x481), s.cap(0x482)) == (0x3F00000016, 0)


@pytest.mark.parametrize("kind,field,gate_field,gate_bit", [
    ("proc2", PROC2, PROC, 31), ("proc3", PROC3, PROC, 17), ("exit2", EXIT2, EXIT, 31)])
def test_controls_the_processor_ignores_read_as_zero(kind, field, gate_field, gate_bit):
    value = 0x8000000000000082 if kind != "proc2" else 0x80000082
    others = (1 << 32) - 1 & ~(1 << gate_bit)   # every other bit of the activating field set
    s = EntryState({field: value, gate_field: others}, {})
    assert s.controls(kind) == 0
    s = EntryState({field: value, gate_field: 1 << gate_bit}, {})
    assert s.controls(kind) == value


def test_controls_without_a_gate_and_ctl():
    s = EntryState({PIN: 0x28, PROC: 1 << 31, PROC2: 0x82, EXIT: 1 << 9, ENTRY: 1 << 9}, {})
    assert s.controls("pin") == 0x28
    assert s.controls("proc") == 1 << 31
    assert s.controls("entry") == 1 << 9
    assert s.ctl("pin", "VIRTUAL_NMIS") is True       # bit 5
    assert s.ctl("pin", "NMI_EXITING") is True        # bit 3
    assert s.ctl("pin", "EXTERNAL_INTERRUPT_EXITING") is False   # bit 0
    assert (s.ia32e_guest, s.host_64, s.unrestricted, s.ept) == (True, True, True, True)
    s = EntryState({PROC: 0, PROC2: 0x82, EXIT: 1 << 8, ENTRY: 1 << 10}, {})
    assert (s.ia32e_guest, s.host_64, s.unrestricted, s.ept) == (False, False, False, False)
    s = EntryState({PROC: 1 << 31, PROC2: 0x80, ENTRY: 1 << 8, EXIT: 1 << 10}, {})
    assert (s.ia32e_guest, s.host_64, s.unrestricted, s.ept) == (False, False, True, False)
    s = EntryState({PROC: 1 << 31, PROC2: 0x2}, {})
    assert (s.unrestricted, s.ept) == (False, True)


def test_allowed_settings_from_the_legacy_or_true_msr():
    caps = {0x481: 0x0000003F00000016, 0x48D: 0x0000007F00000006, 0x482: 0xFFFFFFFF0401E172,
            0x48E: 0xFFFFFFFF04006172, 0x48B: 0x000000FF00000000,
            0x492: 0x8000000000000005, 0x493: 0xC000000000000001}
    s = EntryState({}, dict(caps))
    assert s.allowed("pin") == (0x16, 0x3F)
    assert s.allowed("proc") == (0x0401E172, 0xFFFFFFFF)
    assert s.allowed("proc2") == (0, 0xFF)
    assert s.allowed("proc3") == (0, 0x8000000000000005)   # 64-bit allowed-1 MSR (A.3.4)
    assert s.allowed("exit2") == (0, 0xC000000000000001)   # (A.4.2)
    assert [s.allowed_msr(k) for k in ("pin", "proc", "proc2", "proc3", "exit2")] == [0x481, 0x482, 0x48B, 0x492, 0x493]
    caps[0x480] = BASIC_TRUE_CONTROLS
    s = EntryState({}, caps)
    assert s.allowed("pin") == (0x6, 0x7F)
    assert s.allowed("proc") == (0x04006172, 0xFFFFFFFF)
    assert s.allowed("proc3") == (0, 0x8000000000000005)
    assert [s.allowed_msr(k) for k in ("pin", "proc", "proc2", "proc3", "exit2")] == [0x48D, 0x48E, 0x48B, 0x492, 0x493]


def test_v8086_is_rflags_bit_17():
    assert EntryState({GUEST_RFLAGS: 1 << 17}, {}).v8086 is True
    assert EntryState({GUEST_RFLAGS: (1 << 16) | (1 << 18) | 2}, {}).v8086 is False


def test_phys_ok_at_the_width():
    s = EntryState({}, {}, maxphyaddr=40)
    assert s.phys_ok((1 << 40) - 1) and s.phys_ok(0)
    assert not s.phys_ok(1 << 40)
    d = EntryState({}, {})
    assert d.phys_ok((1 << 52) - 1) and not d.phys_ok(1 << 52)


def test_linear_bits_follow_cr4_la57():
    s = EntryState({GUEST_CR4: 1 << 12, HOST_CR4: (1 << 11) | (1 << 13)}, {})
    assert (s.guest_linear_bits(), s.host_linear_bits()) == (57, 48)
    s = EntryState({GUEST_CR4: (1 << 11) | (1 << 13), HOST_CR4: 1 << 12}, {})
    assert (s.guest_linear_bits(), s.host_linear_bits()) == (48, 57)


@pytest.mark.parametrize("value,bits,ok", [
    (0, 48, True), (0x00007FFFFFFFFFFF, 48, True), (0x0000800000000000, 48, False),
    (0xFFFF800000000000, 48, True), (0xFFFF7FFFFFFFFFFF, 48, False), (0xFFFFFFFFFFFFFFFF, 48, True),
    (0x8000000000000000, 48, False), (0x00FFFFFFFFFFFFFF, 57, True), (0x0100000000000000, 57, False),
    (0xFF00000000000000, 57, True), (0xFEFFFFFFFFFFFFFF, 57, False), (0x0000800000000000, 57, True)])
def test_canonical(value, bits, ok):
    assert canonical(value, bits) is ok


def test_canonical_defaults_to_48_bits():
    assert canonical(0x0000800000000000) is False
    assert canonical(0xFFFF800000000000) is True


def test_hexv_pads_to_the_field_width_and_remembers_the_name():
    s = EntryState({GUEST_ES_SELECTOR: 0x10, GUEST_ES_AR_BYTES: 0x93, VMCS_LINK_POINTER: 0xFFF,
                    GUEST_RIP: 0x1234, GUEST_ACTIVITY_STATE: 1}, {})
    assert hexv(s, "GUEST_ES_SELECTOR") == "GUEST_ES_SELECTOR = 0x0010"
    assert hexv(s, "GUEST_ES_AR_BYTES") == "GUEST_ES_AR_BYTES = 0x0093"
    assert hexv(s, "GUEST_ACTIVITY_STATE") == "GUEST_ACTIVITY_STATE = 0x00000001"
    assert hexv(s, "VMCS_LINK_POINTER") == "VMCS_LINK_POINTER = 0x0000000000000fff"
    assert hexv(s, "GUEST_RIP") == "GUEST_RIP = 0x0000000000001234"
    assert s.named == ["GUEST_ES_SELECTOR", "GUEST_ES_AR_BYTES", "GUEST_ACTIVITY_STATE", "VMCS_LINK_POINTER",
                       "GUEST_RIP"]
    assert s.missing == []


def test_hexv_access_rights_show_16_bits_unless_more_are_set():
    s = EntryState({}, {})
    assert hexv(s, "GUEST_ES_AR_BYTES", 0xFFFF) == "GUEST_ES_AR_BYTES = 0xffff"
    assert hexv(s, "GUEST_ES_AR_BYTES", 0x10000) == "GUEST_ES_AR_BYTES = 0x00010000"
    assert hexv(s, "GUEST_ES_SELECTOR", 0) == "GUEST_ES_SELECTOR = 0x0000"
    assert s.missing == []   # a value given is not read from the state
    assert s.named == ["GUEST_ES_AR_BYTES", "GUEST_ES_AR_BYTES", "GUEST_ES_SELECTOR"]


def test_hexv_given_value_wins_over_the_field():
    s = EntryState({GUEST_RIP: 0x1234}, {})
    assert hexv(s, "GUEST_RIP", 0x10) == "GUEST_RIP = 0x0000000000000010"
    assert hexv(s, "GUEST_RIP", 0) == "GUEST_RIP = 0x0000000000000000"


@pytest.mark.parametrize("mask,text", [(0, "no bits"), (1, "bit 0"), (1 << 63, "bit 63"), (0x8005, "bits 15, 2, 0"),
                                       ((1 << 63) | 2, "bits 63, 1"), (1 << 64, "no bits")])
def test_bits_text(mask, text):
    assert bits_text(mask) == text


def test_registry_collects_checks_in_order():
    r = Registry("host")
    assert (r.group, r.checks) == ("host", [])

    def one(s):
        return None

    def two(s):
        return NOT_APPLICABLE

    r.add("host.one", "27.2.2", ["HOST_CR4", "HOST_CR0"], "One.", one)
    deco = r.rule("host.two", "27.2.3", iter(["HOST_RIP"]), "Two.", qualification=3)
    assert deco(two) is two
    r.add("host.three", "27.2.4", [], "Three.", one, 2)
    assert r.checks == [Check("host.one", "host", "27.2.2", ("HOST_CR4", "HOST_CR0"), "One.", one, 0),
                        Check("host.two", "host", "27.2.3", ("HOST_RIP",), "Two.", two, 3),
                        Check("host.three", "host", "27.2.4", (), "Three.", one, 2)]
    assert [type(c.fields) for c in r.checks] == [tuple, tuple, tuple]
    r2 = Registry("guest")
    r2.rule("guest.x", "27.3.1.5", ["GUEST_RIP"], "X.")(one)
    assert r2.checks == [Check("guest.x", "guest", "27.3.1.5", ("GUEST_RIP",), "X.", one, 0)]


_TABLES = ("windbg_ext.arch.entry_checks.controls", "windbg_ext.arch.entry_checks.host",
           "windbg_ext.arch.entry_checks.guest_regs", "windbg_ext.arch.entry_checks.guest_segments",
           "windbg_ext.arch.entry_checks.guest_state")


def _shape(checks):
    # __name__, not __qualname__: under mutmut a rule made inside a factory is qualified by the mutant's
    # copy of the factory (x__fixed_rules__mutmut_33.<locals>.must_zero), so comparing qualified names
    # "killed" every factory mutant, equivalent or not, by its name alone.
    return [(c.id, c.group, c.sdm, c.fields, c.explain, c.test.__name__, c.qualification) for c in checks]


def test_tables_built_afresh_are_the_tables_in_use():
    """The @R.rule tables run Registry at import: built again (with a mutant of Registry active, under
    mutmut) they must give the same checks, and each decorated name must still be its function."""
    from windbg_ext.arch import entry_checks as ec
    before = _shape(ec.CHECKS)
    with rebuilt(*_TABLES) as mods:
        fresh = [c for m in mods for c in m.CHECKS]
        assert _shape(fresh) == before
        gs = mods[-1]
        assert [gs.R.group, gs._rip_high.__name__, gs._is_smm.__name__] == ["guest", "_rip_high", "_is_smm"]
        assert [m.R.group for m in mods] == ["control", "host", "guest", "guest", "guest"]
    assert _shape(ec.CHECKS) == before
    assert model.Registry is Registry
