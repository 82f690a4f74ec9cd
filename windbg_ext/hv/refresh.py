"""Fresh VMCS values from a live session: processor N executes hv.sys's
snapshot hypercall through the `vmcall; int3` gadget the driver exports
(hv!HvSnapshotGadget), every register saved and restored by the target
backend; then vCPU N's snapshot holds what VMREAD returns now.

The hypercall interface mirrors driver/include/hv_hypercall.h (a test reads
the header): RAX = signature, RCX = function.
"""
from __future__ import annotations

from typing import List

from windbg_ext.target.base import TargetError, TargetSymbolError

HYPERCALL_SIGNATURE = 0x4D4D5662616C7668   # HV_HYPERCALL_SIGNATURE ("hvlabVMM")
HYPERCALL_SNAPSHOT = 2                     # HV_HYPERCALL_SNAPSHOT
GADGET_SYMBOL = "hv!HvSnapshotGadget"
REASON_HYPERCALL = "hypercall"             # the snapshot reason hv.sys records for it (hv/model.py)


class RefreshError(Exception):
    pass


def refresh_snapshot(w, index: int) -> str:
    """Runs the gadget on processor `index` and re-reads vCPU `index`; returns
    a line saying where the values come from. Raises RefreshError (one line)."""
    t = w.target
    if not t.live:
        raise RefreshError("--refresh needs a live debugging session (%s): shown is the snapshot hv.sys last "
                           "stored" % t.describe())
    before = w.vcpu(index)
    if before.state != "launched":
        raise RefreshError("vCPU %d is %s, not running a guest: no hypercall can reach hv.sys there"
                           % (index, before.state))
    seq = before.snapshot().sequence
    try:
        gadget = t.symbol(GADGET_SYMBOL)
    except TargetSymbolError:
        raise RefreshError("%s not found: this hv.sys exports no snapshot gadget (rebuild it), or reload its "
                           "symbols (.reload /f hv.sys)" % GADGET_SYMBOL)
    try:
        ops: List[str] = t.run_gadget(index, gadget, {"rax": HYPERCALL_SIGNATURE, "rcx": HYPERCALL_SNAPSHOT})
    except TargetError as e:
        raise RefreshError("--refresh on processor %d failed: %s" % (index, e))
    after = w.reload_vcpu(index)
    snap = after.snapshot()
    if snap.sequence == seq or snap.reason != REASON_HYPERCALL:
        raise RefreshError("UNKNOWN: the snapshot hypercall did not reach vCPU %d (sequence %d -> %d, reason %s): "
                           "its snapshot is not fresh" % (index, seq, snap.sequence, snap.reason))
    return "fresh: hv.sys VMREAD every field on processor %d just now (%s; %d target operations)" % (
        index, GADGET_SYMBOL, len(ops))
