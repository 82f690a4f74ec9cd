"""What a hypervisor learner runs after `make demo`, on the lab's own images
and kernel dumps made from them: the gaps an acceptance pass found (each test
failed before its fix).

- MAXPHYADDR comes from the recorded CPUID leaf 0x80000008 (vcpu, regions,
  verify), not "unknown (52 bits)".
- A crash dump holds no MSRs: verify uses the capability MSRs hv.sys recorded
  in its VMM context (TRUE_* ones only), check says UNKNOWN for what it cannot
  read, caps says so in one line.
- The natural next command is one click away: vmm -> verify N after a failed
  launch, vcpu -> verify N, vmm -> check when hv.sys is not running.
- JSON encodes numbers that are registers/reasons/qualifications as hex strings.
"""
from __future__ import annotations

import json
from typing import Optional

import pytest

from tests.support import run_cli
from windbg_ext.target.dump import image_to_dump
from windbg_ext.target.image import ImageTarget, ImageWriter

MAXPHY_LEAF = 0x80000008


def _run(argv, live=False):
    code, out, err = run_cli(argv, live=live)
    assert "Traceback" not in out + err and "internal error" not in err, err
    return code, out, err


def _json(argv):
    code, out, err = _run(["--json"] + argv)
    assert out, err
    return code, json.loads(out)


@pytest.fixture(scope="module")
def lab(lab_images):
    return {s: lab_images(s, cpus=2)[0] for s in ("baseline", "launch-failure", "no-vmx", "feature-locked")}


@pytest.fixture(scope="module")
def dumps(lab, tmp_path_factory):
    d = tmp_path_factory.mktemp("uat-dumps")
    out = {}
    for s in ("baseline", "launch-failure"):
        out[s] = str(d / (s + ".dmp"))
        image_to_dump(lab[s], out[s])
    return out


def _with_maxphyaddr(src: str, dst: str, bits: Optional[int]) -> str:
    """The lab image rewritten through ImageWriter with CPUID leaf 0x80000008
    (EAX[7:0] = MAXPHYADDR) on every processor: what the lab records from now on."""
    t = ImageTarget(src)
    w = ImageWriter()
    for start, length in t.memory_ranges():
        w.add_memory(start, t.read_physical(start, length))
    for name, va in t.symbols().items():
        w.add_symbol(name, va)
    for cpu in range(t.processor_count()):
        c = t._cpu(cpu)
        cpuid = dict(c["cpuid"])
        if bits is None:    # no leaf 0x80000008 (images from before the lab recorded it)
            cpuid.pop((MAXPHY_LEAF, 0), None)
        else:
            cpuid[(MAXPHY_LEAF, 0)] = (0x3000 | bits, 0, 0, 0)
        w.add_cpu(c["regs"], c["msrs"], cpuid=cpuid)
    w.write(dst)
    return dst


@pytest.fixture(scope="module")
def maxphy_image(lab, tmp_path_factory):
    return _with_maxphyaddr(lab["baseline"], str(tmp_path_factory.mktemp("uat-mp") / "mp.hvimg"), 39)


# -- MAXPHYADDR -------------------------------------------------------------------
def test_vcpu_and_regions_use_the_recorded_maxphyaddr(maxphy_image):
    assert ImageTarget(maxphy_image).cpuid(MAXPHY_LEAF) == (0x3027, 0, 0, 0)
    code, out, _ = _run(["--image", maxphy_image, "vcpu", "0"])
    assert code == 0 and "vs 39 bits (MAXPHYADDR 39)" in out and "unknown" not in out
    code, doc = _json(["--image", maxphy_image, "regions"])
    details = [c["detail"] for r in doc["regions"] for c in r["checks"] if c["check"] == "within address width"]
    assert len(details) == 6 and all("MAXPHYADDR 39" in d for d in details)


def test_verify_uses_the_recorded_maxphyaddr(maxphy_image, lab, tmp_path):
    code, doc = _json(["--image", maxphy_image, "verify", "0"])
    assert code == 0 and doc["result"] == "success" and doc["maxphyaddr"] == 39
    code, out, _ = _run(["--image", maxphy_image, "verify", "0"])
    assert "physical-address width unknown" not in out
    # without the leaf: the architectural maximum, and the note says so
    no_leaf = _with_maxphyaddr(lab["baseline"], str(tmp_path / "no-leaf.hvimg"), None)
    code, doc = _json(["--image", no_leaf, "verify", "0"])
    assert doc["maxphyaddr"] is None


def test_a_leaf_without_maxphyaddr_falls_back(lab, tmp_path):
    img = _with_maxphyaddr(lab["baseline"], str(tmp_path / "zero.hvimg"), 0)
    code, out, _ = _run(["--wide", "--image", img, "vcpu", "1"])
    assert code == 0 and "vs 52 bits (MAXPHYADDR unknown: the architectural maximum)" in out


# -- crash dumps -------------------------------------------------------------------
def test_verify_on_a_dump_uses_the_caps_the_driver_recorded(dumps):
    code, doc = _json(["--dump", dumps["baseline"], "verify", "1"])
    assert code == 0 and doc["result"] == "success"
    assert "caps from the driver's VMM context" in doc["source"]


def test_verify_on_a_dump_of_a_failed_load_says_why_there_are_no_caps(dumps):
    code, out, err = _run(["--dump", dumps["launch-failure"], "verify", "1"])
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert "nowhere" not in err and "no capability MSRs for processor 1" in err and "WinDbg" in err


def test_check_on_a_dump_reports_unknown_instead_of_failing(dumps):
    code, doc = _json(["--dump", dumps["baseline"], "check"])
    assert code == 0 and [p["cpu"] for p in doc["processors"]] == [0, 1]
    assert doc["verdict"] == "UNKNOWN" and {p["verdict"] for p in doc["processors"]} == {"UNKNOWN"}


def test_caps_on_a_dump_is_one_clear_line(dumps):
    code, out, err = _run(["--dump", dumps["baseline"], "caps"])
    assert code == 2 and out == "" and "a crash dump holds no MSR values" in err and "caps --msr" in err
    assert "not supported" not in err


def test_caps_does_not_call_an_unread_msr_unsupported(tmp_path):
    w = ImageWriter()
    w.add_cpu({"cr0": 0x80050033}, {0x480: 0x00D8100000000004})  # BASIC only: 0x482 unreadable
    w.write(str(tmp_path / "b.hvimg"))
    code, out, _ = _run(["--image", str(tmp_path / "b.hvimg"), "caps"])
    line = [l for l in out.splitlines() if l.startswith("secondary processor-based")][0]
    assert "unknown: MSR 0x482" in line and "not supported" not in line


# -- next commands (DML) -------------------------------------------------------------
def test_vmm_after_a_failed_launch_links_verify(lab):
    code, out, _ = _run(["--image", lab["launch-failure"], "vmm"], live=True)
    assert code == 1
    assert '<exec cmd="!py -m windbg_ext verify 1">verify 1</exec>' in out
    assert '<exec cmd="!py -m windbg_ext vmcs 1 --source failure">' in out
    assert 'windbg_ext check"' not in out  # the failed VMCS is the lead, not the pre-VMX requirements
    code, out, _ = _run(["--image", lab["launch-failure"], "vmm"])
    assert out.count("vmcs 1 --source failure") == 1  # once, as the link: not also in the sentence
    code, doc = _json(["--image", lab["launch-failure"], "vmm"])
    assert doc["descriptor"]["last_failure"]["processor"] == 1


def test_vmm_without_a_vmcs_links_check(lab):
    for scenario in ("no-vmx", "feature-locked"):
        code, out, _ = _run(["--image", lab[scenario], "vmm"], live=True)
        assert code == 1 and '<exec cmd="!py -m windbg_ext check">check</exec>' in out, scenario
        assert "verify" not in out


def test_vcpu_links_vmcs_and_verify(lab):
    code, out, _ = _run(["--image", lab["baseline"], "vcpu", "1"], live=True)
    assert '<exec cmd="!py -m windbg_ext vmcs 1">vmcs 1</exec>' in out
    assert '<exec cmd="!py -m windbg_ext verify 1">verify 1</exec>' in out


# -- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize("argv,fragment", [
    (["vcpu", "abc"], "vCPU index 'abc' is not a"),
    (["vmcs", "one"], "vCPU index 'one' is not a"),
    (["verify", "x1"], "vCPU index 'x1' is not a"),
    (["vmcs", "0", "--diff", "zz"], "--diff vCPU 'zz' is not a"),
    (["check", "--cpu", "a"], "processor 'a' is not a"),
])
def test_a_typo_is_not_read_as_hex(lab, argv, fragment):
    code, out, err = _run(["--image", lab["baseline"]] + argv)
    assert code == 2 and out == "" and fragment in err


def test_vmcs_failure_source_refuses_diff(lab):
    code, out, err = _run(["--image", lab["launch-failure"], "vmcs", "1", "--source", "failure", "--diff", "0"])
    assert code == 2 and out == "" and "--diff cannot compare the failure record" in err


def test_vmcs_json_encoding_of_a_high_access(lab):
    code, doc = _json(["--image", lab["baseline"], "vmcs", "0", "0x2005"])  # MSR_BITMAP_HIGH
    assert [(f["name"], f["encoding"]) for f in doc["fields"]] == [("MSR_BITMAP_HIGH", "0x2005")]


# -- JSON: hex strings -------------------------------------------------------------------
def test_json_reasons_are_hex_strings(lab):
    code, doc = _json(["--image", lab["baseline"], "vcpu", "0"])
    assert doc["last_exit_reason"] == "0x12" and "0x12" in doc["exit_counts"]
    assert all(k.startswith("0x") for k in doc["exit_counts"])
    code, doc = _json(["--image", lab["launch-failure"], "verify", "1"])
    assert doc["exit_reason"] == "0x80000021" and doc["exit_qualification"] == "0x0"
    assert doc["recorded"]["exit_reason"] == "0x80000021"


def test_a_whole_exit_reason_with_an_unknown_basic_reason_is_named():
    code, out, err = _run(["exit", "0xffffffff"])
    assert code == 2 and "exit reason 0xffffffff: basic reason (bits 15:0) 65535 is not in SDM Appendix C" in err


def test_msrbitmap_refuses_a_negative_address(lab):
    code, out, err = _run(["--image", lab["baseline"], "msrbitmap", "-1"])
    assert code == 2 and "-1 is negative" in err and "0x-1" not in err


def test_vmcs_of_a_failure_before_any_vmcs_is_one_line(lab_images):
    image, _ = lab_images("alloc-fail:4", cpus=2)  # fails allocating on processor 0, after the VMCS layout map
    for argv in (["vmcs", "0"], ["vmcs", "1"], ["vmcs", "0", "--source", "failure"]):
        code, out, err = _run(["--image", image] + argv)
        assert code == 2 and out == "" and "before any VMCS: no fields recorded" in err, argv


def test_dbgfilter_level_by_name_explains_itself(lab):
    code, out, err = _run(["--image", lab["baseline"], "dbgfilter", "--level", "DPFLTR_INFO_LEVEL"])
    assert code == 2 and "always shown" in err and "not a number" not in err


def test_vmcs_fields_may_follow_options(lab):
    code, doc = _json(["--image", lab["baseline"], "vmcs", "0", "--source", "region", "GUEST_RIP", "HOST_RIP"])
    assert code == 0 and [f["name"] for f in doc["fields"]] == ["GUEST_RIP", "HOST_RIP"]
    assert {f["source"] for f in doc["fields"]} == {"region"}


def test_vmcs_field_names_with_group_is_refused_not_ignored(lab):
    code, out, err = _run(["--image", lab["baseline"], "vmcs", "0", "GUEST_RIP", "--group", "host"])
    assert code == 2 and out == "" and "not both" in err


def test_encodings_are_formatted_alike_in_field_and_vmcs(lab):
    _, f = _json(["field", "GUEST_ES_SELECTOR"])
    _, v = _json(["--image", lab["baseline"], "vmcs", "0", "GUEST_ES_SELECTOR"])
    _, d = _json(["--image", lab["baseline"], "vmcs", "0", "--diff", "1"])
    assert f["fields"][0]["encoding"] == v["fields"][0]["encoding"] == "0x0800"
    assert all(len(x["encoding"]) == 6 for x in d["differences"])


def test_verify_reads_the_suites_own_json(lab, tmp_path):
    """`vmcs N --json` and `caps --cpu N --json` saved from a session are valid --fields / --caps files."""
    _, out, _ = _run(["--json", "--image", lab["launch-failure"], "vmcs", "1", "--source", "failure"])
    (tmp_path / "f.json").write_text(out)
    _, out, _ = _run(["--json", "--image", lab["launch-failure"], "caps", "--cpu", "1"])
    (tmp_path / "c.json").write_text(out)
    code, doc = _json(["verify", "--fields", str(tmp_path / "f.json"), "--caps", str(tmp_path / "c.json")])
    assert code == 1 and doc["exit_reason"] == "0x80000021"
    assert doc["failures"][0]["id"] == "guest.tr.type_ia32e"
    _, out, _ = _run(["--json", "--image", lab["launch-failure"], "caps", "--all"])
    (tmp_path / "all.json").write_text(out)
    code, out, err = _run(["verify", "--fields", str(tmp_path / "f.json"), "--caps", str(tmp_path / "all.json")])
    assert code == 2 and "caps --cpu N --json" in err
