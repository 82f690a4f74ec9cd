"""arch/entry_checks/guest_state.py, one rule at a time on hand-made states (issue 16: kills the
mutants the probe-backed tests let live). Which values pass and fail is worked out here from SDM
Vol. 3 27.3.1.4 (RIP, RFLAGS), 27.3.1.5 (activity state, interruptibility state, pending debug
exceptions, VMCS link pointer), 27.3.1.6 (PDPTEs), 25.4.2 (Table 25-3 interruptibility bits,
Table 25-4 pending debug exceptions), 25.8.3 (Table 25-17 interruption information: vector 7:0,
type 10:8, valid 31), A.6 (IA32_VMX_MISC bits 8:6), 4.4.1 (PDPTE reserved bits), 25.4.1 (Table
25-2 access rights: DPL 6:5, L 13). Each rule's checks are taken from guest_state imported afresh
(tests/verify/rebuild.py), so a mutant of its import-time code (`_inject_rule`, `_link`) is active."""
from __future__ import annotations

import struct

import pytest

from tests.verify.rebuild import rebuilt
from windbg_ext.arch.entry_checks.model import NOT_APPLICABLE, EntryState, NotChecked
from windbg_ext.arch.vmcs_fields import by_name

GS = "windbg_ext.arch.entry_checks.guest_state"
CS_64, CS_32 = 0xA09B, 0xC09B          # code, present, G; L = 1 / D = 1
IA32E, ENTRY_SMM = 1 << 9, 1 << 10     # VM-entry controls (Table 25-14)
ACT2, SHADOWING, EPT = 1 << 31, 1 << 14, 1 << 1
BASIC = (1 << 55) | (0x1000 << 32) | 4   # revision id 4, as the Bochs model
IS, AS, II, PD, LP = ("GUEST_INTERRUPTIBILITY_INFO", "GUEST_ACTIVITY_STATE", "VM_ENTRY_INTR_INFO_FIELD",
                      "GUEST_PENDING_DBG_EXCEPTIONS", "VMCS_LINK_POINTER")


def checks():
    with rebuilt(GS) as (gs,):
        return {c.id: c for c in gs.CHECKS}


def state(caps=None, **kv):
    fields = {by_name(k).encoding: v for k, v in kv.items() if k.isupper()}
    opts = {k: v for k, v in kv.items() if not k.isupper()}
    return EntryState(fields, caps or {}, **opts)


def run(check_id, caps=None, **kv):
    return checks()[check_id].test(state(caps, **kv))


def inj(type_, vector, extra=0):
    return (1 << 31) | (type_ << 8) | vector | extra


# -- 27.3.1.4 RIP ---------------------------------------------------------------------------------
def test_rip_high():
    ok = None
    msg = "GUEST_RIP = 0x0000000100000000: bits 63:32 must be 0 outside 64-bit mode"
    r = lambda entry, cs, rip: run("guest.rip.high", VM_ENTRY_CONTROLS=entry, GUEST_CS_AR_BYTES=cs, GUEST_RIP=rip)
    assert r(IA32E, CS_64, 1 << 32) is NOT_APPLICABLE
    assert r(IA32E, CS_32, 1 << 32) == msg
    assert r(0, CS_64, 1 << 32) == msg
    assert r(0, CS_32, 0xFFFFFFFF) is ok
    assert r(ENTRY_SMM, CS_32, 0xFFFFFFFF) is ok


@pytest.mark.parametrize("rip,n,bad", [
    (0x0000800000000000, 48, False), (0x0000FFFFFFFFFFFF, 48, False), (0x0001000000000000, 48, True),
    (0xFFFF000000000000, 48, False), (0xFFFE000000000000, 48, True), (0x8000000000000000, 48, True),
    (0x01FFFFFFFFFFFFFF, 57, False), (0x0200000000000000, 57, True), (0xFE00000000000000, 57, False),
    (0xFC00000000000000, 57, True), (0x0001000000000000, 64, False)])
def test_rip_canonical_uses_the_processor_width(rip, n, bad):
    got = run("guest.rip.canonical", VM_ENTRY_CONTROLS=IA32E, GUEST_CS_AR_BYTES=CS_64, GUEST_RIP=rip,
              linear_address_bits=n)
    want = ("GUEST_RIP = 0x%016x: bits 63:%d must be identical (a processor with %d linear-address bits)"
            % (rip, n, n)) if bad else None
    assert got == want


def test_rip_canonical_only_in_64_bit_mode():
    for entry, cs in ((0, CS_64), (IA32E, CS_32), (0, CS_32)):
        assert run("guest.rip.canonical", VM_ENTRY_CONTROLS=entry, GUEST_CS_AR_BYTES=cs,
                   GUEST_RIP=0x0001000000000000) is NOT_APPLICABLE
    assert run("guest.rip.canonical", VM_ENTRY_CONTROLS=IA32E, GUEST_CS_AR_BYTES=CS_64,
               GUEST_RIP=0x0001000000000000) == (
        "GUEST_RIP = 0x0001000000000000: bits 63:48 must be identical (a processor with 48 linear-address bits)")


# -- 27.3.1.4 RFLAGS ------------------------------------------------------------------------------
@pytest.mark.parametrize("rflags,bits", [(0x3F7FD7, None), (1 << 22, "bit 22"), (1 << 63, "bit 63"), (0x8000 | 2, "bit 15"),
                                         (0x20, "bit 5"), (0x8 | 0x4, "bit 3"), ((1 << 40) | (1 << 15) | 0x28, "bits 40, 15, 5, 3")])
def test_rflags_reserved(rflags, bits):
    got = run("guest.rflags.reserved", GUEST_RFLAGS=rflags)
    assert got == (None if bits is None else "GUEST_RFLAGS = 0x%016x: reserved %s must be 0" % (rflags, bits))


def test_rflags_bit1():
    assert run("guest.rflags.bit1", GUEST_RFLAGS=2) is None
    assert run("guest.rflags.bit1", GUEST_RFLAGS=0x3F7FD5) == (
        "GUEST_RFLAGS = 0x00000000003f7fd5: bit 1 is reserved and must be 1")


def test_rflags_vm():
    vm = (1 << 17) | 2
    r = lambda entry, cr0, rf: run("guest.rflags.vm", VM_ENTRY_CONTROLS=entry, GUEST_CR0=cr0, GUEST_RFLAGS=rf)
    assert r(0, 0x80000001, vm) is NOT_APPLICABLE          # protected mode, legacy guest: virtual-8086 allowed
    assert r(IA32E, 0x80000001, vm) == "GUEST_RFLAGS = 0x0000000000020002: VM (bit 17) must be 0 in IA-32e mode"
    assert r(IA32E, 0, vm) == "GUEST_RFLAGS = 0x0000000000020002: VM (bit 17) must be 0 in IA-32e mode"
    assert r(0, 0xFFFFFFFE, vm) == "GUEST_RFLAGS = 0x0000000000020002: VM (bit 17) must be 0 when CR0.PE = 0"
    assert r(0, 0, 0xFFFFFFFFFFFDFFFF) is None
    assert r(IA32E, 1, 2) is None


def test_rflags_if_for_an_external_interrupt():
    r = lambda info, rf: run("guest.rflags.if_for_interrupt", VM_ENTRY_INTR_INFO_FIELD=info, GUEST_RFLAGS=rf)
    assert r(0x7FFFFF20, 2) is NOT_APPLICABLE               # valid bit 31 clear
    assert r(inj(2, 2), 2) is NOT_APPLICABLE                # NMI
    assert r(inj(4, 0x20), 2) is NOT_APPLICABLE             # software interrupt
    assert r(inj(0, 0x20, 0x7FFFF000), 0x200) is None
    assert r(inj(0, 0x20), 0xFFFFFFFFFFFFFDFF) == (
        "GUEST_RFLAGS = 0xfffffffffffffdff: IF (bit 9) must be 1 to inject an external interrupt")


# -- 27.3.1.5 activity state ------------------------------------------------------------------------
@pytest.mark.parametrize("a,misc,bad", [
    (0, 0, None), (1, 1 << 6, None), (1, 0x1A0, "0b110"), (2, 1 << 7, None), (2, 0x160, "0b101"),
    (3, 1 << 8, None), (3, 0xE0, "0b11"), (4, 0x1C0, "0b111"), (0xFFFFFFFF, 0x1C0, "0b111")])
def test_activity_state_supported(a, misc, bad):
    got = run("guest.activity.supported", {0x485: misc | (0xFFFF << 16)}, GUEST_ACTIVITY_STATE=a)
    want = None if bad is None else ("GUEST_ACTIVITY_STATE = 0x%08x: activity state %d is not supported "
                                     "(IA32_VMX_MISC bits 8:6 = %s)" % (a, a, bad))
    assert got == want


def test_activity_state_read_from_misc_without_others():
    assert run("guest.activity.supported", GUEST_ACTIVITY_STATE=1) == (
        "GUEST_ACTIVITY_STATE = 0x00000001: activity state 1 is not supported (IA32_VMX_MISC bits 8:6 = 0b0)")


def test_hlt_needs_ss_dpl_0():
    r = lambda a, ss: run("guest.activity.hlt_needs_cpl0", GUEST_ACTIVITY_STATE=a, GUEST_SS_AR_BYTES=ss)
    assert r(0, 0xF3) is NOT_APPLICABLE
    assert r(2, 0xF3) is NOT_APPLICABLE
    assert r(1, 0x1FF93) is None          # DPL 0, every other bit set
    assert r(1, 0xF3) == "GUEST_ACTIVITY_STATE = 0x00000001: HLT needs SS.DPL = 0 (GUEST_SS_AR_BYTES DPL = 3)"
    assert r(1, 0xB3) == "GUEST_ACTIVITY_STATE = 0x00000001: HLT needs SS.DPL = 0 (GUEST_SS_AR_BYTES DPL = 1)"


def test_sti_or_movss_blocking_needs_the_active_state():
    r = lambda i, a: run("guest.activity.blocking_needs_active", GUEST_INTERRUPTIBILITY_INFO=i, GUEST_ACTIVITY_STATE=a)
    assert r(0x1C, 1) is NOT_APPLICABLE
    assert r(1, 0) is None
    assert r(2, 1) == ("GUEST_ACTIVITY_STATE = 0x00000001: must be 0 (active) while "
                       "GUEST_INTERRUPTIBILITY_INFO = 0x00000002 shows STI/MOV-SS blocking")
    assert r(1, 3) == ("GUEST_ACTIVITY_STATE = 0x00000003: must be 0 (active) while "
                       "GUEST_INTERRUPTIBILITY_INFO = 0x00000001 shows STI/MOV-SS blocking")


# event types (Table 25-17): 0 external interrupt, 2 NMI, 3 hardware exception, 4 software interrupt,
# 5 privileged software exception, 6 software exception, 7 other event (vector 0: pending MTF)
HLT_OK = [(0, 0x20), (2, 2), (3, 1), (3, 18), (7, 0)]
HLT_BAD = [(3, 13), (3, 2), (3, 17), (3, 19), (4, 1), (5, 1), (6, 18), (7, 1), (1, 0)]
SHUTDOWN_OK = [(2, 2), (3, 18)]
SHUTDOWN_BAD = [(0, 0x20), (3, 1), (3, 13), (7, 0), (6, 18)]


@pytest.mark.parametrize("rule,a,name,what,ok,bad", [
    ("guest.activity.inject_hlt", 1, "HLT", "external interrupts, NMIs, #DB, #MC and pending MTF", HLT_OK, HLT_BAD),
    ("guest.activity.inject_shutdown", 2, "shutdown", "NMIs and #MC", SHUTDOWN_OK, SHUTDOWN_BAD),
    ("guest.activity.inject_wait_sipi", 3, "wait-for-SIPI", "nothing", [], HLT_OK + HLT_BAD)])
def test_what_may_be_injected_in_each_activity_state(rule, a, name, what, ok, bad):
    c = checks()[rule]
    assert (c.group, c.sdm, c.fields, c.qualification) == ("guest", "27.3.1.5", (AS, II), 0)
    assert c.explain == "In the %s activity state, only %s may be injected." % (name, what)
    for t, v in ok:
        assert c.test(state(GUEST_ACTIVITY_STATE=a, VM_ENTRY_INTR_INFO_FIELD=inj(t, v, 0x800))) is None, (t, v)
    for t, v in bad:
        info = inj(t, v, 0x800)
        assert c.test(state(GUEST_ACTIVITY_STATE=a, VM_ENTRY_INTR_INFO_FIELD=info)) == (
            "VM_ENTRY_INTR_INFO_FIELD = 0x%08x: event type %d vector %d cannot be injected into the %s state (%s)"
            % (info, t, v, name, what)), (t, v)
    other = 0 if a != 0 else 1
    assert c.test(state(GUEST_ACTIVITY_STATE=other, VM_ENTRY_INTR_INFO_FIELD=inj(3, 13))) is NOT_APPLICABLE
    assert c.test(state(GUEST_ACTIVITY_STATE=a, VM_ENTRY_INTR_INFO_FIELD=0x7FFFFB0D)) is NOT_APPLICABLE


def test_inject_rules_stand_in_the_table_in_order():
    ids = list(checks())
    i = ids.index("guest.activity.inject_hlt")
    assert ids[i - 1:i + 4] == ["guest.activity.blocking_needs_active", "guest.activity.inject_hlt",
                                "guest.activity.inject_shutdown", "guest.activity.inject_wait_sipi",
                                "guest.activity.smm_not_wait_sipi"]


def test_injected_vector_and_type_are_read_from_their_bits():
    # vector 7:0 and type 10:8 next to the error-code bit 11 and bits 30:12 (Table 25-17)
    c = checks()["guest.activity.inject_hlt"]
    info = (1 << 31) | 0x7FFFF000 | (3 << 8) | 0xFF
    assert c.test(state(GUEST_ACTIVITY_STATE=1, VM_ENTRY_INTR_INFO_FIELD=info)) == (
        "VM_ENTRY_INTR_INFO_FIELD = 0xfffff3ff: event type 3 vector 255 cannot be injected into the HLT state "
        "(external interrupts, NMIs, #DB, #MC and pending MTF)")
    info = (1 << 31) | (6 << 8) | 0x12
    assert c.test(state(GUEST_ACTIVITY_STATE=1, VM_ENTRY_INTR_INFO_FIELD=info)).startswith(
        "VM_ENTRY_INTR_INFO_FIELD = 0x80000612: event type 6 vector 18 ")


def test_entry_to_smm_forbids_wait_for_sipi():
    r = lambda e, a: run("guest.activity.smm_not_wait_sipi", VM_ENTRY_CONTROLS=e, GUEST_ACTIVITY_STATE=a)
    assert r(0xFFFFFBFF, 3) is NOT_APPLICABLE
    assert r(ENTRY_SMM, 2) is None
    assert r(ENTRY_SMM, 3) == "GUEST_ACTIVITY_STATE = 0x00000003: wait-for-SIPI is not allowed with ENTRY_TO_SMM"


# -- 27.3.1.5 interruptibility state ----------------------------------------------------------------
def test_interruptibility_reserved_bits():
    r = lambda i: run("guest.interruptibility.reserved", GUEST_INTERRUPTIBILITY_INFO=i)
    assert r(0x1F) is None
    assert r(0x20) == "GUEST_INTERRUPTIBILITY_INFO = 0x00000020: reserved bit 5 must be 0"
    assert r(0x8000001F) == "GUEST_INTERRUPTIBILITY_INFO = 0x8000001f: reserved bit 31 must be 0"


def test_sti_and_movss_not_both():
    r = lambda i: run("guest.interruptibility.sti_and_movss", GUEST_INTERRUPTIBILITY_INFO=i)
    assert (r(1), r(2), r(0x1D), r(0x1E)) == (None, None, None, None)
    assert r(3) == "GUEST_INTERRUPTIBILITY_INFO = 0x00000003: bits 0 (STI) and 1 (MOV SS) cannot both be 1"


def test_sti_blocking_needs_if():
    r = lambda i, rf: run("guest.interruptibility.sti_needs_if", GUEST_INTERRUPTIBILITY_INFO=i, GUEST_RFLAGS=rf)
    assert r(1, 0x202) is NOT_APPLICABLE
    assert r(0x1E, 2) is None
    assert r(1, 0xFFFFFFFFFFFFFDFF) == "GUEST_INTERRUPTIBILITY_INFO = 0x00000001: STI blocking (bit 0) needs RFLAGS.IF = 1"


def test_external_interrupt_needs_no_sti_or_movss_blocking():
    r = lambda info, i: run("guest.interruptibility.external_interrupt", VM_ENTRY_INTR_INFO_FIELD=info,
                            GUEST_INTERRUPTIBILITY_INFO=i)
    assert r(inj(2, 2), 3) is NOT_APPLICABLE
    assert r(0x7FFFFF20, 3) is NOT_APPLICABLE
    assert r(inj(0, 0x20), 0x1C) is None
    for i in (1, 2, 3):
        assert r(inj(0, 0x20), i) == (
            "GUEST_INTERRUPTIBILITY_INFO = 0x%08x: bits 1:0 must be 0 to inject an external interrupt" % i)


def test_nmi_injection_and_blocking():
    r = lambda rule, info, i, **kw: run("guest.interruptibility." + rule, VM_ENTRY_INTR_INFO_FIELD=info,
                                        GUEST_INTERRUPTIBILITY_INFO=i, **kw)
    assert r("nmi_movss", inj(0, 2), 2) is NOT_APPLICABLE
    assert r("nmi_movss", inj(2, 2) & 0x7FFFFFFF, 2) is NOT_APPLICABLE
    assert r("nmi_movss", inj(2, 2), 0x1D) is None
    assert r("nmi_movss", inj(2, 2), 2) == "GUEST_INTERRUPTIBILITY_INFO = 0x00000002: bit 1 (MOV SS) must be 0 to inject an NMI"
    assert r("nmi_sti", inj(3, 2), 1) is NOT_APPLICABLE
    assert r("nmi_sti", inj(2, 2) & 0x7FFFFFFF, 1) is NOT_APPLICABLE
    assert r("nmi_sti", inj(2, 2), 0x1E) is None
    assert r("nmi_sti", inj(2, 2), 1) == "GUEST_INTERRUPTIBILITY_INFO = 0x00000001: bit 0 (STI) must be 0 to inject an NMI"
    assert checks()["guest.interruptibility.nmi_sti"].qualification == 3
    vnmi = dict(PIN_BASED_VM_EXEC_CONTROL=1 << 5)
    assert r("virtual_nmi", inj(2, 2), 8, PIN_BASED_VM_EXEC_CONTROL=0xFFFFFFDF) is NOT_APPLICABLE
    assert r("virtual_nmi", inj(3, 2), 8, **vnmi) is NOT_APPLICABLE
    assert r("virtual_nmi", inj(2, 2) & 0x7FFFFFFF, 8, **vnmi) is NOT_APPLICABLE
    assert r("virtual_nmi", inj(2, 2), 0x17, **vnmi) is None
    assert r("virtual_nmi", inj(2, 2), 8, **vnmi) == (
        "GUEST_INTERRUPTIBILITY_INFO = 0x00000008: bit 3 (NMI blocking) must be 0 to inject a virtual NMI")


def test_smi_blocking():
    r = lambda rule, i, **kw: run("guest.interruptibility." + rule, GUEST_INTERRUPTIBILITY_INFO=i, **kw)
    assert r("smi_outside_smm", 4, in_smm=True) is NOT_APPLICABLE
    assert r("smi_outside_smm", 0x1B) is None
    assert r("smi_outside_smm", 4) == "GUEST_INTERRUPTIBILITY_INFO = 0x00000004: bit 2 (SMI blocking) must be 0 outside SMM"
    assert r("smi_entry_to_smm", 0, VM_ENTRY_CONTROLS=0xFFFFFBFF) is NOT_APPLICABLE
    assert r("smi_entry_to_smm", 4, VM_ENTRY_CONTROLS=ENTRY_SMM) is None
    assert r("smi_entry_to_smm", 0x1B, VM_ENTRY_CONTROLS=ENTRY_SMM) == (
        "GUEST_INTERRUPTIBILITY_INFO = 0x0000001b: bit 2 must be 1 with ENTRY_TO_SMM")


def test_enclave_interruption():
    r = lambda rule, i, **kw: run("guest.interruptibility." + rule, GUEST_INTERRUPTIBILITY_INFO=i, **kw)
    assert r("enclave_movss", 0xF) is NOT_APPLICABLE
    assert r("enclave_movss", 0x1D) is None
    assert r("enclave_movss", 0x12) == (
        "GUEST_INTERRUPTIBILITY_INFO = 0x00000012: bit 1 must be 0 when bit 4 (enclave interruption) is 1")
    assert r("enclave_sgx", 0xF, sgx=False) is NOT_APPLICABLE
    n = r("enclave_sgx", 0x10)
    assert isinstance(n, NotChecked) and (n.why, n.warning) == ("needs CPUID leaf 7 (SGX support)", "")
    assert r("enclave_sgx", 0x10, sgx=True) is None
    assert r("enclave_sgx", 0x10, sgx=False) == (
        "GUEST_INTERRUPTIBILITY_INFO = 0x00000010: bit 4 (enclave interruption) needs SGX, which the processor lacks")


# -- 27.3.1.5 pending debug exceptions ----------------------------------------------------------------
@pytest.mark.parametrize("pd,bits", [(0x500F, None), (0x10, "bit 4"), (0x800, "bit 11"), (0x2000, "bit 13"),
                                     (0x8000, "bit 15"), (1 << 16, "bit 16"), (1 << 63, "bit 63"),
                                     (0xFFFFFFFFFFFFFFFF, "bits " + ", ".join(str(b) for b in list(range(63, 14, -1)) + [13] + list(range(11, 3, -1))))])
def test_pending_debug_reserved_bits(pd, bits):
    got = run("guest.pending_dbg.reserved", GUEST_PENDING_DBG_EXCEPTIONS=pd)
    assert got == (None if bits is None else "GUEST_PENDING_DBG_EXCEPTIONS = 0x%016x: reserved %s must be 0" % (pd, bits))


BS = 1 << 14
SET_MSG = "GUEST_PENDING_DBG_EXCEPTIONS = 0x%016x: BS (bit 14) must be 1 (TF = 1, BTF = 0, interrupts blocked)"
CLEAR_MSG = "GUEST_PENDING_DBG_EXCEPTIONS = 0x%016x: BS (bit 14) must be 0 (no single-step pending)"


@pytest.mark.parametrize("i,a,tf,btf,applies,pending", [
    (1, 0, True, False, True, True), (2, 0, True, False, True, True), (0, 1, True, False, True, True),
    (0x1C, 0, True, False, False, True), (0, 2, True, False, False, True), (0, 3, True, False, False, True),
    (1, 0, False, False, True, False), (1, 0, True, True, True, False), (0, 1, False, True, True, False),
    (0, 0, False, False, False, False)])
def test_single_step_bs_bit(i, a, tf, btf, applies, pending):
    rf = 0x102 if tf else 0xFFFFFEFF
    dbg = 0xFFFFFFFFFFFFFFFF if btf else 0xFFFFFFFFFFFFFFFD
    kw = dict(GUEST_INTERRUPTIBILITY_INFO=i, GUEST_ACTIVITY_STATE=a, GUEST_RFLAGS=rf, GUEST_IA32_DEBUGCTL=dbg)
    for pd in (BS | 0xF, 0xF):
        got_set = run("guest.pending_dbg.bs_set", GUEST_PENDING_DBG_EXCEPTIONS=pd, **kw)
        got_clear = run("guest.pending_dbg.bs_clear", GUEST_PENDING_DBG_EXCEPTIONS=pd, **kw)
        if not applies:
            assert (got_set, got_clear) == (NOT_APPLICABLE, NOT_APPLICABLE)
        elif pending:
            assert got_clear is NOT_APPLICABLE
            assert got_set == (None if pd & BS else SET_MSG % pd)
        else:
            assert got_set is NOT_APPLICABLE
            assert got_clear == (CLEAR_MSG % pd if pd & BS else None)


# -- 27.3.1.5 VMCS link pointer --------------------------------------------------------------------------
def test_link_pointer_rules_skip_the_invalid_pointer():
    c = checks()
    s = state(VMCS_LINK_POINTER=0xFFFFFFFFFFFFFFFF, maxphyaddr=40, read_physical=lambda a, n: None, vmcs_address=0)
    for rule in ("aligned", "width", "revision", "not_current"):
        assert c["guest.link." + rule].test(s) is NOT_APPLICABLE
        assert c["guest.link." + rule].qualification == 4
    assert [k for k in c if k.startswith("guest.link.")] == [
        "guest.link.aligned", "guest.link.width", "guest.link.revision", "guest.link.not_current"]


def test_link_pointer_alignment_and_width():
    r = lambda rule, lp: run("guest.link." + rule, VMCS_LINK_POINTER=lp, maxphyaddr=40)
    assert r("aligned", 0xFFFFFFFFFFFFF000) is None
    assert r("aligned", 0x1001) == "VMCS_LINK_POINTER = 0x0000000000001001: must be FFFFFFFF_FFFFFFFF or 4-KByte aligned"
    assert r("aligned", 0x1800) == "VMCS_LINK_POINTER = 0x0000000000001800: must be FFFFFFFF_FFFFFFFF or 4-KByte aligned"
    assert r("width", 0xFFFFFFF000) is None
    assert r("width", 1 << 40) == "VMCS_LINK_POINTER = 0x0000010000000000: beyond the physical-address width (40 bits)"
    assert r("width", 0xFFFFFFFFFFFFFFFE) == "VMCS_LINK_POINTER = 0xfffffffffffffffe: beyond the physical-address width (40 bits)"


WARN = ("VMCS_LINK_POINTER = 0x%016x with VMCS shadowing off almost always fails (exit qualification 4): write "
        "0xffffffffffffffff unless you use a shadow VMCS")


def _memory(pages):
    def read(address, size):
        for base, data in pages.items():
            if base <= address and address + size <= base + len(data):
                return data[address - base:address - base + size]
        return None
    return read


def test_link_revision_without_memory():
    r = lambda lp, **kw: run("guest.link.revision", {0x480: BASIC}, VMCS_LINK_POINTER=lp, **kw)
    n = r(0)
    assert isinstance(n, NotChecked)
    assert n.why == ("needs memory: the first 4 bytes of the VMCS at the link pointer (give an image, a dump or a "
                     "live target)")
    assert n.warning == WARN % 0
    n = r(0x2000, CPU_BASED_VM_EXEC_CONTROL=ACT2, SECONDARY_VM_EXEC_CONTROL=SHADOWING)
    assert (n.warning, n.why[:13]) == ("", "needs memory:")
    n = r(0x2000, CPU_BASED_VM_EXEC_CONTROL=0, SECONDARY_VM_EXEC_CONTROL=SHADOWING)   # shadowing not active
    assert n.warning == WARN % 0x2000
    n = r(0x3000, read_physical=_memory({0x1000: bytes(4096)}))
    assert isinstance(n, NotChecked)
    assert (n.why, n.warning) == ("needs memory: physical 0x3000 (the link pointer) is not in the target", WARN % 0x3000)
    n = r(0x3000, read_physical=_memory({}), CPU_BASED_VM_EXEC_CONTROL=ACT2, SECONDARY_VM_EXEC_CONTROL=SHADOWING)
    assert (n.why, n.warning) == ("needs memory: physical 0x3000 (the link pointer) is not in the target", "")


@pytest.mark.parametrize("rev,shadow,want", [
    (4, False, None),
    (0x80000004, True, None),
    (4, True, "the linked VMCS must be a shadow VMCS (bit 31 of its revision dword = 0x00000004) with VMCS shadowing"),
    (5, True, "the linked VMCS must be a shadow VMCS (bit 31 of its revision dword = 0x00000005) with VMCS shadowing"),
    (5, False, "the linked VMCS has revision 0x5, the processor's is 0x4"),
    (0x80000005, True, "the linked VMCS has revision 0x5, the processor's is 0x4"),
    (0x7FFFFFFF, False, "the linked VMCS has revision 0x7fffffff, the processor's is 0x4"),
    (0x80000004, False, "the linked VMCS is a shadow VMCS but VMCS shadowing is off")])
def test_link_revision_against_the_processor(rev, shadow, want):
    page = struct.pack("<I", rev) + b"\xAA" * 4092
    kw = dict(CPU_BASED_VM_EXEC_CONTROL=ACT2, SECONDARY_VM_EXEC_CONTROL=SHADOWING if shadow else 0xFFFFBFFF)
    got = run("guest.link.revision", {0x480: BASIC}, VMCS_LINK_POINTER=0x5000, read_physical=_memory({0x5000: page}), **kw)
    assert got == (None if want is None else "VMCS_LINK_POINTER = 0x0000000000005000: " + want)


def test_link_not_current():
    r = lambda lp, **kw: run("guest.link.not_current", VMCS_LINK_POINTER=lp, **kw)
    n = r(0x5000)
    assert isinstance(n, NotChecked)
    assert (n.why, n.warning) == ("needs the address of the current VMCS (verify <n> on a target knows it)", "")
    assert r(0x5000, vmcs_address=0x6000) is None
    assert r(0, vmcs_address=0) == "VMCS_LINK_POINTER = 0x0000000000000000: must not point at the current VMCS"
    assert r(0x5000, vmcs_address=0x5000) == "VMCS_LINK_POINTER = 0x0000000000005000: must not point at the current VMCS"


# -- 27.3.1.6 PDPTEs ----------------------------------------------------------------------------------------
PAE = dict(GUEST_CR0=0x80000001, GUEST_CR4=0x20, VM_ENTRY_CONTROLS=0)
WITH_EPT = dict(CPU_BASED_VM_EXEC_CONTROL=ACT2, SECONDARY_VM_EXEC_CONTROL=EPT)


@pytest.mark.parametrize("i", range(4))
def test_pdpte_fields_with_ept(i):
    name = "GUEST_PDPTR%d" % i
    r = lambda value, **kw: run("guest.pdpte%d.ept" % i, maxphyaddr=40, **dict(dict(PAE, **WITH_EPT), **kw, **{name: value}))
    c = checks()["guest.pdpte%d.ept" % i]
    assert (c.qualification, c.sdm) == (2, "27.3.1.6")
    assert r(0x1E6) is None                                   # not present: nothing else is checked
    assert r(0xFFFFFFF000 | 0xE19) is None                    # present, bits 0, 3, 4, 11:9 allowed (4.4.1)
    for bit in (1, 2, 5, 6, 7, 8):
        assert r(0x1001 | 1 << bit) == "%s = 0x%016x: a present PDPTE has reserved bit %d set" % (name, 0x1001 | 1 << bit, bit)
    assert r(0x1007) == "%s = 0x0000000000001007: a present PDPTE has reserved bits 2, 1 set" % name
    assert r(1 << 40 | 1) == "%s = 0x0000010000000001: a present PDPTE has bits beyond the physical-address width set" % name
    assert r(1 << 63 | 1) == "%s = 0x8000000000000001: a present PDPTE has bits beyond the physical-address width set" % name
    # PAE paging needs CR0.PG, CR4.PAE and a legacy guest; the field rule needs EPT
    assert r(0x1003, GUEST_CR0=0x7FFFFFFF) is NOT_APPLICABLE
    assert r(0x1003, GUEST_CR4=0xFFFFFFDF) is NOT_APPLICABLE
    assert r(0x1003, VM_ENTRY_CONTROLS=IA32E) is NOT_APPLICABLE
    assert r(0x1003, SECONDARY_VM_EXEC_CONTROL=0xFFFFFFFD) is NOT_APPLICABLE


def test_pdptes_from_memory_without_ept():
    cr3 = 0x12345FFF   # bits 4:0 ignored: the PDPT is at 0x12345FE0 (4.4.1)
    good = [0x1001, 0x2000 | 0x1E6, 0xFFFFFFF000 | 0xE19, 0]
    base = 0x12345FE0

    def r(entries, maxphyaddr=40, **kw):
        mem = _memory({base - 32: b"\xFF" * 32 + struct.pack("<4Q", *entries) + b"\xFF" * 32})
        return run("guest.pdpte.memory", maxphyaddr=maxphyaddr, read_physical=mem, GUEST_CR3=cr3, **dict(PAE, **kw))
    assert r(good) is None
    assert r(good[:2] + [0x1021, 0]) == ("PDPTE2 at 0x12345ff0 = 0x0000000000001021 (from GUEST_CR3): a present entry "
                                         "has reserved bit 5 set")
    assert r([0x1003, 0x1021, 0, 0]).startswith("PDPTE0 at 0x12345fe0 = 0x0000000000001003 (from GUEST_CR3): ")
    assert r([0, 0, 0, 1 << 40 | 1]) == ("PDPTE3 at 0x12345ff8 = 0x0000010000000001 (from GUEST_CR3): a present entry "
                                         "has bits beyond the physical-address width set")
    assert r([0, 0, 0, 1 << 40 | 1], maxphyaddr=41) is None
    assert r([1 << 63 | 1, 0, 0, 0]) == ("PDPTE0 at 0x12345fe0 = 0x8000000000000001 (from GUEST_CR3): a present entry "
                                         "has bits beyond the physical-address width set")   # no XD bit in a PDPTE
    assert r([0x1003] * 4, **WITH_EPT) is NOT_APPLICABLE
    assert r([0x1003] * 4, GUEST_CR0=1) is NOT_APPLICABLE
    assert r([0x1003] * 4, GUEST_CR4=0) is NOT_APPLICABLE
    assert r([0x1003] * 4, VM_ENTRY_CONTROLS=IA32E) is NOT_APPLICABLE
    n = run("guest.pdpte.memory", GUEST_CR3=cr3, **PAE)
    assert isinstance(n, NotChecked) and (n.why, n.warning) == ("needs guest memory at CR3 to read the PDPTEs", "")
    n = run("guest.pdpte.memory", GUEST_CR3=cr3, read_physical=_memory({base: bytes(31)}), **PAE)
    assert isinstance(n, NotChecked) and n.why == "the PDPT at 0x12345fe0 is not readable"
    assert run("guest.pdpte.memory", GUEST_CR3=0xFFFFFFFF00001000, read_physical=_memory({0x1000: bytes(32)}), **PAE) is None
    c = checks()["guest.pdpte.memory"]
    assert (c.qualification, c.sdm, c.fields) == (2, "27.3.1.6", ("GUEST_CR3", "GUEST_CR0", "GUEST_CR4"))


def test_table_order_and_qualifications():
    c = checks()
    assert list(c)[:6] == ["guest.rip.high", "guest.rip.canonical", "guest.rflags.reserved", "guest.rflags.bit1",
                           "guest.rflags.vm", "guest.rflags.if_for_interrupt"]
    assert list(c)[-5:] == ["guest.pdpte0.ept", "guest.pdpte1.ept", "guest.pdpte2.ept", "guest.pdpte3.ept",
                            "guest.pdpte.memory"]
    assert {k: v.qualification for k, v in c.items() if v.qualification} == dict(
        [("guest.interruptibility.nmi_sti", 3)] + [("guest.link." + r, 4) for r in ("aligned", "width", "revision", "not_current")]
        + [("guest.pdpte%d.ept" % i, 2) for i in range(4)] + [("guest.pdpte.memory", 2)])
