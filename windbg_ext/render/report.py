"""The report model: what a command hands to the renderer.

Commands never print. `run(ctx, args)` returns a Report: blocks (tables and
text) for people, and `data` for `--json`. render/text.py turns the blocks
into plain text or DML and `data` into JSON; nothing else formats output.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence


class Link:
    """A cell that, in WinDbg (DML), runs another suite command when clicked."""

    def __init__(self, text: Any, command: str) -> None:
        self.text = text
        self.command = command  # e.g. "vcpu 1" (without the !py -m windbg_ext)

    def __str__(self) -> str:
        return str(self.text)


class Table:
    """`wide_only`: headers of columns the renderer may leave out when the table
    does not fit the output width (it says so; --wide shows every column)."""

    def __init__(self, headers: Sequence[str], rows: List[Sequence[Any]], title: Optional[str] = None,
                 wide_only: Sequence[str] = ()) -> None:
        self.headers = list(headers)
        self.rows = [list(r) for r in rows]
        self.title = title
        self.wide_only = list(wide_only)


class Text:
    def __init__(self, text: str, links: Optional[List[Link]] = None) -> None:
        self.text = text
        self.links = links or []


class Report:
    """`blocks` for people, `data` (JSON-serialisable) for --json."""

    def __init__(self, data: Any = None, blocks: Optional[List[Any]] = None) -> None:
        self.data = data
        self.blocks = blocks if blocks is not None else []
        self.exit_code = 0  # a command may report a finding (e.g. FAIL) with 1

    def table(self, headers: Sequence[str], rows: List[Sequence[Any]], title: Optional[str] = None,
              wide_only: Sequence[str] = ()) -> "Report":
        self.blocks.append(Table(headers, rows, title, wide_only))
        return self

    def text(self, text: str, links: Optional[List[Link]] = None) -> "Report":
        self.blocks.append(Text(text, links))
        return self
