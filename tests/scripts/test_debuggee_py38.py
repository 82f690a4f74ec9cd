"""check-debuggee runs on whatever Python the Windows VM has: 3.8 and newer."""
import os
import subprocess
import sys

from debuggee_hives import SCRIPTS

VERMIN = [sys.executable, "-c", "import sys; from vermin import main; sys.exit(main())", "-t=3.8-", "--no-tips",
          "--violations", "--eval-annotations"]


def test_scripts_run_on_python_38():
    files = [os.path.join(SCRIPTS, "check-debuggee")]
    for base, _, names in os.walk(os.path.join(SCRIPTS, "debuggee")):
        files += [os.path.join(base, n) for n in sorted(names) if n.endswith(".py")]
    r = subprocess.run(VERMIN + files, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert r.returncode == 0 and "Target versions not met" not in r.stdout, r.stdout


def test_the_check_catches_39_code(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x: dict[str, int]) -> None:\n    return None\n")
    r = subprocess.run(VERMIN + [str(bad)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert r.returncode != 0
