"""Bad input -> one line on stderr saying what is wrong and what to do, exit 2,
nothing on stdout. Runs the real scripts/check-debuggee executable."""
import os
import subprocess
import sys

import pytest

import debuggee_hives as hives
from debuggee_hives import SCRIPTS

CHECK = os.path.join(SCRIPTS, "check-debuggee")


def check(*argv, cwd=None):
    r = subprocess.run([sys.executable, CHECK] + [str(a) for a in argv], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, cwd=cwd)
    return r.returncode, r.stdout, r.stderr


def one_line_error(rc, out, err, *words):
    assert rc == 2, (rc, out, err)
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("check-debuggee: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err


@pytest.fixture
def system(tmp_path):
    return hives.make_hive(str(tmp_path / "SYSTEM"), "SYSTEM", hives.system_keys())


def test_the_wrapper_is_executable_and_runs_from_anywhere(system, data, tmp_path):
    assert os.access(CHECK, os.X_OK)
    rc, out, err = check("--hive", system, "--bcdedit-enum", data("enum_ready.txt"),
                         "--dbgsettings", data("dbg_net_ready.txt"), cwd=str(tmp_path))
    assert rc == 0 and err == "" and "PASS" in out


def test_missing_hive(tmp_path):
    one_line_error(*check("--hive", tmp_path / "nope"), "no such file", "reg save")


def test_hive_that_is_not_a_file(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(str(fifo))   # opening it would block: it must be refused before that
    one_line_error(*check("--hive", fifo), "a FIFO (named pipe), not a hive file", "reg save")
    one_line_error(*check("--hive", tmp_path), "a directory, not a hive file", "reg save")
    one_line_error(*check("--hive", os.devnull), "a character device, not a hive file", "reg save")
    one_line_error(*check("--bcd-hive", fifo), "a FIFO (named pipe), not a hive file", "bcdedit /export")


def test_not_a_hive(tmp_path):
    p = tmp_path / "text"
    p.write_text("hello")
    one_line_error(*check("--hive", p), "not a registry hive")


def test_corrupt_hive(tmp_path, system):
    data = bytearray(open(system, "rb").read())
    data[0x1000:0x1004] = b"XXXX"            # the hbin signature
    bad = tmp_path / "corrupt"
    bad.write_bytes(bytes(data))
    one_line_error(*check("--hive", bad), "--hive", "damaged hive")


def test_truncated_hive(tmp_path, system):
    bad = tmp_path / "truncated"
    bad.write_bytes(open(system, "rb").read()[:0x1010])
    one_line_error(*check("--hive", bad), "--hive")


def test_hive_of_the_wrong_kind(tmp_path):
    soft = hives.make_hive(str(tmp_path / "SOFTWARE"), "SOFTWARE", hives.software_keys())
    one_line_error(*check("--hive", soft), "not a SYSTEM hive")


def test_system_hive_without_select_current(tmp_path):
    keys = hives.system_keys()
    keys["Select"] = {"Default": 1}
    path = hives.make_hive(str(tmp_path / "SYSTEM"), "SYSTEM", keys)
    one_line_error(*check("--hive", path), "Select\\Current")


def test_unreadable_bcdedit_file(tmp_path, system):
    one_line_error(*check("--hive", system, "--bcdedit-enum", tmp_path), "--bcdedit-enum", "cannot read")
    one_line_error(*check("--hive", system, "--dbgsettings", tmp_path / "missing.txt"), "--dbgsettings")


def test_bcdedit_files_swapped(system, data):
    one_line_error(*check("--hive", system, "--bcdedit-enum", data("dbg_net_ready.txt")),
                   "bcdedit /enum {current}")
    one_line_error(*check("--hive", system, "--dbgsettings", data("enum_ready.txt")), "bcdedit /dbgsettings")


@pytest.mark.parametrize("opt,value,word", [
    ("--host-ip", "10.0.0", "IPv4"),
    ("--port", "80", "49152-65535"),
    ("--key", "abc", "KDNET key"),
    ("--print-mask", "0x1FFFFFFFF", "32-bit"),
    ("--service", "a b", "service name"),
])
def test_bad_parameters(system, opt, value, word):
    one_line_error(*check("--hive", system, opt, value), word)


def test_unknown_option_and_no_source():
    one_line_error(*check("--frobnicate"), "unrecognized arguments", "--help")
    one_line_error(*check(), "not on Windows", "--hive SYSTEM")


def test_software_hive_alone_is_refused(tmp_path):
    soft = hives.make_hive(str(tmp_path / "SOFTWARE"), "SOFTWARE", hives.software_keys())
    one_line_error(*check("--software-hive", soft), "need --hive SYSTEM")


def test_broken_settings_table(tmp_path, system):
    bad = tmp_path / "t.json"
    bad.write_text("{ not json")
    one_line_error(*check("--table", bad, "--hive", system), "not valid JSON")


def test_help_exits_zero():
    r = subprocess.run([sys.executable, CHECK, "--help"], stdout=subprocess.PIPE, universal_newlines=True)
    assert r.returncode == 0 and "--bcdedit-enum" in r.stdout and "--host-ip" in r.stdout


def test_a_copy_without_windbg_ext_says_what_is_missing(system, monkeypatch, capsys):
    # scripts/ copied alone to the VM: the shared filter rule cannot be imported -> that item is UNKNOWN,
    # with the reason. (None in sys.modules makes the import fail like a missing file would.)
    from debuggee import cli
    monkeypatch.setitem(sys.modules, "windbg_ext.arch.dbgprint", None)
    # `from windbg_ext.arch import dbgprint` returns the package attribute if an earlier test imported it.
    import windbg_ext.arch
    monkeypatch.delattr(windbg_ext.arch, "dbgprint", raising=False)
    cli.main(["--hive", system], on_windows=False)
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    i = [n for n, l in enumerate(lines) if "Debug Print Filter" in l][0]
    import itertools
    wrapped = itertools.takewhile(lambda l: l.startswith(" "), lines[i + 1:])  # the Found cell goes on here
    row = " ".join([lines[i]] + [l.strip() for l in wrapped])
    assert row.startswith("UNKNOWN") and "copy the whole hvlab folder" in " ".join(row.split())


def test_importable_as_a_module_from_scripts(system, data):
    r = subprocess.run([sys.executable, "-m", "debuggee", "--json", "--hive", system,
                        "--bcdedit-enum", data("enum_wrong.txt")], cwd=SCRIPTS,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    import json
    doc = json.loads(r.stdout)
    assert r.returncode == 1 == doc["exit"] and r.stderr == ""
    assert {x["id"]: x["status"] for x in doc["results"]}["hyperv_launch"] == "FAIL"
