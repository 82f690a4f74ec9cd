"""Report -> text (terminal), DML (WinDbg) or JSON.

Tables are laid out here from the model (widths of the visible text), so the
DML form is the plain form with each cell wrapped, never a re-parse of the
plain text. The layout is tabulate's "simple" format (a test holds the two
equal): columns two spaces apart, each at least its header plus two wide,
cells stripped and left-aligned, multi-line cells spread over lines, trailing
blanks dropped.
"""
from __future__ import annotations

import json
from typing import Any, List, Sequence

from windbg_ext.render.report import Link, Report, Table, Text

PREFIX = "!py -m windbg_ext "
HEADER_PADDING = 2  # a column is at least its header plus this wide
COLUMN_GAP = "  "


def escape_dml(s: str) -> str:
    """Text inside DML: &, <, > (and " for attributes) as entities, so WinDbg shows them."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


_esc = escape_dml


def _visible(value: Any) -> str:
    """What a cell shows: a Link its text, None a dash."""
    if value is None:
        return "-"
    return str(value.text if isinstance(value, Link) else value).strip()


def _wrap(value: Any, line: str, dml: bool, prefix: str = PREFIX) -> str:
    """One visible line of a cell as DML (a link's text becomes an <exec>) or as plain text."""
    if not dml:
        return line
    if isinstance(value, Link) and line:
        return '<exec cmd="%s%s">%s</exec>' % (_esc(prefix), _esc(value.command), _esc(line))
    return _esc(line)


def _table_lines(block: Table, dml: bool, prefix: str = PREFIX) -> List[str]:
    ncols = max([len(block.headers)] + [len(r) for r in block.rows])
    headers = block.headers + [""] * (ncols - len(block.headers))
    rows: List[Sequence[Any]] = [list(r) + [""] * (ncols - len(r)) for r in block.rows]
    cells = [[_visible(c).split("\n") for c in r] for r in rows]
    widths = [len(h) + HEADER_PADDING for h in headers]
    for r in cells:
        for j, lines in enumerate(r):
            widths[j] = max([widths[j]] + [len(s) for s in lines])

    def line(pieces: List[str], visible: List[str]) -> str:
        padded = [p + " " * (w - len(v)) for p, v, w in zip(pieces, visible, widths)]
        return COLUMN_GAP.join(padded).rstrip()

    out = [line([_wrap(None, h, dml) for h in headers], headers),
           COLUMN_GAP.join("-" * w for w in widths)]
    for raw, r in zip(rows, cells):
        for k in range(max(len(lines) for lines in r)):
            visible = [lines[k] if k < len(lines) else "" for lines in r]
            out.append(line([_wrap(v, s, dml, prefix) for v, s in zip(raw, visible)], visible))
    return out


def render_text(report: Report, dml: bool = False, prefix: str = PREFIX) -> str:
    """`prefix` starts every DML link's command (live: the `!py` options this run was started with)."""
    out: List[str] = []
    for block in report.blocks:
        if isinstance(block, Table):
            if block.title:
                out.append(_esc(block.title) if dml else block.title)
            out.extend(_table_lines(block, dml, prefix))
        elif isinstance(block, Text):
            text = _esc(block.text) if dml else block.text
            if block.links:
                text += "  " + "  ".join(_wrap(l, str(l.text), dml, prefix) for l in block.links)
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
