"""End to end: the lab's launch-failure scenario runs the real hv.sys on the
emulated CPU with a broken guest TR (an "available" TSS descriptor), writes
an image, and `verify <n>` on that image names the broken field."""
import json

import pytest

from emulated_lab.lab import run_scenario
from windbg_ext import cli

CPUS = 2


@pytest.fixture(scope="module")
def failed_image(hv_driver, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("lf") / "launch-failure.hvimg")
    res = run_scenario("launch-failure", cpus=CPUS, driver=hv_driver, image=path)
    assert not res.loaded
    cpu_exit = [e for e in res.exits if e.reason & 0x80000000]
    assert cpu_exit and cpu_exit[0].reason == 0x80000021      # what the emulated CPU did
    return path, cpu_exit[0].cpu, cpu_exit[0].qualification


def _run(argv):
    out, err = [], []
    code = cli.run(argv, out.append, err.append)
    return code, "\n".join(out), "\n".join(err)


def test_verify_names_the_broken_tr_access_rights(failed_image):
    path, cpu, qual = failed_image
    code, out, err = _run(["--image", path, "--json", "verify", str(cpu)])
    assert code == 1, err
    data = json.loads(out)
    assert data["result"] == "entry_failure" and data["vm_instruction_error"] is None
    assert data["exit_reason"] == "0x80000021" and data["exit_qualification"] == qual
    first = data["failures"][0]
    assert first["id"] == "guest.tr.type_ia32e" and first["group"] == "guest" and first["sdm"] == "27.3.1.2"
    assert first["message"].startswith("GUEST_TR_AR_BYTES = 0x0089: type must be 11")
    assert len(data["failures"]) == 1
    assert data["recorded"]["exit_reason"] == 0x80000021 and data["recorded"]["agrees"] is True


def test_verify_text_says_the_driver_agrees(failed_image):
    path, cpu, _ = failed_image
    code, out, err = _run(["--image", path, "verify", str(cpu)])
    assert code == 1
    assert "first failure (what the processor reports): GUEST_TR_AR_BYTES = 0x0089" in out
    assert "agrees with the checks" in out


def test_verify_other_processor_is_one_clear_line(failed_image):
    path, cpu, _ = failed_image
    other = (cpu + 1) % CPUS
    code, out, err = _run(["--image", path, "verify", str(other)])
    assert code == 2 and out == ""
    assert err.count("\n") == 0 and "run verify %d" % cpu in err


@pytest.fixture(scope="module")
def running_image(hv_driver, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("run") / "baseline.hvimg")
    res = run_scenario("baseline", cpus=CPUS, driver=hv_driver, image=path)
    assert res.loaded
    return path


@pytest.mark.parametrize("cpu", range(CPUS))
@pytest.mark.parametrize("source", [[], ["--source", "region"]], ids=["default", "region"])
def test_the_drivers_live_vmcs_passes_every_check(running_image, cpu, source):
    """hv.sys virtualized every processor, so its VMCS passes all checks: from the
    driver's snapshot, and from the region decoded with its layout map."""
    code, out, err = _run(["--image", running_image, "--json", "verify", str(cpu)] + source)
    assert code == 0, err
    d = json.loads(out)
    assert d["result"] == "success" and d["failures"] == [] and d["missing_fields"] == []
    assert d["checks_run"] > 190 and not d["not_checked"]
    if source:
        assert d["source"].startswith("vCPU %d VMCS region*" % cpu) and "layout map" in d["source"]
    else:
        assert d["source"].startswith("vCPU %d VMCS " % cpu)


@pytest.fixture
def pykd_standin():
    """The pykd stand-in (only real pykd names) importable as `pykd`, as inside WinDbg."""
    import importlib
    import os
    import sys
    d = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pykd_standin")
    sys.path.insert(0, d)
    sys.modules.pop("pykd", None)
    module = importlib.import_module("pykd")
    try:
        yield module
    finally:
        module._attach(None)
        sys.modules.pop("pykd", None)
        sys.path.remove(d)


def test_live_verify_through_pykd_matches_offline(failed_image, pykd_standin):
    path, cpu, _ = failed_image
    pykd_standin._attach(path)
    del pykd_standin._output[:]
    assert cli.main(["--json", "verify", str(cpu)]) == 0   # never a SystemExit inside WinDbg
    live = json.loads("".join(text for text, _ in pykd_standin._output))
    code, offline, _ = _run(["--image", path, "--json", "verify", str(cpu)])
    assert json.loads(offline) == live
    assert live["failures"][0]["id"] == "guest.tr.type_ia32e"
    del pykd_standin._output[:]
    cli.main(["verify", str(cpu)])
    text = "".join(t for t, _ in pykd_standin._output)
    assert "GUEST_TR_AR_BYTES = 0x0089" in text and "Traceback" not in text
    assert '<exec cmd="!py -m windbg_ext field GUEST_TR_AR_BYTES">GUEST_TR_AR_BYTES</exec>' in text  # DML link
