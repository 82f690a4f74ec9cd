"""The 7 Days style driver on the emulated CPU on 1, 2, 4 and 8 processors,
walked from its PDB with the built-in map: every vCPU shows the VMXON / VMCS
physical addresses the emulated CPU actually used (cpu_truth), on images and
on crash dumps made from the same memory."""
from __future__ import annotations

import json

import pytest

from tests.support import run_cli

from .conftest import truth


def _walk(image, pdb, *cmd, source="--image"):
    code, out, err = run_cli([source, image, "--symbols", pdb, "--json"] + list(cmd))
    assert code in (0, 1), err
    assert err == "", err
    return json.loads(out)


@pytest.mark.parametrize("cpus", [1, 2, 4, 8])
def test_vmm_shows_the_regions_the_cpu_used(lab_images, sevendays, cpus):
    image, res = lab_images("baseline", cpus=cpus, driver=sevendays["clang"])
    assert res.loaded and not res.leaks
    data = _walk(image, sevendays["pdb"], "vmm")
    assert data["driver"]["map"] == "7days" and data["processor_count"] == cpus
    got = [(v["vmxon_pa"], v["vmcs_pa"]) for v in data["vcpus"]]
    assert got == truth(res)
    # the driver's own DbgPrintEx lines name the same addresses
    said = [m.text for m in res.messages if "VMXON at" in m.text]
    assert len(said) == cpus and all(vmcs in said[i] for i, (_, vmcs) in enumerate(got))


@pytest.mark.parametrize("cpus", [1, 2, 4])
def test_vcpu_regions_msrbitmap_vmcs(lab_images, sevendays, cpus):
    image, res = lab_images("baseline", cpus=cpus, driver=sevendays["clang"])
    pdb = sevendays["pdb"]
    regions = _walk(image, pdb, "regions")
    assert {r["result"] for r in regions["regions"]} == {"PASS"}
    assert len(regions["regions"]) == 3 * cpus
    by_region = {(r["vcpu"], r["region"]): r["pa"] for r in regions["regions"]}
    assert [(by_region[(i, "VMXON")], by_region[(i, "VMCS")]) for i in range(cpus)] == truth(res)
    n = cpus - 1
    vcpu = _walk(image, pdb, "vcpu", str(n))
    assert (vcpu["vmxon_pa"], vcpu["vmcs_pa"]) == truth(res)[n]
    checks = {(c["region"], c["check"]): c for c in vcpu["checks"]}
    assert checks[("VMCS", "revision id")]["result"] == "PASS"        # bytes 0-7 are what memory holds
    # the image holds each active VMCS's page stale, as a dump does (SDM 25.11.1): region-derived checks are n/a
    for check in (("host stack", "HOST_RSP inside (region*)"), ("MSR bitmap", "VMCS MSR_BITMAP field (region*)")):
        assert checks[check]["result"] == "n/a" and "stale" in checks[check]["detail"]
    bitmap = _walk(image, pdb, "msrbitmap", str(n))
    assert bitmap["address"] == vcpu["msr_bitmap_pa"] and bitmap["physical"]
    assert bitmap["read"] == [] and bitmap["write"] == []   # sevendays' bitmap is all zero: no MSR exits
    # vmcs N: no scrambled bytes shown as values (they used to be, with "region-derived" notes)
    code, out, err = run_cli(["--image", image, "--symbols", pdb, "vmcs", str(n), "--group", "host"])
    assert code == 2 and err.count("\n") == 0 and "25.11.1" in err and truth(res)[n][1] in err, err


def test_msrbitmap_resolves_through_the_map(lab_images, sevendays):
    image, res = lab_images("baseline", cpus=2, driver=sevendays["clang"])
    vmm = _walk(image, sevendays["pdb"], "vmm")
    code, out, err = run_cli(["--image", image, "--symbols", sevendays["pdb"], "msrbitmap", "1"])
    assert code == 0, err
    assert vmm["vcpus"][1]["msr_bitmap_pa"] in out
    assert res.vmreads[1][0x2004] == int(vmm["vcpus"][1]["msr_bitmap_pa"], 16)   # MSR_BITMAP field


def _dump_of(image_path, out_path):
    from windbg_ext.target.dump import write_dump
    from windbg_ext.target.image import ImageTarget

    t = ImageTarget(image_path)
    pages = {}
    for pa, n in t.memory_ranges():
        data = t.read_physical(pa, n)
        for off in range(0, n, 0x1000):
            pages[pa + off] = data[off:off + 0x1000]
    write_dump(out_path, pages, dtb=t.registers(0)["cr3"], processors=t.processor_count())
    t.close()
    return out_path


@pytest.mark.parametrize("cpus", [2, 8])
def test_dump_walk_without_a_module_list(lab_images, sevendays, tmp_path, cpus):
    """A dump with no module list: the base would come from a scanned VMCS's HOST_RIP, but every VMCS was
    active when it was taken, its page stale (SDM 25.11.1): the walk says to give --module-base, and with
    it the walk finds what the CPU used."""
    image, res = lab_images("baseline", cpus=cpus, driver=sevendays["clang"])
    dump = _dump_of(image, str(tmp_path / "sd.dmp"))
    code, out, err = run_cli(["--dump", dump, "--symbols", sevendays["pdb"], "vmm"])
    assert code == 2 and err.count("\n") == 0 and "--module-base" in err, err
    base = ["--module-base", "0x%x" % res.driver_base]
    data = _walk(dump, sevendays["pdb"], *(base + ["vmm"]), source="--dump")
    assert data["driver"]["module_base_from"] == "--module-base"
    assert [(v["vmxon_pa"], v["vmcs_pa"]) for v in data["vcpus"]] == truth(res)
    regions = _walk(dump, sevendays["pdb"], *(base + ["regions"]), source="--dump")
    assert {r["result"] for r in regions["regions"]} == {"PASS"}
    assert "VMXON region" in regions["revision_id_from"]   # a dump has no MSRs: said so


def test_gcc_build_runs_and_the_wrong_base_is_refused(lab_images, sevendays):
    """The mingw build runs the same way; symbols of the clang build at another base do not fit."""
    image, res = lab_images("baseline", cpus=2, driver=sevendays["gcc"])
    assert res.loaded and not res.leaks and all(v == "off" for v in res.vmx_after)
    code, out, err = run_cli(["--image", image, "--symbols", sevendays["pdb"], "--module-base", "0x1000", "vmm"])
    assert code == 2 and err.count("\n") == 0 and "cannot read" in err


def test_live_walk_through_pykd_with_the_pdb_file(standin, lab_images, sevendays):
    """Live: the PDB file converted here, memory read through pykd (the stand-in: real pykd names only)."""
    image, res = lab_images("baseline", cpus=2, driver=sevendays["clang"])
    standin._attach(image)
    code, out, err = run_cli(["--symbols", sevendays["pdb"], "--module-base", "0x%x" % res.driver_base, "--json",
                              "vmm"], live=True)
    assert code == 0, err
    data = json.loads(out)
    assert [(v["vmxon_pa"], v["vmcs_pa"]) for v in data["vcpus"]] == truth(res)
    assert data["driver"]["module_base_from"] == "--module-base"
    assert "loadBytes" in standin._calls
    # live, the region of a running processor's VMCS is not trusted (SDM 25.11.1)
    code, out, err = run_cli(["--symbols", sevendays["pdb"], "--module-base", "0x%x" % res.driver_base, "--json",
                              "vcpu", "1"], live=True)
    assert code == 0, err
    region_derived = [c for c in json.loads(out)["checks"] if "(region*)" in c["check"]]
    assert len(region_derived) == 2
    assert all(c["result"] == "n/a" and "not checked live" in c["detail"] for c in region_derived)
    code, out, err = run_cli(["--symbols", sevendays["pdb"], "--module-base", "0x%x" % res.driver_base,
                              "vmcs", "1", "HOST_RIP"], live=True)
    assert code == 2 and "25.11.1" in err, err


def _with_driver_symbols(image_path, out_path, pdb, symbols=True, listed=True):
    """The lab image, plus what WinDbg knows once it loaded the driver's PDB: every sevendays!symbol at
    base + RVA (the lab records exports only). Memory, processors and modules are the lab's; without
    `listed`, sevendays is left out of the module list (what `lm` shows)."""
    from windbg_ext.hv.symbols import load_symbol_file
    from windbg_ext.target.image import ImageTarget, ImageWriter

    t = ImageTarget(image_path)
    w = ImageWriter()
    for pa, n in t.memory_ranges():
        w.add_memory(pa, t.read_physical(pa, n))
    for m in t.modules():
        if listed or m["name"] != "sevendays":
            w.add_module(m["name"], m["base"], m["size"])
    for name, va in t.symbols().items():
        w.add_symbol(name, va)
    base = [m["base"] for m in t.modules() if m["name"] == "sevendays"][0]
    for name, rva in load_symbol_file(pdb).symbols.items() if symbols else ():
        w.add_symbol("sevendays!%s" % name, base + rva)
    for i in range(t.processor_count()):
        c = t._cpus[i]
        w.add_cpu(c["regs"], c["msrs"], cpuid=c["cpuid"])
    w.meta.update(t.meta)
    w.current_cpu = t.current_cpu
    w.write(out_path)
    t.close()
    return out_path


def test_live_module_base_from_the_debuggers_module_list_or_symbols(standin, lab_images, sevendays, tmp_path):
    image, res = lab_images("baseline", cpus=2, driver=sevendays["clang"])
    for attach, how in ((image, "the target's module list"),   # `lm`, as WinDbg lists loaded modules
                        (_with_driver_symbols(image, str(tmp_path / "syms.hvimg"), sevendays["pdb"], listed=False),
                         "the debugger's sevendays!DriverEntry less its RVA")):
        standin._attach(attach)
        code, out, err = run_cli(["--symbols", sevendays["pdb"], "--json", "vmm"], live=True)
        assert code == 0, err
        data = json.loads(out)
        assert data["driver"]["module_base_from"] == how
        assert int(data["driver"]["module_base"], 16) == res.driver_base
        assert [(v["vmxon_pa"], v["vmcs_pa"]) for v in data["vcpus"]] == truth(res)
    assert "dbgCommand" in standin._calls    # lm, one round trip
    # neither in the module list nor in the debugger's symbols: live says what to do in one line
    standin._attach(_with_driver_symbols(image, str(tmp_path / "none.hvimg"), sevendays["pdb"], symbols=False,
                                         listed=False))
    code, out, err = run_cli(["--symbols", sevendays["pdb"], "vmm"], live=True)
    assert code == 2 and err.count("\n") == 0 and "--module-base" in err


def test_a_failed_launch_is_walkable_post_mortem(sevendays, tmp_path):
    """launch-failure on sevendays: VM entry fails on the last processor, the driver bug-checks (it has
    nothing to resume); the crash image is walked from the PDB."""
    from emulated_lab.lab import run_scenario

    image = str(tmp_path / "lf.hvimg")
    res = run_scenario("launch-failure", cpus=2, driver=sevendays["clang"], image=image, raise_on_crash=False)
    assert res.bugcheck is not None and res.bugcheck[0] == 0x7D000021 and res.image_path == image
    assert any("VM entry failed, exit reason 0x80000021" in m.text for m in res.messages)
    data = _walk(image, sevendays["pdb"], "vmm")
    assert [(v["vmxon_pa"], v["vmcs_pa"]) for v in data["vcpus"]] == truth(res)
    # the failed processor's VMCS is still current (no VMCLEAR before the bugcheck): its page is stale, so the
    # cause is not read from it (it used to be: the lab's page was exact); the driver's own log line has it
    code, out, err = run_cli(["--image", image, "--symbols", sevendays["pdb"], "vmcs", "1", "VM_EXIT_REASON"])
    assert code == 2 and err.count("\n") == 0 and "VMCLEAR" in err, err


def test_the_guest_runs_under_sevendays(lab_images, sevendays):
    """The example is a working hypervisor, not a data structure: the lab's guest workload under it."""
    import struct

    image, res = lab_images("baseline", cpus=2, driver=sevendays["clang"])
    for cpu in range(2):
        w = res.workload[cpu]
        regs = w["cpuid-vendor"]["regs"]
        assert struct.pack("<III", regs["rbx"], regs["rcx"], regs["rdx"]) == b"SevenDaysVMM"
        assert w["cpuid-1"]["regs"]["rcx"] >> 31 & 1                      # "a hypervisor is present"
        assert w["rdmsr-efer"]["exits"] == [] and w["wrmsr-lstar"]["exits"] == []   # the zeroed MSR bitmap
        assert w["rdmsr-outside-bitmap"]["fault"] == 13 and w["wrmsr-outside-bitmap"]["fault"] == 13   # #GP
        assert w["vmxon-in-guest"]["fault"] == 6                            # #UD: no nested VMX
        assert w["xsetbv"]["stop"] == "return" and w["invd"]["stop"] == "return"
    assert all(v == "off" for v in res.vmx_after) and not res.leaks     # unload left VMX everywhere, freed all


def test_verify_refuses_the_stale_region_of_a_driver_without_snapshot(lab_images, sevendays, tmp_path):
    """verify N with --symbols runs the VM-entry checks on the VMCS region only when the page holds a VMCS's
    values: on the image of the running driver and on the launch-failure crash image every VMCS was active,
    its page stale (SDM 25.11.1), so there is nothing to verify (it used to pass, and to name the TR access
    rights, on the lab's exact pages: a real dump would have given a verdict on scrambled bytes)."""
    from emulated_lab.lab import run_scenario

    image, res = lab_images("baseline", cpus=2, driver=sevendays["clang"])
    crash = str(tmp_path / "lf.hvimg")
    run_scenario("launch-failure", cpus=2, driver=sevendays["clang"], image=crash, raise_on_crash=False)
    for path in (image, crash):
        code, out, err = run_cli(["--image", path, "--symbols", sevendays["pdb"], "verify", "1"])
        assert code == 2 and err.count("\n") == 0 and "does not hold its values" in err and "25.11.1" in err, err
    for cmd, says in ((["verify", "0", "--source", "snapshot"], "keeps no VMCS snapshot"),
                      (["vmcs", "0", "--source", "snapshot"], "keeps no VMCS snapshot")):
        code, out, err = run_cli(["--image", image, "--symbols", sevendays["pdb"]] + cmd)
        assert code == 2 and err.count("\n") == 0 and says in err, err
