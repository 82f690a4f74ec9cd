"""Guest-state checks on control registers, debug registers and MSRs
(SDM Vol. 3, 27.3.1.1). Any guest-state failure: VM exit with basic reason
33 and bit 31 set (0x80000021, "VM-entry failure due to invalid guest
state", SDM 28.2.1 / App. C), exit qualification 0 unless stated."""
from __future__ import annotations

from windbg_ext.arch import capabilities as cm
from windbg_ext.arch.entry_checks.model import NOT_APPLICABLE, Registry, bits_text, canonical, hexv
from windbg_ext.arch.entry_checks.msr_rules import (cet_rules, efer_reserved, pat_problem, perf_global_reserved,
                                                    pkrs_reserved)

R = Registry("guest")
SDM = "27.3.1.1"
N = "VM_ENTRY_CONTROLS"
CR0_PE, CR0_PG = 1 << 0, 1 << 31
DEBUGCTL_DEFINED = 0x7FC3  # bits 0, 1, 6-14 (LBR, BTF, TR, BTS, BTINT, BTS_OFF_OS/USR, FREEZE_*, UNCORE_PMI; SDM 18.4.1)
RTIT_CTL_RESERVED = (1 << 18) | (1 << 23) | (0xF << 28) | (0xFF << 48) | (0x7F << 57)  # SDM 33.2.8.2


def _cr0_must_one(s) -> int:
    must1, _ = cm.fixed_bits(s.cap(cm.IA32_VMX_CR0_FIXED0), s.cap(cm.IA32_VMX_CR0_FIXED1))
    if s.unrestricted:  # unrestricted guest: PE and PG may be 0 (SDM 27.3.1.1)
        must1 &= ~(CR0_PE | CR0_PG)
    return must1


@R.rule("guest.cr0.fixed0", SDM, ["GUEST_CR0", "SECONDARY_VM_EXEC_CONTROL"],
        "Every bit set in IA32_VMX_CR0_FIXED0 must be 1 in guest CR0 (PE and PG excepted with 'unrestricted guest').")
def _cr0_f0(s):
    v, must1 = s.f("GUEST_CR0"), _cr0_must_one(s)
    if ~v & must1:
        return "%s: %s must be 1 (IA32_VMX_CR0_FIXED0 = 0x%x%s)" % (
            hexv(s, "GUEST_CR0"), bits_text(~v & must1), s.cap(cm.IA32_VMX_CR0_FIXED0),
            "" if s.unrestricted else "; PE/PG may be 0 only with 'unrestricted guest'")
    return None


def _fixed_rule(cr: str, must: int, explain: str) -> None:
    """guest.<cr>.fixed0 (must = 1: bits set in IA32_VMX_<cr>_FIXED0 must be 1) or
    guest.<cr>.fixed1 (must = 0: bits clear in IA32_VMX_<cr>_FIXED1 must be 0)."""
    field = "GUEST_" + cr
    fixed0, fixed1 = getattr(cm, "IA32_VMX_%s_FIXED0" % cr), getattr(cm, "IA32_VMX_%s_FIXED1" % cr)
    msr_name = "IA32_VMX_%s_FIXED%d" % (cr, 1 - must)
    msr = getattr(cm, msr_name)

    def test(s):
        must1, must0 = cm.fixed_bits(s.cap(fixed0), s.cap(fixed1))
        v = s.f(field)
        bad = ~v & must1 if must else v & must0
        if bad:
            return "%s: %s must be %d (%s = 0x%x)" % (hexv(s, field), bits_text(bad), must, msr_name, s.cap(msr))
        return None
    R.add("guest.%s.fixed%d" % (cr.lower(), 1 - must), SDM, [field], explain, test)


_fixed_rule("CR0", 0, "Every bit clear in IA32_VMX_CR0_FIXED1 must be 0 in guest CR0.")


@R.rule("guest.cr0.pg_needs_pe", SDM, ["GUEST_CR0"], "If guest CR0.PG (bit 31) is 1, CR0.PE (bit 0) must be 1.")
def _cr0_pgpe(s):
    v = s.f("GUEST_CR0")
    if v & CR0_PG and not v & CR0_PE:
        return "%s: PG = 1 needs PE = 1 (paging requires protected mode)" % hexv(s, "GUEST_CR0")
    return None


_fixed_rule("CR4", 1, "Every bit set in IA32_VMX_CR4_FIXED0 must be 1 in guest CR4 (VMXE, bit 13).")
_fixed_rule("CR4", 0, "Every bit clear in IA32_VMX_CR4_FIXED1 must be 0 in guest CR4.")


@R.rule("guest.cr4.cet_needs_wp", SDM, ["GUEST_CR0", "GUEST_CR4"], "If guest CR4.CET (bit 23) is 1, guest CR0.WP (bit 16) must be 1.")
def _cet_wp(s):
    if (s.f("GUEST_CR4") >> 23) & 1 and not (s.f("GUEST_CR0") >> 16) & 1:
        return "%s with CR4.CET = 1: CR0.WP (bit 16) must be 1" % hexv(s, "GUEST_CR0")
    return None


@R.rule("guest.debugctl.reserved", SDM, [N, "GUEST_IA32_DEBUGCTL"],
        "If 'load debug controls' is 1, reserved bits of the guest IA32_DEBUGCTL field (5:2, 63:15) must be 0.")
def _debugctl(s):
    if not s.ctl("entry", "LOAD_DEBUG_CONTROLS"):
        return NOT_APPLICABLE
    bad = s.f("GUEST_IA32_DEBUGCTL") & ~DEBUGCTL_DEFINED
    return "%s: reserved %s must be 0" % (hexv(s, "GUEST_IA32_DEBUGCTL"), bits_text(bad)) if bad else None


@R.rule("guest.ia32e.pg", SDM, [N, "GUEST_CR0"], "If 'IA-32e mode guest' is 1, guest CR0.PG (bit 31) must be 1.")
def _ia32e_pg(s):
    if not s.ia32e_guest:
        return NOT_APPLICABLE
    return None if s.f("GUEST_CR0") & CR0_PG else "%s: PG must be 1 for an IA-32e mode guest" % hexv(s, "GUEST_CR0")


@R.rule("guest.ia32e.pae", SDM, [N, "GUEST_CR4"], "If 'IA-32e mode guest' is 1, guest CR4.PAE (bit 5) must be 1.")
def _ia32e_pae(s):
    if not s.ia32e_guest:
        return NOT_APPLICABLE
    return None if (s.f("GUEST_CR4") >> 5) & 1 else "%s: PAE (bit 5) must be 1 for an IA-32e mode guest" % hexv(s, "GUEST_CR4")


@R.rule("guest.legacy.pcide", SDM, [N, "GUEST_CR4"], "If 'IA-32e mode guest' is 0, guest CR4.PCIDE (bit 17) must be 0.")
def _legacy_pcide(s):
    if s.ia32e_guest:
        return NOT_APPLICABLE
    return "%s: PCIDE (bit 17) must be 0 outside IA-32e mode" % hexv(s, "GUEST_CR4") if (s.f("GUEST_CR4") >> 17) & 1 else None


@R.rule("guest.cr3.width", SDM, ["GUEST_CR3"], "Guest CR3 bits beyond the physical-address width must be 0.")
def _cr3(s):
    if not s.phys_ok(s.f("GUEST_CR3")):
        return "%s: sets bits beyond the physical-address width (%d bits)" % (hexv(s, "GUEST_CR3"), s.maxphyaddr)
    return None


@R.rule("guest.dr7.high", SDM, [N, "GUEST_DR7"], "If 'load debug controls' is 1, bits 63:32 of guest DR7 must be 0.")
def _dr7(s):
    if not s.ctl("entry", "LOAD_DEBUG_CONTROLS"):
        return NOT_APPLICABLE
    return "%s: bits 63:32 must be 0" % hexv(s, "GUEST_DR7") if s.f("GUEST_DR7") >> 32 else None


for _f, _what in (("GUEST_SYSENTER_ESP", "IA32_SYSENTER_ESP"), ("GUEST_SYSENTER_EIP", "IA32_SYSENTER_EIP")):
    def _sysenter(s, _f=_f):
        return None if canonical(s.f(_f), s.guest_linear_bits()) else "%s: not canonical" % hexv(s, _f)
    R.add("guest.%s.canonical" % _f[6:].lower(), SDM, [_f], "The guest %s field must be canonical." % _what, _sysenter)

cet_rules(R, "guest", SDM, "GUEST_S_CET", "GUEST_SSP", "GUEST_INTR_SSP_TABLE",
          lambda s: s.ctl("entry", "LOAD_CET_STATE"), lambda s: s.ia32e_guest, lambda s: s.guest_linear_bits())


@R.rule("guest.perf_global_ctrl.reserved", SDM, [N, "GUEST_IA32_PERF_GLOBAL_CTRL"],
        "If 'load IA32_PERF_GLOBAL_CTRL' is 1, the guest IA32_PERF_GLOBAL_CTRL field must not set reserved bits.")
def _perf(s):
    if not s.ctl("entry", "LOAD_IA32_PERF_GLOBAL_CTRL"):
        return NOT_APPLICABLE
    bad = perf_global_reserved(s.f("GUEST_IA32_PERF_GLOBAL_CTRL"))
    return "%s: reserved %s must be 0" % (hexv(s, "GUEST_IA32_PERF_GLOBAL_CTRL"), bits_text(bad)) if bad else None


@R.rule("guest.pat.valid", SDM, [N, "GUEST_IA32_PAT"],
        "If 'load IA32_PAT' is 1, every byte of the guest IA32_PAT field must be a valid memory type (0, 1, 4, 5, 6 or 7).")
def _pat(s):
    if not s.ctl("entry", "LOAD_IA32_PAT"):
        return NOT_APPLICABLE
    p = pat_problem(s.f("GUEST_IA32_PAT"))
    return ("%s: %s" % (hexv(s, "GUEST_IA32_PAT"), p)) if p else None


@R.rule("guest.efer.reserved", SDM, [N, "GUEST_IA32_EFER"], "If 'load IA32_EFER' is 1, reserved bits of the guest IA32_EFER field must be 0.")
def _efer_res(s):
    if not s.ctl("entry", "LOAD_IA32_EFER"):
        return NOT_APPLICABLE
    bad = efer_reserved(s.f("GUEST_IA32_EFER"))
    return "%s: reserved %s must be 0" % (hexv(s, "GUEST_IA32_EFER"), bits_text(bad)) if bad else None


@R.rule("guest.efer.lma", SDM, [N, "GUEST_IA32_EFER"], "If 'load IA32_EFER' is 1, guest EFER.LMA (bit 10) must equal 'IA-32e mode guest'.")
def _efer_lma(s):
    if not s.ctl("entry", "LOAD_IA32_EFER"):
        return NOT_APPLICABLE
    lma = (s.f("GUEST_IA32_EFER") >> 10) & 1
    if lma != int(s.ia32e_guest):
        return "%s: LMA (bit 10) = %d must equal IA32E_MODE_GUEST = %d" % (hexv(s, "GUEST_IA32_EFER"), lma, int(s.ia32e_guest))
    return None


@R.rule("guest.efer.lme", SDM, [N, "GUEST_IA32_EFER", "GUEST_CR0"],
        "If 'load IA32_EFER' is 1 and guest CR0.PG is 1, guest EFER.LME (bit 8) must equal 'IA-32e mode guest'.")
def _efer_lme(s):
    if not s.ctl("entry", "LOAD_IA32_EFER") or not s.f("GUEST_CR0") & CR0_PG:
        return NOT_APPLICABLE
    lme = (s.f("GUEST_IA32_EFER") >> 8) & 1
    if lme != int(s.ia32e_guest):
        return "%s: LME (bit 8) = %d must equal IA32E_MODE_GUEST = %d when CR0.PG = 1" % (
            hexv(s, "GUEST_IA32_EFER"), lme, int(s.ia32e_guest))
    return None


@R.rule("guest.bndcfgs.reserved", SDM, [N, "GUEST_BNDCFGS"], "If 'load IA32_BNDCFGS' is 1, bits 11:2 of the guest IA32_BNDCFGS field must be 0.")
def _bnd_res(s):
    if not s.ctl("entry", "LOAD_IA32_BNDCFGS"):
        return NOT_APPLICABLE
    return "%s: bits 11:2 are reserved" % hexv(s, "GUEST_BNDCFGS") if s.f("GUEST_BNDCFGS") & 0xFFC else None


@R.rule("guest.bndcfgs.canonical", SDM, [N, "GUEST_BNDCFGS"], "If 'load IA32_BNDCFGS' is 1, the base in guest IA32_BNDCFGS (bits 63:12) must be canonical.")
def _bnd_can(s):
    if not s.ctl("entry", "LOAD_IA32_BNDCFGS"):
        return NOT_APPLICABLE
    base = s.f("GUEST_BNDCFGS") & ~0xFFF
    return None if canonical(base, s.guest_linear_bits()) else "%s: the bound-directory base (bits 63:12) is not canonical" % hexv(s, "GUEST_BNDCFGS")


@R.rule("guest.rtit_ctl.reserved", SDM, [N, "GUEST_IA32_RTIT_CTL"],
        "If 'load IA32_RTIT_CTL' is 1, reserved bits of the guest IA32_RTIT_CTL field (18, 23, 31:28, 55:48, 63:57) must be 0.")
def _rtit(s):
    if not s.ctl("entry", "LOAD_IA32_RTIT_CTL"):
        return NOT_APPLICABLE
    bad = s.f("GUEST_IA32_RTIT_CTL") & RTIT_CTL_RESERVED
    return "%s: reserved %s must be 0" % (hexv(s, "GUEST_IA32_RTIT_CTL"), bits_text(bad)) if bad else None


@R.rule("guest.pkrs.reserved", SDM, [N, "GUEST_IA32_PKRS"], "If 'load PKRS' is 1, bits 63:32 of the guest IA32_PKRS field must be 0.")
def _pkrs(s):
    if not s.ctl("entry", "LOAD_PKRS"):
        return NOT_APPLICABLE
    return "%s: bits 63:32 must be 0" % hexv(s, "GUEST_IA32_PKRS") if pkrs_reserved(s.f("GUEST_IA32_PKRS")) else None


CHECKS = tuple(R.checks)
