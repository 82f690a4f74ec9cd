"""What real machines do that the Bochs CPU model does not do by itself, added
to an emulated `Machine` for one scenario (docs/driver.md "What real machines
do that the lab now models"):

- `ParentHypervisor`: the machine itself runs under Hyper-V (or KVM with
  Hyper-V enlightenments): CPUID.1:ECX[31] = 1, "Microsoft Hv" at 0x40000000,
  synthetic MSRs 0x40000000-0x400000FF and hypercalls (VMCALL outside VMX
  non-root of our own VMM) answered by the parent (Hyper-V TLFS).
- `lose_vmx_state`: a sleep state: every processor comes back from firmware
  with VMX off, CR4.VMXE clear and no current VMCS (SDM Vol.3 25.11.1: VMCS
  data cached on the processor does not survive), whatever software believed.
- `forbid_secondary_control`: the capability MSR IA32_VMX_PROCBASED_CTLS2
  forbids a control CPUID's feature needs (a hypervisor parent or a microcode
  that hides it; App. A.3.3: allowed-1 bits 63:32).
- `forbid_cr4_bit`: IA32_VMX_CR4_FIXED1 reports a CR4 bit the OS has set as
  fixed to 0 in VMX operation (nested parents that do not virtualize a newer
  CR4 feature do this; App. A.8), and VMXON with that bit set raises #GP(0).
- `poison_after_vmclear`: after VMCLEAR the region of the VMCS holds junk in
  every field software has not VMWRITten (SDM Vol.3 25.11.3: software must
  VMWRITE every field it relies on; the Bochs model keeps old memory).
- `intercept_devirtualize`: on one processor hv.sys's devirtualize hypercall
  never reaches it (a layer in between answers "unknown function"), so that
  processor cannot leave VMX at unload: what the driver frees must not
  include what that processor's next VM exit uses.
- `send_init`: another processor sends INIT (an INIT IPI, e.g. at a reset or
  restart) to a processor in our VMX non-root: a VM exit with reason 3 (SDM Vol.3
  26.2; INIT is blocked in VMX root, 25.2).
- `break_host_state`: a host-state field made invalid on a parked processor,
  so its next VMRESUME fails with VMfailValid (SDM Vol.3 27.2.3, 31.4 error 8).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

from emulated_lab.insn import Insn

# Hyper-V Top Level Functional Specification: CPUID leaves and synthetic MSRs
HV_VENDOR = (0x7263694D, 0x666F736F, 0x76482074)    # "Microsoft Hv" in EBX, ECX, EDX
HV_INTERFACE = 0x31237648                           # "Hv#1"
HV_MAX_LEAF = 0x40000006
HV_MSR_GUEST_OS_ID = 0x40000000
HV_MSR_HYPERCALL = 0x40000001
HV_MSR_VP_INDEX = 0x40000002
SYNTHETIC_MSRS = range(0x40000000, 0x40000100)
HV_STATUS_SUCCESS = 0
HV_STATUS_INVALID_HYPERCALL_CODE = 2
HV_STATUS_INVALID_PARAMETER = 5
HV_CALL_NOTIFY_LONG_SPIN_WAIT = 0x0008
HV_CALL_GET_VP_REGISTERS = 0x0050
KNOWN_HYPERCALLS = (0x0002, 0x0003, HV_CALL_NOTIFY_LONG_SPIN_WAIT, 0x0013, 0x0014, HV_CALL_GET_VP_REGISTERS)
CPUID_ECX_HYPERVISOR = 1 << 31
# hypercall input value (TLFS 3.7): call code 15:0, fast 16, rep count 43:32; result value: rep done 43:32
HC_FAST = 1 << 16
HC_REP_SHIFT = 32
# CPUID 0x40000003 EDX: XMM registers for fast hypercall input (bit 4) and output (bit 15) available
HV_FEATURE_XMM_INPUT, HV_FEATURE_XMM_OUTPUT = 1 << 4, 1 << 15
HV_REGISTER_GUEST_OS_ID, HV_REGISTER_VP_INDEX = 0x00090002, 0x00090003   # HV_REGISTER_NAME
XMM_FAST_REGISTERS = 6      # XMM0-XMM5 carry fast-call data beyond RDX and R8 (112 bytes in all)


class ParentHypervisor:
    """A Hyper-V-compatible parent, installed on the machine's CPU model."""

    def __init__(self, cpus: int) -> None:
        self.msrs: Dict[Tuple[int, int], int] = {}
        self.hypercalls = [0] * cpus
        self.last_call: Dict[int, Tuple[int, int, int]] = {}     # per processor: RCX, RDX, R8 received
        self.msr_accesses = [0] * cpus
        self.last_xmm_call: Dict[int, Tuple[int, list]] = {}   # per processor: reps, XMM0-5 as received

    def install(self, m) -> None:
        self.truth = m.truth
        self.machine = m
        m.cpuid_filter = self.cpuid
        m.emulate = self.emulate

    def cpuid(self, k: int, leaf: int, subleaf: int, regs: Tuple[int, int, int, int]) -> Tuple[int, int, int, int]:
        if leaf == 1:
            return (regs[0], regs[1], regs[2] | CPUID_ECX_HYPERVISOR, regs[3])
        if leaf == 0x40000000:
            return (HV_MAX_LEAF,) + HV_VENDOR
        if leaf == 0x40000001:
            return (HV_INTERFACE, 0, 0, 0)
        if leaf == 0x40000003:
            # partition privileges: VP index, hypercall MSRs, ...; XMM fast hypercall input and output
            return (0x2E7F, 0, 0, HV_FEATURE_XMM_INPUT | HV_FEATURE_XMM_OUTPUT)
        if 0x40000000 < leaf <= HV_MAX_LEAF:
            return (0, 0, 0, 0)
        return regs

    def emulate(self, k: int, insn: Insn, regs: Dict[str, int]) -> Optional[Dict[str, int]]:
        if self.truth.processors[k].vmx == "guest":
            return None        # in our VMX non-root these exit to hv.sys first
        msr = regs["rcx"] & 0xFFFFFFFF
        if insn.kind == "rdmsr" and msr in SYNTHETIC_MSRS:
            self.msr_accesses[k] += 1
            v = k if msr == HV_MSR_VP_INDEX else self.msrs.get((k, msr), 0)
            return {"rax": v & 0xFFFFFFFF, "rdx": v >> 32}
        if insn.kind == "wrmsr" and msr in SYNTHETIC_MSRS:
            self.msr_accesses[k] += 1
            if msr != HV_MSR_VP_INDEX:
                self.msrs[(k, msr)] = (regs["rdx"] & 0xFFFFFFFF) << 32 | (regs["rax"] & 0xFFFFFFFF)
            return {}
        if insn.kind == "vmcall":
            self.hypercalls[k] += 1
            self.last_call[k] = (regs["rcx"], regs["rdx"], regs["r8"])
            code = regs["rcx"] & 0xFFFF
            if code == HV_CALL_GET_VP_REGISTERS and regs["rcx"] & HC_FAST:
                return self._get_vp_registers_fast(k, regs)
            return {"rax": HV_STATUS_SUCCESS if code in KNOWN_HYPERCALLS else HV_STATUS_INVALID_HYPERCALL_CODE}
        return None

    def _get_vp_registers_fast(self, k: int, regs: Dict[str, int]) -> Dict[str, int]:
        """HvCallGetVpRegisters as an XMM fast hypercall (TLFS 3.7.8, "XMM fast hypercalls"): the
        input header (partition id, VP index, VTL) is in RDX and R8, the register names (4 bytes each)
        in XMM0 on; each 16-byte value comes back in the XMM register after the last one the input
        used. The XMM registers read are the ones at the VMCALL: a VMM in between must pass them."""
        xmm = self.machine.read_xmm(XMM_FAST_REGISTERS)
        reps = regs["rcx"] >> HC_REP_SHIFT & 0xFFF
        data = b"".join(v.to_bytes(16, "little") for v in xmm)
        first_out = (4 * reps + 15) // 16
        if reps == 0 or first_out + reps > XMM_FAST_REGISTERS:
            return {"rax": HV_STATUS_INVALID_PARAMETER}
        known = {HV_REGISTER_VP_INDEX: k, HV_REGISTER_GUEST_OS_ID: self.msrs.get((k, HV_MSR_GUEST_OS_ID), 0)}
        out: Dict[str, int] = {}
        for i in range(reps):
            name = int.from_bytes(data[4 * i:4 * i + 4], "little")
            if name not in known:
                return {"rax": HV_STATUS_INVALID_PARAMETER | i << HC_REP_SHIFT}
            out["xmm%d" % (first_out + i)] = known[name]
        self.last_xmm_call[k] = (reps, xmm)
        out["rax"] = HV_STATUS_SUCCESS | reps << HC_REP_SHIFT
        return out


def forbid_secondary_control(m, bit: int) -> None:
    """IA32_VMX_PROCBASED_CTLS2 (0x48B) reports secondary control `bit` as not
    allowed to be 1 (bits 63:32 are the allowed-1 settings, App. A.3.3)."""
    previous = m.rdmsr_filter

    def flt(k: int, msr: int, value: int) -> int:
        if previous is not None:
            value = previous(k, msr, value)
        return value & ~(1 << (32 + bit)) if msr == 0x48B else value
    m.rdmsr_filter = flt


def forbid_cr4_bit(m, bit: int) -> None:
    """IA32_VMX_CR4_FIXED1 (0x489) reports CR4 bit `bit` as fixed to 0 (App. A.8), and VMXON
    enforces it (#GP(0) with the bit set, SDM Vol.3 31.3)."""
    previous = m.rdmsr_filter
    m.vmxon_forbidden_cr4 |= 1 << bit

    def flt(k: int, msr: int, value: int) -> int:
        if previous is not None:
            value = previous(k, msr, value)
        return value & ~(1 << bit) if msr == 0x489 else value
    m.rdmsr_filter = flt


POISON = bytes(range(0xA1, 0xA9))    # 8 distinct non-zero bytes per field slot


def poison_after_vmclear(m, keep: int = 12) -> None:
    """After every VMCLEAR software executes, the VMCS region holds junk beyond
    its header (revision identifier, abort indicator, launch state: the first
    `keep` bytes, SDM Vol.3 25.2)."""
    def poison(_k: int, pa: int) -> None:
        page = pa & ~0xFFF
        m.write_phys(page + keep, (POISON * 512)[keep:4096])
        m.poisoned.append(page)
    m.after_vmclear = poison


def intercept_devirtualize(m, k: int, signature: int, function: int, status: int) -> None:
    """On processor k, in VMX non-root, VMCALL with RAX = signature and RCX =
    function is answered with RAX = status by the lab instead of exiting."""
    previous = m.emulate

    def emulate(cpu: int, insn: Insn, regs: Dict[str, int]) -> Optional[Dict[str, int]]:
        if (cpu == k and insn.kind == "vmcall" and m.truth.processors[cpu].vmx == "guest"
                and regs["rax"] == signature and regs["rcx"] == function):
            return {"rax": status}
        return previous(cpu, insn, regs) if previous is not None else None
    m.emulate = emulate


def send_init(m, k: int) -> None:
    """At processor k's next watched instruction (CPUID, RDMSR, ...) in our VMX non-root the INIT
    signal arrives; the CPU takes the INIT VM exit at the next instruction boundary (SDM Vol.3 26.2),
    right after that instruction unless the instruction exits first."""
    from emulated_lab.bochs_loader import deliver_init
    previous = m.emulate
    armed = [True]

    def emulate(cpu: int, insn: Insn, regs: Dict[str, int]) -> Optional[Dict[str, int]]:
        if armed[0] and cpu == k and m.truth.processors[cpu].vmx == "guest":
            armed[0] = False
            deliver_init()
        return previous(cpu, insn, regs) if previous is not None else None
    m.emulate = emulate


def break_host_state(m, k: int, encoding: int, value: int) -> bool:
    """VMWRITEs an invalid value into processor k's current VMCS while it is
    parked in VMX root (e.g. HOST_CS_SELECTOR = 0, SDM Vol.3 27.2.3).
    True when the write took."""
    return m.vmwrite_parked(k, encoding, value)
