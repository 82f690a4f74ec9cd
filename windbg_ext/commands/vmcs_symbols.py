"""vmcs N for a driver that is not hv.sys: the VMCS region decoded with a layout file (region-derived) and the
fields the driver stored itself where the map names them.

The hv.sys command hands over here when --symbols or --map is given (docs/walk.md).
"""
from __future__ import annotations

import os

from windbg_ext.arch.vmcs_fields import FIELDS, FieldLookupError, by_name
from windbg_ext.commands.base import CommandError, parse_index
from windbg_ext.hv.foreign import walker_for
from windbg_ext.hv.foreign_views import hx, region_layout
from windbg_ext.hv.scan import plausible
from windbg_ext.hv.vmcs_values import GROUP_ORDER, decode, format_value
from windbg_ext.render.report import Report


STALE_WHY = ("its fields do not look like a VMCS in use: the VMCS was active on its processor when the target "
             "stopped, and a processor may keep it on chip, the page stale (SDM 25.11.1)")


def run(ctx, args) -> Report:
    n = parse_index(args.n, "vCPU index")
    w = walker_for(ctx)
    v = w.vcpu(n)
    if getattr(args, "source", None) in ("snapshot", "failure") or getattr(args, "diff", None):
        raise CommandError("%s keeps no VMCS snapshot: only the region (and the fields the map names) can be shown"
                           % w.table.module)
    region, layout_from = region_layout(ctx.target, v)
    stale = bool(region) and not plausible(region)
    if stale:   # scrambled bytes are not shown as values (SDM 25.11.1: the page of an active VMCS is stale)
        region = {}
    stored = {by_name(k).encoding: val for k, val in v.stored_vmcs_fields().items()}
    if stale and not stored:
        raise CommandError("vCPU %d of %s: its VMCS page (%s) holds no VMCS values (stale: the VMCS was active when "
                           "the target stopped, SDM 25.11.1), and %s keeps no snapshot: have it VMREAD the fields "
                           "(or VMCLEAR the VMCS) before it stops" % (n, w.table.module, hx(v.pa.get("vmcs")),
                                                                     w.table.module))
    wanted = None
    if args.fields:
        wanted = set()
        for f in args.fields:
            try:
                wanted.add(by_name(f).encoding if not f.lower().startswith("0x") else int(f, 16))
            except (FieldLookupError, ValueError):
                raise CommandError("%r is not a VMCS field name or encoding (see: field --all)" % f)
    rows, items = [], []
    by_name_values = {f.name: region[f.encoding] for f in FIELDS if f.encoding in region}
    for group in GROUP_ORDER:
        if args.group and group != args.group:
            continue
        for f in FIELDS:
            if f.type != group or (wanted is not None and f.encoding not in wanted):
                continue
            for source, values in (("driver-stored", stored), ("region*", region)):
                if f.encoding not in values:
                    continue
                val = values[f.encoding]
                rows.append([group, f.name, "0x%04x" % f.encoding, format_value(f, val), source,
                             decode(f.name, val, by_name_values)])
                items.append({"group": group, "name": f.name, "encoding": "0x%x" % f.encoding, "value": "0x%x" % val,
                              "source": source.rstrip("*")})
    notes = ["region* = the raw VMCS page decoded with the layout file %s:\nregion-derived, "
             "implementation-specific, stale while a processor holds the VMCS (SDM 25.11.1)"
             % os.path.basename(layout_from) if region else
             "no region values: %s" % (STALE_WHY if stale else layout_from)]
    if region:   # plausible, yet an active VMCS's page may lag its processor, live or in a dump
        notes.append("region* values look like a VMCS in use; while the VMCS is active they may be older than "
                     "the processor's")
    if stored:
        notes.append("driver-stored = values %s itself saved in the members the map names" % w.table.module)
    r = Report(data={"vcpu": n, "vmcs_pa": hx(v.pa.get("vmcs")), "fields": items, "notes": notes})
    r.text("vCPU %d of %s: VMCS at physical %s" % (n, w.table.module, hx(v.pa.get("vmcs"))))
    r.table(["group", "field", "encoding", "value", "source", "decoded"], rows)
    r.text("\n".join(notes))
    return r
