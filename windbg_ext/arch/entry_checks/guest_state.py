"""Guest-state checks on RIP and RFLAGS (SDM Vol. 3, 27.3.1.4), non-register
state (27.3.1.5: activity state, interruptibility state, pending debug
exceptions, VMCS link pointer) and the PAE PDPTEs (27.3.1.6).

Exit qualification on failure (SDM 28.2.1, 'VM-entry failure' table): 0 by
default, 2 for PDPTE problems, 3 for NMI injection into STI blocking, 4 for
an invalid VMCS link pointer."""
from __future__ import annotations

import struct

from windbg_ext.arch import capabilities as cm
from windbg_ext.arch.entry_checks.model import (INVALID_LINK_POINTER, NOT_APPLICABLE, NotChecked, Registry, bits_text,
                                                hexv)
from windbg_ext.arch.registers import decode_access_rights

R = Registry("guest")
RIPF, NONREG, PDPTE = "27.3.1.4", "27.3.1.5", "27.3.1.6"
QUAL_PDPTE, QUAL_NMI_STI, QUAL_LINK = 2, 3, 4
RFLAGS_RESERVED = ~((1 << 22) - 1) & 0xFFFFFFFFFFFFFFFF | (1 << 15) | (1 << 5) | (1 << 3)
RF_TF, RF_IF, RF_VM = 1 << 8, 1 << 9, 1 << 17
ACTIVE, HLT, SHUTDOWN, WAIT_SIPI = 0, 1, 2, 3
ACTIVITY_NAMES = {ACTIVE: "active", HLT: "HLT", SHUTDOWN: "shutdown", WAIT_SIPI: "wait-for-SIPI"}
BLOCK_STI, BLOCK_MOVSS, BLOCK_SMI, BLOCK_NMI, ENCLAVE = 1, 2, 4, 8, 16
PENDING_DBG_RESERVED = 0xFFFFFFFFFFFF0000 | (1 << 15) | (1 << 13) | 0xFF0  # bit 16 (RTM) treated as reserved
BS = 1 << 14
II = "VM_ENTRY_INTR_INFO_FIELD"
IS, AS = "GUEST_INTERRUPTIBILITY_INFO", "GUEST_ACTIVITY_STATE"


def _cs(s):
    return decode_access_rights(s.f("GUEST_CS_AR_BYTES"))


def _injecting(s):
    """(type, vector) of the event being injected, or None."""
    info = s.f(II)
    if not info >> 31:
        return None
    return (info >> 8) & 7, info & 0xFF


# -- 27.3.1.4 RIP and RFLAGS -------------------------------------------------------
@R.rule("guest.rip.high", RIPF, ["GUEST_RIP", "VM_ENTRY_CONTROLS", "GUEST_CS_AR_BYTES"],
        "If 'IA-32e mode guest' is 0 or CS.L is 0, bits 63:32 of the guest RIP must be 0.")
def _rip_high(s):
    if s.ia32e_guest and _cs(s)["l"]:
        return NOT_APPLICABLE
    return "%s: bits 63:32 must be 0 outside 64-bit mode" % hexv(s, "GUEST_RIP") if s.f("GUEST_RIP") >> 32 else None


@R.rule("guest.rip.canonical", RIPF, ["GUEST_RIP", "VM_ENTRY_CONTROLS", "GUEST_CS_AR_BYTES"],
        "If 'IA-32e mode guest' is 1 and CS.L is 1, bits 63:N of the guest RIP must be identical "
        "(N = the processor's linear-address width).")
def _rip_canonical(s):
    # SDM 27.3.1.4 says "bits 63:N must be identical" where the processor supports N < 64
    # linear-address bits: N is the processor's width (48, or 57 with 5-level paging support),
    # not the guest's CR4.LA57, and bit N-1 is not part of it (unlike a canonical address,
    # Vol. 1 3.3.7.1): 0x0000800000000000 passes with N = 48.
    if not (s.ia32e_guest and _cs(s)["l"]):
        return NOT_APPLICABLE
    n = s.linear_address_bits
    if n >= 64:
        return None
    top = s.f("GUEST_RIP") >> n
    if top in (0, (1 << (64 - n)) - 1):
        return None
    return "%s: bits 63:%d must be identical (a processor with %d linear-address bits)" % (
        hexv(s, "GUEST_RIP"), n, n)


@R.rule("guest.rflags.reserved", RIPF, ["GUEST_RFLAGS"], "Guest RFLAGS bits 63:22, 15, 5 and 3 are reserved and must be 0.")
def _rflags_reserved(s):
    bad = s.f("GUEST_RFLAGS") & RFLAGS_RESERVED
    return "%s: reserved %s must be 0" % (hexv(s, "GUEST_RFLAGS"), bits_text(bad)) if bad else None


@R.rule("guest.rflags.bit1", RIPF, ["GUEST_RFLAGS"], "Guest RFLAGS bit 1 must be 1.")
def _rflags_bit1(s):
    return None if s.f("GUEST_RFLAGS") & 2 else "%s: bit 1 is reserved and must be 1" % hexv(s, "GUEST_RFLAGS")


@R.rule("guest.rflags.vm", RIPF, ["GUEST_RFLAGS", "VM_ENTRY_CONTROLS", "GUEST_CR0"],
        "If 'IA-32e mode guest' is 1 or guest CR0.PE is 0, RFLAGS.VM (bit 17) must be 0.")
def _rflags_vm(s):
    if not (s.ia32e_guest or not s.f("GUEST_CR0") & 1):
        return NOT_APPLICABLE
    if s.f("GUEST_RFLAGS") & RF_VM:
        return "%s: VM (bit 17) must be 0 %s" % (hexv(s, "GUEST_RFLAGS"), "in IA-32e mode" if s.ia32e_guest else "when CR0.PE = 0")
    return None


@R.rule("guest.rflags.if_for_interrupt", RIPF, ["GUEST_RFLAGS", II],
        "If an external interrupt is being injected, RFLAGS.IF (bit 9) must be 1.")
def _rflags_if(s):
    inj = _injecting(s)
    if inj is None or inj[0] != 0:
        return NOT_APPLICABLE
    return None if s.f("GUEST_RFLAGS") & RF_IF else "%s: IF (bit 9) must be 1 to inject an external interrupt" % hexv(s, "GUEST_RFLAGS")


# -- 27.3.1.5 activity state -------------------------------------------------------
@R.rule("guest.activity.supported", NONREG, [AS],
        "The activity state must be 0-3 and, if not active, one IA32_VMX_MISC bits 8:6 report as supported.")
def _activity_supported(s):
    a = s.f(AS)
    misc = s.cap(cm.IA32_VMX_MISC)
    if a > WAIT_SIPI or (a != ACTIVE and not (misc >> (5 + a)) & 1):
        return "%s: activity state %d is not supported (IA32_VMX_MISC bits 8:6 = %s)" % (
            hexv(s, AS), a, bin((misc >> 6) & 7))
    return None


@R.rule("guest.activity.hlt_needs_cpl0", NONREG, [AS, "GUEST_SS_AR_BYTES"], "The activity state must not be HLT if SS.DPL is not 0.")
def _activity_hlt(s):
    if s.f(AS) != HLT:
        return NOT_APPLICABLE
    dpl = decode_access_rights(s.f("GUEST_SS_AR_BYTES"))["dpl"]
    return "%s: HLT needs SS.DPL = 0 (GUEST_SS_AR_BYTES DPL = %d)" % (hexv(s, AS), dpl) if dpl else None


@R.rule("guest.activity.blocking_needs_active", NONREG, [AS, IS],
        "If the interruptibility state shows blocking by STI or MOV SS, the activity state must be active.")
def _activity_blocking(s):
    if not s.f(IS) & (BLOCK_STI | BLOCK_MOVSS):
        return NOT_APPLICABLE
    a = s.f(AS)
    return "%s: must be 0 (active) while %s shows STI/MOV-SS blocking" % (hexv(s, AS), hexv(s, IS)) if a != ACTIVE else None


def _inject_rule(id: str, state: int, allowed, what: str) -> None:
    def test(s):
        inj = _injecting(s)
        if inj is None or s.f(AS) != state:
            return NOT_APPLICABLE
        if not allowed(*inj):
            return "%s: event type %d vector %d cannot be injected into the %s state (%s)" % (
                hexv(s, II), inj[0], inj[1], ACTIVITY_NAMES[state], what)
        return None
    R.add(id, NONREG, [AS, II], "In the %s activity state, only %s may be injected." % (ACTIVITY_NAMES[state], what), test)


_inject_rule("guest.activity.inject_hlt", HLT,
             lambda t, v: t in (0, 2) or (t == 3 and v in (1, 18)) or (t == 7 and v == 0),
             "external interrupts, NMIs, #DB, #MC and pending MTF")
_inject_rule("guest.activity.inject_shutdown", SHUTDOWN, lambda t, v: t == 2 or (t == 3 and v == 18), "NMIs and #MC")
_inject_rule("guest.activity.inject_wait_sipi", WAIT_SIPI, lambda t, v: False, "nothing")


@R.rule("guest.activity.smm_not_wait_sipi", NONREG, [AS, "VM_ENTRY_CONTROLS"],
        "If 'entry to SMM' is 1, the activity state must not be wait-for-SIPI.")
def _activity_smm(s):
    if not s.ctl("entry", "ENTRY_TO_SMM"):
        return NOT_APPLICABLE
    return "%s: wait-for-SIPI is not allowed with ENTRY_TO_SMM" % hexv(s, AS) if s.f(AS) == WAIT_SIPI else None


# -- 27.3.1.5 interruptibility state ------------------------------------------------
@R.rule("guest.interruptibility.reserved", NONREG, [IS], "Interruptibility-state bits 31:5 are reserved and must be 0.")
def _is_reserved(s):
    bad = s.f(IS) & ~0x1F
    return "%s: reserved %s must be 0" % (hexv(s, IS), bits_text(bad)) if bad else None


@R.rule("guest.interruptibility.sti_and_movss", NONREG, [IS], "Blocking by STI (bit 0) and by MOV SS (bit 1) must not both be 1.")
def _is_both(s):
    return "%s: bits 0 (STI) and 1 (MOV SS) cannot both be 1" % hexv(s, IS) if s.f(IS) & 3 == 3 else None


@R.rule("guest.interruptibility.sti_needs_if", NONREG, [IS, "GUEST_RFLAGS"], "If RFLAGS.IF is 0, blocking by STI (bit 0) must be 0.")
def _is_sti_if(s):
    if s.f("GUEST_RFLAGS") & RF_IF:
        return NOT_APPLICABLE
    return "%s: STI blocking (bit 0) needs RFLAGS.IF = 1" % hexv(s, IS) if s.f(IS) & BLOCK_STI else None


@R.rule("guest.interruptibility.external_interrupt", NONREG, [IS, II],
        "If an external interrupt is being injected, blocking by STI and by MOV SS (bits 1:0) must be 0.")
def _is_extint(s):
    inj = _injecting(s)
    if inj is None or inj[0] != 0:
        return NOT_APPLICABLE
    return "%s: bits 1:0 must be 0 to inject an external interrupt" % hexv(s, IS) if s.f(IS) & 3 else None


@R.rule("guest.interruptibility.nmi_movss", NONREG, [IS, II], "If an NMI is being injected, blocking by MOV SS (bit 1) must be 0.")
def _is_nmi_movss(s):
    inj = _injecting(s)
    if inj is None or inj[0] != 2:
        return NOT_APPLICABLE
    return "%s: bit 1 (MOV SS) must be 0 to inject an NMI" % hexv(s, IS) if s.f(IS) & BLOCK_MOVSS else None


@R.rule("guest.interruptibility.nmi_sti", NONREG, [IS, II],
        "If an NMI is being injected, blocking by STI (bit 0) must be 0 (exit qualification 3).", qualification=QUAL_NMI_STI)
def _is_nmi_sti(s):
    inj = _injecting(s)
    if inj is None or inj[0] != 2:
        return NOT_APPLICABLE
    return "%s: bit 0 (STI) must be 0 to inject an NMI" % hexv(s, IS) if s.f(IS) & BLOCK_STI else None


@R.rule("guest.interruptibility.smi_outside_smm", NONREG, [IS], "Outside SMM, blocking by SMI (bit 2) must be 0.")
def _is_smi(s):
    if s.in_smm:
        return NOT_APPLICABLE
    return "%s: bit 2 (SMI blocking) must be 0 outside SMM" % hexv(s, IS) if s.f(IS) & BLOCK_SMI else None


@R.rule("guest.interruptibility.smi_entry_to_smm", NONREG, [IS, "VM_ENTRY_CONTROLS"], "If 'entry to SMM' is 1, blocking by SMI (bit 2) must be 1.")
def _is_smm(s):
    if not s.ctl("entry", "ENTRY_TO_SMM"):
        return NOT_APPLICABLE
    return None if s.f(IS) & BLOCK_SMI else "%s: bit 2 must be 1 with ENTRY_TO_SMM" % hexv(s, IS)


@R.rule("guest.interruptibility.virtual_nmi", NONREG, [IS, II, "PIN_BASED_VM_EXEC_CONTROL"],
        "If 'virtual NMIs' is 1 and an NMI is being injected, blocking by NMI (bit 3) must be 0.")
def _is_vnmi(s):
    inj = _injecting(s)
    if inj is None or inj[0] != 2 or not s.ctl("pin", "VIRTUAL_NMIS"):
        return NOT_APPLICABLE
    return "%s: bit 3 (NMI blocking) must be 0 to inject a virtual NMI" % hexv(s, IS) if s.f(IS) & BLOCK_NMI else None


@R.rule("guest.interruptibility.enclave_movss", NONREG, [IS], "If bit 4 (enclave interruption) is 1, blocking by MOV SS (bit 1) must be 0.")
def _is_enclave(s):
    if not s.f(IS) & ENCLAVE:
        return NOT_APPLICABLE
    return "%s: bit 1 must be 0 when bit 4 (enclave interruption) is 1" % hexv(s, IS) if s.f(IS) & BLOCK_MOVSS else None


@R.rule("guest.interruptibility.enclave_sgx", NONREG, [IS],
        "Bit 4 (enclave interruption) may be 1 only if the processor supports SGX (CPUID.(EAX=07H,ECX=0):EBX[2]).")
def _is_enclave_sgx(s):
    if not s.f(IS) & ENCLAVE:
        return NOT_APPLICABLE
    if s.sgx is None:
        return NotChecked("needs CPUID leaf 7 (SGX support)")
    return None if s.sgx else "%s: bit 4 (enclave interruption) needs SGX, which the processor lacks" % hexv(s, IS)


# -- 27.3.1.5 pending debug exceptions ----------------------------------------------
PD = "GUEST_PENDING_DBG_EXCEPTIONS"


@R.rule("guest.pending_dbg.reserved", NONREG, [PD], "Pending-debug-exceptions bits 11:4, 13, 15 and 63:16 must be 0.")
def _pd_reserved(s):
    bad = s.f(PD) & PENDING_DBG_RESERVED
    return "%s: reserved %s must be 0" % (hexv(s, PD), bits_text(bad)) if bad else None


def _bs_applies(s) -> bool:
    return bool(s.f(IS) & (BLOCK_STI | BLOCK_MOVSS)) or s.f(AS) == HLT


def _tf_no_btf(s) -> bool:
    return bool(s.f("GUEST_RFLAGS") & RF_TF) and not (s.f("GUEST_IA32_DEBUGCTL") >> 1) & 1


@R.rule("guest.pending_dbg.bs_set", NONREG, [PD, IS, AS, "GUEST_RFLAGS", "GUEST_IA32_DEBUGCTL"],
        "With STI/MOV-SS blocking or the HLT state, BS (bit 14) must be 1 if RFLAGS.TF = 1 and DEBUGCTL.BTF = 0 (a pending single-step).")
def _pd_bs_set(s):
    if not _bs_applies(s) or not _tf_no_btf(s):
        return NOT_APPLICABLE
    return None if s.f(PD) & BS else "%s: BS (bit 14) must be 1 (TF = 1, BTF = 0, interrupts blocked)" % hexv(s, PD)


@R.rule("guest.pending_dbg.bs_clear", NONREG, [PD, IS, AS, "GUEST_RFLAGS", "GUEST_IA32_DEBUGCTL"],
        "With STI/MOV-SS blocking or the HLT state, BS (bit 14) must be 0 if RFLAGS.TF = 0 or DEBUGCTL.BTF = 1.")
def _pd_bs_clear(s):
    if not _bs_applies(s) or _tf_no_btf(s):
        return NOT_APPLICABLE
    return "%s: BS (bit 14) must be 0 (no single-step pending)" % hexv(s, PD) if s.f(PD) & BS else None


# -- 27.3.1.5 VMCS link pointer ------------------------------------------------------
LP = "VMCS_LINK_POINTER"


def _link(fn):
    def test(s):
        if s.f(LP) == INVALID_LINK_POINTER:
            return NOT_APPLICABLE
        return fn(s)
    return test


R.add("guest.link.aligned", NONREG, [LP], "A VMCS link pointer other than FFFFFFFF_FFFFFFFFH must be 4-KByte aligned (exit qualification 4).",
      _link(lambda s: "%s: must be FFFFFFFF_FFFFFFFF or 4-KByte aligned" % hexv(s, LP) if s.f(LP) & 0xFFF else None),
      qualification=QUAL_LINK)
R.add("guest.link.width", NONREG, [LP],
      "A VMCS link pointer other than FFFFFFFF_FFFFFFFFH must be within the physical-address width (exit qualification 4).",
      _link(lambda s: None if s.phys_ok(s.f(LP)) else "%s: beyond the physical-address width (%d bits)" % (hexv(s, LP), s.maxphyaddr)),
      qualification=QUAL_LINK)


def _link_warning(s) -> str:
    """A link pointer other than ~0 without VMCS shadowing is the classic beginner bug (0 from a
    zeroed VMCS): the processor reads the page it names, which almost never holds its revision id."""
    if s.ctl("proc2", "VMCS_SHADOWING"):
        return ""
    return ("%s with VMCS shadowing off almost always fails (exit qualification 4): write "
            "0xffffffffffffffff unless you use a shadow VMCS" % hexv(s, LP))


def _link_revision(s):
    if s.read_physical is None:
        return NotChecked("needs memory: the first 4 bytes of the VMCS at the link pointer (give an image, a "
                          "dump or a live target)", _link_warning(s))
    data = s.read(s.f(LP), 4)
    if data is None:
        return NotChecked("needs memory: physical 0x%x (the link pointer) is not in the target" % s.f(LP),
                          _link_warning(s))
    rev = struct.unpack("<I", data)[0]
    want = s.cap(cm.IA32_VMX_BASIC) & 0x7FFFFFFF
    shadow = s.ctl("proc2", "VMCS_SHADOWING")
    if shadow and not rev >> 31:
        return "%s: the linked VMCS must be a shadow VMCS (bit 31 of its revision dword = 0x%08x) with VMCS shadowing" % (hexv(s, LP), rev)
    if rev & 0x7FFFFFFF != want:
        return "%s: the linked VMCS has revision 0x%x, the processor's is 0x%x" % (hexv(s, LP), rev & 0x7FFFFFFF, want)
    if not shadow and rev >> 31:
        return "%s: the linked VMCS is a shadow VMCS but VMCS shadowing is off" % hexv(s, LP)
    return None


R.add("guest.link.revision", NONREG, [LP, "SECONDARY_VM_EXEC_CONTROL"],
      "The VMCS the link pointer names must carry the processor's revision identifier, with the shadow bit iff 'VMCS shadowing' is 1.",
      _link(_link_revision), qualification=QUAL_LINK)


def _link_current(s):
    if s.vmcs_address is None:
        return NotChecked("needs the address of the current VMCS (verify <n> on a target knows it)")
    return "%s: must not point at the current VMCS" % hexv(s, LP) if s.f(LP) == s.vmcs_address else None


R.add("guest.link.not_current", NONREG, [LP], "Outside SMM, the VMCS link pointer must not be the current-VMCS pointer.",
      _link(_link_current), qualification=QUAL_LINK)


# -- 27.3.1.6 PDPTEs -------------------------------------------------------------------
PDPTE_RESERVED = 0x1E6  # bits 2:1 and 8:5 (SDM 4.4.1)


def _pae_paging(s) -> bool:
    """PAE paging after entry: CR0.PG = 1, CR4.PAE = 1, 'IA-32e mode guest' = 0."""
    return bool(s.f("GUEST_CR0") >> 31 & 1 and s.f("GUEST_CR4") >> 5 & 1 and not s.ia32e_guest)


def _pdpte_problem(s, value: int):
    if not value & 1:
        return None
    if value & PDPTE_RESERVED:
        return "reserved %s set" % bits_text(value & PDPTE_RESERVED)
    if not s.phys_ok(value):  # bits 63:MAXPHYADDR, bit 63 included: a PDPTE has no XD bit
        return "bits beyond the physical-address width set"
    return None


for _i in range(4):
    def _pdpte_field(s, i=_i):
        if not _pae_paging(s) or not s.ept:
            return NOT_APPLICABLE
        f = "GUEST_PDPTR%d" % i
        p = _pdpte_problem(s, s.f(f))
        return "%s: a present PDPTE has %s" % (hexv(s, f), p) if p else None
    R.add("guest.pdpte%d.ept" % _i, PDPTE, ["GUEST_CR0", "GUEST_CR4", "GUEST_PDPTR%d" % _i],
          "With EPT and PAE paging, present PDPTE%d (guest-state field) must not set reserved bits (2:1, 8:5, beyond MAXPHYADDR)." % _i,
          _pdpte_field, qualification=QUAL_PDPTE)


def _pdpte_memory(s):
    if not _pae_paging(s) or s.ept:
        return NOT_APPLICABLE
    if s.read_physical is None:
        return NotChecked("needs guest memory at CR3 to read the PDPTEs")
    base = s.f("GUEST_CR3") & 0xFFFFFFE0
    data = s.read(base, 32)
    if data is None:
        return NotChecked("the PDPT at 0x%x is not readable" % base)
    entries = struct.unpack("<4Q", data)
    for i, e in enumerate(entries):
        p = _pdpte_problem(s, e)
        if p:
            return "PDPTE%d at 0x%x = 0x%016x (from GUEST_CR3): a present entry has %s" % (i, base + 8 * i, e, p)
    return None


R.add("guest.pdpte.memory", PDPTE, ["GUEST_CR3", "GUEST_CR0", "GUEST_CR4"],
      "Without EPT and with PAE paging, the four PDPTEs that CR3 points at must not set reserved bits when present.",
      _pdpte_memory, qualification=QUAL_PDPTE)

CHECKS = tuple(R.checks)
