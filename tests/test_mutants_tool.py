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


def _score_table_equivalents(doc):
    """The "equivalent" column of the score table, summed over the module rows (not the "all" row)."""
    rows = [r.split("|") for r in doc.split("\n") if r.startswith("| `arch/") or r.startswith("| `hv/")]
    return sum(int(r[5]) for r in rows)


def test_every_listed_equivalent_is_read_from_the_docs():
    with open(os.path.join(ROOT, mutants.EQUIVALENTS_DOC), encoding="utf-8") as f:
        doc = f.read()
    listed = mutants.listed_equivalents(doc)
    # the table of names and the score table are written separately: they must agree
    assert len(listed) == _score_table_equivalents(doc) > 100
    # each way a cell names mutants: one name, "_N" after a name, a range, a name with no module
    assert {"msr_bitmap._slot__mutmut_3", "entry_checks.model.hexv__mutmut_13",
            "paging.translate__mutmut_79", "paging.translate__mutmut_82", "exits._loadiwkey__mutmut_30",
            "foreign.ForeignWalker.processor_count__mutmut_25", "foreign.ForeignWalker.__init____mutmut_15",
            "symbols.SymbolTable.struct__mutmut_10"} <= listed
    assert "paging.translate__mutmut_83" not in listed and "paging.translate__mutmut_78" not in listed


def test_cells_naming_mutants_several_ways():
    doc = ("### Equivalent survivors\n\n| mutant | change | why |\n|---|---|---|\n"
           "| `a.f__mutmut_2, _5`, `_9` | x | y |\n"
           "| `b.C.m__mutmut_1..3`, `n__mutmut_7`, `c.g__mutmut_4` | x | `not.a__mutmut_1` |\n"
           "\n## Next\n| `d.h__mutmut_1` | x | y |\n")
    assert mutants.listed_equivalents(doc) == {
        "a.f__mutmut_2", "a.f__mutmut_5", "a.f__mutmut_9", "b.C.m__mutmut_1", "b.C.m__mutmut_2",
        "b.C.m__mutmut_3", "b.C.n__mutmut_7", "c.g__mutmut_4"}
    assert mutants.listed_equivalents("no table here") == set()


def test_mutmut_names_as_the_docs_write_them():
    assert mutants.short_name("windbg_ext.hv.foreign.x\u01c1ForeignWalker\u01c1vcpus__mutmut_14") == (
        "foreign.ForeignWalker.vcpus__mutmut_14")
    assert mutants.short_name("windbg_ext.arch.entry_checks.model.x_hexv__mutmut_11") == (
        "entry_checks.model.hexv__mutmut_11")
    assert mutants.short_name("windbg_ext.arch.exits.x__r__mutmut_1") == "exits._r__mutmut_1"


def test_new_survivors_and_equivalents_detected_now_are_told_apart():
    listed = {"a.f__mutmut_1", "a.f__mutmut_2", "b.g__mutmut_1"}
    run = {"a.f__mutmut_%d" % i for i in range(1, 6)}
    # b.g was not run: not "detected now"; a.f__mutmut_2 was run and did not survive
    assert mutants.compare({"a.f__mutmut_1", "a.f__mutmut_4"}, listed, run) == (
        ["a.f__mutmut_4"], ["a.f__mutmut_2"])
    assert mutants.compare({"a.f__mutmut_1", "a.f__mutmut_2"}, listed, run) == ([], [])


def test_the_report_marks_each_survivor_and_says_what_to_do():
    hv = "windbg_ext.hv.walker.x_f__mutmut_%d"
    survivors = [(hv % 1, "survived"), (hv % 4, "no tests")]
    listed = {"walker.f__mutmut_1", "walker.f__mutmut_2"}
    lines = mutants.survivor_report(survivors, listed, [hv % i for i in (1, 2, 4)])
    assert lines == [
        "    %s: survived (listed as equivalent)" % (hv % 1),
        "    %s: no tests (NEW)" % (hv % 4),
        "1 survivor(s) not in docs/testing.md's \"Equivalent survivors\": kill each with a test, or list it "
        "there with the reason no test can tell it apart",
        "listed as equivalent but detected now: walker.f__mutmut_2 (take it out of docs/testing.md)"]
    assert mutants.survivor_report([(hv % 1, "survived")], {"walker.f__mutmut_1"}, [hv % 1, hv % 2]) == [
        "    %s: survived (listed as equivalent)" % (hv % 1),
        "the survivors are exactly the equivalents docs/testing.md lists for these modules"]
