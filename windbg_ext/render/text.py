"""Report -> text (terminal), DML (WinDbg) or JSON."""
from __future__ import annotations

import json
from typing import Any, List

from windbg_ext.commands.base import Link, Report, Table, Text

PREFIX = "!py -m windbg_ext "


def _cell(value: Any, dml: bool, prefix: str = PREFIX) -> str:
    if isinstance(value, Link):
        if dml:
            return '<exec cmd="%s%s">%s</exec>' % (_esc(prefix), _esc(value.command), _esc(str(value.text)))
        return str(value.text)
    if value is None:
        return "-"
    return _esc(str(value)) if dml else str(value)


def escape_dml(s: str) -> str:
    """Text inside DML: &, <, > (and " for attributes) as entities, so WinDbg shows them."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


_esc = escape_dml


def _dml_table(table: str, block: Table, prefix: str = PREFIX) -> str:
    """The plain table with each cell swapped for its DML form, column by
    column, so links do not skew the alignment (widths are of visible text)."""
    lines = table.split("\n")
    if len(lines) != len(block.rows) + 2 or set(lines[1]) - {"-", " "}:
        return _esc(table)  # not the simple layout: escape, no links
    spans, at = [], 0
    for dashes in lines[1].split("  "):
        spans.append((at, at + len(dashes)))
        at += len(dashes) + 2
    out = [_esc(lines[0]), lines[1]]
    for line, row in zip(lines[2:], block.rows):
        pieces, prev = [], 0
        for j, (start, end) in enumerate(spans):
            if start >= len(line):  # tabulate drops trailing blanks
                break
            end = end if j + 1 < len(spans) else len(line)
            pieces.append(line[prev:start])
            seg = line[start:end]
            value = row[j] if j < len(row) else None
            visible = str(value.text) if isinstance(value, Link) else None
            if visible is not None and seg.startswith(visible):
                pieces.append(_cell(value, True, prefix) + seg[len(visible):])
            else:
                pieces.append(_esc(seg))
            prev = end
        pieces.append(line[prev:])
        out.append("".join(pieces))
    return "\n".join(out)


def render_text(report: Report, dml: bool = False, prefix: str = PREFIX) -> str:
    """`prefix` starts every DML link's command (live: the `!py` options this run was started with)."""
    from tabulate import tabulate  # imported here: only commands that print pay for it

    out: List[str] = []
    for block in report.blocks:
        if isinstance(block, Table):
            if block.title:
                out.append(_esc(block.title) if dml else block.title)
            rows = [[_cell(c, False) for c in r] for r in block.rows]
            table = tabulate(rows, headers=block.headers, tablefmt="simple", disable_numparse=True)
            out.append(_dml_table(table, block, prefix) if dml else table)
        elif isinstance(block, Text):
            text = _esc(block.text) if dml else block.text
            if block.links:
                text += "  " + "  ".join(_cell(l, dml, prefix) for l in block.links)
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
