"""windbg_ext.arch.entry_checks.controls: the rule factories and helpers (issue 16, mutation testing).

The factories (`_allowed_rules`, `_address_rules`, `_requires`, `_no_tpr_shadow`, `_eptp_rule`,
`_msr_area_rules`, `_inj`, `_injection`, `_proc`/`_proc2`/`_pin`) run at import, where mutmut cannot
activate their mutants, so each is called here again with controls.R replaced by a registry of the
test's own. Expected values by hand from SDM Vol. 3: control bit positions (Tables 25-5 pin-based,
25-6 primary, 25-7 secondary, 25-13 exit), allowed settings (A.3-A.5: allowed-0 in bits 31:0,
allowed-1 in bits 63:32; TRUE MSRs with IA32_VMX_BASIC bit 55; the tertiary and secondary-exit MSRs
are 64 allowed-1 bits), 27.2.1.1 (4-KByte aligned addresses, posted-interrupt descriptor 64-byte
aligned), 27.2.1.2 (MSR areas 16-byte aligned, 16 bytes an entry), 25.8.3 (interruption
information: vector 7:0, type 10:8, deliver error code 11, valid 31)."""
import pytest

from windbg_ext.arch.entry_checks import controls as ct
from windbg_ext.arch.entry_checks.model import NOT_APPLICABLE, EntryState, Registry
from windbg_ext.arch.vmcs_fields import by_name

P, C, C2, X, N = ("PIN_BASED_VM_EXEC_CONTROL", "CPU_BASED_VM_EXEC_CONTROL", "SECONDARY_VM_EXEC_CONTROL",
                  "VM_EXIT_CONTROLS", "VM_ENTRY_CONTROLS")
SECONDARY = 1 << 31  # primary bit 31: activate secondary controls
BASIC, PIN_CTLS, TRUE_PIN_CTLS, PROC_CTLS3 = 0x480, 0x481, 0x48D, 0x492
EPT_VPID_CAP, MISC = 0x48C, 0x485


def _state(caps=None, maxphyaddr=52, **named):
    return EntryState({by_name(k).encoding: v for k, v in named.items()}, caps or {}, maxphyaddr=maxphyaddr)


def _row(c):
    return (c.id, c.group, c.sdm, c.fields, c.explain, c.qualification)


@pytest.fixture
def R(monkeypatch):
    reg = Registry("control")
    monkeypatch.setattr(ct, "R", reg)
    return reg


class Gate:
    def __init__(self, value):
        self.value, self.seen = value, []

    def __call__(self, s):
        self.seen.append(s)
        return self.value


# -- helpers that run at check time ---------------------------------------------------------------
def test_msr_name():
    assert ct._msr_name(0x481) == "IA32_VMX_PINBASED_CTLS"
    assert ct._msr_name(0x48D) == "IA32_VMX_TRUE_PINBASED_CTLS"
    assert ct._msr_name(0x4FFFF) == "MSR 0x4ffff"


def test_field_of():
    assert [ct._field_of(k) for k in ("pin", "proc", "proc2", "proc3", "exit", "exit2", "entry")] == [
        P, C, C2, "TERTIARY_VM_EXEC_CONTROL", X, "SECONDARY_VM_EXIT_CONTROLS", N]


def test_eptp_switching():
    assert ct._eptp_switching(_state(**{C: SECONDARY, C2: 1 << 13, "VM_FUNCTION_CONTROL": 1})) == 1
    assert ct._eptp_switching(_state(**{C: SECONDARY, C2: 1 << 13, "VM_FUNCTION_CONTROL": 3})) == 1
    assert ct._eptp_switching(_state(**{C: SECONDARY, C2: 1 << 13, "VM_FUNCTION_CONTROL": 2})) == 0
    assert ct._eptp_switching(_state(**{C: SECONDARY, C2: 1 << 12, "VM_FUNCTION_CONTROL": 1})) is False
    assert ct._eptp_switching(_state(**{C: 0, C2: 1 << 13, "VM_FUNCTION_CONTROL": 1})) is False


def test_cr0_pe_and_basic56():
    assert ct._cr0_pe(_state(GUEST_CR0=1)) is True
    assert ct._cr0_pe(_state(GUEST_CR0=0x80000030)) is False
    assert ct._cr0_pe(_state(GUEST_CR0=0xFFFFFFFE)) is False
    assert ct._basic56(_state({BASIC: 1 << 56})) is True
    assert ct._basic56(_state({BASIC: (1 << 55) | (1 << 57)})) is False
    assert ct._basic56(_state({})) is False


def test_proc_proc2_pin_gates():
    g = ct._proc("USE_IO_BITMAPS")             # primary bit 25
    assert g(_state(**{C: 1 << 25})) is True and g(_state(**{C: ~(1 << 25) & 0xFFFFFFFF})) is False
    g = ct._proc2("ENABLE_PML")                # secondary bit 17
    assert g(_state(**{C: SECONDARY, C2: 1 << 17})) is True
    assert g(_state(**{C: SECONDARY, C2: 1 << 16})) is False
    assert g(_state(**{C: 0, C2: 1 << 17})) is False
    g = ct._pin("PROCESS_POSTED_INTERRUPTS")   # pin bit 7
    assert g(_state(**{P: 1 << 7})) is True and g(_state(**{P: 1 << 6, C: 1 << 7})) is False


# -- _allowed_rules --------------------------------------------------------------------------------
def test_allowed_rules_table(R):
    ct._allowed_rules("pin", P, "1.1", "pin things")
    ct._allowed_rules("proc3", "TERTIARY_VM_EXEC_CONTROL", "1.2", "tertiary things", gate=Gate(True))
    ct._allowed_rules("exit2", "SECONDARY_VM_EXIT_CONTROLS", "1.3", "exit2 things", gate=Gate(True))
    assert [_row(c) for c in R.checks] == [
        ("control.pin.allowed0", "control", "1.1", (P,),
         "Every bit that the capability MSR reports as allowed-0 = 1 must be 1 in the pin things.", 0),
        ("control.pin.allowed1", "control", "1.1", (P,),
         "Every bit that the capability MSR reports as allowed-1 = 0 must be 0 in the pin things.", 0),
        ("control.proc3.allowed1", "control", "1.2", ("TERTIARY_VM_EXEC_CONTROL",),
         "Every bit that the capability MSR reports as allowed-1 = 0 must be 0 in the tertiary things.", 0),
        ("control.exit2.allowed1", "control", "1.3", ("SECONDARY_VM_EXIT_CONTROLS",),
         "Every bit that the capability MSR reports as allowed-1 = 0 must be 0 in the exit2 things.", 0)]


def test_allowed_rules_pin(R):
    ct._allowed_rules("pin", P, "1.1", "pin things")
    must, may = R.checks
    caps = {PIN_CTLS: 0x0000007F00000016}   # allowed-0 = 1: bits 4, 2, 1; allowed-1: bits 6:0
    assert must.test(_state(caps, **{P: 0x16})) is None
    assert must.test(_state(caps, **{P: 0xFFFFFFFF})) is None
    assert must.test(_state(caps, **{P: 0})) == (
        "PIN_BASED_VM_EXEC_CONTROL = 0x00000000: bits 4, 2, 1 must be 1 "
        "(allowed 0-settings, low half of IA32_VMX_PINBASED_CTLS = 0x00000016)")
    assert may.test(_state(caps, **{P: 0x7F})) is None
    assert may.test(_state(caps, **{P: 0})) is None
    assert may.test(_state(caps, **{P: 0x196})) == (
        "PIN_BASED_VM_EXEC_CONTROL = 0x00000196: bits 8, 7 must be 0 "
        "(not allowed 1-settings per IA32_VMX_PINBASED_CTLS = 0x7f)")
    # IA32_VMX_BASIC bit 55: the TRUE MSR is read, and named
    caps = {BASIC: 1 << 55, PIN_CTLS: 0x0000007F00000016, TRUE_PIN_CTLS: 0x0000003F00000004}
    assert must.test(_state(caps, **{P: 0x4})) is None
    assert must.test(_state(caps, **{P: 0})) == (
        "PIN_BASED_VM_EXEC_CONTROL = 0x00000000: bit 2 must be 1 "
        "(allowed 0-settings, low half of IA32_VMX_TRUE_PINBASED_CTLS = 0x00000004)")
    assert may.test(_state(caps, **{P: 0x44})) == (
        "PIN_BASED_VM_EXEC_CONTROL = 0x00000044: bit 6 must be 0 "
        "(not allowed 1-settings per IA32_VMX_TRUE_PINBASED_CTLS = 0x3f)")
    s = _state(caps, **{P: 0})
    must.test(s)
    assert s.named == [P]


def test_allowed_rules_wide_with_gate(R):
    g = Gate(True)
    ct._allowed_rules("proc3", "TERTIARY_VM_EXEC_CONTROL", "1.2", "tertiary things", gate=g)
    (may,) = R.checks
    caps = {PROC_CTLS3: 0xF}
    s = _state(caps, TERTIARY_VM_EXEC_CONTROL=0x10000000F)
    assert may.test(s) == ("TERTIARY_VM_EXEC_CONTROL = 0x000000010000000f: bit 32 must be 0 "
                           "(not allowed 1-settings per IA32_VMX_PROCBASED_CTLS3 = 0xf)")
    assert g.seen == [s]
    assert may.test(_state(caps, TERTIARY_VM_EXEC_CONTROL=0xF)) is None
    g.value = False
    assert may.test(_state(caps, TERTIARY_VM_EXEC_CONTROL=0xFFFF)) is NOT_APPLICABLE


def test_allowed_rules_gate_closes_both(R):
    g = Gate(False)
    ct._allowed_rules("pin", P, "1.1", "pin things", gate=g)
    caps = {PIN_CTLS: 0x0000000000000016}
    for c in R.checks:
        assert c.test(_state(caps, **{P: 0x100})) is NOT_APPLICABLE
    assert len(g.seen) == 2 and g.seen[0] is not g.seen[1] and None not in g.seen
    g.value = True
    s = _state(caps, **{P: 0x100})
    R.checks[0].test(s)
    assert g.seen[-1] is s
    assert [c.test(_state(caps, **{P: 0x100})) for c in R.checks] == [
        "PIN_BASED_VM_EXEC_CONTROL = 0x00000100: bits 4, 2, 1 must be 1 "
        "(allowed 0-settings, low half of IA32_VMX_PINBASED_CTLS = 0x00000016)",
        "PIN_BASED_VM_EXEC_CONTROL = 0x00000100: bit 8 must be 0 (not allowed 1-settings per IA32_VMX_PINBASED_CTLS = 0x0)"]


# -- _address_rules --------------------------------------------------------------------------------
def test_address_rules_4k(R):
    g = Gate(True)
    ct._address_rules("control.zz", "IO_BITMAP_A", "2.2", "I/O thing", g)
    a, w = R.checks
    assert [_row(a), _row(w)] == [
        ("control.zz.aligned", "control", "2.2", ("IO_BITMAP_A",), "The I/O thing must be 4-KByte aligned (bits 11:0 = 0).", 0),
        ("control.zz.width", "control", "2.2", ("IO_BITMAP_A",),
         "The I/O thing must not set any bit beyond the processor's physical-address width.", 0)]
    for ok in (0, 0x1000, 0xFFFFF000):
        assert a.test(_state(IO_BITMAP_A=ok)) is None
    for bad in (0x800, 0x1001, 0x1FFF):
        assert a.test(_state(IO_BITMAP_A=bad)) == (
            "IO_BITMAP_A = 0x%016x: the I/O thing must be 4-KByte aligned (bits 11:0 = 0)" % bad)
    assert w.test(_state(maxphyaddr=40, IO_BITMAP_A=0xFFFFFFF000)) is None
    assert w.test(_state(maxphyaddr=40, IO_BITMAP_A=0x10000000000)) == (
        "IO_BITMAP_A = 0x0000010000000000: the I/O thing sets bits beyond the physical-address width (40 bits)")
    assert w.test(_state(maxphyaddr=39, IO_BITMAP_A=0x8000000000)) == (
        "IO_BITMAP_A = 0x0000008000000000: the I/O thing sets bits beyond the physical-address width (39 bits)")
    s = _state(IO_BITMAP_A=0x800)
    a.test(s)
    assert g.seen[-1] is s
    s = _state(IO_BITMAP_A=0x800)
    w.test(s)
    assert g.seen[-1] is s
    g.value = False
    assert a.test(_state(IO_BITMAP_A=0x801)) is NOT_APPLICABLE
    assert w.test(_state(maxphyaddr=40, IO_BITMAP_A=1 << 50)) is NOT_APPLICABLE


def test_address_rules_64_byte(R):
    ct._address_rules("control.pd", "POSTED_INTR_DESC_ADDR", "2.3", "descriptor", Gate(True), align=64)
    a, w = R.checks
    assert a.explain == "The descriptor must be 64-byte aligned (bits 5:0 = 0)."
    assert a.test(_state(POSTED_INTR_DESC_ADDR=0x1040)) is None
    assert a.test(_state(POSTED_INTR_DESC_ADDR=0x1020)) == (
        "POSTED_INTR_DESC_ADDR = 0x0000000000001020: the descriptor must be 64-byte aligned (bits 5:0 = 0)")
    assert a.test(_state(POSTED_INTR_DESC_ADDR=0x1001)) == (
        "POSTED_INTR_DESC_ADDR = 0x0000000000001001: the descriptor must be 64-byte aligned (bits 5:0 = 0)")
    ct._address_rules("control.sixteen", "PML_ADDRESS", "2.4", "thing", Gate(True), align=16)
    assert R.checks[2].explain == "The thing must be 16-byte aligned (bits 3:0 = 0)."


# -- _requires, _no_tpr_shadow ---------------------------------------------------------------------
def test_requires_same_kind(R):
    ct._requires("control.r1", "3.1", [P], "Explain r1.", "pin", "VIRTUAL_NMIS", "pin", "NMI_EXITING")
    (c,) = R.checks
    assert _row(c) == ("control.r1", "control", "3.1", (P,), "Explain r1.", 0)
    assert c.test(_state(**{P: 0x8})) is NOT_APPLICABLE        # virtual NMIs (bit 5) 0
    assert c.test(_state(**{P: 0x28})) is None                 # and NMI exiting (bit 3) 1
    assert c.test(_state(**{P: 0x20})) == (
        "PIN_BASED_VM_EXEC_CONTROL = 0x00000020: VIRTUAL_NMIS = 1 requires NMI_EXITING = 1")
    s = _state(**{P: 0x20})
    c.test(s)
    assert s.named == [P]


def test_requires_other_kind(R):
    ct._requires("control.r2", "3.2", [P, C], "Explain r2.", "proc", "NMI_WINDOW_EXITING", "pin", "VIRTUAL_NMIS")
    ct._requires("control.r3", "3.3", [P, X], "Explain r3.", "exit", "SAVE_PREEMPTION_TIMER", "pin",
                 "ACTIVATE_PREEMPTION_TIMER")
    r2, r3 = R.checks
    assert r2.test(_state(**{C: 1 << 22, P: 0})) == (
        "CPU_BASED_VM_EXEC_CONTROL = 0x00400000, PIN_BASED_VM_EXEC_CONTROL = 0x00000000: "
        "NMI_WINDOW_EXITING = 1 requires VIRTUAL_NMIS = 1")
    assert r2.test(_state(**{C: 1 << 22, P: 1 << 5})) is None
    assert r3.test(_state(**{X: 1 << 22, P: 0x20})) == (
        "VM_EXIT_CONTROLS = 0x00400000, PIN_BASED_VM_EXEC_CONTROL = 0x00000020: "
        "SAVE_PREEMPTION_TIMER = 1 requires ACTIVATE_PREEMPTION_TIMER = 1")
    assert r3.test(_state(**{X: 1 << 22, P: 0x40})) is None
    assert r3.test(_state(**{X: 1 << 21, P: 0})) is NOT_APPLICABLE


def test_requires_value_0(R):
    ct._requires("control.r4", "3.4", [C2], "Explain r4.", "proc2", "VIRTUALIZE_X2APIC_MODE", "proc2",
                 "VIRTUALIZE_APIC_ACCESSES", False)
    (c,) = R.checks
    assert c.test(_state(**{C: SECONDARY, C2: 0x10})) is None
    assert c.test(_state(**{C: SECONDARY, C2: 0x11})) == (
        "SECONDARY_VM_EXEC_CONTROL = 0x00000011: VIRTUALIZE_X2APIC_MODE = 1 requires VIRTUALIZE_APIC_ACCESSES = 0")
    assert c.test(_state(**{C: SECONDARY, C2: 0x01})) is NOT_APPLICABLE


def test_no_tpr_shadow(R):
    ct._no_tpr_shadow("control.nt", "VIRTUAL_INTERRUPT_DELIVERY", "virtual things")
    (c,) = R.checks
    assert _row(c) == ("control.nt", "control", "27.2.1.1", (C, C2), "If 'use TPR shadow' is 0, 'virtual things' must be 0.", 0)
    assert c.test(_state(**{C: SECONDARY | (1 << 21), C2: 1 << 9})) is NOT_APPLICABLE   # TPR shadow on
    assert c.test(_state(**{C: SECONDARY, C2: 1 << 8})) is None
    assert c.test(_state(**{C: SECONDARY, C2: 1 << 9})) == (
        "SECONDARY_VM_EXEC_CONTROL = 0x00000200, CPU_BASED_VM_EXEC_CONTROL = 0x80000000: "
        "VIRTUAL_INTERRUPT_DELIVERY = 1 requires USE_TPR_SHADOW = 1")


# -- _eptp_rule ------------------------------------------------------------------------------------
def test_eptp_rule(R):
    seen = []

    def fn(s, eptp, cap):
        seen.append((s, eptp, cap))
        return "result"
    assert ct._eptp_rule("control.ept.zz", "Explain ept.")(fn) is fn
    (c,) = R.checks
    assert _row(c) == ("control.ept.zz", "control", "27.2.1.1", (C2, "EPT_POINTER"), "Explain ept.", 0)
    s = _state({EPT_VPID_CAP: 0x6334141}, **{C: SECONDARY, C2: 1 << 1, "EPT_POINTER": 0x501E})
    assert c.test(s) == "result"
    assert seen == [(s, 0x501E, 0x6334141)]
    assert c.test(_state(**{C: SECONDARY, C2: 1 << 7, "EPT_POINTER": 0x501E})) is NOT_APPLICABLE
    assert c.test(_state(**{C: 0, C2: 1 << 1})) is NOT_APPLICABLE
    assert len(seen) == 1


# -- _msr_area_rules -------------------------------------------------------------------------------
def test_msr_area_rules(R):
    ct._msr_area_rules("control.area", "VM_EXIT_MSR_STORE_COUNT", "VM_EXIT_MSR_STORE_ADDR", "4.4", "store area")
    a, w = R.checks
    assert [_row(a), _row(w)] == [
        ("control.area.aligned", "control", "4.4", ("VM_EXIT_MSR_STORE_COUNT", "VM_EXIT_MSR_STORE_ADDR"),
         "If the store area count is not 0, its address must be 16-byte aligned.", 0),
        ("control.area.width", "control", "4.4", ("VM_EXIT_MSR_STORE_COUNT", "VM_EXIT_MSR_STORE_ADDR"),
         "If the store area count is not 0, the whole area (address + 16 * count - 1) must be within the "
         "physical-address width.", 0)]
    assert a.test(_state(VM_EXIT_MSR_STORE_COUNT=0, VM_EXIT_MSR_STORE_ADDR=0x1008)) is NOT_APPLICABLE
    assert a.test(_state(VM_EXIT_MSR_STORE_COUNT=1, VM_EXIT_MSR_STORE_ADDR=0x1010)) is None
    for bad in (0x1008, 0x1001, 0x100F):
        assert a.test(_state(VM_EXIT_MSR_STORE_COUNT=1, VM_EXIT_MSR_STORE_ADDR=bad)) == (
            "VM_EXIT_MSR_STORE_ADDR = 0x%016x: the store area address must be 16-byte aligned (bits 3:0 = 0) "
            "when VM_EXIT_MSR_STORE_COUNT is not 0" % bad)
    top = 1 << 40
    assert w.test(_state(maxphyaddr=40, VM_EXIT_MSR_STORE_COUNT=0, VM_EXIT_MSR_STORE_ADDR=top)) is NOT_APPLICABLE
    assert w.test(_state(maxphyaddr=40, VM_EXIT_MSR_STORE_COUNT=1, VM_EXIT_MSR_STORE_ADDR=top - 16)) is None
    assert w.test(_state(maxphyaddr=40, VM_EXIT_MSR_STORE_COUNT=4, VM_EXIT_MSR_STORE_ADDR=top - 64)) is None
    assert w.test(_state(maxphyaddr=40, VM_EXIT_MSR_STORE_COUNT=2, VM_EXIT_MSR_STORE_ADDR=top - 16)) == (
        "VM_EXIT_MSR_STORE_ADDR = 0x000000fffffffff0, VM_EXIT_MSR_STORE_COUNT = 2: the store area "
        "(0xfffffffff0-0x1000000000f) goes beyond the physical-address width (40 bits)")
    assert w.test(_state(maxphyaddr=40, VM_EXIT_MSR_STORE_COUNT=1, VM_EXIT_MSR_STORE_ADDR=top)) == (
        "VM_EXIT_MSR_STORE_ADDR = 0x0000010000000000, VM_EXIT_MSR_STORE_COUNT = 1: the store area "
        "(0x10000000000-0x1000000000f) goes beyond the physical-address width (40 bits)")
    assert w.test(_state(maxphyaddr=36, VM_EXIT_MSR_STORE_COUNT=3, VM_EXIT_MSR_STORE_ADDR=0xFFFFFFFE0)) == (
        "VM_EXIT_MSR_STORE_ADDR = 0x0000000fffffffe0, VM_EXIT_MSR_STORE_COUNT = 3: the store area "
        "(0xfffffffe0-0x100000000f) goes beyond the physical-address width (36 bits)")


# -- event injection ------------------------------------------------------------------------------
def test_injection_splits_the_field():
    seen = []

    def fn(s, info, vector, kind):
        seen.append((info, vector, kind))
        states.append(s)
        return "r"
    states = []
    test = ct._injection(fn)
    II = "VM_ENTRY_INTR_INFO_FIELD"
    assert test(_state(**{II: 0x7FFFFFFF})) is NOT_APPLICABLE     # valid (bit 31) clear
    assert test(_state(**{II: 0})) is NOT_APPLICABLE
    assert seen == []
    for info, vector, kind in ((0x80000B0E, 0x0E, 3), (0x80000000, 0, 0), (0x80000123, 0x23, 1),
                               (0x80000FFF, 0xFF, 7), (0x80000602, 0x02, 6), (0xFFFFF8FF, 0xFF, 0),
                               (0x80000480, 0x80, 4)):
        s = _state(**{II: info})
        assert test(s) == "r"
        assert seen[-1] == (info, vector, kind) and states[-1] is s


def test_inj(R):
    def fn(s, info, vector, kind):
        return "v%d t%d" % (vector, kind)
    assert ct._inj("control.inj.zz", ["GUEST_CR0"], "Explain inj.")(fn) is fn
    assert ct._inj("control.inj.yy", [], "Explain yy.")(fn) is fn
    zz, yy = R.checks
    assert [_row(zz), _row(yy)] == [
        ("control.inj.zz", "control", "27.2.1.3", ("VM_ENTRY_INTR_INFO_FIELD", "GUEST_CR0"), "Explain inj.", 0),
        ("control.inj.yy", "control", "27.2.1.3", ("VM_ENTRY_INTR_INFO_FIELD",), "Explain yy.", 0)]
    assert zz.test(_state(VM_ENTRY_INTR_INFO_FIELD=0x80000B0D)) == "v13 t3"
    assert zz.test(_state(VM_ENTRY_INTR_INFO_FIELD=0x00000B0D)) is NOT_APPLICABLE
