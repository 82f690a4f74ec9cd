"""Maps of roles: the built-in ones chosen from type names, a hand-written map
for a third naming scheme (a renamed sevendays built and run for real), and
one clear line for every wrong map."""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.support import ROOT, run_cli

from .conftest import SEVENDAYS_DIR, build_fixture_driver, truth

# the third scheme: every name a built-in map could recognise is changed
RENAMES = [("__vmm_context_t", "hypervisor_t"), ("__vcpu_t", "cpu_slot_t"), ("g_vmm_context", "TheHypervisor"),
           ("vcpu_table", "slots"), ("processor_count", "slot_count"), ("vmxon_physical", "on_region_pa"),
           ("vmcs_physical", "control_block_pa"), ("msr_bitmap_physical", "msr_map_pa"),
           ("vmxon", "on_region"), ("vmcs", "control_block"), ("msr_bitmap", "msr_map"), ("stack", "stack_base"),
           ("exit_count", "exits_seen")]

THIRD_MAP = {
    "name": "third scheme (hand-written)",
    "context": {"symbol": "TheHypervisor", "type": "hypervisor_t", "pointer": True},
    "count": {"member": "slot_count"},
    "vcpus": {"member": "slots"},
    "vcpu_type": "cpu_slot_t",
    # the VMXON region by its virtual address only: translated through the page tables
    "vcpu": {"vmxon_va": "on_region", "vmcs_pa": "control_block_pa", "msr_bitmap_pa": "msr_map_pa",
             "host_stack": "stack_base"},
    "host_stack_size": 0x6000,
    "extra": {"exits": "exits_seen"},
    "vmcs_fields": {"VM_EXIT_REASON": "last_exit_reason"},   # a field the driver stored itself
}


@pytest.fixture(scope="module")
def third(tmp_path_factory, lab_images):
    """The renamed driver built with clang + PDB, run on 2 processors: (image, result, pdb)."""
    src = str(tmp_path_factory.mktemp("third-src"))
    for name in os.listdir(SEVENDAYS_DIR):
        text = open(os.path.join(SEVENDAYS_DIR, name), encoding="utf-8").read()
        if name.endswith((".c", ".h")):
            for old, new in RENAMES:
                text = re.sub(r"\b%s\b" % re.escape(old), new, text)
        with open(os.path.join(src, name), "w", encoding="utf-8") as f:
            f.write(text)
    out = os.path.join(src, "out")
    subprocess.run(["make", "-s", "-C", src, "OUT=" + out, "HVINC=" + os.path.join(ROOT, "driver", "include"),
                    "TOOLS=" + os.path.join(ROOT, "driver", "tools")], check=True)
    image, res = lab_images("baseline", cpus=2, driver=os.path.join(out, "clang", "sevendays.sys"))
    assert res.loaded
    return image, res, os.path.join(out, "clang", "sevendays.pdb")


def test_no_builtin_map_fits_the_third_scheme(third):
    image, res, pdb = third
    code, out, err = run_cli(["--image", image, "--symbols", pdb, "vmm"])
    assert code == 2 and err.count("\n") == 0
    assert "no built-in map fits" in err and "map --suggest" in err


def test_suggest_finds_the_third_schemes_roles(third, tmp_path):
    image, res, pdb = third
    code, out, err = run_cli(["--symbols", pdb, "--json", "map", "--suggest"])
    assert code == 0, err
    spec = json.loads(out)
    assert spec["vcpu_type"] == "cpu_slot_t"
    assert spec["vcpu"]["msr_bitmap_pa"] == "msr_map_pa" and spec["vcpu"]["host_stack"] == "stack_base"
    assert spec["context"] == {"symbol": "TheHypervisor", "type": "hypervisor_t", "pointer": True}
    assert spec["vcpus"] == {"member": "slots"} and spec["count"] == {"member": "slot_count"}
    # "control_block_pa" says nothing about a VMCS: left for the person, and refused until filled in
    assert spec["vcpu"]["vmcs_pa"].startswith("TODO")
    path = str(tmp_path / "suggested.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    code, out, err = run_cli(["--image", image, "--symbols", pdb, "--map", path, "vmm"])
    assert code == 2 and err.count("\n") == 0 and "names cpu_slot_t.TODO" in err and "does not exist" in err


def test_hand_written_map_walks_the_third_scheme(third, tmp_path):
    image, res, pdb = third
    path = str(tmp_path / "third.json")
    with open(path, "w") as f:
        json.dump(THIRD_MAP, f)
    code, out, err = run_cli(["--image", image, "--symbols", pdb, "--map", path, "--json", "vmm"])
    assert code == 0, err
    data = json.loads(out)
    assert [(v["vmxon_pa"], v["vmcs_pa"]) for v in data["vcpus"]] == truth(res)
    assert all(v["sources"]["vmxon_pa"] == "translated from cpu_slot_t.on_region" for v in data["vcpus"])
    assert all(int(v["extra"]["exits"], 16) > 0 for v in data["vcpus"])   # the workload made exits
    code, out, err = run_cli(["--image", image, "--symbols", pdb, "--map", path, "regions"])
    assert code == 0, err
    assert "6 of 6 pages pass" in out


BAD_MAPS = [
    ({"vcpu": {"vmcs_pa": "vmcs_phys"}}, "__vcpu_t.vmcs_phys, which does not exist (did you mean vmcs_physical"),
    ({"vcpus": {"member": "vcpus"}}, "__vmm_context_t.vcpus, which does not exist"),
    ({"count": {"member": "nprocs"}}, "__vmm_context_t.nprocs"),
    ({"context": {"symbol": "g_ctx", "type": "__vmm_context_t", "pointer": True}}, "context symbol g_ctx"),
    ({"vcpu_type": "VCPU"}, "no struct 'VCPU'"),
    ({"vcpu": {"vmcs_pa": "vmcs_physical", "vmcs_ptr": "vmcs"}}, "unknown vCPU role 'vmcs_ptr'"),
    ({"hostStack": 1}, "unknown key hostStack"),
    ({"vmcs_fields": {"GUEST_RIPP": "launched"}}, "'GUEST_RIPP', which is not a VMCS field"),
    ({"extra": {"exits": "exitcount"}}, "extra.exits names __vcpu_t.exitcount"),
]


@pytest.mark.parametrize("change,message", BAD_MAPS)
def test_bad_map_one_line_naming_what_is_missing(sevendays, tmp_path, change, message):
    from windbg_ext.hv.rolemap import BUILTIN_MAPS

    spec = json.loads(json.dumps(BUILTIN_MAPS["7days"]))
    for k, v in change.items():
        if isinstance(v, dict) and isinstance(spec.get(k), dict) and k == "vcpu" and "vmcs_ptr" not in v:
            spec[k].update(v)
        else:
            spec[k] = v
    path = str(tmp_path / "bad.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    code, out, err = run_cli(["--symbols", sevendays["pdb"], "--map", path, "map"])
    assert code == 2 and err.count("\n") == 0 and "Traceback" not in err
    assert message in err, err


def test_unreadable_maps(sevendays, tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    for path, message in ((str(tmp_path / "missing.json"), "missing.json does not exist"),
                          (str(tmp_path / "broken.json"), "is not valid JSON")):
        code, out, err = run_cli(["--symbols", sevendays["pdb"], "--map", path, "map"])
        assert code == 2 and err.count("\n") == 0 and message in err, err


# -- the other built-in maps, on drivers named the way those projects name things --------------
@pytest.mark.parametrize("name,key,cpus", [("hfs_like", "hfs", 2), ("gbhv_like", "gbhv", 4)])
def test_builtin_maps_walk_drivers_named_like_hfs_and_gbhv(lab_images, tmp_path_factory, name, key, cpus):
    """tests/walk/fixtures/{hfs,gbhv}_like.c keep their tables the way Hypervisor From Scratch and gbhv do
    (typedef'd structs: the PDB names them _X), allocate the regions and fail to load on purpose; the
    built-in map is chosen from the type names and every region it finds is an allocation the emulated
    kernel made (VA and PA as its tracker recorded them)."""
    driver, pdb = build_fixture_driver(name, str(tmp_path_factory.mktemp(name)))
    image, res = lab_images("baseline", cpus=cpus, driver=driver)
    assert not res.loaded
    code, out, err = run_cli(["--image", image, "--symbols", pdb, "--json", "vmm"])
    assert code == 0, err
    data = json.loads(out)
    assert data["driver"]["map"] == key and data["processor_count"] == cpus
    pages = {a.pa: a.va for a in res.leaks if a.kind == "contiguous"}   # MmAllocateContiguousMemory
    seen = set()
    for v in data["vcpus"]:
        for region in ("vmxon", "vmcs", "msr_bitmap"):
            pa = int(v[region + "_pa"], 16)
            assert pa in pages and pa not in seen
            seen.add(pa)
            if v.get(region + "_va"):
                assert int(v[region + "_va"], 16) == pages[pa]
    if key == "gbhv":   # the host stack is an array inside the per-processor struct
        assert all(int(v["host_stack"][0], 16) == int(v["address"], 16) + 8 for v in data["vcpus"])
    code, out, err = run_cli(["--image", image, "--symbols", pdb, "regions"])
    assert code == 1 and "revision id" in out   # the regions were never given a revision id: the check says so


def test_context_by_address_an_expression_of_the_map(third, tmp_path):
    """The context given as an address (what `? poi(x)` gives in WinDbg), or a symbol plus an offset."""
    from windbg_ext.hv.symbols import load_symbol_file

    image, res, pdb = third
    rva = load_symbol_file(pdb).symbols["TheHypervisor"]
    for context in ({"address": "0x%x" % (res.driver_base + rva), "type": "hypervisor_t", "pointer": True},
                    {"symbol": "DriverEntry", "offset": rva - load_symbol_file(pdb).symbols["DriverEntry"],
                     "type": "hypervisor_t", "pointer": True}):
        spec = dict(THIRD_MAP, context=context)
        path = str(tmp_path / "by-address.json")
        with open(path, "w") as f:
            json.dump(spec, f)
        code, out, err = run_cli(["--image", image, "--symbols", pdb, "--map", path, "--json", "vmm"])
        assert code == 0, err
        assert [(v["vmxon_pa"], v["vmcs_pa"]) for v in json.loads(out)["vcpus"]] == truth(res)
    spec = dict(THIRD_MAP, context={"address": "somewhere", "type": "hypervisor_t"})
    with open(path, "w") as f:
        json.dump(spec, f)
    code, out, err = run_cli(["--image", image, "--symbols", pdb, "--map", path, "vmm"])
    assert code == 2 and err.count("\n") == 0 and "'somewhere' is not a number" in err
