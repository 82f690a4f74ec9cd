"""How a command reports bad input, and the parsing of numbers typed by users.

Commands return a Report (windbg_ext/render/report.py: the model the renderer
owns). Errors are raised as CommandError (one line: what is wrong, what to do)
and become exit code 2 offline, a single red line in WinDbg, never a traceback.
"""
from __future__ import annotations

from typing import Any, Dict

from windbg_ext.errors import InputError
from windbg_ext.hv.refresh import RefreshError, refresh_snapshot

__all__ = ["CommandError", "add_refresh_argument", "fresh_snapshot", "parse_index", "parse_int"]


class CommandError(InputError):
    """Bad input or an unusable target: a one-line message for the user."""


def parse_int(text: str, what: str = "number", kind: str = "hex") -> int:
    """A number in WinDbg syntax (windbg_ext/number_syntax.py): 0x / h suffix /
    backticks = hex, 0n = decimal, a bare number by the rule of `kind`."""
    from windbg_ext.number_syntax import NumberError, parse_number
    try:
        return parse_number(text, kind, what)
    except NumberError as e:
        raise CommandError(str(e))


def parse_index(text: str, what: str = "vCPU index") -> int:
    """A vCPU or processor number: bare numbers are decimal (`vcpu abc` is a
    typo, not vCPU 2748); 0x.. and 0n.. work too."""
    return parse_int(text, what, "decimal")


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
