"""`make mutants [MODULES="windbg_ext/arch/exits.py ..."] [CHILDREN=1]`: mutmut over the modules named.

    python tools/mutants.py [--max-children N] [MODULE_OR_FOLDER ...]

With no module, the whole scope of setup.cfg's [mutmut] only_mutate (all of windbg_ext/arch/ and
windbg_ext/hv/). A module or folder named narrows only_mutate for this run only (mutmut 3.8.1's own
name selection still mutates and copies every file in scope), so one module can be run alone on a
shared machine. Each run starts from a fresh mutants/ tree: mutmut keeps earlier verdicts of
survivors even when tests changed, which would hide a kill. At the end: per module, how many mutants
were killed, timed out, survived or had no test, and the run's wall time; then the survivors, each
marked as one of the equivalents listed in docs/testing.md or as new (`.venv/bin/mutmut show NAME`
shows one's change), and any listed equivalent of the modules run that no longer survives."""
import argparse
import configparser
import fnmatch
import os
import re
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scope_patterns(cfg_path):
    """The only_mutate patterns of setup.cfg: the full scope, and what any narrowing must stay inside."""
    parser = configparser.ConfigParser()
    parser.read(cfg_path)
    return [line for line in parser.get("mutmut", "only_mutate", fallback="").split("\n") if line]


def narrow(names, scope, root):
    """The only_mutate patterns for the names given (files or folders, relative to the root).
    Returns (patterns, None) or (None, one line saying what is wrong)."""
    patterns = []
    for name in names:
        rel = os.path.relpath(os.path.join(root, name), root).replace(os.sep, "/")
        full = os.path.join(root, rel)
        if os.path.isdir(full):
            pattern = rel.rstrip("/") + "/*"
            probe = rel.rstrip("/") + "/__init__.py"
        elif os.path.isfile(full) and rel.endswith(".py"):
            pattern = probe = rel
        else:
            return None, "no Python module or folder %r: name files like windbg_ext/arch/exits.py" % name
        if not any(fnmatch.fnmatch(probe, p) for p in scope):
            return None, "%s is outside the mutation scope (%s in setup.cfg [mutmut] only_mutate)" % (
                name, ", ".join(scope))
        patterns.append(pattern)
    return patterns, None


EQUIVALENTS_DOC = os.path.join("docs", "testing.md")
# mutmut's "segfault" is any test run ended by SIGSEGV or SIGKILL: here, the two msr_bitmap loops that
# run out of memory. The test process died on the mutant's behaviour, so it counts as detected.
DETECTED = ("killed", "timeout", "segfault")
_LISTED = re.compile(r"^([\w.]+?)__mutmut_(\d+)(?:\.\.(\d+))?((?:, _\d+)*)$")


def listed_equivalents(doc):
    """The mutants named in the first column of the "Equivalent survivors" table of docs/testing.md, as
    short names (`exits._inv__mutmut_12`, `foreign.ForeignWalker.vcpus__mutmut_14`). A cell may list
    `name__mutmut_2, _5`, a range `name__mutmut_79..82`, a bare `_13` (the name before it) or a name
    with no module (the module and class of the name before it)."""
    start = doc.find("### Equivalent survivors")
    names = set()
    if start < 0:
        return names
    for row in doc[start:].split("\n")[1:]:
        if row.startswith("#"):
            break
        if not row.startswith("| `"):
            continue
        base = None
        for item in re.findall(r"`([^`]+)`", row.split("|")[1]):
            if re.match(r"^_\d+$", item) and base:
                names.add("%s__mutmut_%s" % (base, item[1:]))
                continue
            m = _LISTED.match(item)
            if not m:
                continue
            name = m.group(1)
            if "." not in name and base:
                name = base.rpartition(".")[0] + "." + name
            base = name
            first, last = int(m.group(2)), int(m.group(3) or m.group(2))
            for n in list(range(first, last + 1)) + [int(x) for x in re.findall(r"_(\d+)", m.group(4))]:
                names.add("%s__mutmut_%d" % (base, n))
    return names


def short_name(key):
    """mutmut's key (windbg_ext.hv.foreign.xǁForeignWalkerǁvcpus__mutmut_14) as docs/testing.md writes
    it (foreign.ForeignWalker.vcpus__mutmut_14)."""
    module, _, function = key.rpartition(".")
    for package in ("windbg_ext.arch.", "windbg_ext.hv."):
        if module.startswith(package):
            module = module[len(package):]
    if function.startswith("x\u01c1"):
        function = function[2:].replace("\u01c1", ".", 1)
    elif function.startswith("x_"):
        function = function[2:]
    return module + "." + function


def compare(survivors, listed, run):
    """(survivors not listed, listed mutants of this run that did not survive), sorted; all three
    arguments are sets of short names, `run` every mutant of the modules run."""
    return sorted(survivors - listed), sorted((listed & run) - survivors)


def survivor_report(survivors, listed, names):
    """The lines after the table: each survivor ((key, status) from summary) marked as listed or NEW,
    then what to do about the gaps, or that there are none."""
    new, gone = compare({short_name(key) for key, _ in survivors}, listed, {short_name(n) for n in names})
    lines = ["    %s: %s (%s)" % (key, status, "NEW" if short_name(key) in new else "listed as equivalent")
             for key, status in survivors]
    if new:
        lines.append("%d survivor(s) not in %s's \"Equivalent survivors\": kill each with a test, or list it "
                     "there with the reason no test can tell it apart" % (len(new), EQUIVALENTS_DOC))
    lines += ["listed as equivalent but detected now: %s (take it out of %s)" % (name, EQUIVALENTS_DOC)
              for name in gone]
    if not new and not gone:
        lines.append("the survivors are exactly the equivalents %s lists for these modules" % EQUIVALENTS_DOC)
    return lines


def summary(patterns):
    """Rows (module, mutants, killed, timeout, survived, no tests, other), the survivors as (name, status)
    and the names of all the mutants."""
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import walk_mutatable_files

    rows, survivors, names = [], [], []
    for path in sorted(walk_mutatable_files()):
        if not any(fnmatch.fnmatch(str(path), p) for p in patterns):
            continue
        data = SourceFileMutationData(path=path)
        data.load()
        counts = {}
        for key, code in sorted(data.exit_code_by_key.items()):
            names.append(key)
            status = status_by_exit_code[code]
            counts[status] = counts.get(status, 0) + 1
            if status not in DETECTED:
                survivors.append((key, status))
        if data.exit_code_by_key:
            known = ("killed", "timeout", "survived", "no tests")
            rows.append((str(path), len(data.exit_code_by_key)) + tuple(counts.get(k, 0) for k in known)
                        + (sum(v for k, v in counts.items() if k not in known),))
    return rows, survivors, names


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tools/mutants.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-children", type=int, default=1)
    parser.add_argument("modules", nargs="*")
    args = parser.parse_args(argv)
    if args.max_children < 1:
        print("tools/mutants.py: --max-children %d: give 1 or more (CHILDREN=1 in make)" % args.max_children,
              file=sys.stderr)
        return 2
    os.chdir(ROOT)
    scope = scope_patterns("setup.cfg")
    if not scope:
        print("tools/mutants.py: setup.cfg has no [mutmut] only_mutate: restore it from git", file=sys.stderr)
        return 2
    patterns, error = narrow(args.modules, scope, ROOT) if args.modules else (scope, None)
    if error:
        print("tools/mutants.py: " + error, file=sys.stderr)
        return 2

    # read before the run, so a missing list does not end an hour's run in a traceback
    try:
        with open(EQUIVALENTS_DOC, encoding="utf-8") as f:
            listed = listed_equivalents(f.read())
    except OSError as e:
        print("tools/mutants.py: cannot read %s (%s): restore it from git" % (EQUIVALENTS_DOC, e.strerror),
              file=sys.stderr)
        return 2

    # mutmut needs Python 3.10+ (the dev extra installs it only there)
    try:
        from mutmut.__main__ import cli
        from mutmut.configuration import config
    except ImportError:
        print("tools/mutants.py: mutmut is not installed: run it with .venv/bin/python (make bootstrap)",
              file=sys.stderr)
        return 2
    config().only_mutate = patterns  # read once from setup.cfg, kept for the run (workers are forked)
    shutil.rmtree("mutants", ignore_errors=True)
    start = time.monotonic()
    try:
        cli.main(["run", "--max-children", str(args.max_children)], standalone_mode=False)
    except SystemExit as stop:
        if stop.code:
            return stop.code
    seconds = time.monotonic() - start

    rows, survivors, names = summary(patterns)
    total = [sum(r[i] for r in rows) for i in range(1, 7)]
    print("\n%-44s %7s %6s %7s %8s %8s %5s" % ("module", "mutants", "killed", "timeout", "survived",
                                               "no tests", "other"))
    for row in rows + [("all", ) + tuple(total)]:
        print("%-44s %7d %6d %7d %8d %8d %5d" % row)
    print("wall time %.0f s (copying, the first test run and the mutants)" % seconds)
    if total[0]:
        detected = total[0] - len(survivors)
        print("detected (killed, timeout or ended by a signal): %d of %d (%.1f%%)" % (
            detected, total[0], 100.0 * detected / total[0]))
    for line in survivor_report(survivors, listed, names):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
