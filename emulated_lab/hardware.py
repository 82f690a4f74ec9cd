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
- `poison_after_vmclear`: after VMCLEAR the region of the VMCS holds junk in
  every field software has not VMWRITten (SDM Vol.3 25.11.3: software must
  VMWRITE every field it relies on; the Bochs model keeps old memory).
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
HV_CALL_NOTIFY_LONG_SPIN_WAIT = 0x0008
KNOWN_HYPERCALLS = (0x0002, 0x0003, HV_CALL_NOTIFY_LONG_SPIN_WAIT, 0x0013, 0x0014)
CPUID_ECX_HYPERVISOR = 1 << 31


class ParentHypervisor:
    """A Hyper-V-compatible parent, installed on the machine's CPU model."""

    def __init__(self, cpus: int) -> None:
        self.msrs: Dict[Tuple[int, int], int] = {}
        self.hypercalls = [0] * cpus
        self.msr_accesses = [0] * cpus

    def install(self, m) -> None:
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
            return (0x2E7F, 0, 0, 0)      # partition privileges: VP index, hypercall MSRs, ...
        if 0x40000000 < leaf <= HV_MAX_LEAF:
            return (0, 0, 0, 0)
        return regs

    def emulate(self, k: int, insn: Insn, regs: Dict[str, int]) -> Optional[Dict[str, int]]:
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
            code = regs["rcx"] & 0xFFFF
            return {"rax": HV_STATUS_SUCCESS if code in KNOWN_HYPERCALLS else HV_STATUS_INVALID_HYPERCALL_CODE}
        return None


def forbid_secondary_control(m, bit: int) -> None:
    """IA32_VMX_PROCBASED_CTLS2 (0x48B) reports secondary control `bit` as not
    allowed to be 1 (bits 63:32 are the allowed-1 settings, App. A.3.3)."""
    previous = m.rdmsr_filter

    def flt(k: int, msr: int, value: int) -> int:
        if previous is not None:
            value = previous(k, msr, value)
        return value & ~(1 << (32 + bit)) if msr == 0x48B else value
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


def break_host_state(m, k: int, encoding: int, value: int) -> bool:
    """VMWRITEs an invalid value into processor k's current VMCS while it is
    parked in VMX root (e.g. HOST_CS_SELECTOR = 0, SDM Vol.3 27.2.3).
    True when the write took."""
    return m.vmwrite_parked(k, encoding, value)
