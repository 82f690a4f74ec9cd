"""refresh_snapshot (`vmcs N --refresh`) against a hand-made walker and target (issue 16: refresh.py's mutants):
its refusals word for word and the hypercall it asks for. The registers are typed in from
driver/include/hv_hypercall.h: RAX = HV_HYPERCALL_SIGNATURE 0x4D4D5662616C7668 ("hvlabVMM" read as a
little-endian qword), RCX = HV_HYPERCALL_SNAPSHOT 2; a fresh snapshot has reason "hypercall"
(HV_SNAPSHOT_REASON_HYPERCALL, hv_debug.h) and a new sequence."""
from __future__ import annotations

import pytest

from windbg_ext.hv.refresh import RefreshError, refresh_snapshot
from windbg_ext.target.base import TargetError, TargetSymbolError

GADGET = 0xFFFF_F800_0ABC_0000


class _Snapshot:
    def __init__(self, sequence, reason):
        self.sequence, self.reason = sequence, reason


class _Vcpu:
    def __init__(self, state, sequence, reason):
        self.state, self._snap = state, _Snapshot(sequence, reason)

    def snapshot(self):
        return self._snap


class _Target:
    def __init__(self, live=True, gadget=GADGET, fails=None):
        self.live, self.gadget, self.fails = live, gadget, fails
        self.gadget_runs = []

    def describe(self):
        return "dump x.dmp (full, 9 pages)"

    def symbol(self, name):
        if self.gadget is None or name != "hv!HvSnapshotGadget":
            raise TargetSymbolError(name)
        return self.gadget

    def run_gadget(self, cpu, address, registers):
        self.gadget_runs.append((cpu, address, registers))
        if self.fails:
            raise TargetError(self.fails)
        return ["save", "set rax", "set rcx", "go", "restore"]


class _Walker:
    """vcpu(n) gives `before`, reload_vcpu(n) `after`; the indexes asked for are kept."""

    def __init__(self, target, before, after=None):
        self.target, self.before, self.after = target, before, after
        self.asked = []

    def vcpu(self, n):
        self.asked.append(("vcpu", n))
        return self.before

    def reload_vcpu(self, n):
        self.asked.append(("reload", n))
        return self.after


def _refusal(w, index=1):
    with pytest.raises(RefreshError) as e:
        refresh_snapshot(w, index)
    return str(e.value)


def test_a_fresh_snapshot(capsys):
    t = _Target()
    w = _Walker(t, _Vcpu("launched", 2, "every exit"), _Vcpu("launched", 4, "hypercall"))
    assert refresh_snapshot(w, 1) == ("fresh: hv.sys VMREAD every field on processor 1 just now "
                                      "(hv!HvSnapshotGadget; 5 target operations)")
    assert t.gadget_runs == [(1, GADGET, {"rax": 0x4D4D5662616C7668, "rcx": 2})]
    assert int.from_bytes(b"hvlabVMM", "little") == 0x4D4D5662616C7668
    assert w.asked == [("vcpu", 1), ("reload", 1)]


def test_refusals_before_the_hypercall():
    assert _refusal(_Walker(_Target(live=False), _Vcpu("launched", 2, "every exit"))) == (
        "--refresh needs a live debugging session (dump x.dmp (full, 9 pages)): shown is the snapshot hv.sys last "
        "stored")
    w = _Walker(_Target(), _Vcpu("failed", 2, "VMLAUNCH failed"))
    assert _refusal(w) == "vCPU 1 is failed, not running a guest: no hypercall can reach hv.sys there"
    assert w.asked == [("vcpu", 1)]
    assert _refusal(_Walker(_Target(gadget=None), _Vcpu("launched", 2, "every exit"))) == (
        "hv!HvSnapshotGadget not found: this hv.sys exports no snapshot gadget (rebuild it), or reload its symbols "
        "(.reload /f hv.sys)")
    assert _refusal(_Walker(_Target(fails="processor 1 is not stopped"), _Vcpu("launched", 2, "every exit"))) == (
        "--refresh on processor 1 failed: processor 1 is not stopped")


@pytest.mark.parametrize("sequence,reason", [(2, "hypercall"), (4, "every exit"), (2, "every exit")])
def test_a_snapshot_that_did_not_change_is_not_fresh(sequence, reason):
    # either sign alone (same sequence, or another reason) means the hypercall did not store this snapshot
    w = _Walker(_Target(), _Vcpu("launched", 2, "every exit"), _Vcpu("launched", sequence, reason))
    assert _refusal(w) == ("UNKNOWN: the snapshot hypercall did not reach vCPU 1 (sequence 2 -> %d, reason %s): its "
                           "snapshot is not fresh" % (sequence, reason))
