"""Checks on the host-state area (SDM Vol. 3, 27.2.2 control registers and
MSRs, 27.2.3 segment and descriptor-table registers, 27.2.4 address-space
size). Any failure: VMfailValid with VM-instruction error 8 ("VM entry with
invalid host-state field(s)", SDM 31.4)."""
from __future__ import annotations

from windbg_ext.arch import capabilities as cm
from windbg_ext.arch.entry_checks.model import NOT_APPLICABLE, Registry, bits_text, canonical, hexv
from windbg_ext.arch.entry_checks.msr_rules import (cet_rules, efer_reserved, pat_problem, perf_global_reserved,
                                                    pkrs_reserved)

R = Registry("host")
CRS, SEGS, SIZE = "27.2.2", "27.2.3", "27.2.4"
X = "VM_EXIT_CONTROLS"


def _fixed_rules(cr: str, fixed0: int, fixed1: int) -> None:
    field = "HOST_" + cr

    def must_one(s):
        must1, _ = cm.fixed_bits(s.cap(fixed0), s.cap(fixed1))
        v = s.f(field)
        if ~v & must1:
            return "%s: %s must be 1 (IA32_VMX_%s_FIXED0 = 0x%x)" % (hexv(s, field), bits_text(~v & must1), cr, s.cap(fixed0))
        return None

    def must_zero(s):
        _, must0 = cm.fixed_bits(s.cap(fixed0), s.cap(fixed1))
        v = s.f(field)
        if v & must0:
            return "%s: %s must be 0 (clear in IA32_VMX_%s_FIXED1 = 0x%x)" % (hexv(s, field), bits_text(v & must0), cr, s.cap(fixed1))
        return None

    R.add("host.%s.fixed0" % cr.lower(), CRS, [field],
          "Every bit set in IA32_VMX_%s_FIXED0 must be 1 in the host %s field." % (cr, cr), must_one)
    R.add("host.%s.fixed1" % cr.lower(), CRS, [field],
          "Every bit clear in IA32_VMX_%s_FIXED1 must be 0 in the host %s field." % (cr, cr), must_zero)


_fixed_rules("CR0", cm.IA32_VMX_CR0_FIXED0, cm.IA32_VMX_CR0_FIXED1)
_fixed_rules("CR4", cm.IA32_VMX_CR4_FIXED0, cm.IA32_VMX_CR4_FIXED1)


@R.rule("host.cr3.width", CRS, ["HOST_CR3"], "Host CR3 bits beyond the physical-address width must be 0.")
def _cr3(s):
    if not s.phys_ok(s.f("HOST_CR3")):
        return "%s: sets bits beyond the physical-address width (%d bits)" % (hexv(s, "HOST_CR3"), s.maxphyaddr)
    return None


@R.rule("host.cr4.cet_needs_wp", CRS, ["HOST_CR0", "HOST_CR4"], "If host CR4.CET (bit 23) is 1, host CR0.WP (bit 16) must be 1.")
def _cet_wp(s):
    if (s.f("HOST_CR4") >> 23) & 1 and not (s.f("HOST_CR0") >> 16) & 1:
        return "%s with CR4.CET = 1: CR0.WP (bit 16) must be 1" % hexv(s, "HOST_CR0")
    return None


def _canonical_rule(id: str, sdm: str, field: str, what: str) -> None:
    def test(s):
        if not canonical(s.f(field), s.host_linear_bits()):
            return "%s: not canonical (bits 63:%d must equal bit %d)" % (
                hexv(s, field), s.host_linear_bits() - 1, s.host_linear_bits() - 1)
        return None
    R.add(id, sdm, [field], "The host %s must be canonical." % what, test)


_canonical_rule("host.sysenter_esp.canonical", CRS, "HOST_IA32_SYSENTER_ESP", "IA32_SYSENTER_ESP")
_canonical_rule("host.sysenter_eip.canonical", CRS, "HOST_IA32_SYSENTER_EIP", "IA32_SYSENTER_EIP")

cet_rules(R, "host", CRS, "HOST_S_CET", "HOST_SSP", "HOST_INTR_SSP_TABLE",
          lambda s: s.ctl("exit", "LOAD_CET_STATE"), lambda s: s.host_64, lambda s: s.host_linear_bits())


@R.rule("host.perf_global_ctrl.reserved", CRS, [X, "HOST_IA32_PERF_GLOBAL_CTRL"],
        "If 'load IA32_PERF_GLOBAL_CTRL' is 1, the host IA32_PERF_GLOBAL_CTRL field must not set reserved bits.")
def _perf(s):
    if not s.ctl("exit", "LOAD_IA32_PERF_GLOBAL_CTRL"):
        return NOT_APPLICABLE
    bad = perf_global_reserved(s.f("HOST_IA32_PERF_GLOBAL_CTRL"))
    if bad:
        return "%s: reserved %s must be 0" % (hexv(s, "HOST_IA32_PERF_GLOBAL_CTRL"), bits_text(bad))
    return None


@R.rule("host.pat.valid", CRS, [X, "HOST_IA32_PAT"],
        "If 'load IA32_PAT' is 1, every byte of the host IA32_PAT field must be a valid memory type (0, 1, 4, 5, 6 or 7).")
def _pat(s):
    if not s.ctl("exit", "LOAD_IA32_PAT"):
        return NOT_APPLICABLE
    p = pat_problem(s.f("HOST_IA32_PAT"))
    return ("%s: %s" % (hexv(s, "HOST_IA32_PAT"), p)) if p else None


@R.rule("host.efer.reserved", CRS, [X, "HOST_IA32_EFER"], "If 'load IA32_EFER' is 1, reserved bits of the host IA32_EFER field must be 0.")
def _efer_res(s):
    if not s.ctl("exit", "LOAD_IA32_EFER"):
        return NOT_APPLICABLE
    bad = efer_reserved(s.f("HOST_IA32_EFER"))
    if bad:
        return "%s: reserved %s must be 0 (only SCE 0, LME 8, LMA 10, NXE 11 exist)" % (hexv(s, "HOST_IA32_EFER"), bits_text(bad))
    return None


def _efer_bit(id: str, bit: int, name: str) -> None:
    def test(s):
        if not s.ctl("exit", "LOAD_IA32_EFER"):
            return NOT_APPLICABLE
        v = (s.f("HOST_IA32_EFER") >> bit) & 1
        if v != int(s.host_64):
            return "%s: EFER.%s (bit %d) = %d must equal 'host address-space size' = %d" % (
                hexv(s, "HOST_IA32_EFER"), name, bit, v, int(s.host_64))
        return None
    R.add(id, CRS, [X, "HOST_IA32_EFER"],
          "If 'load IA32_EFER' is 1, host EFER.%s must equal the 'host address-space size' VM-exit control." % name, test)


_efer_bit("host.efer.lma", 10, "LMA")
_efer_bit("host.efer.lme", 8, "LME")


@R.rule("host.pkrs.reserved", CRS, [X, "HOST_IA32_PKRS"], "If 'load PKRS' is 1, bits 63:32 of the host IA32_PKRS field must be 0.")
def _pkrs(s):
    if not s.ctl("exit", "LOAD_PKRS"):
        return NOT_APPLICABLE
    if pkrs_reserved(s.f("HOST_IA32_PKRS")):
        return "%s: bits 63:32 must be 0" % hexv(s, "HOST_IA32_PKRS")
    return None


# -- 27.2.3 selectors, bases ------------------------------------------------------
for _seg in ("ES", "CS", "SS", "DS", "FS", "GS", "TR"):
    def _rpl_ti(s, _f="HOST_%s_SELECTOR" % _seg):
        if s.f(_f) & 7:
            return "%s: RPL (bits 1:0) and TI (bit 2) must be 0" % hexv(s, _f)
        return None
    R.add("host.%s.rpl_ti" % _seg.lower(), SEGS, ["HOST_%s_SELECTOR" % _seg],
          "In the host %s selector, RPL (bits 1:0) and TI (bit 2) must be 0." % _seg, _rpl_ti)


@R.rule("host.cs.nonzero", SEGS, ["HOST_CS_SELECTOR"], "The host CS selector must not be 0000H.")
def _cs0(s):
    return "%s: must not be 0" % hexv(s, "HOST_CS_SELECTOR") if s.f("HOST_CS_SELECTOR") == 0 else None


@R.rule("host.tr.nonzero", SEGS, ["HOST_TR_SELECTOR"], "The host TR selector must not be 0000H.")
def _tr0(s):
    return "%s: must not be 0" % hexv(s, "HOST_TR_SELECTOR") if s.f("HOST_TR_SELECTOR") == 0 else None


@R.rule("host.ss.nonzero", SEGS, [X, "HOST_SS_SELECTOR"], "If 'host address-space size' is 0, the host SS selector must not be 0000H.")
def _ss0(s):
    if s.host_64:
        return NOT_APPLICABLE
    return "%s: must not be 0 for a 32-bit host" % hexv(s, "HOST_SS_SELECTOR") if s.f("HOST_SS_SELECTOR") == 0 else None


for _base, _what in (("HOST_FS_BASE", "FS base"), ("HOST_GS_BASE", "GS base"), ("HOST_GDTR_BASE", "GDTR base"),
                     ("HOST_IDTR_BASE", "IDTR base"), ("HOST_TR_BASE", "TR base")):
    _canonical_rule("host.%s.canonical" % _base[5:].lower(), SEGS, _base, _what)


# -- 27.2.4 address-space size ------------------------------------------------------
@R.rule("host.size.ia32e_processor", SIZE, [X],
        "If the processor is in IA-32e mode (a 64-bit OS executed VMLAUNCH), 'host address-space size' must be 1.")
def _size_ia32e(s):
    if not s.host_in_ia32e:
        return NOT_APPLICABLE
    if not s.host_64:
        return "%s: HOST_ADDRESS_SPACE_SIZE must be 1 (VMLAUNCH ran in IA-32e mode)" % hexv(s, X)
    return None


# Before legacy_processor (which implies it on a legacy host), so that each is the first failure of some
# state; the order inside the host group does not change the verdict (every host check gives error 8).
@R.rule("host.size.guest_needs_64bit_host", SIZE, [X, "VM_ENTRY_CONTROLS"],
        "If 'host address-space size' is 0, the 'IA-32e mode guest' VM-entry control must be 0.")
def _size_guest(s):
    if s.host_64:
        return NOT_APPLICABLE
    if s.ia32e_guest:
        return "%s: IA32E_MODE_GUEST = 1 needs HOST_ADDRESS_SPACE_SIZE = 1 (%s = 0x%08x)" % (
            hexv(s, "VM_ENTRY_CONTROLS"), X, s.f(X))
    return None


@R.rule("host.size.legacy_processor", SIZE, [X, "VM_ENTRY_CONTROLS"],
        "If the processor is not in IA-32e mode, 'IA-32e mode guest' and 'host address-space size' must be 0.")
def _size_legacy(s):
    if s.host_in_ia32e:
        return NOT_APPLICABLE
    if s.host_64 or s.ia32e_guest:
        return "HOST_ADDRESS_SPACE_SIZE and IA32E_MODE_GUEST must be 0 outside IA-32e mode"
    return None


@R.rule("host.size.pcide_32bit", SIZE, [X, "HOST_CR4"], "If 'host address-space size' is 0, host CR4.PCIDE (bit 17) must be 0.")
def _size_pcide(s):
    if s.host_64:
        return NOT_APPLICABLE
    return "%s: CR4.PCIDE must be 0 for a 32-bit host" % hexv(s, "HOST_CR4") if (s.f("HOST_CR4") >> 17) & 1 else None


@R.rule("host.size.rip_32bit", SIZE, [X, "HOST_RIP"], "If 'host address-space size' is 0, bits 63:32 of the host RIP must be 0.")
def _size_rip32(s):
    if s.host_64:
        return NOT_APPLICABLE
    return "%s: bits 63:32 must be 0 for a 32-bit host" % hexv(s, "HOST_RIP") if s.f("HOST_RIP") >> 32 else None


@R.rule("host.size.pae_64bit", SIZE, [X, "HOST_CR4"], "If 'host address-space size' is 1, host CR4.PAE (bit 5) must be 1.")
def _size_pae(s):
    if not s.host_64:
        return NOT_APPLICABLE
    return None if (s.f("HOST_CR4") >> 5) & 1 else "%s: CR4.PAE (bit 5) must be 1 for a 64-bit host" % hexv(s, "HOST_CR4")


@R.rule("host.size.rip_canonical", SIZE, [X, "HOST_RIP"], "If 'host address-space size' is 1, the host RIP must be canonical.")
def _size_rip64(s):
    if not s.host_64:
        return NOT_APPLICABLE
    if not canonical(s.f("HOST_RIP"), s.host_linear_bits()):
        return "%s: not canonical" % hexv(s, "HOST_RIP")
    return None


CHECKS = tuple(R.checks)
