"""The learner's own driver walked live: sevendays on the emulated machine, the
suite run in `emulated_lab kd` (as `!py -m windbg_ext` runs in WinDbg) from the
driver's PDB, the module base from the debugger's module list (`lm`). Every
VMXON / VMCS address equals the kd report's ground truth (cpu_truth); the VMCS
pages of running processors are scrambled as a real CPU leaves them (SDM
25.11.1), so region values are labelled LIVE and verify refuses them."""
from __future__ import annotations

import io

import pytest

from tests.kd.conftest import KdRun

from windbg_ext.target.kd_text import parse_module_list


def _session(sevendays, cpus, lines):
    from emulated_lab.kd.session import kd_session

    out = kd_session("baseline", cpus, sevendays["clang"], 0, None, lines, interactive=False, stream=io.StringIO())
    return KdRun(out, lines)


@pytest.mark.parametrize("cpus", [1, 2, 4])
def test_sevendays_walked_live_from_its_pdb(sevendays, cpus):
    n = cpus - 1
    py = "!py -m windbg_ext --symbols %s --json " % sevendays["pdb"]
    lines = ["lm m sevendays", py + "vmm", py + "vcpu %d" % n, py + "regions", py + "msrbitmap %d" % n,
             py + "vmcs %d --group host" % n, py + "verify %d" % n, "lm sevendays"]
    run = _session(sevendays, cpus, lines)
    truth = [(p["vmxon_pa"], p["vmcs_pa"]) for p in run.report["processors"]]
    assert len(truth) == cpus and all(vmxon and vmcs for vmxon, vmcs in truth)
    # lm: the debugger's module list; the suite takes the base from it, as WinDbg has it
    (mod,) = parse_module_list(run.outputs[0])
    vmm = run.json(1)
    assert mod["name"] == "sevendays" and vmm["driver"]["module_base_from"] == "the target's module list"
    assert int(vmm["driver"]["module_base"], 16) == mod["base"]
    assert vmm["processor_count"] == cpus
    assert [(v["vmxon_pa"], v["vmcs_pa"]) for v in vmm["vcpus"]] == truth
    vcpu = run.json(2)
    assert (vcpu["vmxon_pa"], vcpu["vmcs_pa"]) == truth[n]
    checks = {(c["region"], c["check"]): c for c in vcpu["checks"]}
    assert checks[("VMCS", "revision id")]["result"] == "PASS"       # bytes 0-7 are what memory holds
    assert checks[("host stack", "HOST_RSP inside (region*)")]["result"] == "n/a"   # stale live: not checked
    regions = run.json(3)["regions"]
    by_region = {(r["vcpu"], r["region"]): r["pa"] for r in regions}
    assert [(by_region[(i, "VMXON")], by_region[(i, "VMCS")]) for i in range(cpus)] == truth
    assert {r["result"] for r in regions} == {"PASS"}
    bitmap = run.json(4)
    assert bitmap["address"] == vcpu["msr_bitmap_pa"] and bitmap["read"] == [] and bitmap["write"] == []
    # vmcs N: the page is scrambled (an active VMCS, SDM 25.11.1): no values shown at all, one line saying why
    # (it used to list the scrambled bytes as region values with a LIVE note)
    err = run.outputs[5]
    assert err.startswith("error: vCPU %d of sevendays: its VMCS page (%s)" % (n, truth[n][1])) and err.count("\n") == 1
    assert "25.11.1" in err and "VMREAD" in err
    # verify N: a verdict on scrambled bytes would be about nothing: one line saying why and what to do
    err = run.outputs[6]
    assert err.startswith("error: verify %d:" % n) and err.count("\n") == 1
    assert "25.11.1" in err and "live and in a dump alike" in err and "0x%x" % int(truth[n][1], 16) in err
    assert run.outputs[7].startswith("Syntax error in 'lm sevendays'")   # kd's lm takes `m PATTERN`


def test_scan_live_over_a_range_finds_the_regions_the_cpu_used(sevendays):
    """scan with no symbols, live: only the range given, pages trusted for their first 8 bytes only."""
    probe = _session(sevendays, 2, [])
    pas = sorted(int(pa, 16) for p in probe.report["processors"] for pa in (p["vmxon_pa"], p["vmcs_pa"]))
    lo, hi = pas[0] & ~0xFFFF, (pas[-1] + 0x10000) & ~0xFFFF
    run = _session(sevendays, 2, ["!py -m windbg_ext --json scan --range 0x%x-0x%x" % (lo, hi)])
    doc = run.json(0)
    found = sorted(int(c["pa"], 16) for c in doc["candidates"])
    assert found == pas    # every VMXON and VMCS region, nothing else (their headers look alike live)
    assert all(any("SDM 25.11.1" in e for e in c["evidence"]) for c in doc["candidates"])
