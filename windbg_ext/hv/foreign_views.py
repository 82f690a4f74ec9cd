"""What the commands show for a driver walked from its symbols (hv/foreign.py):
one vCPU's data, its region checks, its VMCS region decoded with a layout
file. Reads only through the walker's target; builds no report."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from windbg_ext.arch.capabilities import IA32_VMX_BASIC
from windbg_ext.arch.vmcs_fields import by_name
from windbg_ext.hv import layouts
from windbg_ext.hv.processor import maxphyaddr
from windbg_ext.hv.regions import PAGE, Check, msr_bitmap_checks, region_values, vmx_region_checks
from windbg_ext.hv.rolemap import BUILTIN_MAPS
from windbg_ext.hv.scan import plausible
from windbg_ext.hv.state_text import hx
from windbg_ext.target.base import TargetError

HOST_RSP, MSR_BITMAP = by_name("HOST_RSP").encoding, by_name("MSR_BITMAP").encoding


def header(w) -> str:
    m = w.map
    how = "built in, chosen from the type %s" % m.vcpu_type if m.key in BUILTIN_MAPS else "from %s" % m.key
    return ("%s walked from its symbols: %s\nmodule base 0x%x (from %s)\nmap: %s (%s)"
            % (w.table.module, w.table.source, w.module_base, w.base_found_by, m.name, how))


def vcpu_data(v) -> Dict[str, Any]:
    stack = v.host_stack()
    return {"vcpu": v.index, "address": hx(v.address),
            "vmxon_pa": hx(v.pa.get("vmxon")), "vmcs_pa": hx(v.pa.get("vmcs")),
            "msr_bitmap_pa": hx(v.pa.get("msr_bitmap")),
            "vmxon_va": hx(v.values.get("vmxon_va")), "vmcs_va": hx(v.values.get("vmcs_va")),
            "host_stack": [hx(stack[0]), hx(stack[0] + stack[1])] if stack and stack[1] else
            ([hx(stack[0]), None] if stack else None),
            "sources": dict(v.sources), "extra": {k: hx(x) for k, x in v.extras().items()}}


def _basic(target, vmxon_head: Optional[bytes]) -> Tuple[int, str]:
    """(IA32_VMX_BASIC, where from): the target's MSR, else the VMXON region's revision id (a dump has no MSRs)."""
    try:
        return target.read_msr(IA32_VMX_BASIC, 0), "IA32_VMX_BASIC of processor 0"
    except TargetError:
        pass
    if vmxon_head and len(vmxon_head) >= 4:
        return int.from_bytes(vmxon_head[:4], "little") & 0x7FFFFFFF, \
            "no IA32_VMX_BASIC in this target: the VMXON region's revision id stands in"
    return 0, "IA32_VMX_BASIC unknown"


def _head(target, pa: Optional[int], n: int) -> Optional[bytes]:
    if pa is None:
        return None
    try:
        return target.read_physical(pa, n)
    except TargetError:
        return None


def region_checks(target, v) -> Tuple[List[Check], int, str]:
    """Every check of vCPU v's pages, IA32_VMX_BASIC used, and where it came from."""
    t = target
    vmxon_head = _head(t, v.pa.get("vmxon"), 8)
    basic, basic_from = _basic(t, vmxon_head)
    width = maxphyaddr(t)
    checks = []
    if v.pa.get("vmxon") is not None:
        checks += vmx_region_checks("VMXON", v.pa["vmxon"], vmxon_head, basic, width)
    checks += vmx_region_checks("VMCS", v.pa.get("vmcs") or 0, _head(t, v.pa.get("vmcs"), 8), basic, width)
    bitmap = v.pa.get("msr_bitmap")
    if bitmap is not None:
        checks += msr_bitmap_checks(bitmap, _head(t, bitmap, PAGE) if bitmap % PAGE == 0 else None, basic, width)
    return checks, basic, basic_from


def region_layout(target, v) -> Tuple[Dict[int, int], str]:
    """(values by encoding, layout path) of vCPU v's VMCS region, or ({}, why-not)."""
    pa = v.pa.get("vmcs")
    page = _head(target, pa & ~0xFFF, 0x1000) if pa else None
    if page is None:
        return {}, "the VMCS page is not readable"
    rev = int.from_bytes(page[:4], "little") & 0x7FFFFFFF
    hit = layouts.find(rev)
    if hit is None:
        return {}, "no layout map for revision id 0x%x (save one from hv.sys on this processor model: layout save)" % rev
    return region_values(page, hit[1]), hit[0]


STALE_LIVE = "not checked live: the VMCS page is stale while the processor holds it (25.11.1)"
STALE_PAGE = "not checked: the page holds no VMCS values (stale while the VMCS was active, 25.11.1)"


def region_consistency(v, values: Dict[int, int], live: bool = False) -> List[Check]:
    """What the driver's VMCS region says against what its own structures say (region-derived):
    MSR_BITMAP is the bitmap page the map names (SDM 25.6.9), HOST_RSP lies in its host stack (25.5).
    Live the region of a running processor's VMCS is stale or private (25.11.1): n/a; in a dump too
    when the page does not look like a VMCS in use (it was active when the dump was taken)."""
    out: List[Check] = []
    stale = STALE_LIVE if live else (STALE_PAGE if values and not plausible(values) else "")
    bitmap, pa = values.get(MSR_BITMAP), v.pa.get("msr_bitmap")
    if bitmap is not None and pa is not None:
        out.append(Check("MSR bitmap", "VMCS MSR_BITMAP field (region*)", None if stale else bitmap == pa,
                         stale or "region 0x%x, the map's bitmap 0x%x" % (bitmap, pa), "25.6.9"))
    stack = v.host_stack()
    rsp = values.get(HOST_RSP)
    if rsp is not None and stack and stack[1]:
        out.append(Check("host stack", "HOST_RSP inside (region*)", None if stale else
                         stack[0] < rsp <= stack[0] + stack[1],
                         stale or "0x%x in 0x%x-0x%x" % (rsp, stack[0], stack[0] + stack[1]), "25.5"))
    return out
