"""`make mutants [MODULES="windbg_ext/arch/exits.py ..."] [CHILDREN=1]`: mutmut over the modules named.

    python tools/mutants.py [--max-children N] [MODULE_OR_FOLDER ...]

With no module, the whole scope of setup.cfg's [mutmut] only_mutate (all of windbg_ext/arch/ and
windbg_ext/hv/). A module or folder named narrows only_mutate for this run only (mutmut 3.8.1's own
name selection still mutates and copies every file in scope), so one module can be run alone on a
shared machine. Each run starts from a fresh mutants/ tree: mutmut keeps earlier verdicts of
survivors even when tests changed, which would hide a kill. At the end: per module, how many mutants
were killed, timed out, survived or had no test, and the run's wall time; then the survivors' names
(`.venv/bin/mutmut show NAME` shows one)."""
import argparse
import configparser
import fnmatch
import os
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


def summary(patterns):
    """Rows (module, mutants, killed, timeout, survived, no tests, other) and the survivors' names."""
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import walk_mutatable_files

    rows, survivors = [], []
    for path in sorted(walk_mutatable_files()):
        if not any(fnmatch.fnmatch(str(path), p) for p in patterns):
            continue
        data = SourceFileMutationData(path=path)
        data.load()
        counts = {}
        for key, code in sorted(data.exit_code_by_key.items()):
            status = status_by_exit_code[code]
            counts[status] = counts.get(status, 0) + 1
            if status != "killed" and status != "timeout":
                survivors.append("%s: %s" % (key, status))
        if data.exit_code_by_key:
            known = ("killed", "timeout", "survived", "no tests")
            rows.append((str(path), len(data.exit_code_by_key)) + tuple(counts.get(k, 0) for k in known)
                        + (sum(v for k, v in counts.items() if k not in known),))
    return rows, survivors


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

    rows, survivors = summary(patterns)
    total = [sum(r[i] for r in rows) for i in range(1, 7)]
    print("\n%-44s %7s %6s %7s %8s %8s %5s" % ("module", "mutants", "killed", "timeout", "survived",
                                               "no tests", "other"))
    for row in rows + [("all", ) + tuple(total)]:
        print("%-44s %7d %6d %7d %8d %8d %5d" % row)
    print("wall time %.0f s (copying, the first test run and the mutants)" % seconds)
    if total[0]:
        print("detected (killed or timeout): %d of %d (%.1f%%)" % (
            total[1] + total[2], total[0], 100.0 * (total[1] + total[2]) / total[0]))
    for line in survivors:
        print("    " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
