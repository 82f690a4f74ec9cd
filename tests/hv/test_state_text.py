"""hv/state_text.py: the words `vmm`, `vcpu`, `vmcs` and error messages use for the driver's
state, exactly, on driver structures the builder wrote (tests/hv/builder.py, through the
compiled hv_state_writer) and read back through the walker."""
from __future__ import annotations

import pytest

from windbg_ext.hv.state_text import (FailureSummary, exit_text, failure_summary, hx, last_exit, state_text,
                                      vcpu_row_data, vm_error_text)
from windbg_ext.hv.walker import HvWalker
from windbg_ext.target.image import ImageTarget

from .builder import HvState

NO_EXIT = 0xFFFFFFFF


def _walker(state, tmp_path, name):
    t = ImageTarget(state.write_image(str(tmp_path / name)))
    return HvWalker(t), t


def test_small_words():
    assert hx(None) is None and hx(0) == "0x0" and hx(0xFFFFF800) == "0xfffff800"
    assert exit_text(10) == "CPUID (10)"
    assert exit_text(0x80000021) == "entry failure: INVALID_GUEST_STATE (33)"
    assert vm_error_text(0) == "none"
    assert vm_error_text(7) == "7 ENTRY_INVALID_CONTROL_FIELD"
    assert vm_error_text(99) == "99 UNKNOWN"


def test_vcpu_row_data_of_a_running_vcpu(state2, image2):
    t = ImageTarget(image2)
    try:
        v = HvWalker(t).vcpu(1)
        r = state2.regions[1]
        assert vcpu_row_data(v) == {
            "vcpu": 1, "state": "launched", "state_text": "launched", "address": "0x%x" % v.address,
            "vmxon_va": "0x%x" % r["vmxon_va"], "vmxon_pa": "0x%x" % r["vmxon_pa"],
            "vmcs_va": "0x%x" % r["vmcs_va"], "vmcs_pa": "0x%x" % r["vmcs_pa"],
            "msr_bitmap_va": "0x%x" % r["bitmap_va"], "msr_bitmap_pa": "0x%x" % r["bitmap_pa"],
            "host_stack": ["0x%x" % r["stack_va"], "0x%x" % (r["stack_va"] + 0x6000)],
            "exit_count": 101, "last_exit_reason": "0xa", "last_exit": "CPUID (10)",
            "vm_instruction_error": 0, "failed_step": "none", "status": "0x0",
        }
        assert v.address == state2.va["vcpus"] + state2.facts["sizeof"]["HV_VCPU"]
    finally:
        t.close()


@pytest.mark.parametrize("values,want", [
    (dict(ExitCount=0, LastExitReason=NO_EXIT), None),              # never exited
    (dict(ExitCount=0, LastExitReason=0), None),
    (dict(ExitCount=0, LastExitReason=10), "CPUID (10)"),           # a reason without a count still says it
    (dict(ExitCount=3, LastExitReason=0), "EXCEPTION_NMI (0)"),     # a count with reason 0 is exit 0
    (dict(ExitCount=3, LastExitReason=0x80000021), "entry failure: INVALID_GUEST_STATE (33)"),
])
def test_last_exit(tmp_path, values, want):
    s = HvState(vcpus=1)
    s.vcpu_values[0].update(values)
    w, t = _walker(s.build(), tmp_path, "one.hvimg")
    try:
        assert last_exit(w.vcpu(0)) == want
    finally:
        t.close()


def test_state_text_of_a_failed_vcpu(tmp_path):
    s = HvState(vcpus=2)
    s.vcpu_values[0].update(State=3, FailedStep=8, VmInstructionError=7, Status=0xC0000001)
    s.vcpu_values[1].update(State=3, FailedStep=4, VmInstructionError=0)
    w, t = _walker(s.build(), tmp_path, "failed.hvimg")
    try:
        v0, v1 = w.vcpu(0), w.vcpu(1)
        assert state_text(v0) == "failed at VMLAUNCH (error 7 ENTRY_INVALID_CONTROL_FIELD)"
        assert state_text(v0, error_name=False) == "failed at VMLAUNCH (error 7)"
        assert state_text(v1) == "failed at VMXON"
        row = vcpu_row_data(v0)
        assert (row["state"], row["failed_step"], row["vm_instruction_error"], row["status"]) == \
            ("failed", "VMLAUNCH", 7, "0xc0000001")
    finally:
        t.close()


def test_failure_summary(tmp_path):
    s = HvState(vcpus=2)
    s.failure = dict(Valid=1, ProcessorIndex=1, FailedStep=8, VmInstructionError=0, Status=0xC0000001)
    s.failure_snapshot_meta = dict(Reason=5, ExitReason=0x80000021, Sequence=2)
    s.failure_snapshot = {0x4402: 0x80000021}
    w, t = _walker(s.build(), tmp_path, "failure.hvimg")
    try:
        f = failure_summary(w.descriptor())
        assert f == FailureSummary(1, "VMLAUNCH", "none", "entry failure: INVALID_GUEST_STATE (33)", 0xC0000001)
        assert f.text() == ("processor 1 at VMLAUNCH, VM-instruction error none, exit reason entry failure: "
                            "INVALID_GUEST_STATE (33), status 0xc0000001")
    finally:
        t.close()
    assert FailureSummary(0, "VMXON", "8 ENTRY_INVALID_HOST_STATE_FIELD", None, 0x1).text() == \
        "processor 0 at VMXON, VM-instruction error 8 ENTRY_INVALID_HOST_STATE_FIELD, status 0x00000001"
    w, t = _walker(HvState(vcpus=1).build(), tmp_path, "none.hvimg")
    try:
        assert failure_summary(w.descriptor()) is None
    finally:
        t.close()


def test_failure_summary_without_an_exit_and_with_an_unknown_step(tmp_path):
    s = HvState(vcpus=1)
    s.failure = dict(Valid=1, ProcessorIndex=0, FailedStep=99, VmInstructionError=7, Status=0xC0000001)
    s.failure_snapshot_meta = dict(Reason=1, VmInstructionError=7, ExitReason=NO_EXIT, Sequence=2)
    s.failure_snapshot = {0x4402: 0}
    w, t = _walker(s.build(), tmp_path, "noexit.hvimg")
    try:
        f = failure_summary(w.descriptor())
    finally:
        t.close()
    assert f == FailureSummary(0, "99", "7 ENTRY_INVALID_CONTROL_FIELD", None, 0xC0000001)


def test_no_host_stack_is_none(tmp_path):
    s = HvState(vcpus=1)
    s.vcpu_values[0].update(HostStack=0)
    w, t = _walker(s.build(), tmp_path, "nostack.hvimg")
    try:
        assert vcpu_row_data(w.vcpu(0))["host_stack"] is None
    finally:
        t.close()
