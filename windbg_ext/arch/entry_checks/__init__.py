"""The VM-entry checks of SDM Vol. 3 Chapter 27, as one ordered table.

CHECKS runs in the processor's order (27.1): VM-execution/exit/entry
controls (27.2.1, failure = VMfailValid error 7), host state (27.2.2-27.2.4,
error 8), guest state (27.3.1, VM exit 0x80000021 with a qualification).
`evaluate(state)` gives the verdict the processor would give and every
failing check, first the one the processor reports.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional

from windbg_ext.arch.entry_checks import controls, guest_regs, guest_segments, guest_state, host
from windbg_ext.arch.entry_checks.model import (DEFAULT_MAXPHYADDR, GROUP_ORDER, NOT_APPLICABLE, Check, EntryState,
                                                NotChecked)

CHECKS = controls.CHECKS + host.CHECKS + guest_regs.CHECKS + guest_segments.CHECKS + guest_state.CHECKS
BY_ID = {c.id: c for c in CHECKS}

VM_ERROR_BY_GROUP = {"control": 7, "host": 8}  # SDM 31.4
ENTRY_FAILURE_GUEST_STATE = 0x80000021  # basic reason 33 with bit 31 (SDM 28.2.1, App. C)

PASS, FAIL, NA, NOT_CHECKED = "PASS", "FAIL", "n/a", "not checked"


class Outcome(NamedTuple):
    check: Check
    status: str        # PASS | FAIL | n/a | not checked
    message: str       # failure message (with the SDM section) or why not checked; "" otherwise
    field: str = ""    # on FAIL: the first of the check's fields its message names (the one to fix), else ""
    warning: str = ""  # not checked, but the value almost always fails on hardware


class Verdict(NamedTuple):
    # success: every check ran and passed; unverified: none failed, but some could not run
    # (they need memory, CPUID, ... that the input lacks); vmfail_valid | entry_failure
    result: str
    vm_instruction_error: Optional[int]
    exit_reason: Optional[int]
    exit_qualification: Optional[int]
    outcomes: List[Outcome]          # every check, in order
    missing_fields: List[str]        # fields read but absent from the input (taken as 0)

    @property
    def failures(self) -> List[Outcome]:
        return [o for o in self.outcomes if o.status == FAIL]

    @property
    def not_checked(self) -> List[Outcome]:
        return [o for o in self.outcomes if o.status == NOT_CHECKED]


def run_check(check: Check, state: EntryState) -> Outcome:
    state.named = []
    r = check.test(state)
    if r is None:
        return Outcome(check, PASS, "")
    if r is NOT_APPLICABLE:
        return Outcome(check, NA, "")
    if isinstance(r, NotChecked):
        return Outcome(check, NOT_CHECKED, r.why, warning=r.warning)
    named = next((n for n in state.named if n in check.fields), "")
    return Outcome(check, FAIL, "%s, SDM %s" % (r, check.sdm), named)


def evaluate(state: EntryState) -> Verdict:
    outcomes = [run_check(c, state) for c in CHECKS]
    first = next((o for o in outcomes if o.status == FAIL), None)
    missing = sorted(set(state.missing))
    if first is None:
        unchecked = any(o.status == NOT_CHECKED for o in outcomes)
        return Verdict("unverified" if unchecked else "success", None, None, None, outcomes, missing)
    group = first.check.group
    if group in VM_ERROR_BY_GROUP:
        return Verdict("vmfail_valid", VM_ERROR_BY_GROUP[group], None, None, outcomes, missing)
    return Verdict("entry_failure", None, ENTRY_FAILURE_GUEST_STATE, first.check.qualification, outcomes, missing)


__all__ = ["CHECKS", "BY_ID", "Check", "EntryState", "Outcome", "Verdict", "evaluate", "run_check",
           "DEFAULT_MAXPHYADDR", "GROUP_ORDER", "PASS", "FAIL", "NA", "NOT_CHECKED", "ENTRY_FAILURE_GUEST_STATE"]
