"""check, msrbitmap, dbgfilter and help, offline on images built through
ImageWriter; bad input is one line and exit 2."""
from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import run_cli
from windbg_ext.arch.msr_bitmap import build_msr_bitmap

from .images import BITMAP_PA, BITMAP_VA, standard_image


def _json(argv):
    code, out, err = run_cli(["--json"] + argv)
    assert "Traceback" not in out + err
    return code, (json.loads(out) if out else None), err


def _statuses(doc, cpu=0):
    return {c["requirement"]: (c["status"], c["detail"]) for c in doc["processors"][cpu]["checks"]}


# -- check ---------------------------------------------------------------------
def test_check_passes_on_a_good_machine(std_image):
    code, doc, _ = _json(["--image", std_image, "check"])
    assert code == 0 and doc["verdict"] == "PASS" and [p["cpu"] for p in doc["processors"]] == [0, 1]
    s = _statuses(doc, 1)
    assert s["CPUID.1:ECX.VMX"][0] == "PASS"
    assert s["IA32_FEATURE_CONTROL.lock"][0] == "PASS"
    assert s["CR0 vs FIXED0/FIXED1"] == ("PASS", "CR0=0x80050033; fixed-1 bits: PE NE PG")
    assert s["CR4.VMXE"][0] == "INFO"
    assert s["VMCS revision id"][0] == "PASS" and s["VMCS revision id"][1].startswith("4 (0x4)")


@pytest.mark.parametrize("kwargs,item,status,fragment", [
    (dict(cpuid_vmx=False), "CPUID.1:ECX.VMX", "FAIL", "VMX not reported"),
    (dict(cpuid_vmx=None), "CPUID.1:ECX.VMX", "PASS", "derived"),
    (dict(feature_control=0x1), "VMXON outside SMX", "FAIL", "disabled in the firmware"),
    (dict(feature_control=0x0), "IA32_FEATURE_CONTROL.lock", "WARN", "unlocked"),
    (dict(cr0=0x80050013), "CR0 vs FIXED0/FIXED1", "FAIL", "must be 1: NE"),
    (dict(cr4=0x4006F8), "CR4 vs FIXED0/FIXED1", "FAIL", "must be 0: PKE"),
    (dict(cr4=0x26F8), "CR4.VMXE", "PASS", "set"),
    (dict(msrs={0x480: 0x00D8100080000004}), "VMCS revision id", "FAIL", ""),  # bit 31 must be 0 (A.1)
])
def test_check_findings(tmp_path, kwargs, item, status, fragment):
    img = standard_image(tmp_path / "c.hvimg", **kwargs)
    code, doc, _ = _json(["--image", img, "check", "--cpu", "0"])
    got = _statuses(doc)[item]
    assert got[0] == status and fragment in got[1], got
    assert code == (1 if any(s == "FAIL" for s, _ in _statuses(doc).values()) else 0)
    assert len(doc["processors"]) == 1


@pytest.mark.parametrize("kwargs,reg,missing,forbidden", [
    (dict(cr0=0x80050013), "cr0", [{"bit": 5, "name": "NE"}], []),
    (dict(cr4=0x4006F8), "cr4", [{"bit": 13, "name": "VMXE"}], [{"bit": 22, "name": "PKE"}]),
    (dict(cr4=0x26F8), "cr4", [], []),
])
def test_check_json_gives_the_fixed_bits_structured(tmp_path, kwargs, reg, missing, forbidden):
    """control_registers: the masks and the violated bits by number and name (docs/json.md);
    CR4.VMXE counts as missing there, though its text row leaves it to the driver."""
    img = standard_image(tmp_path / "c.hvimg", **kwargs)
    _, doc, _ = _json(["--image", img, "check", "--cpu", "0"])
    regs = doc["processors"][0]["control_registers"]
    value = kwargs.get(reg)
    assert regs[reg]["value"] == "0x%x" % value and regs[reg]["source"] == "registers"
    assert (regs[reg]["missing"], regs[reg]["forbidden"]) == (missing, forbidden)
    fixed0, fixed1 = int(regs[reg]["fixed0"], 16), int(regs[reg]["fixed1"], 16)
    assert int(regs[reg]["must_be_one"], 16) == fixed0 & fixed1
    assert int(regs[reg]["must_be_zero"], 16) == ~fixed1 & (1 << 64) - 1


def test_check_unknown_when_the_target_cannot_say(tmp_path):
    from windbg_ext.target.image import ImageWriter
    w = ImageWriter()
    w.add_cpu({"cr0": 0x80050033}, {})  # no MSRs, no CPUID, no CR4
    w.write(str(tmp_path / "u.hvimg"))
    code, doc, _ = _json(["--image", str(tmp_path / "u.hvimg"), "check"])
    assert {s for s, _ in _statuses(doc).values()} == {"UNKNOWN"}
    assert code == 0 and doc["verdict"] == "UNKNOWN"  # nothing failed, nothing known: not a PASS
    regs = doc["processors"][0]["control_registers"]
    assert regs["cr0"]["value"] == "0x80050033" and regs["cr0"]["missing"] is None
    assert regs["cr4"]["value"] is None and regs["cr4"]["fixed0"] is None


def test_check_text_table(std_image):
    code, out, err = run_cli(["--image", std_image, "check", "--cpu", "1"])
    assert code == 0 and err == ""
    assert out.startswith("processor 1: PASS") and "VMCS revision id" in out and "caps --cpu 1" in out


# -- dbgfilter -----------------------------------------------------------------
def test_dbgfilter_default_masks_drop_all_but_error(std_image):
    code, doc, _ = _json(["--image", std_image, "dbgfilter"])
    assert code == 1
    assert [(l["level"], l["printed"], l["via"]) for l in doc["levels"]] == [
        ("ERROR", True, "WIN2000"), ("WARNING", False, None), ("TRACE", False, None), ("INFO", False, None)]
    assert doc["dropped"] == ["WARNING", "TRACE", "INFO"]
    assert doc["fix"]["debugger"] == "ed nt!Kd_IHVDRIVER_Mask 0xffff"
    assert doc["fix"]["registry_key"].endswith(r"Control\Session Manager\Debug Print Filter")
    assert doc["masks"]["Kd_WIN2000_Mask"]["value"] == "0x00000001"


def test_dbgfilter_after_the_fix(tmp_path):
    img = standard_image(tmp_path / "d.hvimg", masks={"nt!Kd_IHVDRIVER_Mask": 0xFFFF, "nt!Kd_DEFAULT_Mask": 0x8})
    code, doc, _ = _json(["--image", img, "dbgfilter", "--level", "4", "--level", "0x80000010", "--level", "20"])
    assert code == 1  # level 20 (bit 20) is outside 0xffff
    got = {(l["level"], l["value"]): (l["printed"], l["via"]) for l in doc["levels"]}
    assert got[("ERROR", 0)] == (True, "both")
    assert got[("INFO", 3)] == (True, "component")
    assert got[("bit 4", 4)] == (True, "component")
    assert got[("mask", 0x80000010)] == (True, "component")  # a Level > 31 is its own mask
    assert got[("bit 20", 20)] == (False, None)
    assert doc["dbgprint_default_printed"] is True
    code, out, _ = run_cli(["--image", img, "dbgfilter"])
    assert code == 0 and "All listed IHVDRIVER levels reach the debugger." in out


def test_dbgfilter_reads_the_masks_in_one_read(std_image):
    code, out, err = run_cli(["--image", std_image, "--stats", "dbgfilter"])
    assert "stats: 1 reads, 12 bytes, 0 MSR reads, 3 symbol lookups" in err


def test_dbgfilter_far_apart_masks_read_one_each(tmp_path):
    def move_default(w, pt):
        pt.map(0xFFFFF80000700000, 0x00700000)
        w.add_memory(0x00700000, struct.pack("<I", 0x8) + bytes(0xFFC))
        w.symbols["nt!Kd_DEFAULT_Mask"] = 0xFFFFF80000700000
        pt.flush()
    img = standard_image(tmp_path / "far.hvimg", extra=move_default)
    code, out, err = run_cli(["--image", img, "--stats", "--json", "dbgfilter"])
    assert "stats: 3 reads, 12 bytes" in err
    assert json.loads(out)["masks"]["Kd_DEFAULT_Mask"]["value"] == "0x00000008"


def test_dbgfilter_missing_symbol_is_one_line(tmp_path):
    from windbg_ext.target.image import ImageWriter
    w = ImageWriter()
    w.add_cpu({"cr3": 0x1000}, {})
    w.write(str(tmp_path / "nosym.hvimg"))
    code, out, err = run_cli(["--image", str(tmp_path / "nosym.hvimg"), "dbgfilter"])
    assert code == 2 and out == "" and err.count("\n") == 0
    assert err.startswith("error: symbol nt!Kd_IHVDRIVER_Mask not found")


def test_dbgfilter_bad_level():
    code, out, err = run_cli(["--image", "/nonexistent", "dbgfilter", "--level", "0x1ffffffff"])
    assert code == 2 and "outside 0..0xffffffff" in err


# -- msrbitmap -----------------------------------------------------------------
def test_msrbitmap_all_zero(std_image):
    code, out, err = run_cli(["--image", std_image, "--stats", "msrbitmap", "hv!HvMsrBitmapPage"])
    assert code == 0 and "no MSR exits" in out
    assert "stats: 1 reads, 4096 bytes" in err


msr_lists = st.lists(st.one_of(st.integers(0, 0x1FFF), st.integers(0xC0000000, 0xC0001FFF)), max_size=20)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(read=msr_lists, write=msr_lists)
def test_msrbitmap_lists_exactly_the_exiting_msrs(tmp_path, read, write):
    img = standard_image(tmp_path / "b.hvimg", bitmap=build_msr_bitmap(read=read, write=write))
    for argv in (["0x%x" % BITMAP_PA, "--phys"], ["0x%x" % BITMAP_VA]):
        code, doc, _ = _json(["--image", img, "msrbitmap"] + argv)
        assert code == 0
        assert doc["read"] == ["0x%x" % m for m in sorted(set(read))]
        assert doc["write"] == ["0x%x" % m for m in sorted(set(write))]


def test_msrbitmap_text_ranges_and_names(tmp_path):
    img = standard_image(tmp_path / "b.hvimg", bitmap=build_msr_bitmap(
        read=[0x174, 0x175, 0x176, 0xC0000080], write=[0xC0000080]))
    code, out, _ = run_cli(["--image", img, "msrbitmap", "0x%x" % BITMAP_VA])
    assert code == 0
    assert "0x174-0x176" in out and "(3 MSRs)" in out
    line = [l for l in out.splitlines() if l.startswith("0xc0000080")][0]
    assert "IA32_EFER" in line and line.split()[-2:] == ["exit", "exit"]


def test_msrbitmap_single_msrs(tmp_path):
    img = standard_image(tmp_path / "b.hvimg", bitmap=build_msr_bitmap(read=[0xC0000082], write=[]))
    code, doc, _ = _json(["--image", img, "msrbitmap", "0x%x" % BITMAP_PA, "--phys",
                          "--msr", "IA32_LSTAR", "--msr", "efer", "--msr", "0x40000000"])
    assert code == 0
    assert [(m["name"], m["read_exits"], m["write_exits"]) for m in doc["msrs"]] == [
        ("IA32_LSTAR", True, False), ("IA32_EFER", False, False), ("MSR_0x40000000", True, True)]
    assert doc["msrs"][2]["in_bitmap_range"] is False


def test_msrbitmap_unaligned_is_noted(tmp_path):
    img = standard_image(tmp_path / "u.hvimg", extra=lambda w, pt: w.add_memory(0x400000, b"\xff" * 0x2000))
    code, doc, _ = _json(["--image", img, "msrbitmap", "0x400010", "--phys"])
    assert code == 0 and "not 4 KiB-aligned" in doc["notes"][0]
    assert len(doc["read"]) == 2 * 8192 and doc["source"] == "physical address"


def test_msrbitmap_unmapped_address(std_image):
    code, out, err = run_cli(["--image", std_image, "msrbitmap", "0xfffff80000900000"])
    assert code == 2 and out == "" and "\n" not in err
    assert "virtual address 0xfffff80000900000" in err and "not present" in err


def test_msrbitmap_vcpu_index_goes_through_the_hv_walker(std_image, monkeypatch):
    from windbg_ext.hv.walker import HvWalker
    seen = []

    def msr_bitmap_pa(self, n):
        seen.append(n)
        return BITMAP_PA
    monkeypatch.setattr(HvWalker, "msr_bitmap_pa", msr_bitmap_pa)
    code, doc, _ = _json(["--image", std_image, "msrbitmap", "3"])
    assert code == 0 and seen == [3] and doc["source"] == "vCPU 3" and doc["physical"] is True
    code, out, _ = run_cli(["--image", std_image, "msrbitmap", "3"])
    # offline, a "next:" hint is a whole command line that can be pasted (before: "next:  vcpu 3")
    assert "MSR bitmap at physical 0x300000 (vCPU 3)" in out
    assert out.endswith("next:\n  python -m windbg_ext --image %s vcpu 3" % std_image)


def test_msrbitmap_vcpu_index_without_hv_sys(std_image):
    code, out, err = run_cli(["--image", std_image, "msrbitmap", "2"])
    assert code == 2 and out == "" and "\n" not in err and "hv debug descriptor" in err


@pytest.mark.parametrize("argv,fragment", [
    (["msrbitmap"], "the following arguments are required"),
    (["msrbitmap", "zz!"], "symbol zz! not found"),
    (["msrbitmap", "hv!HvMsrBitmapPage", "--phys"], "is a symbol, i.e. a virtual address: drop --phys"),
    (["msrbitmap", "0x1" + "0" * 17], "does not fit in 64 bits"),
    (["msrbitmap", "0x1000000", "--msr", "bogus"], "MSR 'bogus' is not a number"),
    (["check", "--cpu", "x1"], "processor 'x1' is not a number"),
    (["check", "--cpu", "1", "--all"], "not allowed with argument"),
    (["nosuch"], "unknown command 'nosuch'"),
    (["dbgfilterr"], "did you mean dbgfilter"),
])
def test_bad_input_is_one_line(std_image, argv, fragment):
    code, out, err = run_cli(["--image", std_image] + argv)
    assert code == 2, (out, err)
    assert fragment in err and err.startswith("error: ") and "\n" not in err and "Traceback" not in out + err


def test_no_target_offline():
    code, out, err = run_cli(["dbgfilter"])
    assert code == 2 and "give --image FILE or --dump FILE" in err


# -- help ----------------------------------------------------------------------
def test_help_lists_every_command_and_usage():
    from windbg_ext.commands import COMMANDS
    code, doc, _ = _json(["help"])
    assert code == 0 and {c["command"] for c in doc["commands"]} == set(COMMANDS)
    code, out, _ = run_cli(["help", "msrbitmap"])
    assert code == 0 and "--phys" in out and "vCPU index" in out
    code, out, err = run_cli(["--help"])
    assert code == 0 and "dbgfilter" in out


def test_module_entry_point_exit_codes(tmp_path, std_image):
    """`python -m windbg_ext` in a fresh interpreter: real exit codes, one line, no traceback."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    corrupt = tmp_path / "corrupt.hvimg"
    data = bytearray(open(std_image, "rb").read())
    data[30] ^= 0xFF
    corrupt.write_bytes(bytes(data))

    def run(*argv):
        return subprocess.run([sys.executable, "-m", "windbg_ext"] + list(argv), cwd=root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    r = run("--image", str(corrupt), "check")
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "is not a usable hvlab image" in r.stderr
    r = run("--image", std_image, "dbgfilter")
    assert r.returncode == 1 and "ed nt!Kd_IHVDRIVER_Mask 0xffff" in r.stdout  # a finding: exit 1
    r = run("--image", std_image, "check")
    assert r.returncode == 0 and "processor 1: PASS" in r.stdout


def test_global_option_errors_and_command_help():
    code, out, err = run_cli(["--image"])
    assert code == 2 and err == "error: windbg_ext: argument --image: expected one argument (see: help)"
    code, out, err = run_cli(["--image", "a", "--dump", "b", "check"])
    assert code == 2 and "not allowed with argument" in err
    code, out, err = run_cli(["check", "--help"])
    assert code == 0 and out.startswith("usage: check [--cpu N | --all]")
