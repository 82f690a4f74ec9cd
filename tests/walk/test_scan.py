"""scan: VMCS regions found with no symbols and no descriptor, for both
drivers. The evidence is judged on each VMCS page exactly as the emulated CPU
holds it; the lab's images hold active VMCS pages stale, as a dump does (SDM
25.11.1), and scan must not report those as VMCS nor read HOST_RIP from them.
Nothing on a machine with no hypervisor; hv.sys's freed layout-discovery
scratch VMCS is not reported."""
from __future__ import annotations

import json

import pytest

from tests.support import run_cli

from .conftest import truth
from .test_sevendays import _dump_of


def _scan(args, *scan_args):
    code, out, err = run_cli(args + ["--json", "scan"] + list(scan_args))
    assert code == 0, err
    return json.loads(out)


def _pas(data, threshold=0.7):
    return sorted(c["pa"] for c in data["candidates"] if c["confidence"] >= threshold)


def _all(args):
    return {c["pa"]: c for c in _scan(args, "--all")["candidates"]}


@pytest.mark.parametrize("which,cpus", [("clang", 1), ("clang", 4), ("gcc", 2), ("hv", 2), ("hv", 8)])
def test_the_evidence_finds_exactly_the_vmcs_regions_in_use(lab_images, sevendays, hv_sys, which, cpus):
    """On each VMCS page as the CPU holds it (the lab's copy) the evidence gives a VMCS in use; on the
    image's stale copy it gives the header alone, and the page is not reported."""
    from windbg_ext.hv import layouts
    from windbg_ext.hv.scan import REPORT_THRESHOLD, STALE_NOTE, assess

    driver = hv_sys if which == "hv" else sevendays[which]
    image, res = lab_images("baseline", cpus=cpus, driver=driver)
    layout = layouts.find(4)[1]
    for k in range(cpus):
        exact = assess(res.vmcs_pages[k], 0, 4, layout)
        assert exact.confidence >= REPORT_THRESHOLD and any("link pointer ~0" in e for e in exact.evidence)
    data = _scan(["--image", image])
    assert _pas(data) == [] and data["pages_without_vmcs_values"] >= 2 * cpus   # VMXON and VMCS pages
    listed = _all(["--image", image])
    for _, vmcs in truth(res):
        c = listed[vmcs]
        assert c["revision_id"] == "0x4" and set(c) == {"pa", "revision_id", "confidence", "evidence"}
        assert c["confidence"] == 0.25 and STALE_NOTE in c["evidence"]
        assert not any("HOST_RIP" in e or "link pointer" in e for e in c["evidence"])


def test_scratch_vmcs_and_vmxon_pages_are_not_reported(lab_images, hv_sys):
    image, res = lab_images("baseline", cpus=2, driver=hv_sys)
    code, out, err = run_cli(["--image", image, "--json", "scan", "--all"])
    data = json.loads(out)
    everything = [c["pa"] for c in data["candidates"]]
    vmxons = {vmxon for vmxon, _ in truth(res)}
    assert vmxons <= set(everything)                       # they carry the revision id too...
    assert not vmxons & set(_pas(data))                    # ...but are not VMCS
    assert set(everything) - set(_pas(data)) - vmxons      # hv.sys's freed scratch VMCS is there, unreported


def test_no_false_positive_without_a_hypervisor(lab_images, hv_sys):
    image, res = lab_images("no-vmx", cpus=2, driver=hv_sys)
    assert not res.loaded
    assert _pas(_scan(["--image", image])) == []


def test_scan_on_a_dump_takes_the_revision_from_the_layouts(lab_images, sevendays, tmp_path):
    image, res = lab_images("baseline", cpus=2, driver=sevendays["gcc"])
    dump = _dump_of(image, str(tmp_path / "sd.dmp"))
    data = _scan(["--dump", dump])
    assert "layout" in data["revision_ids_from"]
    assert _pas(data) == []
    assert set(vmcs for _, vmcs in truth(res)) <= set(_all(["--dump", dump]))


def test_scan_ranges_and_bad_input(lab_images, sevendays):
    image, res = lab_images("baseline", cpus=2, driver=sevendays["clang"])
    first = truth(res)[0][1]
    start = int(first, 16)
    code, out, err = run_cli(["--image", image, "--json", "scan", "--all", "--range",
                              "0x%x-0x%x" % (start, start + 0x1000)])
    assert code == 0, err
    assert [c["pa"] for c in json.loads(out)["candidates"]] == [first]
    for bad in (["--range", "0x2000-0x1000"], ["--range", "nonsense"], ["--revision", "zz"]):
        code, out, err = run_cli(["--image", image, "scan"] + bad)
        assert code == 2 and err.count("\n") == 0 and "Traceback" not in err, (bad, err)


def test_live_scan_needs_ranges_and_trusts_only_the_header(standin, lab_images, sevendays):
    """Live (the pykd stand-in): only the ranges given; a read the debugger refuses (a hole) is
    retried page by page; an active VMCS's page is not trusted past its first 8 bytes (SDM 25.11.1),
    so VMXON pages are listed too and the evidence says why."""
    image, res = lab_images("baseline", cpus=2, driver=sevendays["clang"])
    standin._attach(image)
    code, out, err = run_cli(["scan"], live=True)
    assert code == 2 and "--range" in err and "hours" in err
    vmxon, vmcs = (int(x, 16) for x in truth(res)[1])
    from windbg_ext.target.image import ImageTarget
    t = ImageTarget(image)
    end = max(a + n for a, n in t.memory_ranges())
    t.close()
    code, out, err = run_cli(["--json", "scan", "--range", "0x%x-0x%x" % (vmcs - 0x3000, end + 0x200000)],
                             live=True)
    assert code == 0, err
    data = json.loads(out)
    found = {c["pa"] for c in data["candidates"]}
    assert {"0x%x" % vmxon, "0x%x" % vmcs} <= found
    assert data["unreadable_bytes"] >= 0x200000 and data["threshold"] == 0.25
    assert all(any("SDM 25.11.1" in e for e in c["evidence"]) for c in data["candidates"])
    assert all(not any("link pointer" in e for e in c["evidence"]) for c in data["candidates"])


def test_offline_scan_reads_around_holes(lab_images, sevendays):
    image, res = lab_images("baseline", cpus=1, driver=sevendays["clang"])
    from windbg_ext.target.image import ImageTarget

    t = ImageTarget(image)
    end = max(a + n for a, n in t.memory_ranges())
    t.close()
    vmcs = int(truth(res)[0][1], 16)
    code, out, err = run_cli(["--image", image, "--json", "scan", "--all", "--range",
                              "0x%x-0x%x" % (vmcs, end + 0x5000)])
    assert code == 0, err
    data = json.loads(out)
    assert data["candidates"][0]["pa"] == "0x%x" % vmcs and data["unreadable_bytes"] == 0x5000
