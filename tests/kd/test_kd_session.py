"""The kd session itself: pykd with the real names, the lab as strict as a
real target (registers of the guest, MSRs on the debugger's processor, an
active VMCS page that is not its values), the prompt, Ctrl+Break, bad input."""
from __future__ import annotations

import inspect
import io
import json
import os

import pytest

from emulated_lab import __main__ as lab_main
from emulated_lab.kd import pykd_live
from emulated_lab.kd.session import kd_session
from tests.support import STANDIN_DIR

API = set(open(os.path.join(STANDIN_DIR, "pykd_api.txt")).read().split())
EXCEPTIONS = {"DbgException", "MemoryException", "SymbolException", "TypeException", "CPUException"}


def test_pykd_module_has_only_real_names_and_signatures():
    public = {n for n in vars(pykd_live) if not n.startswith("_")}
    functions = {n for n in public if inspect.isfunction(getattr(pykd_live, n))}
    classes = {n for n in public if inspect.isclass(getattr(pykd_live, n))}
    assert functions <= API and classes == EXCEPTIONS and public == functions | classes
    assert issubclass(pykd_live.TypeException, pykd_live.SymbolException)
    for name in ("rdmsr", "reg", "setReg", "setIP", "getOffset", "setCurrentThreadId"):
        kinds = {p.kind for p in inspect.signature(getattr(pykd_live, name)).parameters.values()}
        assert kinds == {inspect.Parameter.POSITIONAL_ONLY}, name
    assert list(inspect.signature(pykd_live.loadBytes).parameters) == ["offset", "count", "phyAddr"]
    assert list(inspect.signature(pykd_live.dbgCommand).parameters) == ["command", "suppressOutput"]


SCRIPT = """
import pykd
print("ctx0_gs=%x" % pykd.rdmsr(0xC0000101))
pykd.setCurrentThreadId(1)                    # a register-context switch only
print("ctx1_gs=%x" % pykd.rdmsr(0xC0000101))  # still the debugger loop's processor
print("ctx1_cr4=%x" % pykd.reg("cr4"))        # registers do follow
pykd.dbgCommand("~1s")                        # a target-side switch
print("stub1_gs=%x" % pykd.rdmsr(0xC0000101))
print("phys=%s" % bytes(pykd.loadBytes(VMCS, 16, True)).hex())
try:
    pykd.reg("nosuchreg")
except pykd.CPUException as e:
    print("cpu_exc=%s" % e)
try:
    pykd.getOffset("hv!Nope")
except pykd.SymbolException:
    print("sym_exc")
"""


def test_the_lab_is_strict_where_a_real_target_is(kd, tmp_path):
    """What the pre-issue-11 backend relied on does not hold live: rdmsr after
    setCurrentThreadId answers for the debugger's processor (the old MSR path
    gave processor 0's IA32_GS_BASE for processor 1), and the VMCS page of an
    active VMCS is not its values (the old region source)."""
    probe = kd("baseline", 2, ["r cr4"])
    vmcs1 = int(probe.processor(1)["vmcs_pa"], 16)
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT.replace("VMCS", hex(vmcs1)))
    run = kd("baseline", 2, ["!py %s" % script, "!py -m windbg_ext --json vmcs 1 --source region --all",
                             "!py -m windbg_ext --json vmcs 1 --refresh --all"])
    vals = dict(line.split("=", 1) for line in run.outputs[0].split("\n") if "=" in line)
    assert vals["ctx0_gs"] == vals["ctx1_gs"] != vals["stub1_gs"]
    assert int(vals["ctx1_cr4"], 16) == int(run.processor(1)["cr4_seen_by_guest"], 16)
    assert "Invalid register name" in vals["cpu_exc"] and "sym_exc" in run.outputs[0]
    # the active VMCS: revision id and abort indicator in memory, the rest not the values
    region = run.json(1)
    assert any("NOT current values" in n for n in region["notes"])
    fresh = {f["encoding"]: f["value"] for f in run.json(2)["fields"]}
    same = [f for f in region["fields"] if f["value"] is not None and f["value"] == fresh.get(f["encoding"])]
    assert len(same) < 5, same
    assert vals["phys"][:8] == "04000000"   # dword 0: VMCS revision id 4


def test_kd_prompt_and_ctrl_break(hv_sys):
    """The kd> prompt: !py (-g), ~Ns, r, rdmsr, errors; Ctrl+Break in a refresh restores the registers."""
    lines = iter(["r", "rdmsr 0x3a", "~1s", "r rip", "!py -g -m windbg_ext vcpu 1", "bogus", "!py -4.0 -m x",
                  "BREAK", "r rip", "g"])
    stream = io.StringIO()

    def read_line(prompt):
        line = next(lines)
        stream.write(prompt + line + "\n")
        if line == "BREAK":   # Ctrl+Break in the middle of a refresh of processor 1 (the trace step)
            pykd_live._break_after = 15
            return "!py -m windbg_ext vmcs 1 --refresh GUEST_RIP"
        return line

    kd_session("baseline", 2, hv_sys, 0, None, [], interactive=True, stream=stream, read_line=read_line)
    pykd_live._break_after = None
    out = stream.getvalue()
    assert "rax=" in out and "efl=" in out and "msr[3a] = 00000000`00000005" in out
    assert "1: kd> r rip" in out and "vCPU 1" in out
    assert "Unknown command 'bogus'" in out and "this session's Python is" in out
    assert "error: interrupted (Ctrl+Break)" in out
    rips = [line for line in out.split("\n") if line.startswith("rip=") and " " not in line]
    assert len(rips) == 2 and rips[0] == rips[1]   # the registers the refresh changed are back


def test_ctrl_break_restores_the_processor_at_every_point(kd):
    """Ctrl+Break after n pykd calls of `vmcs 1 --refresh`: interrupted, every register of
    processor 1 and the debugger's processor as before."""
    hits = 0
    for n in range(2, 30, 3):
        pykd_live._break_after = n
        run = kd("baseline", 2, ["r rip, rax, rcx, rsp, efl", "~1s", "r rip, rax, rcx, rsp, efl", "~0s",
                                 "!py -m windbg_ext vmcs 1 --refresh GUEST_RIP", "~1s", "r rip, rax, rcx, rsp, efl"])
        pykd_live._break_after = None
        if "interrupted" not in run.outputs[4]:
            assert "fresh:" in run.outputs[4]
            continue
        hits += 1
        assert "Traceback" not in run.outputs[4]
        assert run.outputs[6] == run.outputs[2], n
    assert hits >= 3


@pytest.mark.parametrize("argv,message", [
    (["kd", "--cpus", "0"], "--cpus must be between 1 and 16"),
    (["kd", "--scenario", "nope"], "unknown scenario 'nope'"),
    (["kd", "--report", "/nonexistent/dir/r.json", "--", "vmm"], "cannot write the report"),
    (["kd", "--script", "/nonexistent/s.txt"], "cannot read the script"),
    (["kd", "--break-cpu", "5", "--", "vmm"], "--break-cpu 5"),
    (["run", "--", "vmm"], "arguments after '--' are for 'kd' only"),
])
def test_bad_input_is_one_line(hv_sys, capsys, argv, message):
    assert lab_main.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_report_file_and_command_line(hv_sys, tmp_path, capsys):
    report = tmp_path / "r.json"
    assert lab_main.main(["kd", "--cpus", "2", "--driver", hv_sys, "--report", str(report), "--",
                          "vcpu", "1"]) == 0
    out = capsys.readouterr().out
    assert "0: kd> !py -m windbg_ext vcpu 1" in out and "vCPU 1" in out
    doc = json.loads(report.read_text())
    assert doc["cpus"] == 2 and len(doc["processors"]) == 2
    p = doc["processors"][1]
    assert p["vmcs_fields"]["0x681e"].startswith("0x") and p["msrs"]["0x480"] == "0xd8100000000004"
    script = tmp_path / "cmds.txt"
    script.write_text("~1s\nr cr4\n!py -m windbg_ext --json vmm\n")
    assert lab_main.main(["kd", "--driver", hv_sys, "--script", str(script)]) == 0
    out = capsys.readouterr().out
    assert "1: kd> r cr4" in out and '"vcpus"' in out


def test_hypercall_constants_are_the_drivers():
    from emulated_lab.kd import stub
    from tests.support import ROOT
    from windbg_ext.hv import refresh
    header = open(os.path.join(ROOT, "driver", "include", "hv_hypercall.h")).read()
    for side in (refresh, stub):   # the suite's and the lab's copies of the driver's interface
        assert "HV_HYPERCALL_SIGNATURE 0x%XULL" % side.HYPERCALL_SIGNATURE in header
        assert "HV_HYPERCALL_SNAPSHOT %du" % side.HYPERCALL_SNAPSHOT in header


def test_runs_are_fresh_unless_global_and_links_keep_what_was_typed(kd):
    """pykd-ext: a fresh interpreter per !py, the global one with -g; the host's modules stay."""
    import sys
    import windbg_ext.cli as host_cli
    from emulated_lab.kd import pyext
    pyext._GLOBAL_MODULES.clear()   # a new WinDbg: its global interpreter has run nothing yet
    run = kd("baseline", 1, ["!py -m windbg_ext help", "!py -g -m windbg_ext help", "!py -g -m windbg_ext help"])
    py = "-%d.%d" % sys.version_info[:2]
    assert '<exec cmd="!py %s -m windbg_ext help vmm">' % py in run.raw[0]
    assert '<exec cmd="!py %s -m windbg_ext help vmm">' % py in run.raw[1]        # the first -g run looks fresh
    assert '<exec cmd="!py -g %s -m windbg_ext help vmm">' % py in run.raw[2]     # then the global one is seen
    assert sys.modules["windbg_ext.cli"] is host_cli


def test_refresh_says_why_not(kd, lab_images):
    """--refresh needs a live session and a running vCPU: otherwise one line saying so."""
    run = kd("launch-failure", 2, ["!py -m windbg_ext vmcs 0 --refresh", "!py -m windbg_ext verify 1 --refresh"])
    assert run.outputs[0].startswith("error: ") and run.outputs[0].count("\n") == 1
    assert "hv.sys is not running (driver state: failed)" in run.outputs[0]
    assert run.outputs[1].startswith("error: --refresh: hv.sys is not running")
    from tests.support import run_cli
    path, _ = lab_images("baseline", cpus=2)
    code, out, err = run_cli(["--image", path, "vmcs", "0", "--refresh"])
    assert code == 2 and "--refresh needs a live debugging session" in err and err.count("\n") == 0
    code, out, err = run_cli(["--image", path, "verify", "0", "--refresh"])
    assert code == 2 and "--refresh needs a live debugging session" in err
