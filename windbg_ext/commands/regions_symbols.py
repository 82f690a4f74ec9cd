"""regions for a driver that is not hv.sys: every vCPU page, PASS/FAIL.

The hv.sys command hands over here when --symbols or --map is given (docs/walk.md).
"""
from __future__ import annotations

from typing import Any, Dict, List

from windbg_ext.hv.foreign import walker_for
from windbg_ext.hv.foreign_views import header, region_checks
from windbg_ext.hv.regions import Page, distinct_pages, verdict
from windbg_ext.render.report import Link, Report


def run(ctx, args) -> Report:
    w = walker_for(ctx)
    rows: List[List[Any]] = []
    items: List[Dict[str, Any]] = []
    pages: List[Page] = []
    failed = 0
    basic_from = ""
    for v in w.vcpus():
        checks, _, basic_from = region_checks(ctx.target, v)
        for region, key in (("VMXON", "vmxon"), ("VMCS", "vmcs"), ("MSR bitmap", "msr_bitmap")):
            pa = v.pa.get(key)
            if pa is None:
                continue
            pages.append(Page("vCPU %d %s" % (v.index, region), region, pa))
            mine = [c for c in checks if c.region == region and c.ok is not None]
            bad = [c for c in mine if not c.ok]
            failed += bool(bad)
            rows.append([Link(v.index, "vcpu %d" % v.index), region, "0x%x" % pa, "FAIL" if bad else "PASS",
                         "; ".join("%s: %s" % (c.name, c.detail) for c in bad) or ", ".join(c.name for c in mine)])
            items.append({"vcpu": v.index, "region": region, "pa": "0x%x" % pa, "result": "FAIL" if bad else "PASS",
                          "checks": [{"check": c.name, "result": verdict(c.ok), "detail": c.detail, "sdm": c.sdm}
                                     for c in checks if c.region == region]})
    shared = distinct_pages(pages)
    r = Report(data={"regions": items, "shared_pages": [c.detail for c in shared], "revision_id_from": basic_from})
    r.text(header(w))
    r.table(["vCPU", "region", "physical", "result", "checks (failures first)"], rows)
    for c in shared:
        r.text("FAIL: " + c.detail + " (SDM 31.3)")
    r.text("%d of %d pages pass; revision ids compared with %s" % (len(rows) - failed, len(rows), basic_from))
    if failed or shared:
        r.exit_code = 1
    return r
