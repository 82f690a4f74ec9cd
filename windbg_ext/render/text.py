"""Report -> text (terminal), DML (WinDbg) or JSON."""
from __future__ import annotations

import json
from typing import Any, List

from windbg_ext.commands.base import Link, Report, Table, Text

PREFIX = "!py -m windbg_ext "


def _cell(value: Any, dml: bool) -> str:
    if isinstance(value, Link):
        if dml:
            return '<exec cmd="%s%s">%s</exec>' % (PREFIX, _esc(value.command), _esc(str(value.text)))
        return str(value.text)
    if value is None:
        return "-"
    return _esc(str(value)) if dml else str(value)


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def render_text(report: Report, dml: bool = False) -> str:
    from tabulate import tabulate  # imported here: only commands that print pay for it

    out: List[str] = []
    for block in report.blocks:
        if isinstance(block, Table):
            if block.title:
                out.append(_esc(block.title) if dml else block.title)
            rows = [[_cell(c, dml) for c in r] for r in block.rows]
            out.append(tabulate(rows, headers=block.headers, tablefmt="simple", disable_numparse=True))
        elif isinstance(block, Text):
            text = _esc(block.text) if dml else block.text
            if block.links:
                text += "  " + "  ".join(_cell(l, dml) for l in block.links)
            out.append(text)
        out.append("")
    return "\n".join(out).rstrip("\n")


def _default(o: Any) -> Any:
    if isinstance(o, Link):
        return str(o.text)
    if isinstance(o, (bytes, bytearray)):
        return o.hex()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError("not JSON serialisable: %r" % type(o))


def render_json(report: Report) -> str:
    return json.dumps(report.data, indent=2, sort_keys=False, default=_default)
