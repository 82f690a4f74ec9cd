"""Report -> text (terminal), DML (WinDbg) or JSON.

Tables are laid out here from the model (widths of the visible text), so the
DML form is the plain form with each cell wrapped, never a re-parse of the
plain text. The layout is tabulate's "simple" format (a test holds the two
equal): columns two spaces apart, each at least its header plus two wide,
cells stripped and left-aligned, multi-line cells spread over lines, trailing
blanks dropped.

With a width (the default output is 120 columns, --wide gives None), prose
(text blocks, titles, table cells with spaces) is wrapped, and a table that
still does not fit leaves out the columns its command marked wide_only,
saying so. Offline, the links of a text block ("next: ...") become whole
command lines that can be pasted.
"""
from __future__ import annotations

import json
import textwrap
from typing import Any, List, Optional, Sequence, Tuple

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
    if isinstance(value, bool):  # people read yes/no; JSON keeps true/false
        return "yes" if value else "no"
    return str(value.text if isinstance(value, Link) else value).strip()


def _wrap(value: Any, line: str, dml: bool, prefix: str = PREFIX) -> str:
    """One visible line of a cell as DML (a link's text becomes an <exec>) or as plain text."""
    if not dml:
        return line
    if isinstance(value, Link) and line:
        return '<exec cmd="%s%s">%s</exec>' % (_esc(prefix), _esc(value.command), _esc(line))
    return _esc(line)


MIN_WRAP = 16  # a prose column is never wrapped narrower than this


def _fit(headers: List[str], cells: List[List[List[str]]], widths: List[int], width: Optional[int]) -> None:
    """Wraps prose cells (cells with spaces) in place, widest column first, until the table fits
    `width` where it can. Columns without prose (addresses, numbers, names) are never cut."""
    if width is None:
        return
    ncols = len(widths)
    prose = [j for j in range(ncols) if any(" " in s for r in cells for s in r[j])]
    for j in sorted(prose, key=lambda k: -widths[k]):
        total = sum(widths) + len(COLUMN_GAP) * (ncols - 1)
        if total <= width:
            return
        target = max(MIN_WRAP, len(headers[j]) + HEADER_PADDING, widths[j] - (total - width))
        if target >= widths[j]:
            continue
        for r in cells:
            r[j] = [piece for s in r[j] for piece in (textwrap.wrap(s, target, break_long_words=False,
                                                                    break_on_hyphens=False) or [""])]
        widths[j] = max([len(headers[j]) + HEADER_PADDING] + [len(s) for r in cells for s in r[j]])


def _layout(headers: List[str], rows: List[Sequence[Any]], width: Optional[int]):
    cells = [[_visible(c).split("\n") for c in r] for r in rows]
    widths = [len(h) + HEADER_PADDING for h in headers]
    for r in cells:
        for j, lines in enumerate(r):
            widths[j] = max([widths[j]] + [len(s) for s in lines])
    _fit(headers, cells, widths, width)
    return cells, widths


def _columns(block: Table, width: Optional[int]) -> Tuple[List[str], List[Sequence[Any]], List[str]]:
    """(headers, rows, left out): without as many of its wide_only columns (in their order) as it takes to fit."""
    ncols = max([len(block.headers)] + [len(r) for r in block.rows])
    headers = block.headers + [""] * (ncols - len(block.headers))
    rows: List[Sequence[Any]] = [list(r) + [""] * (ncols - len(r)) for r in block.rows]
    wide_only = [h for h in getattr(block, "wide_only", []) if h in headers]
    left_out: List[str] = []
    while width is not None:
        keep = [j for j, h in enumerate(headers) if h not in left_out]
        kept_headers, kept_rows = [headers[j] for j in keep], [[r[j] for j in keep] for r in rows]
        _, widths = _layout(kept_headers, kept_rows, width)
        if sum(widths) + len(COLUMN_GAP) * (len(keep) - 1) <= width or len(left_out) == len(wide_only):
            return kept_headers, kept_rows, left_out
        left_out.append(wide_only[len(left_out)])
    return headers, rows, []


def _table_lines(block: Table, dml: bool, width: Optional[int] = None, prefix: str = PREFIX) -> List[str]:
    headers, rows, left_out = _columns(block, width)
    cells, widths = _layout(headers, rows, width)

    def line(pieces: List[str], visible: List[str]) -> str:
        padded = [p + " " * (w - len(v)) for p, v, w in zip(pieces, visible, widths)]
        return COLUMN_GAP.join(padded).rstrip()

    out = [line([_wrap(None, h, dml) for h in headers], headers),
           COLUMN_GAP.join("-" * w for w in widths)]
    for raw, r in zip(rows, cells):
        for k in range(max(len(lines) for lines in r)):
            visible = [lines[k] if k < len(lines) else "" for lines in r]
            out.append(line([_wrap(v, s, dml, prefix) for v, s in zip(raw, visible)], visible))
    if left_out:
        out.append("(left out to fit %d columns: %s; --wide shows them)" % (width, ", ".join(left_out)))
    return out


def wrap_prose(text: str, width: Optional[int]) -> str:
    """Lines longer than `width` wrapped at spaces, continuation lines indented
    like the line plus two spaces. None: unchanged."""
    if width is None:
        return text
    out = []
    for line in text.split("\n"):
        if len(line) <= width:
            out.append(line)
            continue
        indent = line[:len(line) - len(line.lstrip())]
        out.extend(textwrap.wrap(line.strip(), width, initial_indent=indent, subsequent_indent=indent + "  ",
                                 break_long_words=False, break_on_hyphens=False))
    return "\n".join(out)


def _text_block(block: Text, dml: bool, width: Optional[int], command_prefix: str, prefix: str = PREFIX) -> str:
    text = wrap_prose(block.text, width)
    if not block.links:
        return _esc(text) if dml else text
    if command_prefix and not dml:  # offline: each command whole, one per line, ready to paste
        return "\n".join([text] + ["  " + command_prefix + link.command for link in block.links])
    sep = " " if text.endswith(":") else "  "  # "next: vcpu 0  vmcs 0", not "next:  vcpu 0"
    visible = "  ".join(str(link.text) for link in block.links)
    if width is not None and len(text.split("\n")[-1]) + len(sep) + len(visible) > width:
        sep = "\n  "  # the links on a line of their own
    return (_esc(text) if dml else text) + sep + "  ".join(_wrap(l, str(l.text), dml, prefix) for l in block.links)


def render_text(report: Report, dml: bool = False, width: Optional[int] = None, command_prefix: str = "",
                prefix: str = PREFIX) -> str:
    """Text (or DML) for people. width: fit that many columns; None: as wide as the content
    (--wide). command_prefix (plain text only): what makes a "next:" link a command line that
    can be pasted, e.g. "python -m windbg_ext --image lab.hvimg ". prefix starts every DML
    link's command (live: the `!py` options this run was started with)."""
    out: List[str] = []
    for block in report.blocks:
        if isinstance(block, Table):
            if block.title:
                title = wrap_prose(block.title, width)
                out.append(_esc(title) if dml else title)
            out.extend(_table_lines(block, dml, width, prefix))
        elif isinstance(block, Text):
            out.append(_text_block(block, dml, width, command_prefix, prefix))
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
