"""Guest checks: small programs the scenario runs on a processor (in VMX
non-root once hv.sys runs) whose outcome says whether the driver kept a
promise real machines rely on. Each returns `Check(name, ok, detail)`;
`ok` is decided from what the emulated CPU did (registers, faults, exits),
never from the driver's records.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

from emulated_lab.asm import assemble
from emulated_lab.debugctl import IA32_DEBUGCTL
from emulated_lab.hardware import (HC_FAST, HC_REP_SHIFT, HV_CALL_GET_VP_REGISTERS, HV_MSR_GUEST_OS_ID, HV_MSR_VP_INDEX,
                                   HV_REGISTER_GUEST_OS_ID, HV_REGISTER_VP_INDEX, HV_VENDOR)

SIGNATURE, PING, PING_REPLY = 0x4D4D5662616C7668, 1, 0x474E4F5042414C48    # driver/include/hv_hypercall.h
VECTOR_DB, VECTOR_PF = 1, 14
DEBUGCTL_BTF = 1 << 1          # single-step on branches (SDM Vol.3 18.4.1)
DR7_ARMED = 0x0000_0402        # G0 and the reserved bit 10 (SDM Vol.3 18.2.4)


class Check:
    __slots__ = ("name", "ok", "detail")

    def __init__(self, name: str, ok: bool, detail: str) -> None:
        self.name, self.ok, self.detail = name, bool(ok), detail

    def as_dict(self) -> Dict[str, object]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}

    def __repr__(self) -> str:
        return "Check(%s, %s, %r)" % (self.name, "ok" if self.ok else "FAILED", self.detail)


def _run(m, k: int, text: str, regs: Optional[Dict[str, int]] = None):
    return m.run(k, m.place_code(assemble(text)), regs=dict(regs or {}))


def _outcome(r) -> str:
    return "returned" if r.stop == "return" else (str(r.fault) if r.fault else r.stop)


def ping(m, k: int) -> Check:
    r = _run(m, k, "vmcall\nret", {"rax": SIGNATURE, "rcx": PING})
    g = r.regs
    ok = r.stop == "return" and g["rax"] == 0 and g["rcx"] == PING_REPLY and g["rdx"] == k
    return Check("cpu%d:hv-ping" % k, ok, "hv.sys answered its ping" if ok else "no answer: %s" % _outcome(r))


# -- hyperv-parent ----------------------------------------------------------------
def parent_checks(m, k: int, parent) -> List[Check]:
    out = []
    r = _run(m, k, "cpuid\nret", {"rax": 0x40000000, "rcx": 0})
    got = tuple(r.regs[x] & 0xFFFFFFFF for x in ("rbx", "rcx", "rdx"))
    out.append(Check("cpu%d:parent-cpuid-0x40000000" % k, r.stop == "return" and got == HV_VENDOR,
                     "vendor %s" % b"".join(v.to_bytes(4, "little") for v in got).decode("latin-1")))
    r = _run(m, k, "cpuid\nret", {"rax": 1, "rcx": 0})
    out.append(Check("cpu%d:parent-hypervisor-bit" % k, bool(r.regs["rcx"] >> 31 & 1),
                     "CPUID.1:ECX = 0x%x" % (r.regs["rcx"] & 0xFFFFFFFF)))
    r = _run(m, k, "rdmsr\nshl rdx, 32\nor rax, rdx\nret", {"rcx": HV_MSR_VP_INDEX})
    out.append(Check("cpu%d:parent-msr-vp-index" % k, r.stop == "return" and r.regs["rax"] == k,
                     "HV_X64_MSR_VP_INDEX: %s" % ("0x%x" % r.regs["rax"] if r.stop == "return" else _outcome(r))))
    value = 0x8100_0000_0000_0000 | k
    r = _run(m, k, "wrmsr\nrdmsr\nshl rdx, 32\nor rax, rdx\nret",
             {"rcx": HV_MSR_GUEST_OS_ID, "rax": value & 0xFFFFFFFF, "rdx": value >> 32})
    ok = r.stop == "return" and r.regs["rax"] == value and parent.msrs.get((k, HV_MSR_GUEST_OS_ID)) == value
    out.append(Check("cpu%d:parent-msr-guest-os-id" % k, ok,
                     "written and read back through the parent" if ok else _outcome(r)))
    before = parent.hypercalls[k]
    r = _run(m, k, "vmcall\nret", {"rcx": 0x10008, "rdx": 7 + k, "r8": 0, "rax": 0})   # fast NotifyLongSpinWait
    seen = parent.last_call.get(k)
    r2 = _run(m, k, "vmcall\nret", {"rcx": 0x7777, "rdx": 0, "r8": 0, "rax": 0})    # unknown to the parent
    ok = (r.stop == r2.stop == "return" and r.regs["rax"] == 0 and r2.regs["rax"] == 2
          and parent.hypercalls[k] == before + 2 and seen == (0x10008, 7 + k, 0))
    out.append(Check("cpu%d:parent-hypercalls" % k, ok, "the parent's status codes came back" if ok else
                     "%s / %s" % (_outcome(r), _outcome(r2))))
    out.append(xmm_fast_hypercall(m, k, parent, value))
    out.append(ping(m, k))
    return out


# XMM0-5 loaded from [rdi], VMCALL, RAX and XMM0-5 stored back to [rdi] (16-byte slots)
XMM_CALL = "".join("movdqu xmm%d, [rdi + %d]\n" % (n, 16 * n) for n in range(6)) + "vmcall\n" + \
    "mov [rdi + 96], rax\n" + "".join("movdqu [rdi + %d], xmm%d\n" % (16 * n, n) for n in range(6)) + "ret"


def xmm_fast_hypercall(m, k: int, parent, guest_os_id: int) -> Check:
    """HvCallGetVpRegisters as an XMM fast hypercall (TLFS 3.7.8) from the guest: the register names
    go in XMM0, the values come back in XMM1 and XMM2; XMM3-5 carry the guest's own values, which
    nothing may change. The parent sees the XMM registers of the VMCALL hv.sys makes for the guest,
    so they pass through hv.sys's exit stub both ways."""
    buf, pa = m.alloc_page()
    mark = [0x5A5A_0000_0000_0000_0000_0000_0000_0000 | (n << 8) | k for n in range(6)]
    mark[0] = HV_REGISTER_VP_INDEX | HV_REGISTER_GUEST_OS_ID << 32 | 0xC0DE << 64
    m.write_phys(pa, b"".join(v.to_bytes(16, "little") for v in mark))
    rcx = HV_CALL_GET_VP_REGISTERS | HC_FAST | 2 << HC_REP_SHIFT
    r = _run(m, k, XMM_CALL, {"rdi": buf, "rcx": rcx, "rdx": (1 << 64) - 1, "r8": 0xFFFFFFFE, "rax": 0})
    name = "cpu%d:parent-xmm-fast-hypercall" % k
    if r.stop != "return":
        return Check(name, False, _outcome(r))
    raw = m.read_phys(pa, 104)
    got = [int.from_bytes(raw[16 * n:16 * n + 16], "little") for n in range(6)]
    status = int.from_bytes(raw[96:104], "little")
    want = [mark[0], k, guest_os_id] + mark[3:]
    sent = parent.last_xmm_call.get(k)
    ok = status == 2 << HC_REP_SHIFT and got == want and sent is not None and sent[1][0] == mark[0]
    if ok:
        return Check(name, True, "VP index and guest OS id came back in XMM1/XMM2, XMM0 and XMM3-5 kept")
    bad = [n for n in range(6) if got[n] != want[n]]
    return Check(name, False, "status 0x%x, parent %s, XMM differing: %s" % (
        status, "received the names" if sent and sent[1][0] == mark[0] else "did not receive the names",
        ", ".join("xmm%d 0x%x (want 0x%x)" % (n, got[n], want[n]) for n in bad) or "none"))


# -- debug-registers ----------------------------------------------------------------
def debug_checks(m, k: int) -> List[Check]:
    out = []
    bp, _ = m.alloc_page()
    r = _run(m, k, """
        mov dr0, rsi
        mov dr7, rdi
        xor eax, eax
        cpuid
        mov rax, dr7
        mov rbx, dr0
        mov rdx, 0x400
        mov dr7, rdx
        ret""", {"rsi": bp, "rdi": DR7_ARMED})
    ok = r.stop == "return" and r.regs["rax"] == DR7_ARMED and r.regs["rbx"] == bp
    out.append(Check("cpu%d:dr7-survives-exit" % k, ok, "DR7 after CPUID 0x%x (armed 0x%x)"
                     % (r.regs["rax"], DR7_ARMED) if r.stop == "return" else _outcome(r)))
    r = _run(m, k, """
        mov ecx, %(msr)#x
        xor edx, edx
        mov eax, %(btf)#x
        wrmsr
        xor eax, eax
        cpuid
        mov ecx, %(msr)#x
        rdmsr
        mov rbx, rax
        mov ecx, %(msr)#x
        xor eax, eax
        xor edx, edx
        wrmsr
        mov rax, rbx
        ret""" % {"msr": IA32_DEBUGCTL, "btf": DEBUGCTL_BTF})
    out.append(_debugctl_check(m, k, r))
    # RFLAGS.TF, then CPUID: the single-step #DB must arrive right after CPUID
    # (SDM Vol.3 18.3.1.4; a VMM that emulates the instruction must deliver it)
    head = "pushfq\nor qword ptr [rsp], 0x100\npopfq\ncpuid\n"
    code = m.place_code(assemble(head + "nop\nnop\nret"))
    after_cpuid = code + len(assemble(head))
    r = m.run(k, code, regs={"rax": 0, "rcx": 0})
    ok = r.fault is not None and r.fault.vector == VECTOR_DB and r.fault.rip == after_cpuid
    out.append(Check("cpu%d:single-step-over-cpuid" % k, ok, "#DB at 0x%x, right after CPUID at 0x%x"
                     % (r.fault.rip, after_cpuid - 2) if ok
                     else "expected #DB at 0x%x: %s" % (after_cpuid, _outcome(r))))
    return out


def _debugctl_check(m, k: int, r) -> Check:
    """The MSR as the lab keeps it (emulated_lab/debugctl.py): a VM exit clears it
    (SDM Vol.3 28.5.1), so it survives only if the VMM saves and loads it."""
    name = "cpu%d:debugctl-survives-exit" % k
    if r.stop != "return":
        return Check(name, False, _outcome(r))
    got = r.regs["rax"] & 0xFFFFFFFF
    return Check(name, got == DEBUGCTL_BTF, "IA32_DEBUGCTL after CPUID 0x%x (set 0x%x)" % (got, DEBUGCTL_BTF))


# -- modern-guest --------------------------------------------------------------------
def _cpuid(m, k: int, leaf: int, sub: int = 0):
    return m.cpuid(k, leaf, sub)


def advertised(m, k: int) -> Dict[str, bool]:
    """Features CPUID advertises (read before any VMM runs, or through it)."""
    l7 = _cpuid(m, k, 7, 0)
    ext = _cpuid(m, k, 0x80000001, 0)
    d1 = _cpuid(m, k, 0xD, 1)
    return {"rdtscp": bool(ext[3] >> 27 & 1), "rdpid": bool(l7[2] >> 22 & 1), "invpcid": bool(l7[1] >> 10 & 1),
            "xsaves": bool(d1[0] >> 3 & 1), "waitpkg": bool(l7[2] >> 5 & 1)}


MODERN = {
    "rdtscp": ("rdtscp\nret", {}),
    "rdpid": ("rdpid rax\nret", {}),
    "invpcid": ("sub rsp, 24\nxor eax, eax\nmov [rsp], rax\nmov [rsp + 8], rax\nmov eax, 2\n"
                "invpcid rax, [rsp]\nadd rsp, 24\nret", {}),
    "xsaves": ("xor edx, edx\nmov eax, 3\nxsaves [rdi]\nxrstors [rdi]\nret", None),
    "waitpkg": ("xor edx, edx\nmov eax, 1000\nmov ecx, 0\ntpause ecx\nret", {}),
}


def modern_checks(m, k: int, features: Dict[str, bool]) -> List[Check]:
    out = []
    for name, (text, regs) in MODERN.items():
        if not features.get(name):
            continue
        if regs is None:
            page_va, _ = m.alloc_page()        # XSAVE area: 64-byte aligned (SDM Vol.1 13.4)
            regs = {"rdi": page_va}
        r = _run(m, k, text, regs)
        out.append(Check("cpu%d:%s" % (k, name), r.stop == "return" and r.fault is None,
                         "executed in the guest" if r.stop == "return" else _outcome(r)))
    return out


INIT_SITE = "mov ecx, 0x10\nrdmsr\n"     # IA32_TIME_STAMP_COUNTER: in the MSR bitmap, no exit


def init_check(m, k: int) -> Check:
    """INIT arrives at the RDMSR (hardware.send_init): the INIT VM exit follows it
    (SDM Vol.3 26.2). A VMM that cannot emulate a reset must stop the machine; the
    check fails if the guest just carries on."""
    r = _run(m, k, INIT_SITE + "ret")
    return Check("cpu%d:init-stops-the-machine" % k, False, "the guest went on after INIT: %s" % _outcome(r))


def page_fault_check(m, k: int) -> Check:
    """A guest #PF with the exception bitmap's bit 14 clear must reach the guest's
    IDT, unless PFEC & mask != match (SDM Vol.3 26.2): junk there makes it exit."""
    unmapped = 0x0000_7FF0_0000_0000
    r = _run(m, k, "mov rax, [rsi]\nret", {"rsi": unmapped})
    ok = r.fault is not None and r.fault.vector == VECTOR_PF
    return Check("cpu%d:page-fault-reaches-guest" % k, ok, "#PF delivered by the guest IDT" if ok else _outcome(r))


def cr4_bit_kept(m, k: int, bit: int, name: str) -> Check:
    """The OS's CR4 bit is still set in the guest (a MOV from CR4 reads the real
    bit: only bits in the CR4 guest/host mask come from the read shadow)."""
    r = _run(m, k, "mov rax, cr4\nret")
    ok = r.stop == "return" and bool(r.regs["rax"] >> bit & 1)
    return Check("cpu%d:cr4-%s-kept" % (k, name.lower()), ok, "guest CR4 0x%x" % r.regs["rax"]
                 if r.stop == "return" else _outcome(r))


CheckFn = Callable[..., List[Check]]
