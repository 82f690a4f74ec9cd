"""map [--suggest]   (with --symbols FILE [--map FILE])

Shows the map of roles the walk uses for a driver that is not hv.sys: which
global, struct and member play each role, with offsets from the symbols.
`--suggest` prints a starter map (JSON) from the types the symbols define, to
be checked and saved as a file for --map. Needs no target.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List

from windbg_ext.hv.foreign import load_table
from windbg_ext.hv.rolemap import choose, suggest
from windbg_ext.hv.symbols import describe_type
from windbg_ext.render.report import Report

SUMMARY = "the map of roles for --symbols (which member is the VMCS PA, ...); --suggest writes a starter map"
NEEDS_TARGET = False


def add_arguments(p) -> None:
    p.add_argument("--suggest", action="store_true", help="print a starter map (JSON) from the driver's types")


def run(ctx, args) -> Report:
    table = load_table(ctx)
    if args.suggest:
        spec = suggest(table)
        r = Report(data=spec)
        r.text(json.dumps(spec, indent=1))
        r.text("# check every member, replace TODO, save as a file and pass it with --map FILE")
        return r
    m = choose(table, ctx.map_path)
    rows: List[List[Any]] = []
    data: Dict[str, Any] = {"module": table.module, "symbols": table.source, "map": m.key, "name": m.name,
                            "roles": {}}
    if m.context_type:
        kind = "%s%s" % (m.context_type, " * (pointer)" if m.context_pointer else "")
        if m.context_symbol:
            rows.append(["context", "%s!%s" % (table.module, m.context_symbol), kind,
                         "rva 0x%x%s" % (table.symbols[m.context_symbol],
                                         " +0x%x" % m.context_offset if m.context_offset else "")])
        else:
            rows.append(["context", "address 0x%x" % ((m.context_address or 0) + m.context_offset), kind, ""])
    if m.vcpus_member is not None:
        rows.append(["vcpus", "%s.%s" % (m.context_type, m.vcpus_member.field.name),
                     describe_type(m.vcpus_member.field.type) + " (%s)" % m.layout,
                     "+0x%x" % m.vcpus_member.field.offset])
    else:
        rows.append(["vcpus", "%s!%s" % (table.module, m.vcpus_symbol), "%s (%s)" % (m.vcpu_type, m.layout),
                     "rva 0x%x" % table.symbols[m.vcpus_symbol or ""]])
    if hasattr(m.count, "field"):
        rows.append(["count", "%s.%s" % (m.context_type, m.count.field.name), describe_type(m.count.field.type),
                     "+0x%x" % m.count.field.offset])
    else:
        rows.append(["count", m.count_symbol or str(m.count), "", ""])
    for role, mem in list(m.roles.items()) + [("extra: " + k, v) for k, v in m.extra.items()] + \
            [("stored " + k, v) for k, v in m.vmcs_fields.items()]:
        rows.append([role, "%s.%s" % (m.vcpu_type, mem.field.name), describe_type(mem.field.type),
                     "+0x%x" % mem.field.offset])
        data["roles"][role] = {"member": mem.field.name, "offset": mem.field.offset}
    r = Report(data=data)
    r.text("map %s for %s (%s), per-processor struct %s (%d bytes)" % (m.name, table.module, table.source,
                                                                      m.vcpu_type, m.vcpu_size))
    r.table(["role", "where", "type", "offset"], rows)
    return r
