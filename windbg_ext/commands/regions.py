"""regions: the VMXON / VMCS / MSR-bitmap pages of every vCPU, checked at once.

One PASS/FAIL row per vCPU and page: allocated, 4 KiB aligned, within the
physical-address width, revision id against IA32_VMX_BASIC, VMXON bit 31 /
shadow-VMCS indicator, VMX-abort indicator, and no page shared with another.
"""
from __future__ import annotations

from typing import Dict, List

from windbg_ext.arch.capabilities import decode_basic
from windbg_ext.commands import regions_symbols
from windbg_ext.hv.foreign import uses_symbols
from windbg_ext.hv.processor import maxphyaddr
from windbg_ext.hv.regions import Page, distinct_pages, verdict
from windbg_ext.hv.vcpu_checks import region_checks
from windbg_ext.hv.walker import walker_for
from windbg_ext.render.report import Link, Report

SUMMARY = "PASS/FAIL table of every vCPU's VMXON, VMCS and MSR-bitmap pages"
NEEDS_TARGET = True


def add_arguments(p) -> None:
    pass


def run(ctx, args) -> Report:
    if uses_symbols(ctx):  # a driver that is not hv.sys, walked from its symbols and a map
        return regions_symbols.run(ctx, args)
    w = walker_for(ctx)
    vmm = w.vmm()
    basic = vmm.vmx_basic
    width = maxphyaddr(ctx.target)
    rows: List[List] = []
    items: List[Dict] = []
    pages: List[Page] = []
    failed = 0
    for v in w.vcpus():
        checks = region_checks(w, v, basic, width)
        for region, pa in (("VMXON", v.VmxonRegionPa), ("VMCS", v.VmcsRegionPa), ("MSR bitmap", v.MsrBitmapPa)):
            pages.append(Page("vCPU %d %s" % (v.index, region), region, pa))
            mine = [c for c in checks if c.region == region and c.ok is not None]
            bad = [c for c in mine if not c.ok]
            failed += bool(bad)
            rows.append([Link(v.index, "vcpu %d" % v.index), region, "0x%x" % pa, "FAIL" if bad else "PASS",
                         "; ".join("%s: %s" % (c.name, c.detail) for c in bad) or
                         ", ".join(c.name for c in mine)])
            items.append({"vcpu": v.index, "region": region, "pa": "0x%x" % pa, "result": "FAIL" if bad else "PASS",
                          "checks": [{"check": c.name, "result": verdict(c.ok), "detail": c.detail, "sdm": c.sdm}
                                     for c in checks if c.region == region]})
    shared = distinct_pages(pages)
    r = Report(data={"ia32_vmx_basic": "0x%x" % basic, "regions": items,
                     "shared_pages": [c.detail for c in shared]})
    r.text("IA32_VMX_BASIC 0x%x (revision id 0x%x) as hv.sys read it at load" % (basic, decode_basic(basic)["revision_id"]))
    r.table(["vCPU", "region", "physical", "result", "checks (failures first)"], rows)
    for c in shared:
        r.text("FAIL: " + c.detail + " (SDM 31.3)")
    total = len(rows)
    r.text("%d of %d pages pass%s" % (total - failed, total, "" if not shared else
                                      "; %d shared page(s)" % len(shared)))
    if failed or shared:
        r.exit_code = 1
    return r
