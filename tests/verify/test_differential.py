"""The checker against the real thing: every case is launched on the Bochs
CPU model (emulated_lab.entry_probe) and checked by windbg_ext's VM-entry
checks; the verdicts must be identical (success / VMfailValid n / VM exit
0x80000021 with its qualification), and the checker's first failure must be
the rule the case breaks."""
from __future__ import annotations

import pytest

from tests.verify import cases as C

from emulated_lab.entry_probe import EntryProbe, LaunchResult
from emulated_lab.errors import MachineError
from windbg_ext.arch import entry_checks as ec
from windbg_ext.arch.vmcs_fields import BY_ENCODING, by_name


class Ctx:
    def __init__(self, probe: EntryProbe) -> None:
        self.m = probe.m
        self.scratch_pa = probe.scratch_pa
        self.scratch = probe.scratch_pa
        self.vmcs = probe.vmcs_pa


class _Probes:
    """One probe for the module; a new one if a case left it unusable (then only
    that case fails, not every case after it)."""

    def __init__(self) -> None:
        self.p = None

    def get(self) -> EntryProbe:
        if self.p is not None and self.p._broken:
            self.p.close()
            self.p = None
        if self.p is None:
            self.p = EntryProbe()
        return self.p


@pytest.fixture(scope="module")
def probes():
    h = _Probes()
    yield h
    if h.p is not None:
        h.p.close()


@pytest.fixture
def probe(probes):
    return probes.get()


def _named(state):
    return {BY_ENCODING[e].name: v for e, v in state.items()}


def _encoded(named):
    return {by_name(n).encoding: v for n, v in named.items()}


def _read_or_none(probe, pa, n):
    """The machine's memory as EntryState wants it: None where no memory backs the address."""
    try:
        return probe.m.read_phys(pa, n)
    except MachineError:
        return None


def run_case(probe, mutate):
    """(checker verdict, CPU outcome as a LaunchResult, fields launched)."""
    ctx = Ctx(probe)
    # the scratch page starts every case zeroed (cases write PDPTEs into it)
    probe.m.write_phys(probe.scratch_pa, bytes(4096))
    v = _named(probe.baseline())
    mutate(v, ctx)
    fields = _encoded(v)
    cpu = probe.launch(fields)
    state = ec.EntryState(fields, probe.caps(), maxphyaddr=probe.maxphyaddr(),
                          read_physical=lambda pa, n: _read_or_none(probe, pa, n), vmcs_address=probe.vmcs_pa,
                          sgx=probe.sgx())
    return ec.evaluate(state), cpu


def same(verdict, cpu) -> bool:
    if verdict.result != cpu.result:
        return False
    if verdict.result == "vmfail_valid":
        return verdict.vm_instruction_error == cpu.vm_instruction_error
    if verdict.result == "entry_failure":
        return (verdict.exit_reason, verdict.exit_qualification) == (cpu.exit_reason, cpu.qualification)
    return True


def describe(verdict) -> str:
    """The checker's verdict in the words the probe uses for the CPU's outcome."""
    return LaunchResult(verdict.result, verdict.vm_instruction_error, verdict.exit_reason,
                        verdict.exit_qualification).short()


ALL = C.CONTROL_CASES + C.HOST_CASES + C.GUEST_CASES + C.SUCCESS_CASES


def test_case_table_is_broad():
    """Many cases in every group, each expected check exists, no name twice."""
    assert len(C.CONTROL_CASES) >= 40 and len(C.HOST_CASES) >= 25 and len(C.GUEST_CASES) >= 60
    names = [c[0] for c in ALL + C.DIVERGENCES]
    assert len(names) == len(set(names))
    for _, _, check_id in C.CONTROL_CASES + C.HOST_CASES + C.GUEST_CASES:
        assert check_id in ec.BY_ID, check_id
    for _, _, check_id, _ in C.DIVERGENCES:
        assert check_id is None or check_id in ec.BY_ID, check_id


def test_baseline_passes_every_check_and_launches(probe):
    verdict, cpu = run_case(probe, C.setf())
    assert [o.message for o in verdict.failures] == []
    assert not [o for o in verdict.outcomes if o.status == ec.NOT_CHECKED]
    assert cpu.result == "success" and cpu.exit_reason == 10  # the guest's CPUID exited


@pytest.mark.parametrize("name,mutate,check_id", ALL, ids=[c[0] for c in ALL])
def test_checker_matches_cpu(probe, name, mutate, check_id):
    verdict, cpu = run_case(probe, mutate)
    assert same(verdict, cpu), "%s: checker says %s (%s), the CPU did %s" % (
        name, describe(verdict), [o.message for o in verdict.failures[:2]], cpu.short())
    if check_id is None:
        assert verdict.result == "success"
    else:
        assert verdict.failures, name
        assert verdict.failures[0].check.id == check_id, (name, [o.message for o in verdict.failures])
        group = verdict.failures[0].check.group
        assert {"control": "vmfail_valid", "host": "vmfail_valid", "guest": "entry_failure"}[group] == cpu.result


@pytest.mark.parametrize("name,mutate,check_id,bochs", C.DIVERGENCES, ids=[c[0] for c in C.DIVERGENCES])
def test_documented_bochs_divergence(probe, name, mutate, check_id, bochs):
    """The checker follows the SDM; Bochs does what docs/verify.md says it does.
    If Bochs is ever fixed, this fails and the divergence can be removed."""
    verdict, cpu = run_case(probe, mutate)
    if check_id is None:  # the SDM allows it; Bochs refuses
        assert verdict.result == "success", [o.message for o in verdict.failures]
    else:
        assert verdict.failures and verdict.failures[0].check.id == check_id
    assert cpu.short() == bochs
    assert not same(verdict, cpu)


def sdm_state(probe, mutate, change_caps, kwargs):
    """An SDM-only case as the checker sees it: the probe's baseline, changed, with capability MSRs
    changed the way a processor with the feature reports them."""
    ctx = Ctx(probe)
    probe.m.write_phys(probe.scratch_pa, bytes(4096))
    v = _named(probe.baseline())
    mutate(v, ctx)
    caps = probe.caps()
    if change_caps is not None:
        change_caps(caps)
    return ec.EntryState(_encoded(v), caps, maxphyaddr=probe.maxphyaddr(),
                         read_physical=lambda pa, n: _read_or_none(probe, pa, n), vmcs_address=probe.vmcs_pa,
                         sgx=probe.sgx(), **kwargs)


@pytest.mark.parametrize("name,mutate,change_caps,kwargs,check_id", C.SDM_CASES, ids=[c[0] for c in C.SDM_CASES])
def test_sdm_only_case(probe, name, mutate, change_caps, kwargs, check_id):
    """Rules the CPU model cannot show (it lacks the feature, or the probe's host is 64-bit and
    outside SMM): the checker names the check the SDM's text says fails, and the changed
    capabilities alone leave the baseline valid (the case's field change is what breaks it)."""
    verdict = ec.evaluate(sdm_state(probe, mutate, change_caps, kwargs))
    assert verdict.failures and verdict.failures[0].check.id == check_id, [o.check.id for o in verdict.failures]
    if not kwargs:
        clean = ec.evaluate(sdm_state(probe, C.setf(), change_caps, kwargs))
        assert clean.result == "success", [o.message for o in clean.failures]


def test_every_check_is_the_first_failure_of_some_case():
    """No VM-entry check can be deleted without a test failing: each one is the first failure
    the checker must report for at least one case (CPU-backed, a documented divergence, or SDM-only)."""
    pinned = {c[2] for c in C.CONTROL_CASES + C.HOST_CASES + C.GUEST_CASES}
    pinned |= {c[2] for c in C.DIVERGENCES if c[2]} | {c[4] for c in C.SDM_CASES}
    assert [c.id for c in ec.CHECKS if c.id not in pinned] == []
    assert pinned <= set(ec.BY_ID)
    names = [c[0] for c in ALL + C.DIVERGENCES + C.SDM_CASES]
    assert len(names) == len(set(names))
