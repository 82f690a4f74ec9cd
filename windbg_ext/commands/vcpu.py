"""vcpu <n>: one vCPU of hv.sys: region checks, host stack, last exit, errors."""
from __future__ import annotations

from typing import Any, Dict, List

from windbg_ext.arch.exits import decode_exit_reason, decode_qualification
from windbg_ext.commands import vcpu_symbols
from windbg_ext.commands.base import parse_index
from windbg_ext.hv.foreign import uses_symbols
from windbg_ext.hv.model import NO_EXIT
from windbg_ext.hv.processor import maxphyaddr
from windbg_ext.hv.regions import Check, stack_high_water, verdict
from windbg_ext.hv.state_text import exit_text, hx, state_text, vcpu_row_data, vm_error_text
from windbg_ext.hv.vcpu_checks import region_checks, snapshot_consistency
from windbg_ext.hv.walker import HvError, walker_for
from windbg_ext.render.report import Link, Report

SUMMARY = "one vCPU: VMXON/VMCS/MSR-bitmap checks, host stack high-water mark, last exit, last VM error"
NEEDS_TARGET = True


def add_arguments(p) -> None:
    p.add_argument("n", help="vCPU index (see vmm)")


def run(ctx, args) -> Report:
    if uses_symbols(ctx):  # a driver that is not hv.sys, walked from its symbols and a map
        return vcpu_symbols.run(ctx, args)
    n = parse_index(args.n, "vCPU index")
    w = walker_for(ctx)
    d = w.descriptor()
    v = w.vcpu(n)
    vmm = w.vmm()
    basic = vmm.vmx_basic
    data: Dict[str, Any] = vcpu_row_data(v)
    r = Report(data=data)
    r.text("vCPU %d at 0x%x: %s; processor %s, status 0x%08x, %s exits"
           % (n, v.address, state_text(v), v.record.get("ProcessorIndex"), v.status, v.record.get("ExitCount")),
           [Link("vmcs %d" % n, "vmcs %d" % n), Link("msrbitmap %d" % n, "msrbitmap %d" % n),
            Link("verify %d" % n, "verify %d" % n)])

    # regions
    cpu = v.record.get("ProcessorIndex")
    checks = region_checks(w, v, basic, maxphyaddr(ctx.target, cpu if isinstance(cpu, int) and
                                                   0 <= cpu < ctx.target.processor_count() else 0))
    checks += snapshot_consistency(v)
    launched = v.state in ("launched", "devirtualized")
    checks.append(Check("VMCS", "launch state", None,
                        "not in the layout map (implementation-specific); the driver says %s"
                        % ("launched" if launched else "not launched"), "25.1"))
    r.table(["region", "check", "result", "detail", "SDM"],
            [[c.region, c.name, verdict(c.ok), c.detail, c.sdm] for c in checks], title="regions")
    data["checks"] = [{"region": c.region, "check": c.name, "result": verdict(c.ok), "detail": c.detail,
                       "sdm": c.sdm} for c in checks]
    if any(c.ok is False for c in checks):
        r.exit_code = 1

    # host stack
    base, size = v.host_stack()
    if base:
        try:
            used = stack_high_water(w.read_host_stack(v), d.HostStackPattern)
            data["host_stack_used"] = used
            r.text("host stack 0x%x-0x%x (%d KiB): high-water mark %d bytes (%.0f%%)%s"
                   % (base, base + size, size // 1024, used, 100.0 * used / size,
                      "; OVERFLOW RISK" if used > size * 0.9 else ""))
        except HvError as e:
            r.text("host stack 0x%x-0x%x: %s" % (base, base + size, e))
    else:
        r.text("host stack: none allocated")

    # last exit
    exit_rows: List[List[Any]] = []
    reason = v.record.get("LastExitReason")
    if v.record.get("ExitCount") or (reason not in (None, 0, NO_EXIT)):
        dec = decode_exit_reason(reason)
        qual = v.record.get("LastExitQualification", 0) or 0
        exit_rows.append(["exit reason", hx(reason), exit_text(reason)])
        for name, value, meaning in decode_qualification(dec["basic"], qual):
            exit_rows.append(["  " + name, value, meaning])
        exit_rows.append(["instruction length", v.record.get("LastExitInstructionLength"), ""])
        exit_rows.append(["guest RIP", hx(v.record.get("LastGuestRip")), ""])
        counts = sorted(v.exit_counts().items(), key=lambda kv: -kv[1])
        if counts:
            exit_rows.append(["exits by reason", "", ", ".join("%s %d" % (exit_text(k), c) for k, c in counts)])
        data["last_exit_qualification"] = hx(qual)
        data["exit_counts"] = {hx(k): c for k, c in counts}  # keys: exit reasons as hex strings, like last_exit_reason
        r.table(["last exit", "value", "meaning"], exit_rows, title="last VM exit (SDM 28.2)")
    else:
        r.text("last VM exit: none recorded")
    unexpected = v.record.get("UnexpectedExitCount")
    if unexpected:
        r.text("unexpected exits: %d, last %s" % (unexpected, exit_text(v.record.get("LastUnexpectedExitReason", 0))))
    if v.record.get("TripleFault"):
        r.text("TRIPLE FAULT seen on this vCPU")

    # errors
    err = v.record.get("VmInstructionError", 0) or 0
    snap = v.snapshot()
    data["vm_instruction_error_name"] = vm_error_text(err)
    data["snapshot"] = {"reason": snap.reason, "count": snap.count, "sequence": snap.sequence,
                        "vm_instruction_error": snap.vm_instruction_error,
                        "exit_reason": hx(snap.exit_reason) if snap.exit_reason != NO_EXIT else None}
    lines = ["last VM-instruction error: %s (SDM 31.4)" % vm_error_text(err)]
    if v.state == "failed":
        lines.append("failed step: %s" % v.failed_step)
    lines.append("VMCS snapshot: %s, %d fields%s%s%s" % (
        snap.reason, snap.count,
        ", taken at exit %s" % exit_text(snap.exit_reason) if snap.count and snap.exit_reason != NO_EXIT else "",
        ", VM-instruction error %s" % vm_error_text(snap.vm_instruction_error) if snap.vm_instruction_error else "",
        " (TORN: the driver was writing it)" if snap.torn else ""))
    r.text("\n".join(lines))
    return r
