"""vmm / vcpu / vmcs / regions on images and kernel dumps holding the driver
state the C compiler laid out; values and read counts checked."""
from __future__ import annotations

import json
import re

import pytest

from tests.support import run_cli
from windbg_ext.arch.vmcs_fields import by_name

from .builder import HvState


def _json(argv):
    code, out, err = run_cli(["--json"] + argv)
    assert code in (0, 1), err
    return json.loads(out)


def _reads(err: str) -> int:
    m = re.search(r"stats: (\d+) reads", err)
    assert m, err
    return int(m.group(1))


@pytest.fixture(params=["image", "full", "bitmap"])
def target_args(request, image2, dumps2):
    if request.param == "image":
        return ["--image", image2]
    return ["--dump", dumps2[request.param]]


def test_vmm_lists_every_vcpu(target_args, state2):
    data = _json(target_args + ["vmm"])
    assert data["descriptor"]["version"] == 1 and data["descriptor"]["vcpu_count"] == 2
    assert data["vmm"]["ia32_vmx_basic"] == "0x%x" % state2.basic
    assert len(state2.regions) == 2 and [row["vcpu"] for row in data["vcpus"]] == [0, 1]  # every vCPU, in order
    for i, row in enumerate(data["vcpus"]):
        r = state2.regions[i]
        assert row["vmcs_pa"] == "0x%x" % r["vmcs_pa"] and row["vmxon_va"] == "0x%x" % r["vmxon_va"]
        assert row["msr_bitmap_pa"] == "0x%x" % r["bitmap_pa"]
        assert row["host_stack"] == ["0x%x" % r["stack_va"], "0x%x" % (r["stack_va"] + 0x6000)]
        assert row["state"] == "launched" and row["last_exit"] == "CPUID (10)"


def test_vmm_found_by_symbol_on_images_and_by_scan_on_dumps(target_args):
    data = _json(target_args + ["vmm"])
    how = data["descriptor"]["found_by"]
    assert how.startswith("symbol") if target_args[0] == "--image" else how.startswith("scan")


def test_vmm_text_has_links_to_vcpu_in_dml(image2):
    from windbg_ext.commands import vmm
    from windbg_ext.cli import Context
    from windbg_ext.render.text import render_text
    from windbg_ext.target.image import ImageTarget

    ctx = Context(lambda: ImageTarget(image2), dml=True, json_out=False)
    text = render_text(vmm.run(ctx, None), dml=True)
    ctx.close()
    assert '<exec cmd="!py -m windbg_ext vcpu 1">1</exec>' in text


@pytest.mark.parametrize("n", [1, 2, 8])
def test_vmm_read_budget(n, tmp_path):
    path = HvState(vcpus=n).build().write_image(str(tmp_path / "n.hvimg"))
    code, out, err = run_cli(["--image", path, "--stats", "vmm"])
    assert code == 0, err
    assert _reads(err) <= 3 + n


def test_vmcs_all_read_budget_and_values(image2, state2):
    code, out, err = run_cli(["--image", image2, "--stats", "--json", "vmcs", "1", "--all"])
    assert code == 0, err
    assert _reads(err) <= 5
    data = json.loads(out)
    got = {int(f["encoding"], 16): int(f["value"], 16) for f in data["fields"] if f["value"] is not None}
    assert got == state2.snapshots[1]
    assert {f["source"] for f in data["fields"]} == {"snapshot"}


def test_vmcs_region_source_agrees_with_snapshot(target_args, state2):
    data = _json(target_args + ["vmcs", "0", "--source", "region"])
    got = {int(f["encoding"], 16): int(f["value"], 16) for f in data["fields"]}
    assert got == state2.snapshots[0]  # includes rotated access rights
    assert any("implementation-specific" in n for n in data["notes"])


def test_vmcs_named_fields_and_high_access(image2, state2):
    data = _json(["--image", image2, "vmcs", "1", "guest_rip", "VMCS_GUEST_CS_AR_BYTES", "0x2801"])
    rows = {f["name"]: f for f in data["fields"]}
    assert int(rows["GUEST_RIP"]["value"], 16) == state2.snapshots[1][by_name("GUEST_RIP").encoding]
    assert "execute/read" in rows["GUEST_CS_AR_BYTES"]["decoded"]
    link = state2.snapshots[1][by_name("VMCS_LINK_POINTER").encoding]
    assert int(rows["VMCS_LINK_POINTER_HIGH"]["value"], 16) == link >> 32


def test_vmcs_group_and_control_decoding(image2):
    data = _json(["--image", image2, "vmcs", "0", "--group", "control"])
    assert {f["group"] for f in data["fields"]} == {"control"}
    rows = {f["name"]: f for f in data["fields"]}
    # 0x94006172 sets bit 28 (use MSR bitmaps) and bit 31 (secondary controls)
    assert "USE_MSR_BITMAPS" in rows["CPU_BASED_VM_EXEC_CONTROL"]["decoded"]


def test_vmcs_diff_between_vcpus_shows_only_differences(image2, state2):
    data = _json(["--image", image2, "vmcs", "1", "--diff", "0"])
    want = {enc for enc in state2.snapshots[0] if state2.snapshots[0][enc] != state2.snapshots[1][enc]}
    assert {int(d["encoding"], 16) for d in data["differences"]} == want
    assert by_name("GUEST_RIP").encoding in want


def test_vmcs_diff_region_finds_a_stale_region(tmp_path):
    s = HvState(vcpus=1)
    s.build()
    # make the region disagree with the snapshot in one field: a stale cached VMCS
    enc = by_name("GUEST_RSP").encoding
    off = [e for e in s.layout if e[0] == enc][0][1]
    s.mem.write(s.regions[0]["vmcs_pa"] + off, (0x1234).to_bytes(8, "little"))
    path = s.write_image(str(tmp_path / "stale.hvimg"))
    data = _json(["--image", path, "vmcs", "0", "--diff", "region"])
    assert [d["name"] for d in data["differences"]] == ["GUEST_RSP"]
    assert data["differences"][0]["right"] == "0x1234"


def test_vmcs_falls_back_to_region_when_snapshot_empty(tmp_path):
    s = HvState(vcpus=1)
    s.snapshots = [dict()]
    s.snapshot_meta = [{"Reason": 0, "ExitReason": 0xFFFFFFFF, "Sequence": 0, "VmInstructionError": 0}]
    s.build()
    # region still holds values: write them as a processor would have
    from .builder import default_snapshot_values, _rol8
    vals = default_snapshot_values(0, s.fields)
    for enc, off, width, flags in s.layout:
        v = _rol8(vals[enc], width) if flags & 2 else vals[enc]
        s.mem.write(s.regions[0]["vmcs_pa"] + off, (v & ((1 << 8 * width) - 1)).to_bytes(width, "little"))
    path = s.write_image(str(tmp_path / "nosnap.hvimg"))
    data = _json(["--image", path, "vmcs", "0"])
    assert data["source"] == "region"
    assert any("snapshot is empty" in n for n in data["notes"])
    got = {int(f["encoding"], 16): int(f["value"], 16) for f in data["fields"]}
    assert got == vals


def test_vcpu_checks_pass_and_report_stack_and_exit(target_args, state2):
    data = _json(target_args + ["vcpu", "1"])
    assert {c["result"] for c in data["checks"]} <= {"PASS", "n/a"}
    assert data["host_stack_used"] == state2.stack_used[1]
    assert data["last_exit"] == "CPUID (10)"
    assert data["exit_counts"] == {"0x%x" % k: v for k, v in state2.exit_counts[1].items()}


def test_vcpu_reports_wrong_revision_abort_and_failed_launch(tmp_path):
    s = HvState(vcpus=2)
    s.region_revision = [4, 5]
    s.vmcs_abort = [0, 3]
    s.vcpu_values[1].update(State=3, FailedStep=8, VmInstructionError=7)
    s.snapshot_meta[1].update(Reason=1, VmInstructionError=7, ExitReason=0xFFFFFFFF)
    s.build()
    path = s.write_image(str(tmp_path / "bad.hvimg"))
    code, out, err = run_cli(["--image", path, "--json", "vcpu", "1"])
    assert code == 1
    data = json.loads(out)
    checks = {(c["region"], c["check"]): c for c in data["checks"]}
    assert checks[("VMCS", "revision id")]["result"] == "FAIL"
    assert checks[("VMXON", "revision id")]["result"] == "FAIL"
    assert checks[("VMCS", "VMX-abort indicator")]["result"] == "FAIL"
    assert "corrupted" in checks[("VMCS", "VMX-abort indicator")]["detail"]
    assert data["state_text"] == "failed at VMLAUNCH (error 7 ENTRY_INVALID_CONTROL_FIELD)"
    assert data["vm_instruction_error_name"] == "7 ENTRY_INVALID_CONTROL_FIELD"
    code, out, err = run_cli(["--wide", "--image", path, "vmm"])
    assert code == 1 and "failed at VMLAUNCH" in out


def test_vcpu_checks_the_vmcs_against_the_drivers_bookkeeping(tmp_path):
    s = HvState(vcpus=1)
    s.consistent = False  # MSR_BITMAP and HOST_RSP in the snapshot point elsewhere
    path = s.build().write_image(str(tmp_path / "inconsistent.hvimg"))
    code, out, err = run_cli(["--image", path, "--json", "vcpu", "0"])
    assert code == 1
    checks = {c["check"]: c for c in json.loads(out)["checks"]}
    assert checks["VMCS MSR_BITMAP field"]["result"] == "FAIL"
    assert checks["VMCS HOST_RSP inside"]["result"] == "FAIL"


def test_regions_pass_table(target_args):
    code, out, err = run_cli(target_args + ["--json", "regions"])
    assert code == 0, err
    data = json.loads(out)
    assert len(data["regions"]) == 6 and {r["result"] for r in data["regions"]} == {"PASS"}


def test_regions_fail_on_misaligned_and_shared_pages(tmp_path):
    s = HvState(vcpus=2)
    s.build()
    s.vcpu_values[1]["VmcsRegionPa"] = s.regions[0]["vmcs_pa"]          # shared with vCPU 0
    s.vcpu_values[0]["MsrBitmapPa"] = s.regions[0]["bitmap_pa"] + 0x10  # misaligned
    s.build()
    path = s.write_image(str(tmp_path / "shared.hvimg"))
    code, out, err = run_cli(["--image", path, "--json", "regions"])
    assert code == 1
    data = json.loads(out)
    bad = {(r["vcpu"], r["region"]) for r in data["regions"] if r["result"] == "FAIL"}
    assert (0, "MSR bitmap") in bad
    assert any("shares page" in s for s in data["shared_pages"])


def test_msrbitmap_by_vcpu_index_uses_the_walker(image2, state2):
    data = _json(["--image", image2, "msrbitmap", "1"])
    assert data["address"] == "0x%x" % state2.regions[1]["bitmap_pa"]
    assert data["read"] == ["0x%x" % m for m in sorted(state2.msr_bitmap_reads)]


def _failed_load_state():
    """hv.sys failed VMLAUNCH on processor 1 and undid everything: only the descriptor's record is left."""
    s = HvState(vcpus=2)
    s.desc_values.update(VmmContextVa=0, VcpuArrayVa=0, DriverState=3, LoadStatus=0xC0000001)
    s.failure = dict(Valid=1, ProcessorIndex=1, FailedStep=8, VmInstructionError=7, Status=0xC0000001)
    s.failure_snapshot_meta = dict(Reason=1, VmInstructionError=7, ExitReason=0xFFFFFFFF, Sequence=2)
    s.failure_snapshot = {by_name("GUEST_RIP").encoding: 0xFFFFF80000123456,
                          by_name("PIN_BASED_VM_EXEC_CONTROL").encoding: 0x16,
                          by_name("VM_INSTRUCTION_ERROR").encoding: 7}
    return s.build()


def test_failed_load_shows_the_failure_record(tmp_path):
    s = _failed_load_state()
    path = s.write_image(str(tmp_path / "failed.hvimg"))
    code, out, err = run_cli(["--image", path, "vmm"])
    assert code == 1 and "hv.sys is not running (driver state: failed" in out
    assert "processor 1 at VMLAUNCH, VM-instruction error 7 ENTRY_INVALID_CONTROL_FIELD" in out
    code, out, err = run_cli(["--image", path, "vcpu", "1"])
    # one line that fits the console and names commands that work (before: 274 columns)
    assert code == 2 and "see: vmm, vmcs 1 --source failure, verify 1" in err and len(err) <= 120
    data = _json(["--image", path, "vmcs", "1"])       # auto: the failure snapshot
    assert data["source"] == "failure"
    got = {int(f["encoding"], 16): int(f["value"], 16) for f in data["fields"]}
    assert got == s.failure_snapshot
    code, out, err = run_cli(["--image", path, "vmcs", "0", "--source", "failure"])
    assert code == 2 and "last failure was on processor 1" in err
