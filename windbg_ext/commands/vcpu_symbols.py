"""vcpu N for a driver that is not hv.sys: its pages checked, what the map names.

The hv.sys command hands over here when --symbols or --map is given (docs/walk.md).
"""
from __future__ import annotations

from windbg_ext.commands.base import parse_index
from windbg_ext.hv.foreign import walker_for
from windbg_ext.hv.foreign_views import region_checks, region_consistency, region_layout, vcpu_data
from windbg_ext.hv.regions import verdict
from windbg_ext.hv.scan import plausible
from windbg_ext.render.report import Link, Report


def run(ctx, args) -> Report:
    n = parse_index(args.n, "vCPU index")
    w = walker_for(ctx)
    v = w.vcpu(n)
    data = vcpu_data(v)
    r = Report(data=data)
    values, layout_from = region_layout(ctx.target, v)
    # `vmcs N` has nothing to show for a stale page (an active VMCS, SDM 25.11.1) unless the driver stored fields
    shows_vmcs = (values and plausible(values)) or v.stored_vmcs_fields()
    links = [Link("vmcs %d" % n, "vmcs %d" % n)] if shows_vmcs else []
    r.text("vCPU %d of %s at 0x%x (%s)" % (n, w.table.module, v.address, w.map.vcpu_type),
           links + [Link("msrbitmap %d" % n, "msrbitmap %d" % n)])
    checks, basic, basic_from = region_checks(ctx.target, v)
    checks += region_consistency(v, values, ctx.target.live)
    r.table(["region", "check", "result", "detail", "SDM"],
            [[c.region, c.name, verdict(c.ok), c.detail, c.sdm] for c in checks], title="regions")
    data["checks"] = [{"region": c.region, "check": c.name, "result": verdict(c.ok), "detail": c.detail,
                       "sdm": c.sdm} for c in checks]
    data["ia32_vmx_basic_from"] = basic_from
    notes = ["revision id compared with %s" % basic_from]
    rows = [[role, "0x%x" % val, v.sources.get(role, "")] for role, val in sorted(v.values.items())]
    rows += [[label, "0x%x" % val, "extra"] for label, val in v.extras().items()]
    r.table(["role", "value", "member"], rows, title="what the map names")
    if any(c.ok is False for c in checks):
        r.exit_code = 1
    r.text("; ".join(notes))
    return r
