"""vmm for a driver that is not hv.sys: its VMM context and vCPUs, found with its symbols and a map of roles.

The hv.sys command hands over here when --symbols or --map is given (docs/walk.md).
"""
from __future__ import annotations

from typing import Any, Dict

from windbg_ext.hv.foreign import describe, walker_for
from windbg_ext.hv.foreign_views import header, hx, vcpu_data
from windbg_ext.render.report import Link, Report


def run(ctx, args) -> Report:
    w = walker_for(ctx)
    vs = w.vcpus()
    data: Dict[str, Any] = {"driver": describe(w), "context": hx(w.context_address),
                            "processor_count": w.count, "processor_count_from": w.count_source}
    r = Report(data=data)
    r.text(header(w))
    m = w.map
    if w.context_address is not None:
        r.text("VMM context %s -> 0x%x (%s):\n%d processors (from %s)" % (
            w.context_where, w.context_address, m.context_type, w.count, w.count_source))
    else:
        r.text("vCPUs at %s!%s (%s, %s):\n%d processors (from %s)" % (
            w.table.module, m.vcpus_symbol, m.vcpu_type, m.layout, w.count, w.count_source))
    extras = list(m.extra)
    rows, items = [], []
    for v in vs:
        d = vcpu_data(v)
        items.append(d)
        hs = d["host_stack"]
        rows.append([Link(v.index, "vcpu %d" % v.index), d["address"], d["vmxon_pa"], d["vmcs_pa"],
                     d["msr_bitmap_pa"], "%s-%s" % (hs[0], hs[1] or "?") if hs else None]
                    + [d["extra"][k] for k in extras])
    data["vcpus"] = items
    r.table(["vCPU", "struct", "VMXON PA", "VMCS PA", "MSR bitmap PA", "host stack"] + extras,
            rows)
    translated = sorted({"%s: %s" % (k, s) for v in vs for k, s in v.sources.items() if s.startswith("translated")})
    if translated:
        r.text("translated from virtual addresses through the page tables:\n  " + "\n  ".join(translated))
    return r
