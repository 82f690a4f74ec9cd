"""vmcs <n> [field...] [--all] [--group G] [--source snapshot|region] [--diff M|region] [--refresh]

VMCS fields of vCPU n, grouped like KVM's dump_vmcs, control bits and access
rights decoded, with the source of every value: "snapshot" (the driver's
VMREAD values, architectural) or "region*" (the raw VMCS page decoded with
the driver's layout map: implementation-specific). A live VMREAD from a
debugger break-in is impossible, and this command does not pretend: live,
--refresh makes processor n run hv.sys's snapshot hypercall (hv/refresh.py),
after which the snapshot is what VMREAD returns now. On a live target the
region of a launched vCPU is its active VMCS, whose page is not current (SDM
25.11.1): it is shown only on request, labelled stale.

Reads: descriptor (2), the vCPU (1, its snapshot is inside), the VMCS page
(1, region source or --diff region), the other vCPU (1, --diff M): at most 5.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from windbg_ext.arch.vmcs_fields import BY_ENCODING, FIELDS, FieldLookupError, lookup
from windbg_ext.commands import vmcs_symbols
from windbg_ext.commands.base import CommandError, add_refresh_argument, fresh_snapshot, parse_index
from windbg_ext.hv.foreign import uses_symbols
from windbg_ext.hv.model import FAILED_STEPS, NO_EXIT, failure_snapshot
from windbg_ext.hv.state_text import exit_text, vm_error_text
from windbg_ext.hv.vmcs_source import Values, load_values
from windbg_ext.hv.vmcs_values import GROUP_ORDER, GROUP_TITLES, decode, diff, field_value, format_value
from windbg_ext.hv.walker import walker_for
from windbg_ext.render.report import Report

SUMMARY = "VMCS fields of a vCPU from the driver's snapshot or the raw region, decoded; --diff compares"
NEEDS_TARGET = True

REGION_NOTE = ("region* = decoded from the raw VMCS page with the driver's layout map: implementation-specific, "
               "and stale while the processor holds the VMCS (SDM 25.11.1)")


def add_arguments(p) -> None:
    p.add_argument("n", help="vCPU index (see vmm)")
    p.add_argument("fields", nargs="*", help="field names or encodings (e.g. GUEST_RIP, 0x681e); default: all")
    p.add_argument("--all", action="store_true", help="also list catalogue fields the source has no value for")
    p.add_argument("--group", choices=("guest", "host", "control", "exit"), help="one group only")
    p.add_argument("--source", choices=("snapshot", "region", "failure"),
                   help="where values come from (default: snapshot, or region when the snapshot is empty; "
                        "failure = the snapshot in the descriptor's last-failure record, kept after a failed load)")
    p.add_argument("--diff", metavar="M|region",
                   help="show only fields that differ from vCPU M, or between snapshot and region of vCPU n")
    add_refresh_argument(p)


def _select(args) -> Tuple[List[Tuple[Any, str]], bool]:
    """-> ([(Field, access)], explicit)."""
    if args.fields:
        if args.group:
            raise CommandError("give field names or --group %s, not both (the names choose the fields)" % args.group)
        out = []
        for text in args.fields:
            try:
                out.append(lookup(text))
            except FieldLookupError as e:
                raise CommandError(str(e))
        return out, True
    return [(f, "full") for f in FIELDS if args.group is None or f.type == args.group], False


def run(ctx, args) -> Report:
    if uses_symbols(ctx):  # a driver that is not hv.sys, walked from its symbols and a map
        if args.refresh:
            raise CommandError("--refresh makes hv.sys take a snapshot through its hypercall; a driver walked from "
                               "its symbols has none: drop --refresh (its VMCS region is what can be read)")
        return vmcs_symbols.run(ctx, args)
    n = parse_index(args.n, "vCPU index")
    selected, explicit = _select(args)
    w = walker_for(ctx)
    d = w.descriptor()
    running = bool(d.VmmContextVa and d.VcpuArrayVa)
    if args.source == "failure" and args.diff is not None:
        raise CommandError("--diff cannot compare the failure record: the descriptor keeps one, of the processor "
                           "that failed; drop --diff, or compare running vCPUs (--source snapshot|region)")
    if args.refresh and (args.source in ("region", "failure") or not running):
        raise CommandError("--refresh refreshes a running vCPU's snapshot: %s" % (
            "drop --source %s" % args.source if running else
            "hv.sys is not running (driver state: %s), no vCPU can take one" % d.driver_state))
    if args.source == "failure" or (args.source is None and args.diff is None and not running
                                    and d.failure is not None and d.failure.valid):
        return _show(n, failure_values(d, n), selected, explicit, args)
    fresh = fresh_snapshot(w, n) if args.refresh else ""
    v = w.vcpu(n)
    if args.diff is not None:
        return _run_diff(w, v, args, selected)
    vals = load_values(w, v, args.source)
    if fresh:
        vals.note = fresh
    return _show(n, vals, selected, explicit, args)


def failure_values(d, n: int) -> Values:
    snap = failure_snapshot(d)
    f = d.failure
    if snap is None or f is None:
        raise CommandError("the hv debug descriptor holds no failure record (nothing failed, or hv.sys is too old)")
    step = FAILED_STEPS.get(f.failed_step, str(f.failed_step))
    if not snap.count:  # it failed before a VMCS was current (allocation, VMXON, ...): nothing to show
        raise CommandError("hv.sys failed at %s on processor %d, before any VMCS: no fields recorded; see: vmm, "
                           "check" % (step, f.processor))
    if f.processor != n:
        raise CommandError("the last failure was on processor %d, not %d: run vmcs %d --source failure"
                           % (f.processor, n, f.processor))
    note = "last failure: processor %d at %s, VM-instruction error %s, status 0x%08x (snapshot reason: %s)" % (
        f.processor, FAILED_STEPS.get(f.failed_step, str(f.failed_step)), vm_error_text(f.vm_instruction_error),
        f.status, snap.reason)
    if snap.exit_reason != NO_EXIT:
        note += "; exit reason %s" % exit_text(snap.exit_reason)
    return Values(dict(snap.values), "failure", note)


def _show(index: int, vals: Values, selected, explicit: bool, args) -> Report:
    by_name = {}
    for enc, val in vals.values.items():
        f = BY_ENCODING.get(enc)
        if f is not None:
            by_name[f.name] = val
    r = Report()
    r.text("vCPU %d VMCS (source: %s)" % (index, vals.label))
    items = []
    missing = []
    groups: Dict[str, List[List[Any]]] = {g: [] for g in GROUP_ORDER}
    for field, access in selected:
        if field.encoding not in vals.values:
            missing.append(field.name)
            if not (explicit or args.all):
                continue
            groups[field.type].append([field.name, "0x%04x" % field.encoding, "-", "(not in the %s)" % vals.source,
                                       "-"])
            items.append({"name": field.name, "encoding": "0x%04x" % field.encoding, "group": field.type,
                          "value": None, "source": vals.source})
            continue
        value = field_value(vals.values[field.encoding], access)
        name = field.name + ("_HIGH" if access == "high" else "")
        text = decode(field.name, value, by_name) if access == "full" else ""
        groups[field.type].append([name, "0x%04x" % (field.encoding | (1 if access == "high" else 0)),
                                   format_value(field, value, access), text or "", vals.label])
        items.append({"name": name, "encoding": "0x%04x" % (field.encoding | (1 if access == "high" else 0)),
                      "group": field.type, "value": "0x%x" % value, "decoded": text, "source": vals.source})
    for g in GROUP_ORDER:
        if groups[g]:
            r.table(["field", "encoding", "value", "decoded", "source"], groups[g],
                    title="*** %s ***" % GROUP_TITLES[g])
    shown = sum(len(rows) for rows in groups.values())
    if not shown:
        r.text("no fields to show: the %s has %d values and none matched" % (vals.source, len(vals.values)))
    notes = []
    if vals.note:
        notes.append(vals.note)
    if vals.source == "region":
        notes.append(REGION_NOTE)
    if missing and not (explicit or args.all):
        notes.append("%d catalogue fields have no value in the %s (--all lists them)" % (len(missing), vals.source))
    for note in notes:
        r.text("note: " + note)
    r.data = {"vcpu": index, "source": vals.source, "fields": items, "notes": notes}
    return r


def _run_diff(w, v, args, selected) -> Report:
    wanted = {f.encoding for f, _ in selected}
    if args.diff.strip().lower() == "region":
        if args.source == "region":
            raise CommandError("--diff region compares the snapshot with the region; drop --source")
        left = load_values(w, v, "snapshot")
        right = load_values(w, v, "region")
        if not left.values:
            raise CommandError("vCPU %d's snapshot is empty (reason: %s): nothing to compare with the region"
                               % (v.index, v.snapshot().reason))
        labels = ("vCPU %d snapshot" % v.index, "vCPU %d region*" % v.index)
    else:
        m = parse_index(args.diff, "--diff vCPU")
        if m == v.index:
            raise CommandError("--diff %d compares vCPU %d with itself; give another vCPU or 'region'" % (m, m))
        other = w.vcpu(m)
        left = load_values(w, v, args.source)
        right = load_values(w, other, left.source)
        labels = ("vCPU %d %s" % (v.index, left.label), "vCPU %d %s" % (m, right.label))
    # compare only fields both sides could hold (region vs snapshot cover different sets)
    common = set(left.values) & set(right.values) if args.diff.strip().lower() == "region" else None
    rows, items = [], []
    for enc, a, b in diff(left.values, right.values):
        if enc not in wanted or (common is not None and enc not in common):
            continue
        f = BY_ENCODING.get(enc)
        name = f.name if f else "0x%04x" % enc
        fa = format_value(f, a) if (f and a is not None) else ("-" if a is None else "0x%x" % a)
        fb = format_value(f, b) if (f and b is not None) else ("-" if b is None else "0x%x" % b)
        rows.append([name, "0x%04x" % enc, fa, fb])  # encodings as `field` shows them (SDM App. B style)
        items.append({"name": name, "encoding": "0x%04x" % enc, "left": None if a is None else "0x%x" % a,
                      "right": None if b is None else "0x%x" % b})
    r = Report(data={"left": labels[0], "right": labels[1], "differences": items})
    compared = len(common) if common is not None else len(set(left.values) | set(right.values))
    r.text("%s vs %s: %d of %d fields differ" % (labels[0], labels[1], len(rows), compared))
    if rows:
        r.table(["field", "encoding", labels[0], labels[1]], rows)
    if "region" in (left.source, right.source):
        r.text("note: " + REGION_NOTE)
        for side in (left, right):   # live: an active VMCS's page is not its values
            if side.source == "region" and side.note:
                r.text("note: " + side.note)
    return r
