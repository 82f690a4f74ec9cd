"""The hv commands on images the emulated lab wrote from the *built* hv.sys
running on the Bochs CPU model: what they show must equal what the emulator
itself read by VMREAD (image meta) and where it says each VMCS is."""
from __future__ import annotations

import json

import pytest

from tests.support import run_cli
from windbg_ext.hv import descriptor as hd
from windbg_ext.target.image import ImageTarget


@pytest.fixture(scope="module")
def baseline(lab_images):
    return lab_images("baseline", cpus=2)[0]


@pytest.fixture(scope="module")
def with_snapshots(hv_sys, tmp_path_factory):
    """The baseline with SnapshotOnEveryExit set before the workload, as a debugger would:
    `ed hv!HvDebugDescriptor+0x3c 1` (docs/debug-descriptor.md)."""
    import pefile
    from emulated_lab import lab
    from emulated_lab.machine import DRIVER_BASE

    out = str(tmp_path_factory.mktemp("lab") / "baseline.hvimg")
    pe = pefile.PE(hv_sys)
    rva = [e.address for e in pe.DIRECTORY_ENTRY_EXPORT.symbols if e.name == b"HvDebugDescriptor"][0]
    flag = DRIVER_BASE + rva + hd.header_offsets()["SnapshotOnEveryExit"].offset
    original = lab.run_workload

    def workload_with_snapshots(m, k):
        m.write_virt(flag, b"\x01\0\0\0")
        return original(m, k)
    lab.run_workload = workload_with_snapshots
    try:
        lab.run_scenario("baseline", cpus=2, driver=hv_sys, image=out)
    finally:
        lab.run_workload = original
    return out


@pytest.fixture(scope="module")
def meta(baseline):
    t = ImageTarget(baseline)
    try:
        return dict(t.meta)
    finally:
        t.close()


def _json(argv):
    code, out, err = run_cli(["--json"] + argv)
    assert code in (0, 1), err
    return json.loads(out)


def test_vmm_on_the_lab_image(baseline, meta):
    data = _json(["--image", baseline, "vmm"])
    assert data["descriptor"]["found_by"].startswith("symbol hv!HvDebugDescriptor")
    assert data["descriptor"]["driver_state"] == "running"
    assert [v["state"] for v in data["vcpus"]] == ["launched", "launched"]
    # the VMCS the driver says it made current is the one the emulated CPU holds
    assert [v["vmcs_pa"] for v in data["vcpus"]] == meta["vmcs_pa"]
    assert data["vmm"]["ia32_vmx_basic"] == "0xd8100000000004"


def _vmread(image: str, cpu: int):
    t = ImageTarget(image)
    try:
        return {int(k, 16): int(v, 16) for k, v in t.meta["vmread"][str(cpu)].items()}
    finally:
        t.close()


# Fields that describe the moment of one particular exit: the driver's last snapshot and the
# emulator's VMREAD (taken later, at a lab-induced stop) see different moments.
MOMENT_FIELDS = {"GUEST_%s_%s" % (seg, part) for seg in ("CS", "SS") for part in ("SELECTOR", "LIMIT", "AR_BYTES",
                                                                                   "BASE")} | {
    "GUEST_RIP", "GUEST_RSP", "GUEST_RFLAGS", "GUEST_INTERRUPTIBILITY_INFO", "GUEST_ACTIVITY_STATE",
    "GUEST_PENDING_DBG_EXCEPTIONS"}


def _moment(encoding: int) -> bool:
    from windbg_ext.arch.vmcs_fields import BY_ENCODING

    f = BY_ENCODING[encoding]
    return f.type == "exit" or f.name in MOMENT_FIELDS


def _shown(image: str, cpu: int, source: str):
    code, out, err = run_cli(["--image", image, "--json", "vmcs", str(cpu), "--source", source])
    assert code == 0, err
    return {int(f["encoding"], 16): int(f["value"], 16) for f in json.loads(out)["fields"] if f["value"] is not None}


@pytest.mark.parametrize("cpu", [0, 1])
def test_an_active_vmcs_page_is_stale_in_the_image_and_said_so(baseline, cpu):
    """The image holds an active VMCS's page as a dump would (emulated_lab/debugger_view.py: stale, SDM
    25.11.1): `--source region` still decodes it, says these are NOT the VMCS's values, and they are not
    (the exact decode is tested on the emulator's own copy: tests/driver/test_on_emulated_cpu.py)."""
    from windbg_ext.hv.vmcs_source import STALE_REGION_NOTE

    vmread = _vmread(baseline, cpu)
    code, out, err = run_cli(["--image", baseline, "--json", "vmcs", str(cpu), "--source", "region"])
    assert code == 0, err
    data = json.loads(out)
    assert STALE_REGION_NOTE in data["notes"]
    shown = {int(f["encoding"], 16): int(f["value"], 16) for f in data["fields"] if f["value"] is not None}
    same = [e for e, v in shown.items() if vmread.get(e) == v]
    assert len(shown) >= 100 and len(same) < 10, same


@pytest.mark.parametrize("cpu", [0, 1])
def test_snapshot_values_equal_the_emulators_vmread(with_snapshots, cpu):
    vmread = _vmread(with_snapshots, cpu)
    shown = _shown(with_snapshots, cpu, "snapshot")
    assert set(shown) <= set(vmread)  # the driver snapshots only fields the CPU supports
    stable = {e for e in shown if not _moment(e)}
    assert len(stable) >= 100
    assert {e: shown[e] for e in stable} == {e: vmread[e] for e in stable}


def test_debugger_flag_gives_a_snapshot_at_every_exit(with_snapshots):
    data = _json(["--image", with_snapshots, "vcpu", "0"])
    assert data["snapshot"]["reason"] == "every exit" and data["snapshot"]["count"] >= 100


def test_a_diff_against_a_stale_region_says_it_is_stale(with_snapshots):
    from windbg_ext.hv.vmcs_source import STALE_REGION_NOTE

    code, out, err = run_cli(["--image", with_snapshots, "vmcs", "1", "--diff", "region"])
    assert code == 0, err
    assert " ".join(STALE_REGION_NOTE.split()[:6]) in " ".join(out.split())


def test_an_empty_snapshot_does_not_fall_back_to_a_stale_region(hv_sys, tmp_path):
    """Offline, with no snapshot, the region used to be the default: a dump's stale page shown as values."""
    from emulated_lab.lab import run_scenario

    image = str(tmp_path / "noworkload.hvimg")
    run_scenario("baseline", cpus=1, driver=hv_sys, image=image, workload=False)
    snap = _json(["--image", image, "vcpu", "0"])["snapshot"]
    if snap["count"]:
        pytest.fail("this image was meant to have no snapshot: %s" % snap)
    code, out, err = run_cli(["--image", image, "vmcs", "0"])
    assert code == 2 and err.count("\n") == 0 and "SnapshotOnEveryExit" in err and "stale" in err, err


def test_regions_and_vcpu_checks_pass(baseline):
    data = _json(["--image", baseline, "regions"])
    assert {r["result"] for r in data["regions"]} == {"PASS"}
    v = _json(["--image", baseline, "vcpu", "1"])
    assert {c["result"] for c in v["checks"]} <= {"PASS", "n/a"}
    assert 16 < v["host_stack_used"] < 0x6000


@pytest.mark.parametrize("kind", ["full", "bitmap"])
def test_lab_image_as_a_crash_dump(baseline, tmp_path, kind):
    """The lab's memory written as a kernel dump (python -m windbg_ext.target.dump):
    read through kdmp-parser, the descriptor found by scanning, the same answers."""
    from windbg_ext.target.dump import main as dump_main

    path = str(tmp_path / "lab.dmp")
    assert dump_main([baseline, path] + (["--bitmap"] if kind == "bitmap" else [])) == 0
    image_view = _json(["--image", baseline, "vmm"])
    dump_view = _json(["--dump", path, "vmm"])
    assert dump_view["descriptor"]["found_by"].startswith("scan")
    assert dump_view["vcpus"] == image_view["vcpus"]
    assert _json(["--dump", path, "vmcs", "1", "--all"])["fields"] == _json(["--image", baseline, "vmcs", "1",
                                                                             "--all"])["fields"]


def test_launch_failure_on_the_lab(lab_images):
    path = lab_images("launch-failure", cpus=2)[0]
    code, out, err = run_cli(["--image", path, "--json", "vmm"])
    assert code == 1, err
    data = json.loads(out)
    assert data["descriptor"]["driver_state"] == "failed"
    failure = data["descriptor"]["last_failure"]
    assert failure["processor"] == 1  # the lab broke the last processor's TSS descriptor
    assert failure["step"] == "VMLAUNCH" and failure["failed_step"] == 8  # the name and HV_STEP_VMLAUNCH
    data = _json(["--image", path, "vmcs", "1", "GUEST_TR_AR_BYTES", "VM_EXIT_REASON"])
    assert data["source"] == "failure"
    rows = {f["name"]: f for f in data["fields"]}
    assert rows["VM_EXIT_REASON"]["value"] == "0x80000021"  # SDM 27.8: entry failure, invalid guest state
    assert rows["GUEST_TR_AR_BYTES"]["decoded"].startswith("64/32-bit TSS (available)")
