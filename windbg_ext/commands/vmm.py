"""vmm: find hv.sys's debug descriptor and show the VMM context and its vCPU table.

Reads: the descriptor (header, then tables), the VMM context, the whole vCPU
array: 4 target reads however many vCPUs (3 + N at most, the issue's budget).
"""
from __future__ import annotations

from windbg_ext.arch.capabilities import decode_basic
from windbg_ext.commands import vmm_symbols
from windbg_ext.hv.descriptor import DRIVER_STATES
from windbg_ext.hv.foreign import uses_symbols
from windbg_ext.hv.model import failure_snapshot
from windbg_ext.hv.state_text import failure_summary, hx, state_text, vcpu_row_data
from windbg_ext.hv.walker import failure_commands, walker_for
from windbg_ext.render.report import Link, Report

SUMMARY = "hv.sys's VMM context and vCPU table (finds the debug descriptor by symbol or by scanning)"
NEEDS_TARGET = True


def add_arguments(p) -> None:
    pass


def run(ctx, args) -> Report:
    if uses_symbols(ctx):  # a driver that is not hv.sys, walked from its symbols and a map
        return vmm_symbols.run(ctx, args)
    w = walker_for(ctx)
    d = w.descriptor()
    desc = {"address": hx(d.address), "found_by": w.found_by, "version": d.Version, "producer": d.producer,
            "driver_state": d.driver_state, "load_status": hx(d.LoadStatus & 0xFFFFFFFF),
            "vcpu_count": d.VcpuCount, "layout_status": d.layout_status, "layout_fields": d.LayoutCount,
            "layout_revision_id": hx(d.LayoutRevisionId), "snapshot_on_every_exit": bool(d.SnapshotOnEveryExit)}
    r = Report(data={"descriptor": desc})
    r.text("hv debug descriptor v%d at 0x%x (%s): %s, driver %s, load status 0x%08x\n"
           "VMCS layout map: %s, %d fields (revision id 0x%x); snapshot at every exit: %s"
           % (d.Version, d.address, w.found_by, d.producer or "?", d.driver_state, d.LoadStatus & 0xFFFFFFFF,
              d.layout_status, d.LayoutCount, d.LayoutRevisionId, "on" if d.SnapshotOnEveryExit else "off"))
    failure = failure_summary(d)
    if failure is not None:
        f = d.failure
        commands = failure_commands(d)
        fields = commands != ["check"]  # a VMCS was current: its fields and the check that fails
        desc["last_failure"] = {"processor": f.processor, "failed_step": f.failed_step,
                                "vm_instruction_error": f.vm_instruction_error, "status": hx(f.status),
                                "snapshot_fields": failure_snapshot(d).count if fields else 0}
        desc["last_failure"]["step"] = failure.step   # the step's name, as the text shows it
        if fields:
            r.text("recorded failure: %s; see:" % failure.text(), [Link(c, c) for c in commands])
        else:
            r.text("recorded failure: %s (no VMCS was current: no fields recorded)" % failure.text())
    if not (d.VmmContextVa and d.VcpuArrayVa):
        if desc.get("last_failure", {}).get("snapshot_fields"):  # the failed VMCS is the lead: verify N above
            r.text("hv.sys is not running (driver state: %s): no VMM context, no vCPUs" % d.driver_state)
        else:  # it failed before any VMCS (or left no record): can these processors enter VMX operation at all?
            r.text("hv.sys is not running (driver state: %s): no VMM context, no vCPUs; can these processors enter "
                   "VMX operation?" % d.driver_state, [Link("check", "check")])
        r.data["vmm"] = None
        r.data["vcpus"] = []
        r.exit_code = 1
        return r
    vmm = w.vmm()
    basic = vmm.vmx_basic
    b = decode_basic(basic)
    vmm_data = {"address": hx(vmm.record.address), "processor_count": vmm.record.get("ProcessorCount"),
                "virtualized_count": vmm.record.get("VirtualizedCount"), "state": _driver_state(vmm.record.get("State")),
                "status": hx(vmm.status) if vmm.record.has("Status") else None,
                "ia32_vmx_basic": hx(basic), "revision_id": hx(b["revision_id"]),
                "true_controls": b["true_controls"]}
    r.data["vmm"] = vmm_data
    r.text("VMM context at 0x%x: %s of %s processors virtualized; IA32_VMX_BASIC 0x%x (revision id 0x%x%s)"
           % (vmm.record.address, vmm_data["virtualized_count"], vmm_data["processor_count"], basic,
              b["revision_id"], ", TRUE_* controls" if b["true_controls"] else ""))
    rows, items = [], []
    for v in w.vcpus():
        item = vcpu_row_data(v)
        items.append(item)
        stack = "%s-%s" % tuple(item["host_stack"]) if item["host_stack"] else None
        # the error's name is in the recorded-failure line and `vcpu N`: the column stays narrow
        rows.append([Link(v.index, "vcpu %d" % v.index), state_text(v, error_name=False), item["vmxon_va"], item["vmxon_pa"],
                     item["vmcs_va"], item["vmcs_pa"], item["msr_bitmap_pa"], stack, item["exit_count"],
                     item["last_exit"]])
    r.data["vcpus"] = items
    r.table(["vCPU", "state", "VMXON VA", "VMXON PA", "VMCS VA", "VMCS PA", "MSR bitmap PA", "host stack",
             "exits", "last exit"], rows, wide_only=["VMXON VA", "VMCS VA", "host stack"])
    failed = [i["vcpu"] for i in items if i["state"] == "failed"]
    if failed:
        r.text("vCPU %s failed: see vcpu N" % ", ".join(map(str, failed)),
               [Link("vcpu %d" % n, "vcpu %d" % n) for n in failed])
        r.exit_code = 1
    return r


def _driver_state(code) -> str:
    """HV_VMM_CONTEXT.State (HV_DRIVER_STATE_*) as a word, like a vCPU's state in the same JSON."""
    return DRIVER_STATES.get(code, "unknown (%s)" % code)
