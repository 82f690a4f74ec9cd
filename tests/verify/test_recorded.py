"""verify compares its verdict with what the driver recorded (VM-instruction error, or
a VM-entry failure exit): both the agreeing and the DISAGREEING outcome are reported."""
from __future__ import annotations

from windbg_ext.arch.entry_checks import ENTRY_FAILURE_GUEST_STATE, Verdict
from windbg_ext.commands.verify import _recorded_agrees, _recorded_line

SUCCESS = Verdict("success", None, None, None, [], [])
ERROR_7 = Verdict("vmfail_valid", 7, None, None, [], [])
ERROR_8 = Verdict("vmfail_valid", 8, None, None, [], [])
GUEST = Verdict("entry_failure", None, ENTRY_FAILURE_GUEST_STATE, 0, [], [])


def rec(error=None, exit_reason=None):
    return {"snapshot_reason": "VMLAUNCH failed", "vm_instruction_error": error, "exit_reason": exit_reason}


def test_agreement():
    assert _recorded_line(rec(error=7), ERROR_7) == "VMfailValid, VM-instruction error 7: agrees with the checks"
    assert _recorded_line(rec(exit_reason=ENTRY_FAILURE_GUEST_STATE), GUEST) == \
        "VM-entry failure, exit reason 0x80000021: agrees with the checks"
    assert _recorded_line(rec(exit_reason=10), SUCCESS) == "no failure (VMLAUNCH failed): agrees with the checks"


def test_disagreement_is_said_plainly():
    assert _recorded_line(rec(error=7), SUCCESS) == "VMfailValid, VM-instruction error 7: DISAGREES with the checks"
    assert _recorded_line(rec(error=7), ERROR_8) == "VMfailValid, VM-instruction error 7: DISAGREES with the checks"
    assert _recorded_line(rec(exit_reason=ENTRY_FAILURE_GUEST_STATE), ERROR_7).endswith("DISAGREES with the checks")
    assert _recorded_line(rec(exit_reason=0x80000022), GUEST).endswith("DISAGREES with the checks")
    assert _recorded_line(rec(), GUEST) == "no failure (VMLAUNCH failed): DISAGREES with the checks"
    assert not _recorded_agrees(rec(exit_reason=10), ERROR_7)
