"""tools/mutants.py (`make mutants MODULES=...`): which only_mutate patterns a run gets, and its bad input."""
import importlib.util
import os
import subprocess
import sys

from tests.support import ROOT

_spec = importlib.util.spec_from_file_location("mutants_tool", os.path.join(ROOT, "tools", "mutants.py"))
mutants = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mutants)

SCOPE = ["windbg_ext/arch/*", "windbg_ext/hv/*"]


def test_the_default_scope_is_all_of_arch_and_hv():
    assert mutants.scope_patterns(os.path.join(ROOT, "setup.cfg")) == SCOPE


def test_files_and_folders_narrow_the_run():
    assert mutants.narrow(["windbg_ext/arch/exits.py", "./windbg_ext/hv/"], SCOPE, ROOT) == (
        ["windbg_ext/arch/exits.py", "windbg_ext/hv/*"], None)
    assert mutants.narrow(["windbg_ext/arch/entry_checks"], SCOPE, ROOT) == (["windbg_ext/arch/entry_checks/*"], None)


def test_names_outside_the_scope_or_missing_are_refused():
    patterns, error = mutants.narrow(["windbg_ext/commands/vmm.py"], SCOPE, ROOT)
    assert patterns is None and error == ("windbg_ext/commands/vmm.py is outside the mutation scope "
                                          "(windbg_ext/arch/*, windbg_ext/hv/* in setup.cfg [mutmut] only_mutate)")
    patterns, error = mutants.narrow(["windbg_ext/arch/exit.py"], SCOPE, ROOT)
    assert patterns is None and error.startswith("no Python module or folder 'windbg_ext/arch/exit.py'")
    assert mutants.narrow(["README.md"], SCOPE, ROOT)[0] is None


def test_bad_input_is_one_line_and_exit_2_before_anything_runs():
    for argv, needle in ((["windbg_ext/nope.py"], "no Python module or folder"),
                         (["--max-children", "0"], "give 1 or more")):
        res = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "mutants.py")] + argv,
                             capture_output=True, text=True, cwd=ROOT)
        assert res.returncode == 2 and res.stdout == ""
        assert res.stderr.count("\n") == 1 and needle in res.stderr
