"""Facts about a processor of the target that the hv checks need, from the
CPUID values the target recorded (images record them; live pykd and crash
dumps cannot, and then the answer is None: callers say what they assumed).
"""
from __future__ import annotations

from typing import Dict, Optional

from windbg_ext.hv.walker import HvWalker
from windbg_ext.target.base import Target, TargetError

CPUID_ADDRESS_SIZES = 0x80000008      # EAX[7:0] = MAXPHYADDR (SDM 4.1.4)
CPUID_EXTENDED_FEATURES = 7           # sub-leaf 0: EBX[2] = SGX (SDM Vol. 2A, CPUID)
MIN_MAXPHYADDR, MAX_MAXPHYADDR = 32, 52


def maxphyaddr(target: Target, cpu: int = 0) -> Optional[int]:
    """CPUID.80000008H:EAX[7:0] when the target recorded it (SDM 4.1.4), else
    None (callers fall back to the architectural maximum, 52, and say so)."""
    try:
        leaf = target.cpuid(CPUID_ADDRESS_SIZES, 0, cpu)
    except TargetError:  # e.g. a processor the image does not record
        return None
    bits = (leaf[0] & 0xFF) if leaf else 0
    return bits if MIN_MAXPHYADDR <= bits <= MAX_MAXPHYADDR else None


def linear_address_bits(target: Target, cpu: int = 0) -> Optional[int]:
    """CPUID.80000008H:EAX[15:8], the linear-address width (48, or 57 with 5-level paging), when
    the target recorded it, else None (SDM 27.3.1.4 checks bits 63:N of the guest RIP)."""
    try:
        leaf = target.cpuid(CPUID_ADDRESS_SIZES, 0, cpu)
    except TargetError:
        return None
    bits = (leaf[0] >> 8 & 0xFF) if leaf else 0
    return bits if bits in (48, 57, 64) else None


def sgx_supported(target: Target, cpu: int = 0) -> Optional[bool]:
    """CPUID.(EAX=07H,ECX=0):EBX[2] when the target recorded leaf 7, else None."""
    try:
        leaf = target.cpuid(CPUID_EXTENDED_FEATURES, 0, cpu)
    except TargetError:
        return None
    return bool(leaf[1] >> 2 & 1) if leaf else None


def recorded_capabilities(target: Target) -> Dict[int, int]:
    """The capability MSRs hv.sys read at load and keeps in its VMM context
    ({MSR: value}; the control MSRs it used: TRUE_* when IA32_VMX_BASIC bit 55
    says they exist), or {} when hv.sys is not running. The fallback when a
    processor's own MSRs cannot be read (or shown to be that processor's)."""
    try:
        w = HvWalker(target)
        d = w.descriptor()
        if not (d.VmmContextVa and d.VcpuArrayVa):
            return {}
        vmm = w.vmm()
    except TargetError:
        return {}
    return {msr: vmm.record.u(member) for msr, member in vmm.capability_members(vmm.vmx_basic).items()}
