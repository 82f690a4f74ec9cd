"""The checks of one vCPU that `vcpu` and `regions` show: its VMXON / VMCS /
MSR-bitmap pages (read through the walker, checked by hv/regions.py) and the
driver's bookkeeping against the VMCS it wrote (snapshot values, no read).
"""
from __future__ import annotations

from typing import List, Optional

from windbg_ext.arch.entry_checks.model import control_bit
from windbg_ext.arch.vmcs_fields import by_name
from windbg_ext.hv.descriptor import DescriptorError
from windbg_ext.hv.model import Vcpu
from windbg_ext.hv.regions import PAGE, Check, msr_bitmap_checks, vmx_region_checks
from windbg_ext.target.base import TargetError


def region_checks(w, v: Vcpu, basic: int, width: Optional[int]) -> List[Check]:
    """Every check of one vCPU's three pages (3 reads: 8 bytes each for VMXON/VMCS, the bitmap page).
    `w` is the HvWalker; `width` the physical-address width, None when unknown."""
    def head(pa: int, n: int) -> Optional[bytes]:
        if not pa:
            return None
        try:
            return w.target.read_physical(pa, n)
        except TargetError:
            return None

    checks = vmx_region_checks("VMXON", v.VmxonRegionPa, head(v.VmxonRegionPa, 8), basic, width)
    checks += vmx_region_checks("VMCS", v.VmcsRegionPa, head(v.VmcsRegionPa, 8), basic, width)
    procbased = w.vmm().record.get("ProcbasedControls")
    uses = None if procbased is None else bool(procbased >> control_bit("proc", "USE_MSR_BITMAPS") & 1)
    checks += msr_bitmap_checks(v.MsrBitmapPa, head(v.MsrBitmapPa, PAGE) if v.MsrBitmapPa % PAGE == 0
                                else None, basic, width, uses)
    return checks


def snapshot_consistency(v: Vcpu) -> List[Check]:
    """The driver's bookkeeping against the VMCS it wrote (snapshot values; no extra read):
    the MSR_BITMAP field is the vCPU's bitmap page (SDM 25.6.9), HOST_RSP lies in its host stack (25.5)."""
    try:
        values = v.snapshot().values
    except DescriptorError:  # the member table describes no snapshot: nothing to compare
        return []
    out = []
    bitmap = values.get(by_name("MSR_BITMAP").encoding)
    if bitmap is not None and v.record.has("MsrBitmapPa"):
        out.append(Check("MSR bitmap", "VMCS MSR_BITMAP field", bitmap == v.MsrBitmapPa,
                         "snapshot 0x%x, vCPU MsrBitmapPa 0x%x" % (bitmap, v.MsrBitmapPa), "25.6.9"))
    rsp = values.get(by_name("HOST_RSP").encoding)
    base, size = v.host_stack()
    if rsp is not None and base:
        out.append(Check("host stack", "VMCS HOST_RSP inside", base < rsp <= base + size,
                         "HOST_RSP 0x%x, stack 0x%x-0x%x" % (rsp, base, base + size), "25.5"))
    return out
