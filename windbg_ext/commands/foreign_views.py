"""vmm, vcpu N, regions and vmcs N for a driver that is not hv.sys, walked from
its symbols and a map of roles (hv/foreign.py). The hv.sys commands hand over
here when --symbols or --map is given.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from windbg_ext.commands.base import Link, Report, parse_index

IA32_VMX_BASIC = 0x480


def hx(v: Optional[int]) -> Optional[str]:
    return None if v is None else "0x%x" % v


def _header(w) -> str:
    m = w.map
    how = "built in, chosen from the type %s" % m.vcpu_type if m.key in _builtin_keys() else "from %s" % m.key
    return ("%s walked from its symbols (%s), module base 0x%x (from %s)\nmap: %s (%s)"
            % (w.table.module, w.table.source, w.module_base, w.base_found_by, m.name, how))


def _builtin_keys():
    from windbg_ext.hv.rolemap import BUILTIN_MAPS
    return set(BUILTIN_MAPS)


def vcpu_data(v) -> Dict[str, Any]:
    stack = v.host_stack()
    return {"vcpu": v.index, "address": hx(v.address),
            "vmxon_pa": hx(v.pa.get("vmxon")), "vmcs_pa": hx(v.pa.get("vmcs")),
            "msr_bitmap_pa": hx(v.pa.get("msr_bitmap")),
            "vmxon_va": hx(v.values.get("vmxon_va")), "vmcs_va": hx(v.values.get("vmcs_va")),
            "host_stack": [hx(stack[0]), hx(stack[0] + stack[1])] if stack and stack[1] else
            ([hx(stack[0]), None] if stack else None),
            "sources": dict(v.sources), "extra": {k: hx(x) for k, x in v.extras().items()}}


def vmm(ctx, args) -> Report:
    from windbg_ext.hv.foreign import describe, walker_for

    w = walker_for(ctx)
    vs = w.vcpus()
    data: Dict[str, Any] = {"driver": describe(w), "context": hx(w.context_address),
                            "processor_count": w.count, "processor_count_from": w.count_source}
    r = Report(data=data)
    r.text(_header(w))
    m = w.map
    if w.context_address is not None:
        r.text("VMM context %s!%s -> 0x%x (%s): %d processors (from %s)" % (
            w.table.module, m.context_symbol, w.context_address, m.context_type, w.count, w.count_source))
    else:
        r.text("vCPUs at %s!%s (%s, %s): %d processors (from %s)" % (
            w.table.module, m.vcpus_symbol, m.vcpu_type, m.layout, w.count, w.count_source))
    extras = list(m.extra)
    rows, items = [], []
    for v in vs:
        d = vcpu_data(v)
        items.append(d)
        hs = d["host_stack"]
        rows.append([Link(v.index, "vcpu %d" % v.index), d["address"], d["vmxon_va"], d["vmxon_pa"], d["vmcs_va"],
                     d["vmcs_pa"], d["msr_bitmap_pa"], "%s-%s" % (hs[0], hs[1] or "?") if hs else None]
                    + [d["extra"][k] for k in extras])
    data["vcpus"] = items
    r.table(["vCPU", "struct", "VMXON VA", "VMXON PA", "VMCS VA", "VMCS PA", "MSR bitmap PA", "host stack"] + extras,
            rows)
    translated = sorted({"%s: %s" % (k, s) for v in vs for k, s in v.sources.items() if s.startswith("translated")})
    if translated:
        r.text("physical addresses translated from virtual ones through the page tables: " + "; ".join(translated))
    return r


def _basic(ctx, vmxon_head: Optional[bytes]):
    """(IA32_VMX_BASIC, where from): the target's MSR, else the VMXON region's revision id (a dump has no MSRs)."""
    from windbg_ext.target.base import TargetError

    try:
        return ctx.target.read_msr(IA32_VMX_BASIC, 0), "IA32_VMX_BASIC of processor 0"
    except TargetError:
        pass
    if vmxon_head and len(vmxon_head) >= 4:
        return int.from_bytes(vmxon_head[:4], "little") & 0x7FFFFFFF, \
            "no IA32_VMX_BASIC in this target: the VMXON region's revision id stands in"
    return 0, "IA32_VMX_BASIC unknown"


def _head(target, pa: Optional[int], n: int) -> Optional[bytes]:
    from windbg_ext.target.base import TargetError

    if pa is None:
        return None
    try:
        return target.read_physical(pa, n)
    except TargetError:
        return None


def region_checks(ctx, v):
    from windbg_ext.commands.vcpu import maxphyaddr
    from windbg_ext.hv.regions import PAGE, msr_bitmap_checks, vmx_region_checks

    t = ctx.target
    vmxon_head = _head(t, v.pa.get("vmxon"), 8)
    basic, basic_from = _basic(ctx, vmxon_head)
    width = maxphyaddr(t)
    checks = []
    if v.pa.get("vmxon") is not None:
        checks += vmx_region_checks("VMXON", v.pa["vmxon"], vmxon_head, basic, width)
    checks += vmx_region_checks("VMCS", v.pa.get("vmcs") or 0, _head(t, v.pa.get("vmcs"), 8), basic, width)
    bitmap = v.pa.get("msr_bitmap")
    if bitmap is not None:
        checks += msr_bitmap_checks(bitmap, _head(t, bitmap, PAGE) if bitmap % PAGE == 0 else None, basic, width)
    return checks, basic, basic_from


def region_layout(ctx, v):
    """(values by encoding, layout path) of vCPU v's VMCS region, or ({}, why-not)."""
    from windbg_ext.hv import layouts
    from windbg_ext.hv.regions import region_values

    pa = v.pa.get("vmcs")
    page = _head(ctx.target, pa & ~0xFFF, 0x1000) if pa else None
    if page is None:
        return {}, "the VMCS page is not readable"
    rev = int.from_bytes(page[:4], "little") & 0x7FFFFFFF
    hit = layouts.find(rev)
    if hit is None:
        return {}, "no layout map for revision id 0x%x (save one from hv.sys on this processor model: layout save)" % rev
    return region_values(page, hit[1]), hit[0]


def vcpu(ctx, args) -> Report:
    from windbg_ext.hv.foreign import walker_for
    from windbg_ext.hv.regions import Check, verdict

    n = parse_index(args.n, "vCPU index")
    w = walker_for(ctx)
    v = w.vcpu(n)
    data = vcpu_data(v)
    r = Report(data=data)
    r.text("vCPU %d of %s at 0x%x (%s)" % (n, w.table.module, v.address, w.map.vcpu_type),
           [Link("vmcs %d" % n, "vmcs %d" % n), Link("msrbitmap %d" % n, "msrbitmap %d" % n)])
    checks, basic, basic_from = region_checks(ctx, v)
    values, layout_from = region_layout(ctx, v)
    stack = v.host_stack()
    rsp = values.get(0x6C14)   # HOST_RSP, SDM App. B
    if rsp is not None and stack and stack[1]:
        checks.append(Check("host stack", "VMCS HOST_RSP inside (region-derived)",
                            stack[0] < rsp <= stack[0] + stack[1],
                            "HOST_RSP 0x%x, stack 0x%x-0x%x" % (rsp, stack[0], stack[0] + stack[1]), "25.5"))
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


def regions(ctx, args) -> Report:
    from windbg_ext.hv.foreign import walker_for
    from windbg_ext.hv.regions import distinct_pages, verdict

    w = walker_for(ctx)
    rows: List[List[Any]] = []
    items: List[Dict[str, Any]] = []
    pages: Dict[str, int] = {}
    failed = 0
    basic_from = ""
    for v in w.vcpus():
        checks, _, basic_from = region_checks(ctx, v)
        for region, key in (("VMXON", "vmxon"), ("VMCS", "vmcs"), ("MSR bitmap", "msr_bitmap")):
            pa = v.pa.get(key)
            if pa is None:
                continue
            pages["vCPU %d %s" % (v.index, region)] = pa
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
    r.text(_header(w))
    r.table(["vCPU", "region", "physical", "result", "checks (failures first)"], rows)
    for c in shared:
        r.text("FAIL: " + c.detail + " (SDM 31.3)")
    r.text("%d of %d pages pass; revision ids compared with %s" % (len(rows) - failed, len(rows), basic_from))
    if failed or shared:
        r.exit_code = 1
    return r


def vmcs(ctx, args) -> Report:
    from windbg_ext.arch.vmcs_fields import FIELDS, by_name
    from windbg_ext.commands.base import CommandError
    from windbg_ext.hv.foreign import walker_for
    from windbg_ext.hv.vmcs_values import GROUP_ORDER, decode, format_value

    n = parse_index(args.n, "vCPU index")
    w = walker_for(ctx)
    v = w.vcpu(n)
    if getattr(args, "source", None) in ("snapshot", "failure") or getattr(args, "diff", None):
        raise CommandError("%s keeps no VMCS snapshot: only the region (and the fields the map names) can be shown"
                           % w.table.module)
    region, layout_from = region_layout(ctx, v)
    stored = {by_name(k).encoding: val for k, val in v.stored_vmcs_fields().items()}
    wanted = None
    if args.fields:
        wanted = set()
        for f in args.fields:
            try:
                wanted.add(by_name(f).encoding if not f.lower().startswith("0x") else int(f, 16))
            except Exception:
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
    notes = ["region* = decoded from the raw VMCS page with the layout map %s: region-derived, "
             "implementation-specific, and stale on a live target while the processor holds the VMCS "
             "(SDM 25.11.1)" % layout_from if region else "no region values: %s" % layout_from]
    if stored:
        notes.append("driver-stored = values %s itself saved in the members the map names" % w.table.module)
    r = Report(data={"vcpu": n, "vmcs_pa": hx(v.pa.get("vmcs")), "fields": items, "notes": notes})
    r.text("vCPU %d of %s: VMCS at physical %s" % (n, w.table.module, hx(v.pa.get("vmcs"))))
    r.table(["group", "field", "encoding", "value", "source", "decoded"], rows)
    r.text("\n".join(notes))
    return r
