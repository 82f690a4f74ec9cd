"""Issue 14, tried as a new user would: output that fits a console, hints that work, JSON that is
consistent, lab runs that say what they did. On images the emulated lab wrote."""
from __future__ import annotations

import json

import pytest

from tests.support import run_cli

WIDTH = 120
COMMANDS = [["check"], ["caps"], ["caps", "--all"], ["dbgfilter"], ["vmm"], ["vcpu", "0"], ["vcpu", "1"],
            ["vmcs", "0"], ["vmcs", "0", "--all"], ["vmcs", "1", "--source", "failure"], ["regions"],
            ["msrbitmap", "0"], ["verify", "0"], ["verify", "1"], ["verify", "1", "--all"], ["verify", "0", "--all"],
            ["field", "--all"], ["exit"], ["vmerror"], ["help"], ["help", "vmcs"],
            ["caps", "--msr", "0x480=0x00d8100000000004"]]


@pytest.fixture(scope="module")
def images(lab_images):
    return {s: lab_images(s, cpus=2, crash_ok=(s == "resume-failure"))[0]
            for s in ("baseline", "launch-failure", "feature-locked", "alloc-fail:3", "resume-failure", "no-vmx")}


@pytest.mark.parametrize("scenario", ["baseline", "launch-failure", "resume-failure", "no-vmx"])
def test_every_command_fits_120_columns_and_wide_shows_everything(images, scenario):
    """Before: lines of 385 (caps), 252 (verify --all), 157 (vmm), 151 (vmcs) columns; errors of 274."""
    widest_wide = 0
    for cmd in COMMANDS:
        code, out, err = run_cli(["--image", images[scenario]] + cmd)
        for line in (out + "\n" + err).splitlines():
            assert len(line) <= WIDTH or line.lstrip().startswith("python -m windbg_ext --image"), (cmd, line)
        code_w, out_w, _ = run_cli(["--wide", "--image", images[scenario]] + cmd)
        assert code_w == code
        widest_wide = max([widest_wide] + [len(line) for line in out_w.splitlines()])
    assert widest_wide > WIDTH  # --wide really is wider: nothing wrapped, no column left out


def test_vmm_leaves_columns_out_and_says_so(images):
    code, out, _ = run_cli(["--image", images["baseline"], "vmm"])
    header = next(line for line in out.splitlines() if line.startswith("vCPU "))
    assert "VMXON VA" not in header and "VMXON PA" in header and "(left out to fit 120 columns: VMXON VA, VMCS VA; --wide shows them)" in out
    code, out, _ = run_cli(["--image", images["baseline"], "vmm", "--wide"])  # after the command works too
    header = next(line for line in out.splitlines() if line.startswith("vCPU "))
    assert "VMXON VA" in header and "left out" not in out


@pytest.mark.parametrize("scenario", ["feature-locked", "alloc-fail:3", "launch-failure"])
@pytest.mark.parametrize("cmd", [["vcpu", "0"], ["regions"], ["msrbitmap", "0"]])
def test_hints_point_only_at_commands_that_work(images, scenario, cmd):
    """Before: on alloc-fail / feature-locked images these suggested `vmcs 0 --source failure`, which errors."""
    code, out, err = run_cli(["--image", images[scenario]] + cmd)
    assert code == 2 and len(err) <= WIDTH and "see: " in err, err
    for hint in err.split("see: ", 1)[1].split(", "):
        hcode, hout, herr = run_cli(["--image", images[scenario]] + hint.split())
        assert hcode in (0, 1) and herr == "", (hint, herr)


def test_offline_next_hints_can_be_pasted(images):
    code, out, _ = run_cli(["--image", images["launch-failure"], "vmm"])
    assert "  python -m windbg_ext --image %s verify 1" % images["launch-failure"] in out


def test_vcpu_lists_every_exit_reason(images):
    """Before: "exits by reason" stopped at six entries (sum 11 of 12 shown)."""
    code, out, _ = run_cli(["--json", "--image", images["baseline"], "vcpu", "0"])
    data = json.loads(out)
    counts = data["exit_counts"]
    assert len(counts) > 6 and sum(counts.values()) == data["exit_count"]
    code, text, _ = run_cli(["--wide", "--image", images["baseline"], "vcpu", "0"])
    line = next(line for line in text.splitlines() if line.startswith("exits by reason"))
    assert sum(int(part.rsplit(" ", 1)[1]) for part in line.split("  ", 1)[1].strip().split(", ")) == data["exit_count"]


def test_json_errors_are_json_objects_on_stdout_too(images):
    code, out, err = run_cli(["--json", "--image", images["alloc-fail:3"], "vcpu", "0"])
    assert code == 2 and err.startswith("error: ")
    assert json.loads(out) == {"error": err[len("error: "):], "exit_code": 2}
    code, out, err = run_cli(["--json", "vmerror", "zz"])
    assert code == 2 and json.loads(out)["exit_code"] == 2


def test_json_schemas_agree(images):
    vmm = json.loads(run_cli(["--json", "--image", images["baseline"], "vmm"])[1])
    assert vmm["vmm"]["state"] == "running" and all(isinstance(v["state"], str) for v in vmm["vcpus"])
    one = json.loads(run_cli(["--json", "field", "GUEST_RIP"])[1])
    every = json.loads(run_cli(["--json", "field", "--all"])[1])
    assert set(one) >= {"fields", "count"} and set(every) >= {"fields", "count"}
    assert one["fields"][0]["width"] == 64 and one["fields"][0]["natural_width"] is True
    assert all(isinstance(f["width"], int) for f in every["fields"])
    for cmd in (["verify", "0"], ["vmcs", "0"], ["msrbitmap", "0"]):
        doc = json.loads(run_cli(["--json", "--image", images["baseline"]] + cmd)[1])
        assert isinstance(doc["notes"], list) and "note" not in doc, cmd


def test_caps_msr_decodes_what_was_given_and_says_what_was_not():
    """Before: one --msr printed 14 "not given" sections, claimed nothing could be decoded without 0x480
    and then decoded others, and ignored --msr 0x48d=... given alone."""
    code, out, _ = run_cli(["caps", "--msr", "0x481=0x7f00000016"])
    assert code == 0 and out.count("not given") == 1 and "nothing else can be decoded" not in out
    assert "not given, so not decoded: 0x3a, 0x480, 0x482" in out and "PINBASED_CTLS (0x481) = 0x7f00000016" in out
    code, out, _ = run_cli(["--json", "caps", "--msr", "0x48d=0x7f00000016"])
    assert json.loads(out)["not_decoded"][0]["msr"] == "0x48d"
    code, out, _ = run_cli(["caps", "--msr", "0x48d=0x7f00000016"])
    assert "IA32_VMX_TRUE_PINBASED_CTLS (0x48d) was given but not decoded" in out.replace("\n  ", " ")


def test_lab_summary_says_what_happened(lab_images):
    _, res = lab_images("alloc-fail:999", cpus=1)
    text = "\n".join(res.summary())
    # before: a plain baseline run that said nothing about allocation 999
    assert "scenario alloc-fail:999 on 1 processor:" in text  # not "1 processors"
    assert "allocation 999 never happened (the driver made %d): a plain baseline run" % res.allocation_calls in text
    assert all(len(line) <= WIDTH for line in text.splitlines())
    _, base = lab_images("baseline", cpus=2)
    assert "allocations by the driver: %d" % base.allocation_calls in "\n".join(base.summary())


def test_a_missing_dependency_is_an_install_hint_not_an_internal_error(monkeypatch):
    """Before: outside the venv, a missing package was "internal error ... please report it"."""
    import sys

    import windbg_ext.commands.vmerror as vmerror

    def needs_a_package(ctx, args):
        raise ImportError("No module named 'tabulate'", name="tabulate")
    monkeypatch.setattr(vmerror, "run", needs_a_package)
    code, out, err = run_cli(["vmerror", "7"])
    assert code == 2 and "internal error" not in err and len(err.splitlines()) == 1
    assert "Python package tabulate is missing" in err and "source .venv/bin/activate" in err
    monkeypatch.setitem(sys.modules, "windbg_ext.commands.exit_reason", None)  # the module cannot be imported
    code, out, err = run_cli(["exit", "48"])
    assert code == 2 and "command 'exit' is unavailable: Python package" in err


def test_the_build_is_quiet_unless_it_fails(tmp_path):
    """`make demo` shows the demo first: tools/quiet.sh holds a build step's output back unless it fails."""
    import os
    import subprocess

    from tests.support import ROOT
    quiet = os.path.join(ROOT, "tools", "quiet.sh")
    env = dict(os.environ, V="0")
    ok = subprocess.run(["bash", quiet, "a step", "sh", "-c", "echo compiler noise"], env=env,
                        capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout == "" and ok.stderr == ""
    bad = subprocess.run(["bash", quiet, "a step", "sh", "-c", "echo the reason; exit 3"], env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 3 and "the reason" in bad.stderr and "a step failed (exit code 3)" in bad.stderr
    loud = subprocess.run(["bash", quiet, "a step", "sh", "-c", "echo every line"], env=dict(env, V="1"),
                          capture_output=True, text=True)
    assert loud.stdout == "every line\n"


@pytest.mark.parametrize("argv", [["vmcs", "0"], ["vcpu", "0"]])
@pytest.mark.parametrize("scenario", ["feature-locked", "alloc-fail:3"])
def test_errors_fit_one_console_line(images, scenario, argv):
    """Before: single-line errors reached 274 columns."""
    code, out, err = run_cli(["--image", images[scenario]] + argv)
    assert code == 2 and len(err) <= WIDTH and err.endswith("see: vmm, check"), err
    for argv2 in (["vmm"], ["caps"], ["exit", "99999"]):
        code, out, err = run_cli(argv2)
        assert code == 2 and len(err) <= WIDTH, err


def test_a_dump_suggests_no_command_that_needs_msrs(images, tmp_path):
    """`check` on a crash dump pointed at `caps --cpu N`, which cannot run there (a dump holds no MSRs)."""
    from windbg_ext.target.dump import image_to_dump
    dump = str(tmp_path / "lab.dmp")
    image_to_dump(images["baseline"], dump)
    code, out, _ = run_cli(["--dump", dump, "check"])
    assert "caps --cpu" not in out
    code, out, err = run_cli(["--dump", dump, "caps"])
    assert code == 2 and len(err) <= WIDTH and "a crash dump holds no MSR values" in err


@pytest.mark.parametrize("scenario", ["baseline", "launch-failure", "feature-locked", "alloc-fail:3"])
def test_every_pasteable_hint_runs(images, scenario):
    """Every "next:"/"see:" command line a command prints offline can be pasted and works (exit 0 or 1)."""
    prefix = "python -m windbg_ext --image %s " % images[scenario]
    hints = set()
    for cmd in COMMANDS:
        code, out, err = run_cli(["--image", images[scenario]] + cmd)
        hints.update(line.strip()[len(prefix):] for line in out.splitlines() if line.strip().startswith(prefix))
    assert hints or scenario != "baseline"
    for hint in sorted(hints):
        code, out, err = run_cli(["--image", images[scenario]] + hint.split())
        assert code in (0, 1) and err == "", (scenario, hint, err)


def test_lab_scenario_list_fits_120_columns(capsys):
    from emulated_lab.__main__ import main
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert "alloc-fail:K" in out and max(len(line) for line in out.splitlines()) <= WIDTH
