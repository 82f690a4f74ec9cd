"""End to end: the lab's launch-failure scenario runs the real hv.sys on the
emulated CPU with a broken guest TR (an "available" TSS descriptor), writes
an image, and `verify <n>` on that image names the broken field."""
import json

import pytest

from tests.support import run_cli
from windbg_ext import cli

CPUS = 2


@pytest.fixture(scope="module")
def failed_image(lab_images):
    path, res = lab_images("launch-failure", cpus=CPUS)
    assert not res.loaded
    cpu_exit = [e for e in res.exits if e.reason & 0x80000000]
    assert cpu_exit and cpu_exit[0].reason == 0x80000021      # what the emulated CPU did
    return path, cpu_exit[0].cpu, cpu_exit[0].qualification


def test_verify_names_the_broken_tr_access_rights(failed_image):
    path, cpu, qual = failed_image
    code, out, err = run_cli(["--image", path, "--json", "verify", str(cpu)])
    assert code == 1, err
    data = json.loads(out)
    assert data["result"] == "entry_failure" and data["vm_instruction_error"] is None
    assert data["exit_reason"] == "0x80000021" and data["exit_qualification"] == "0x%x" % qual
    first = data["failures"][0]
    assert first["id"] == "guest.tr.type_ia32e" and first["group"] == "guest" and first["sdm"] == "27.3.1.2"
    assert first["message"].startswith("GUEST_TR_AR_BYTES = 0x0089: type must be 11")
    assert len(data["failures"]) == 1
    assert data["recorded"]["exit_reason"] == "0x80000021" and data["recorded"]["agrees"] is True


def test_verify_text_says_the_driver_agrees(failed_image):
    path, cpu, _ = failed_image
    code, out, err = run_cli(["--image", path, "verify", str(cpu)])
    assert code == 1
    assert "first failure (what the processor reports): GUEST_TR_AR_BYTES = 0x0089" in out
    assert "agrees with the checks" in out


def test_verify_other_processor_is_one_clear_line(failed_image):
    path, cpu, _ = failed_image
    other = (cpu + 1) % CPUS
    code, out, err = run_cli(["--image", path, "verify", str(other)])
    assert code == 2 and out == ""
    assert err.count("\n") == 0 and "run verify %d" % cpu in err


@pytest.fixture(scope="module")
def running_image(lab_images):
    path, res = lab_images("baseline", cpus=CPUS)
    assert res.loaded
    return path


@pytest.mark.parametrize("cpu", range(CPUS))
def test_the_drivers_live_vmcs_passes_every_check(running_image, cpu):
    """hv.sys virtualized every processor, so its VMCS passes all checks, from the driver's snapshot."""
    code, out, err = run_cli(["--image", running_image, "--json", "verify", str(cpu)])
    assert code == 0, err
    d = json.loads(out)
    assert d["result"] == "success" and d["failures"] == [] and d["missing_fields"] == []
    assert d["checks_run"] > 190 and not d["not_checked"]
    assert d["source"].startswith("vCPU %d VMCS " % cpu)


@pytest.mark.parametrize("cpu", range(CPUS))
def test_a_stale_region_is_not_verified(running_image, cpu):
    """The image holds each active VMCS's page as a dump would: stale (SDM 25.11.1). The checks used to run
    on it (and passed, on the lab's exact copy); on a real dump they would judge scrambled bytes."""
    code, out, err = run_cli(["--image", running_image, "verify", str(cpu), "--source", "region"])
    assert code == 2 and err.count("\n") == 0, err
    assert "does not hold its values" in err and "25.11.1" in err


def test_live_verify_through_pykd_matches_offline(failed_image, standin):
    path, cpu, _ = failed_image
    standin._attach(path)
    del standin._output[:]
    assert cli.main(["--json", "verify", str(cpu)]) == 0   # never a SystemExit inside WinDbg
    live = json.loads("".join(text for text, _ in standin._output))
    code, offline, _ = run_cli(["--image", path, "--json", "verify", str(cpu)])
    offline = json.loads(offline)
    # the image records CPUID (MAXPHYADDR); a debugger cannot execute CPUID on the target
    assert live.pop("maxphyaddr") is None and isinstance(offline.pop("maxphyaddr"), int)
    assert offline == live
    assert live["failures"][0]["id"] == "guest.tr.type_ia32e"
    del standin._output[:]
    cli.main(["verify", str(cpu)])
    text = "".join(t for t, _ in standin._output)
    assert "GUEST_TR_AR_BYTES = 0x0089" in text and "Traceback" not in text
    # DML link (naming this Python, as in WinDbg: !py -3.N)
    assert '<exec cmd="%sfield GUEST_TR_AR_BYTES">GUEST_TR_AR_BYTES</exec>' % cli.pyext_prefix() in text
