"""Short texts about the driver's state shared by the hv commands (pure)."""
from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional

from windbg_ext.arch.exits import decode_exit_reason
from windbg_ext.arch.vm_errors import VM_INSTRUCTION_ERRORS
from windbg_ext.hv.descriptor import Descriptor, DescriptorError
from windbg_ext.hv.model import FAILED_STEPS, NO_EXIT, Vcpu, failure_snapshot


def hx(v: Optional[int]) -> Optional[str]:
    return None if v is None else "0x%x" % v


def exit_text(value: int) -> str:
    """Full exit-reason field -> "CPUID (10)" / "entry failure: INVALID_GUEST_STATE (33)"."""
    d = decode_exit_reason(value)
    text = "%s (%d)" % (d["name"], d["basic"])
    return ("entry failure: " + text) if d["entry_failure"] else text


def vm_error_text(n: int) -> str:
    if not n:
        return "none"
    name = VM_INSTRUCTION_ERRORS.get(n, ("UNKNOWN", "not in SDM 31.4"))[0]
    return "%d %s" % (n, name)


def state_text(v: Vcpu, error_name: bool = True) -> str:
    """"launched", or "failed at VMLAUNCH (error 7 ENTRY_INVALID_CONTROL_FIELD)"; without error_name
    "failed at VMLAUNCH (error 7)", for a table column that must fit 120 columns."""
    text = v.state
    if v.state == "failed":
        text = "failed at %s" % v.failed_step
        err = v.record.get("VmInstructionError", 0)
        if err:
            text += " (error %s)" % (vm_error_text(err) if error_name else err)
    return text


def last_exit(v: Vcpu) -> Optional[str]:
    if not v.record.get("ExitCount") and v.record.get("LastExitReason", 0) in (0, NO_EXIT):
        return None
    return exit_text(v.LastExitReason)


def vcpu_row_data(v: Vcpu) -> Dict[str, Any]:
    base, size = v.host_stack()
    return {
        "vcpu": v.index, "state": v.state, "state_text": state_text(v), "address": hx(v.address),
        "vmxon_va": hx(v.record.get("VmxonRegion")), "vmxon_pa": hx(v.record.get("VmxonRegionPa")),
        "vmcs_va": hx(v.record.get("VmcsRegion")), "vmcs_pa": hx(v.record.get("VmcsRegionPa")),
        "msr_bitmap_va": hx(v.record.get("MsrBitmap")), "msr_bitmap_pa": hx(v.record.get("MsrBitmapPa")),
        "host_stack": [hx(base), hx(base + size)] if base else None,
        "exit_count": v.record.get("ExitCount"),
        "last_exit_reason": hx(v.record.get("LastExitReason")),
        "last_exit": last_exit(v),
        "vm_instruction_error": v.record.get("VmInstructionError"),
        "failed_step": v.failed_step,
        "status": hx(v.status),
    }


class FailureSummary(NamedTuple):
    """The descriptor's last-failure record, as the parts commands show."""
    processor: int
    step: str                   # "VMLAUNCH", ...
    vm_error: str               # vm_error_text of the VM-instruction error
    exit_reason: Optional[str]  # exit_text of the recorded exit reason, None when there was none
    status: int

    def text(self) -> str:
        """"processor 0 at VMLAUNCH, VM-instruction error 7 ..., status 0xc0000001"."""
        return "processor %d at %s, VM-instruction error %s%s, status 0x%08x" % (
            self.processor, self.step, self.vm_error,
            ", exit reason %s" % self.exit_reason if self.exit_reason else "", self.status)


def failure_summary(d: Descriptor) -> Optional[FailureSummary]:
    """The recorded failure, or None when the descriptor holds no valid one."""
    f = d.failure
    if f is None or not f.valid:
        return None
    exit_reason = None
    try:
        snap = failure_snapshot(d)
        if snap is not None and snap.exit_reason != NO_EXIT:
            exit_reason = exit_text(snap.exit_reason)
    except DescriptorError:  # no snapshot layout in this build's member table
        pass
    return FailureSummary(f.processor, FAILED_STEPS.get(f.failed_step, str(f.failed_step)),
                          vm_error_text(f.vm_instruction_error), exit_reason, f.status)
