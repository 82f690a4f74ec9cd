"""check-debuggee: is this VM (or this exported image) ready for hvlab Day 1?

    check-debuggee [--host-ip IP --port N --key K] [--json]            on the VM
    check-debuggee --hive SYSTEM [--software-hive SOFTWARE]             an image
                   [--bcd-hive BCD [--bcd-id ID]]                      its BCD store
                   [--bcdedit-enum FILE --dbgsettings FILE]            or saved bcdedit text

Exit: 0 every required item passes (UNKNOWN allowed), 1 a required item
FAILs, 2 bad input (one line on stderr).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from typing import Any, Dict, List, Optional

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _REPO not in sys.path:
    sys.path.append(_REPO)  # windbg_ext/arch/dbgprint.py: the shared filter rule

from debuggee import bcd_store, bcdedit, evaluate, settings  # noqa: E402
from debuggee.registry import HiveError, HiveRegistry, NoRegistry, WinRegistry  # noqa: E402
from debuggee.sources import Sources, file_text, live_bcdedit  # noqa: E402

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError("%s (see check-debuggee --help)" % message)


def build_parser(table: Dict[str, Any]) -> argparse.ArgumentParser:
    p = _Parser(prog="check-debuggee", description="PASS/FAIL/UNKNOWN for every hvlab Day 0 setting, with the fix.")
    src = p.add_argument_group("offline sources (for an exported image; default: this Windows machine)")
    src.add_argument("--hive", metavar="SYSTEM", help="exported SYSTEM hive (reg save HKLM\\SYSTEM system.hiv)")
    src.add_argument("--software-hive", metavar="SOFTWARE", help="exported SOFTWARE hive (Defender, UAC)")
    src.add_argument("--ntuser-hive", metavar="NTUSER.DAT", help="a user's hive (DebugView EULA)")
    src.add_argument("--bcd-hive", metavar="BCD", help="the BCD store (bcdedit /export bcd.hiv, reg save "
                     "HKLM\\BCD00000000 bcd.hiv, or \\EFI\\Microsoft\\Boot\\BCD); read in any language")
    src.add_argument("--bcd-id", metavar="ID", help="the boot entry to check in the BCD store: {GUID} or "
                     "{current} (default: {bootmgr}'s default entry)")
    src.add_argument("--bcdedit-enum", metavar="FILE", help="saved output of: bcdedit /enum {current}")
    src.add_argument("--dbgsettings", metavar="FILE", help="saved output of: bcdedit /dbgsettings")
    prm = p.add_argument_group("expected values (from the settings table)")
    for name, spec in table["parameters"].items():
        default = spec.get("default")
        prm.add_argument(spec["cli"], dest="param_" + name, metavar=name.upper(),
                         help="%s%s" % (spec.get("help", ""), "" if default is None else " (default %s)" % default))
    p.add_argument("--table", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def make_sources(args, on_windows: bool) -> Sources:
    files = {role: path for role, path in (("SYSTEM", args.hive), ("SOFTWARE", args.software_hive),
                                           ("NTUSER", args.ntuser_hive)) if path}
    offline = bool(files) or bool(args.bcd_hive)
    if files and "SYSTEM" not in files:
        raise UsageError("--software-hive/--ntuser-hive need --hive SYSTEM as well")
    if args.bcd_id and not (args.bcd_hive or (on_windows and not offline)):
        raise UsageError("--bcd-id needs --bcd-hive BCD (or running on the VM)")
    if not on_windows and not offline and not (args.bcdedit_enum or args.dbgsettings):
        raise UsageError("not on Windows: give --hive SYSTEM [--software-hive SOFTWARE] [--bcd-hive BCD] and/or "
                         "--bcdedit-enum FILE --dbgsettings FILE recorded on the VM")
    if files:
        registry = HiveRegistry(files)
    elif on_windows and not offline:
        registry = WinRegistry()
    else:
        registry = NoRegistry("no registry: give --hive SYSTEM (and --software-hive SOFTWARE)")
    enum = file_text(args.bcdedit_enum, "--bcdedit-enum") if args.bcdedit_enum else None
    dbg = file_text(args.dbgsettings, "--dbgsettings") if args.dbgsettings else None
    live = on_windows and not offline
    bcd = current = None
    if args.bcd_hive:
        store = bcd_store.BcdStore(bcd_store.HiveTree(args.bcd_hive))  # a bad file stops the run here
        if args.bcd_id and args.bcd_id.lower() not in ("{current}", "{default}"):
            store.loader(args.bcd_id)  # and so does an identifier that is not an OS loader in it
        bcd = lambda: store  # noqa: E731
    elif live:  # the live store answers in any language; bcdedit's text is the fallback
        bcd = lambda: bcd_store.BcdStore(bcd_store.WinregTree())  # noqa: E731
        current = bcd_store.live_boot_identifier
    if live:
        enum = enum or live_bcdedit(["/enum", "{current}"])
        dbg = dbg or live_bcdedit(["/dbgsettings"])
    return Sources(registry, enum, dbg, live,
                   offline_reason="not recorded in an image: run check-debuggee on the VM itself" if offline
                   else "only on the VM itself (run check-debuggee there)",
                   bcd=bcd, bcd_id=args.bcd_id or ("{current}" if live else None), current_id=current)


def _table_text(headers: List[str], rows: List[List[str]]) -> str:
    try:
        from tabulate import tabulate
        return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    except ImportError:  # the VM may lack tabulate: same columns, plainer
        widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [headers] + rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


WIDTH = 120  # default output fits this many columns


def _wrap_last_column(rows: List[List[str]], headers: List[str]) -> List[List[str]]:
    """Rows whose last cell would pass WIDTH go on over continuation rows (words kept whole)."""
    fixed = sum(max(len(str(x)) for x in col) + 2 for col in list(zip(headers, *rows))[:-1])
    width = max(40, WIDTH - fixed)
    out: List[List[str]] = []
    for row in rows:
        lines = textwrap.wrap(str(row[-1]), width, break_long_words=False, break_on_hyphens=False) or [""]
        out.append(row[:-1] + [lines[0]])
        out.extend([""] * (len(row) - 1) + [line] for line in lines[1:])
    return out


def render(results: List[Dict[str, Any]], sources: Sources) -> str:
    headers = ["Status", "Check", "Found"]
    rows = [[r["status"], r["title"] + ("" if r["required"] else " (optional)"), r["found"]] for r in results]
    out = [_table_text(headers, _wrap_last_column(rows, headers)), ""]
    todo = [r for r in results if r["status"] == evaluate.FAIL]
    if todo:
        out.append("To fix (run elevated):")
        fixes: Dict[str, List[Dict[str, Any]]] = {}
        for r in todo:  # one line per command: the KDNET fields share one bcdedit call
            fixes.setdefault(r["fix"], []).append(r)
        for fix, rs in fixes.items():
            ids = ", ".join(r["id"] for r in rs)
            out.append("  %s:\n      %s%s" % (ids, fix, "   [reboot]" if any(r["reboot"] for r in rs) else ""))
        if any("{current}" in (r["fix"] or "") for r in todo):
            out.append("  (cmd.exe syntax; in PowerShell quote it: '{current}')")
        out.append("")
    unknown = [r for r in results if r["status"] == evaluate.UNKNOWN]
    counts = {s: sum(1 for r in results if r["status"] == s) for s in (evaluate.PASS, evaluate.FAIL, evaluate.UNKNOWN)}
    out.append("%d PASS, %d FAIL, %d UNKNOWN  (registry: %s)" % (
        counts["PASS"], counts["FAIL"], counts["UNKNOWN"], sources.registry.describe()))
    out.append("Boot configuration: %s" % sources.describe_bcd())
    last = sources.last_boot()
    out.append("Last boot (SystemStartOptions): %s" % (last.summary() if last else "unknown, %s" % sources.last_boot_reason()))
    out.extend(sources.notes)
    if any(r["reboot"] for r in todo):
        out.append("Reboot after the fixes marked [reboot]; setup-debuggee.ps1 applies them all.")
    if unknown:
        out.append("UNKNOWN items name what is missing (elevation, a hive, or the VM itself).")
    return "\n".join(out)


def console_main() -> int:
    """main() for the command line: a reader that stops early (| head) ends it quietly."""
    try:
        from windbg_ext.stdout_pipe import exit_code_quiet_on_broken_pipe
    except ImportError:  # scripts/ copied without windbg_ext: Python's own behaviour
        return main()
    return exit_code_quiet_on_broken_pipe(main)


def main(argv: Optional[List[str]] = None, on_windows: Optional[bool] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    on_windows = (sys.platform == "win32") if on_windows is None else on_windows
    try:
        table_path = settings.TABLE_PATH
        if "--table" in argv:
            i = argv.index("--table")
            if i + 1 >= len(argv):
                raise UsageError("--table needs a file")
            table_path = argv[i + 1]
        table = settings.load(table_path)
        parser = build_parser(table)
        if any(a in ("-h", "--help") for a in argv):
            sys.stdout.write(parser.format_help())
            return EXIT_OK
        args = parser.parse_args(argv)
        given = {n: getattr(args, "param_" + n) for n in table["parameters"]}
        params = settings.resolve_parameters(table, given)
        sources = make_sources(args, on_windows)
        results = evaluate.evaluate(table, params, {n for n, v in given.items() if v is not None}, sources)
    except (UsageError, settings.SettingsError, HiveError, bcdedit.BcdOutputError, bcd_store.BcdStoreError) as e:
        sys.stderr.write("check-debuggee: %s\n" % e)
        return EXIT_ERROR
    except BrokenPipeError:  # the reader went away (| head): console_main exits quietly
        raise
    except KeyboardInterrupt:
        sys.stderr.write("check-debuggee: interrupted\n")
        return EXIT_ERROR
    except Exception as e:  # never a traceback: say what broke, in one line
        sys.stderr.write("check-debuggee: unexpected %s: %s (please report it)\n" % (type(e).__name__, e))
        return EXIT_ERROR
    if args.json:
        last = sources.last_boot()
        text = json.dumps({"results": results, "parameters": params,
                           "registry": sources.registry.describe(),
                           "boot_configuration": sources.describe_bcd(),
                           "last_boot": last.as_json() if last else None,
                           "notes": sources.notes,
                           "exit": evaluate.exit_code(results)}, indent=2)
    else:
        text = render(results, sources)
    sys.stdout.write(text + "\n")
    return evaluate.exit_code(results)


if __name__ == "__main__":
    sys.exit(console_main())
