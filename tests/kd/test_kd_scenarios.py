"""Every scenario the lab lists: the suite in a kd session on the running
machine and on the image the same run wrote give the same answers (or the
same one-line error); where the live answer is about the machine, it equals
the kd report's ground truth."""
from __future__ import annotations

import json

import pytest

from emulated_lab.lab import SCENARIOS, ScenarioError, run_scenario
from tests.support import run_cli

from .conftest import hexmap

# scenario names as the lab lists them; alloc-fail:K takes the first allocation
NAMES = [name.replace(":K", ":1") for name in SCENARIOS]


def _stable_vmm(doc):
    """What a later VM exit cannot change (the lab parks processors after the session: exits count)."""
    if "vcpus" not in doc:
        return doc
    return {"descriptor": doc["descriptor"],
            "vcpus": [{k: v[k] for k in ("vcpu", "state", "vmxon_pa", "vmcs_pa", "msr_bitmap_pa")}
                      for v in doc["vcpus"]]}


VOLATILE = {"exit_count", "last_exit_reason", "last_exit", "last_exit_qualification", "exit_counts",
            "host_stack_used"}   # the lab's parking exits after the session count in hv.sys


def _stable(doc):
    """Without what later exits change, and without what only CPUID can tell (a debugger cannot execute
    CPUID: MAXPHYADDR is the architectural maximum live, the recorded width offline)."""
    if isinstance(doc, list):
        return [_stable(d) for d in doc]
    if not isinstance(doc, dict):
        return doc
    out = {k: _stable(v) for k, v in doc.items() if k not in VOLATILE}
    if out.get("check") == "within address width":
        out.pop("detail", None)
    return out


def _checks(doc):
    # a debugger cannot execute CPUID: that one row is derived live and read from the image offline
    return [[c for c in p["checks"] if c["requirement"] != "CPUID.1:ECX.VMX"] for p in doc["processors"]]


@pytest.mark.parametrize("scenario", NAMES)
def test_live_and_image_agree(kd, scenario, tmp_path, hv_sys):
    image = str(tmp_path / "s.hvimg")
    last = 1   # launch-failure fails on the last processor; elsewhere any processor
    argvs = [["vmm"], ["check"], ["caps", "--cpu", "0"], ["vmcs", str(last)], ["vcpu", str(last)], ["regions"],
             ["msrbitmap", "0"], ["dbgfilter"], ["verify", str(last)]]
    lines = ["!py -m windbg_ext --json " + " ".join(a) for a in argvs]
    try:
        run = kd(scenario, 2, lines, image=image)
    except ScenarioError as e:
        # only when the scenario itself crashes before a debugger could break in (hv.sys does not
        # survive it yet): kd then says what `run` says, in one line
        plain = run_scenario(scenario, cpus=2, driver=hv_sys, raise_on_crash=False)
        assert plain.crash and plain.crash.split(";")[0] in str(e), (scenario, str(e))
        return
    for i, argv in enumerate(argvs):
        live = run.outputs[i]
        code, offline, err = run_cli(["--image", image, "--json"] + argv)
        if code == 2:   # an error offline: the same error live, one line
            assert live.strip() == err.strip(), (scenario, argv)
            continue
        live_doc, off_doc = json.loads(live), json.loads(offline)
        if argv[0] == "vmm":
            assert _stable_vmm(live_doc) == _stable_vmm(off_doc), scenario
        elif argv[0] == "check":
            assert _checks(live_doc) == _checks(off_doc), scenario
        elif argv[0] == "caps":
            assert live_doc["cpus"][0]["msrs"] == off_doc["cpus"][0]["msrs"]
            for msr, value in hexmap(run.processor(0)["msrs"]).items():
                assert live_doc["cpus"][0]["msrs"]["0x%x" % msr] == "0x%x" % value, (scenario, hex(msr))
        elif argv[0] == "vmcs":
            assert live_doc["fields"] == off_doc["fields"], scenario
        elif argv[0] == "vcpu":
            assert _stable(live_doc) == _stable(off_doc), scenario
        elif argv[0] == "verify":
            # the debugger cannot execute CPUID: MAXPHYADDR is assumed live, read from the image offline
            live_doc.pop("maxphyaddr", None), off_doc.pop("maxphyaddr", None)
            assert live_doc["result"] == off_doc["result"] and live_doc["failures"] == off_doc["failures"]
        else:
            assert _stable(live_doc) == _stable(off_doc), (scenario, argv)
    for p in run.report["processors"]:   # the report says what the CPU holds, per processor
        assert set(p) >= {"index", "vmxon_pa", "vmcs_pa", "vmcs_fields", "msrs", "cr0", "cr4",
                          "cr0_seen_by_guest", "cr4_seen_by_guest"}
        if p["vmx"] == "off":
            assert p["vmxon_pa"] is None and p["cr4"] == p["cr4_seen_by_guest"]
