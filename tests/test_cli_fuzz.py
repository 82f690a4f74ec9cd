"""Fuzzing both tools' command lines (issue 14): argument lists drawn from each command's own
options and from numbers in every syntax, with every path argument given as each kind of path
(regular, missing, directory, FIFO, device, symlink, read-only, empty, and a real lab image).

For every run: no traceback and no "internal error", no hang (an alarm stops a run after
HANG_SECONDS), an exit code the documentation lists, one error line for exit code 2, and
nothing written but regular files (FIFO, device node, symlink, read-only file and directory
are untouched; the real /dev/null stays a character device). Everything happens in a tmp dir.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import stat
from typing import List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import PATH_KINDS, changes, make_path_kinds, run_cli, tree_state
from windbg_ext.commands import COMMANDS

HANG_SECONDS = 60
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PATH = "@PATH"   # replaced by the path of the kind drawn for this example

NUMBERS = ["0", "1", "2", "7", "30", "48", "0x30", "30h", "0n48", "00000030", "80000021", "0x80000021", "1c",
           "abc", "fffff801`12345678", "`", "0x", "0n", "0nff", "-1", "99999999999999999999999", "1e3", ""]
WORDS = ["GUEST_RIP", "681e", "--all", "--json", "--wide", "-h", "--help", "=", "<b>&", "%s", "guest", "host",
         "control", "region", "snapshot", "failure", "0x480=0xd8100000000004", "0x48d=0xff", "480", "nonsense"]
WINDBG_OPTIONS = {  # each command's own options, so that examples reach past argparse
    "field": ["--all", "--type", "--width"],
    "exit": ["--qual", "--intr-info", "--instr-info"],
    "vmerror": [],
    "caps": ["--cpu", "--all", "--msr"],
    "check": ["--cpu", "--all"],
    "msrbitmap": ["--phys", "--msr"],
    "dbgfilter": ["--level"],
    "vmm": [],
    "vcpu": [],
    "vmcs": ["--all", "--group", "--source", "--diff"],
    "regions": [],
    "verify": ["--fields", "--caps", "--source", "--all", "--maxphyaddr"],
    "help": [],
}
LAB_OPTIONS = ["--cpus", "--scenario", "--out", "--report", "--driver", "--timeout", "--kd-mask", "--nodes",
               "--max-instructions", "--help"]
LAB_VALUES = ["1", "2", "0", "17", "0x2", "two", "baseline", "no-vmx", "launch-failure", "feature-locked",
              "alloc-fail:1", "alloc-fail:999", "alloc-fail:x", "IHVDRIVER=0xffff", "IHVDRIVER=ffff", "bogus=1",
              "inf", "nan", "-3", "30"]


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so no `except Exception` in the tools swallows it."""


@contextlib.contextmanager
def alarm(seconds: int):
    def fire(signum, frame):
        raise Hang("no answer after %d s" % seconds)
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module", autouse=True)
def in_a_tmp_dir(tmp_path_factory):
    """Relative paths in the drawn arguments (`--out 1`) land in a tmp dir, never in the checkout."""
    here = os.getcwd()
    os.chdir(str(tmp_path_factory.mktemp("cwd")))
    try:
        yield
    finally:
        os.chdir(here)


@pytest.fixture(scope="module")
def kinds(tmp_path_factory, lab_images):
    d = str(tmp_path_factory.mktemp("path-kinds"))
    paths = make_path_kinds(d)
    image, _ = lab_images("baseline")
    paths["image"] = image
    return d, paths


def _fill(tokens: List[str], path: str) -> List[str]:
    return [path if t == PATH else t for t in tokens]


def _check(d: str, before, code, out: str, err: str, allowed: Tuple[int, ...], new_dirs: bool = False) -> None:
    after = tree_state(d)
    missing = os.path.join(d, "missing")  # a run may create it (--out, --write-baseline): missing again next time
    if os.path.isdir(missing) and not os.path.islink(missing):
        assert new_dirs, "a directory was created: %s" % missing
        shutil.rmtree(missing)
        after = {p: v for p, v in after.items() if not p.startswith(missing)}
    elif os.path.lexists(missing):
        os.unlink(missing)
    assert "Traceback" not in out + err and "internal error" not in out + err, (out, err)
    assert code in allowed, (code, out, err)
    if code == 2 and err.strip():
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert changes(before, after) == []
    assert not [n for n in os.listdir(d) if n.startswith(".hvlab")]
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


windbg_args = st.lists(st.sampled_from(NUMBERS + WORDS + [PATH] + sorted({o for v in WINDBG_OPTIONS.values()
                                                                           for o in v})), max_size=6)


@SETTINGS
@given(command=st.sampled_from(sorted(COMMANDS)), kind=st.sampled_from(PATH_KINDS + ("image",)),
       source=st.sampled_from([None, "--image", "--dump", "--symbols", "--map"]), json_out=st.booleans(),
       args=windbg_args,
       own=st.lists(st.sampled_from(["--fields", "--caps", "--msr", "--cpu", "--qual", "--source", "--diff"]),
                    max_size=2))
def test_windbg_ext_command_lines(kinds, command, kind, source, json_out, args, own):
    d, paths = kinds
    path = paths[kind]
    argv = (["--json"] if json_out else []) + ([source, path] if source else []) + [command]
    argv += _fill(args, path)
    for opt in own:  # an option of this command followed by a path or a number
        if opt in WINDBG_OPTIONS.get(command, ()):
            argv += [opt, path if opt in ("--fields", "--caps") else args[0] if args else "1"]
    before = tree_state(d)
    with alarm(HANG_SECONDS):
        code, out, err = run_cli(argv)
    _check(d, before, code, out, err, (0, 1, 2))
    if json_out:  # stdout is one JSON object, whatever happened; an error says so in it
        import json
        doc = json.loads(out)
        assert isinstance(doc, dict) and (code != 2 or doc["exit_code"] == 2), out


def _run_main(main, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


lab_args = st.lists(st.one_of(st.sampled_from(LAB_OPTIONS), st.sampled_from(LAB_VALUES), st.just(PATH)),
                    max_size=6)


@pytest.fixture(scope="module")
def demo_tmp(tmp_path_factory):
    """`demo` without --out writes a new image in the temporary folder: here, not in the real one."""
    import tempfile
    saved = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("demo-images"))
    try:
        yield tempfile.tempdir
    finally:
        tempfile.tempdir = saved


@SETTINGS
@given(sub=st.sampled_from(["run", "scenarios", "demo", "", "bogus"]), kind=st.sampled_from(PATH_KINDS),
       args=lab_args)
def test_emulated_lab_command_lines(kinds, demo_tmp, sub, kind, args):
    from emulated_lab.__main__ import main
    d, paths = kinds
    argv = ([sub] if sub else []) + _fill(args, paths[kind])
    if sub in ("run", "demo") and "--cpus" not in argv:
        argv += ["--cpus", "1"]  # the emulator is shared by eight engineers: keep runs short
    before = tree_state(d)
    with alarm(HANG_SECONDS):
        code, out, err = _run_main(main, argv)
    _check(d, before, code, out, err, (0, 1, 2))


@SETTINGS
@given(kind=st.sampled_from(PATH_KINDS + ("image",)), out_kind=st.sampled_from(PATH_KINDS),
       bitmap=st.booleans(), extra=st.lists(st.sampled_from(["--bitmap", "x", PATH]), max_size=1))
def test_image_to_dump_command_lines(kinds, kind, out_kind, bitmap, extra):
    from windbg_ext.target.dump import main
    d, paths = kinds
    argv = [paths[kind], paths[out_kind]] + (["--bitmap"] if bitmap else []) + _fill(extra, paths[kind])
    before = tree_state(d)
    with alarm(HANG_SECONDS):
        code, out, err = _run_main(main, argv)
    _check(d, before, code, out, err, (0, 2))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(PATH_KINDS + ("image",)), base_kind=st.sampled_from(PATH_KINDS),
       what=st.sampled_from(["fields", "baseline", "both", "none"]))
def test_entry_probe_command_lines(kinds, kind, base_kind, what):
    from emulated_lab.entry_probe import main
    d, paths = kinds
    argv = {"fields": [paths[kind]], "baseline": ["--write-baseline", paths[base_kind]],
            "both": [paths[kind], "--write-baseline", paths[base_kind]], "none": []}[what]
    before = tree_state(d)
    with alarm(HANG_SECONDS):
        code, out, err = _run_main(main, argv)
    _check(d, before, code, out, err, (0, 2), new_dirs=True)  # --write-baseline creates its directory
