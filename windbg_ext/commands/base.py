"""How a command reports bad input, and the parsing of numbers typed by users.

Commands return a Report (windbg_ext/render/report.py: the model the renderer
owns). Errors are raised as CommandError (one line: what is wrong, what to do)
and become exit code 2 offline, a single red line in WinDbg, never a traceback.
"""
from __future__ import annotations

from typing import Any, Dict

from windbg_ext.errors import InputError
from windbg_ext.hv.refresh import RefreshError, refresh_snapshot
# The report model moved to the renderer's side; re-exported so code written against the old home still imports.
from windbg_ext.render.report import Link, Report, Table, Text  # noqa: F401  (re-export)

__all__ = ["CommandError", "Link", "Report", "Table", "Text", "add_refresh_argument", "fresh_snapshot", "parse_index",
           "parse_int"]


class CommandError(InputError):
    """Bad input or an unusable target: a one-line message for the user."""


def parse_int(text: str, what: str = "number") -> int:
    """Accepts 0x-prefixed hex, plain hex with a trailing h/`, and decimal.
    WinDbg users type `fffff801`12345678`: backticks are dropped."""
    s = str(text).strip().replace("`", "").replace("_", "")
    try:
        if s.lower().startswith("0x"):
            return int(s, 16)
        if s.lower().endswith("h"):
            return int(s[:-1], 16)
        return int(s, 10)
    except ValueError:
        try:
            return int(s, 16)  # WinDbg's default radix is 16
        except ValueError:
            raise CommandError("%s %r is not a number (use decimal or 0x-prefixed hex)" % (what, text))


def parse_index(text: str, what: str = "vCPU index") -> int:
    """A vCPU or processor number: decimal or 0x-prefixed hex only. Bare hex
    (`abc`) is refused here: `vcpu abc` is a typo, not vCPU 2748."""
    s = str(text).strip()
    try:
        return int(s, 16) if s.lower().startswith(("0x", "-0x")) else int(s, 10)
    except ValueError:
        raise CommandError("%s %r is not a number (use decimal, e.g. 0, 1, 2)" % (what, text))


Json = Dict[str, Any]


def add_refresh_argument(p) -> None:
    """--refresh, shared by the commands that read a vCPU's VMCS values (vmcs, verify)."""
    p.add_argument("--refresh", action="store_true",
                   help="live only: processor n runs hv.sys's snapshot hypercall first (hv!HvSnapshotGadget), "
                        "so the snapshot holds what VMREAD returns now")


def fresh_snapshot(walker, n: int) -> str:
    """Processor n refreshes vCPU n's snapshot (live; windbg_ext/hv/refresh.py): the
    line saying where the values now come from, or a CommandError saying why not."""
    try:
        return refresh_snapshot(walker, n)
    except RefreshError as e:
        raise CommandError(str(e))
