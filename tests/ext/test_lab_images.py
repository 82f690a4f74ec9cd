"""The target-reading commands on images the emulated lab wrote: a real
Bochs CPU's CR0/CR4, capability MSRs and CPUID, page tables built by the
lab's Machine, Kd_*_Mask variables of its NT personality. The driver is the
lab's small fixture driver (tests/lab/fixtures/testdrv.c: VMXON on every
processor), so these run without hv.sys."""
from __future__ import annotations

import json

import pytest

from tests.support import run_cli
from windbg_ext.target.image import ImageTarget


@pytest.fixture(scope="module")
def lab(lab_images, testdrv):
    images, results = {}, {}
    for scenario in ("baseline", "no-vmx"):
        images[scenario], results[scenario] = lab_images(scenario, cpus=2, driver=testdrv, workload=False)
    return images, results


def _check(image, *extra):
    code, out, err = run_cli(["--image", image, "--json", "check"] + list(extra))
    assert "Traceback" not in out + err
    return code, json.loads(out)


def test_check_on_the_lab_baseline(lab):
    images, results = lab
    assert results["baseline"].loaded
    code, doc = _check(images["baseline"])
    assert code == 0 and doc["verdict"] == "PASS" and len(doc["processors"]) == 2
    t = ImageTarget(images["baseline"])
    for p in doc["processors"]:
        s = {c["requirement"]: (c["status"], c["detail"]) for c in p["checks"]}
        cpu = p["cpu"]
        assert s["CPUID.1:ECX.VMX"][0] == "PASS"
        assert s["IA32_FEATURE_CONTROL.lock"] == ("PASS", "locked (0x%x)" % t.read_msr(0x3A, cpu))
        assert s["CR4.VMXE"][0] == "PASS"  # the image is taken while the driver is in VMX operation
        assert s["CR0 vs FIXED0/FIXED1"][1].startswith("CR0=0x%x;" % t.registers(cpu)["cr0"])
        revision = t.read_msr(0x480, cpu) & 0x7FFFFFFF
        assert s["VMCS revision id"] == ("PASS", s["VMCS revision id"][1]) and \
            s["VMCS revision id"][1].startswith("%d (0x%x)" % (revision, revision))


def test_check_on_the_lab_without_vmx(lab):
    images, _ = lab
    code, doc = _check(images["no-vmx"], "--cpu", "1")
    s = {c["requirement"]: c["status"] for c in doc["processors"][0]["checks"]}
    assert code == 1 and s["CPUID.1:ECX.VMX"] == "FAIL" and doc["verdict"] == "FAIL"


def test_dbgfilter_agrees_with_what_the_lab_printed(lab):
    images, results = lab
    code, out, err = run_cli(["--image", images["baseline"], "--json", "--stats", "dbgfilter"])
    doc = json.loads(out)
    assert "stats: 1 reads, 12 bytes" in err  # the lab puts the three masks side by side
    printed = {l["value"]: l["printed"] for l in doc["levels"]}
    ihv = [m for m in results["baseline"].messages if m.component == 77]
    assert ihv, "the fixture driver prints under DPFLTR_IHVDRIVER_ID"
    for m in ihv:  # the lab's kernel filtered with its live masks; the suite read them from the image
        assert printed[m.level] == m.shown, (m.level, m.text)
    assert {m.shown for m in ihv} == {True, False}  # both outcomes exercised (ERROR shown, INFO hidden)


def test_pykd_backend_on_the_lab_image(lab, standin):
    """The live path (stand-in pykd over the lab's image) says what the image backend says."""
    from windbg_ext import cli
    images, _ = lab
    standin._attach(images["baseline"])
    for argv in (["check"], ["dbgfilter"]):
        del standin._output[:]
        assert cli.main(["--json"] + argv) == 0
        live = json.loads("".join(text for text, _ in standin._output))
        code, out, _ = run_cli(["--image", images["baseline"], "--json"] + argv)
        offline = json.loads(out)
        if argv == ["check"]:  # pykd has no CPUID: only that row's source differs
            for p in live["processors"] + offline["processors"]:
                p["checks"] = [c for c in p["checks"] if c["requirement"] != "CPUID.1:ECX.VMX"]
        assert live == offline


@pytest.fixture(scope="module")
def hv_image(lab_images):
    """The real hv.sys (make -C driver) loaded by the lab on two processors."""
    path, res = lab_images("baseline", cpus=2, workload=False)
    assert res.loaded, "hv.sys did not load in the lab: 0x%08x" % (res.load_status or 0)
    return path


def test_msrbitmap_of_a_vcpu_through_the_hv_walker(hv_image):
    from windbg_ext.arch.msr_bitmap import decode_msr_bitmap
    t = ImageTarget(hv_image)
    for n in (0, 1):
        code, out, err = run_cli(["--image", hv_image, "--json", "msrbitmap", str(n)])
        assert code == 0, err
        doc = json.loads(out)
        pa = int(doc["address"], 16)
        assert doc["source"] == "vCPU %d" % n and doc["physical"] and pa and pa & 0xFFF == 0 and not doc["notes"]
        expected = decode_msr_bitmap(t.read_physical(pa, 4096))
        assert doc["read"] == ["0x%x" % m for m in expected["read"]]
        assert doc["write"] == ["0x%x" % m for m in expected["write"]]
        code, out2, _ = run_cli(["--image", hv_image, "--json", "msrbitmap", doc["address"], "--phys"])
        direct = json.loads(out2)
        assert (direct["read"], direct["write"]) == (doc["read"], doc["write"])


def test_check_with_hv_loaded(hv_image, lab_images):
    code, doc = _check(hv_image)
    # no workload ran: hv.sys took no snapshot, so the guest's real CR0/CR4 are unknown (the
    # image's registers are the parked VMX-root context, a debugger's would be read shadows)
    assert code == 0 and doc["verdict"] == "UNKNOWN"
    for p in doc["processors"]:
        checks = {c["requirement"]: c for c in p["checks"]}
        assert checks["CR4 vs FIXED0/FIXED1"]["status"] == "UNKNOWN"
        assert "snapshot is empty" in checks["CR4 vs FIXED0/FIXED1"]["detail"]
    code, doc = _check(lab_images("baseline", cpus=2)[0])   # the workload's snapshot hypercall ran
    assert code == 0 and doc["verdict"] == "PASS"
    for p in doc["processors"]:
        # hv.sys virtualized every processor: VMXE is a fact from its VMCS, not the register a debugger reads
        checks = {c["requirement"]: c for c in p["checks"]}
        assert checks["CR4.VMXE"]["status"] == "INFO" and "hv.sys" in checks["CR4.VMXE"]["detail"]
        assert "VMCS snapshot" in checks["CR4 vs FIXED0/FIXED1"]["detail"]
