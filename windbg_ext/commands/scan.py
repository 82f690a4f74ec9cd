"""scan [--range START-END ...] [--revision ID] [--all]

Finds VMCS regions in physical memory without any symbol or descriptor:
pages whose dword 0 is the VMCS revision id, validated with the layout map's
fields (hv/scan.py lists the evidence and its weights). For each VMCS found,
HOST_RSP leads to the driver's per-processor data (SimpleVisor and
HyperPlatform keep a pointer there). Images and dumps are scanned whole; live,
only the ranges given (reading all memory over KDNET would take hours).
"""
from __future__ import annotations

import struct
from typing import Any, Dict, List, Optional, Tuple

from windbg_ext.arch.capabilities import IA32_VMX_BASIC
from windbg_ext.commands.base import CommandError, parse_int
from windbg_ext.hv import layouts
from windbg_ext.hv.scan import (HOST_RIP, HOST_RSP, LIVE_NOTE, LIVE_THRESHOLD, REPORT_THRESHOLD, STALE_NOTE,
                                find_candidates)
from windbg_ext.render.report import Report
from windbg_ext.target.base import TargetError

SUMMARY = "find VMCS regions in physical memory by revision id, with evidence and a confidence (no symbols needed)"
NEEDS_TARGET = True


def add_arguments(p) -> None:
    p.add_argument("--range", action="append", default=[], metavar="START-END",
                   help="physical range to scan (repeatable); required live, default offline: all memory")
    p.add_argument("--revision", metavar="ID", help="VMCS revision id (default: IA32_VMX_BASIC[30:0] of the "
                                                    "target, else those of the known layout maps)")
    p.add_argument("--all", action="store_true", help="also list pages below the confidence threshold")


def _ranges(ctx, texts: List[str]) -> List[Tuple[int, int]]:
    out = []
    for t in texts:
        a, sep, b = t.partition("-")
        start, end = parse_int(a, "range start"), parse_int(b, "range end") if sep else -1
        if not sep or end <= start:
            raise CommandError("--range %r: give START-END with END above START, e.g. 0x100000-0x800000" % t)
        out.append((start & ~0xFFF, end - (start & ~0xFFF)))
    if out:
        return out
    if ctx.target.live:
        raise CommandError("live, scan reads only the physical ranges you give (reading all memory over KDNET "
                           "would take hours): add --range START-END, e.g. around a VMXON/VMCS address you know")
    ranges = ctx.target.memory_ranges()
    if not ranges:
        raise CommandError("this target cannot list its physical memory: give --range START-END")
    return ranges


def _revisions(ctx, text: Optional[str]) -> Tuple[List[int], str]:
    if text:
        return [parse_int(text, "--revision") & 0x7FFFFFFF], "--revision"
    try:
        return [ctx.target.read_msr(IA32_VMX_BASIC, 0) & 0x7FFFFFFF], "IA32_VMX_BASIC of processor 0"
    except TargetError:
        pass
    revs = layouts.revision_ids()
    if not revs:
        raise CommandError("no VMCS revision id: the target has no IA32_VMX_BASIC and no layout map is installed; "
                           "give --revision ID")
    return revs, "the known layout maps (the target records no IA32_VMX_BASIC)"


def _module_of(target, va: int) -> str:
    for m in target.modules():
        if m["base"] <= va < m["base"] + m["size"]:
            return "%s+0x%x" % (m["name"], va - m["base"])
    return "0x%x" % va


def run(ctx, args) -> Report:
    ranges = _ranges(ctx, args.range)
    revisions, rev_from = _revisions(ctx, args.revision)
    found, scanned, unreadable = find_candidates(ctx.target, ranges, revisions)
    threshold = LIVE_THRESHOLD if ctx.target.live else REPORT_THRESHOLD
    shown = [c for c in found if args.all or c.confidence >= threshold]
    rows: List[List[Any]] = []
    items: List[Dict[str, Any]] = []
    for c in sorted(shown, key=lambda c: c.pa):
        item = c.as_json()
        rip, rsp = c.fields.get(HOST_RIP), c.fields.get(HOST_RSP)
        per_cpu = None
        if rsp:
            try:  # SimpleVisor / HyperPlatform / 7 Days: the per-processor pointer at the top of the host stack
                per_cpu = struct.unpack("<Q", ctx.target.read_virtual(rsp, 8))[0]
                item["evidence"].append("qword at HOST_RSP (region-derived): 0x%x, the driver's per-processor "
                                        "data on most designs" % per_cpu)
            except TargetError:
                item["evidence"].append("HOST_RSP 0x%x is not readable" % rsp)
        if rip:
            item["evidence"].append("HOST_RIP (region-derived) in %s" % _module_of(ctx.target, rip))
        items.append(item)
        rows.append(["0x%x" % c.pa, "0x%x" % c.revision_id, "%.2f" % c.confidence,
                     _module_of(ctx.target, rip) if rip else "-", "0x%x" % rsp if rsp else "-",
                     "0x%x" % per_cpu if per_cpu is not None else "-"])
    r = Report(data={"candidates": items, "revision_ids": ["0x%x" % v for v in revisions],
                     "revision_ids_from": rev_from, "scanned_bytes": scanned, "unreadable_bytes": unreadable,
                     "threshold": threshold,
                     "pages_with_revision_id": len(found),
                     "pages_without_vmcs_values": len([c for c in found if STALE_NOTE in c.evidence])})
    r.text("scanned %d KiB of physical memory for VMCS revision id %s\n(revision id from %s): %d page(s) carry it, "
           "%d shown%s" % (scanned >> 10, ", ".join("0x%x" % v for v in revisions), rev_from, len(found), len(shown),
              "" if args.all else " (confidence >= %.2f; --all for the rest)" % threshold))
    if unreadable:
        r.text("%d KiB of the ranges could not be read (not present in the target)" % (unreadable >> 10))
    if ctx.target.live:
        r.text(LIVE_NOTE.replace(": its", ":\nits", 1))
    stale = [c for c in found if STALE_NOTE in c.evidence]
    if stale and not args.all:
        r.text("%d page(s) carry the revision id but hold no VMCS values: a VMCS active on its processor when the\n"
               "dump was taken has a stale page (SDM 25.11.1), and VMXON regions carry the id too (--all lists them)"
               % len(stale))
    if rows:
        r.table(["VMCS PA", "revision", "confidence", "HOST_RIP", "HOST_RSP", "[HOST_RSP]"], rows)
    if any(c.fields for c in shown):
        r.text("HOST_RIP / HOST_RSP are region-derived (layout map of the same revision id; stale while a\n"
               "processor holds the VMCS on real hardware, SDM 25.11.1); --json lists every piece of evidence")
    return r
