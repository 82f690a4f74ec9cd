"""A reader that stops early (`... | head`) ends each command-line tool quietly: no "Broken pipe" line and no
traceback on stderr, exit status 141 (128 + SIGPIPE, what a shell shows for a tool the signal stopped)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("argv", [
    ["-m", "windbg_ext", "exit"],
    ["-m", "emulated_lab", "scenarios"],
    [os.path.join("scripts", "check-debuggee"), "--help"],
    ["-m", "debuggee", "--help"],
])
def test_closed_reader_ends_quietly(argv):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "scripts"))
    p = subprocess.Popen([sys.executable] + argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # gone before the tool writes its first line (start-up takes far longer than this)
    err = p.stderr.read().decode()
    assert p.wait() == 141, err
    assert err == ""


def test_an_open_reader_still_gets_everything():
    r = subprocess.run([sys.executable, "-m", "windbg_ext", "exit"], cwd=ROOT, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    assert r.returncode == 0 and r.stderr == ""
    assert "basic exit reasons" in r.stdout and r.stdout.endswith("\n")
