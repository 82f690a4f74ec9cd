"""windbg_ext runs inside the Python that pykd embeds (3.8+): vermin proves
no 3.9+ syntax or stdlib API is used (annotations too, where they are
evaluated at runtime, i.e. without `from __future__ import annotations`)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "windbg_ext")
VERMIN = [sys.executable, "-c", "import sys; from vermin import main; sys.exit(main())", "-t=3.8-", "--no-tips", "--violations"]


def _vermin(args):
    return subprocess.run(VERMIN + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, cwd=ROOT)


def _py_files():
    for base, _, files in os.walk(PACKAGE):
        for f in sorted(files):
            if f.endswith(".py"):
                yield os.path.join(base, f)


def test_windbg_ext_runs_on_python_38():
    r = _vermin([PACKAGE])
    assert r.returncode == 0 and "Target versions not met" not in r.stdout, r.stdout


def test_runtime_annotations_are_38_compatible():
    evaluated = [p for p in _py_files() if "from __future__ import annotations" not in open(p).read()]
    if not evaluated:
        return
    r = _vermin(["--eval-annotations"] + evaluated)
    assert r.returncode == 0, r.stdout


def test_the_check_catches_39_code(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import zoneinfo\nprint({} | {})\n")
    r = _vermin([str(bad)])
    assert r.returncode != 0 and "3.9" in r.stdout
