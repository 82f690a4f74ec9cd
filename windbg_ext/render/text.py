"""Report -> text (terminal), DML (WinDbg) or JSON."""
from __future__ import annotations

import json
import textwrap
from typing import Any, List, Optional

from windbg_ext.commands.base import Link, Report, Table, Text

PREFIX = "!py -m windbg_ext "


def _cell(value: Any, dml: bool) -> str:
    if isinstance(value, Link):
        if dml:
            return '<exec cmd="%s%s">%s</exec>' % (PREFIX, _esc(value.command), _esc(str(value.text)))
        return str(value.text)
    if value is None:
        return "-"
    if isinstance(value, bool):  # people read yes/no; JSON keeps true/false
        return "yes" if value else "no"
    return _esc(str(value)) if dml else str(value)


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _dml_table(table: str, block: Table, heights: List[int]) -> str:
    """The plain table with each cell swapped for its DML form, column by
    column, so links do not skew the alignment (widths are of visible text).
    heights[i]: how many lines row i takes (wrapped cells); links are on a row's first line."""
    lines = table.split("\n")
    if len(lines) != sum(heights) + 2 or set(lines[1]) - {"-", " "}:
        return _esc(table)  # not the simple layout: escape, no links
    spans, at = [], 0
    for dashes in lines[1].split("  "):
        spans.append((at, at + len(dashes)))
        at += len(dashes) + 2
    out = [_esc(lines[0]), lines[1]]
    at = 2
    for row, height in zip(block.rows, heights):
        out.append(_dml_line(lines[at], row, spans))
        out.extend(_esc(line) for line in lines[at + 1:at + height])
        at += height
    return "\n".join(out)


def _dml_line(line: str, row: List[Any], spans: List[tuple]) -> str:
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
            pieces.append(_cell(value, True) + seg[len(visible):])
        else:
            pieces.append(_esc(seg))
        prev = end
    pieces.append(line[prev:])
    return "".join(pieces)


MIN_WRAP = 16  # a prose column is never wrapped narrower than this


def fit_columns(headers: List[str], rows: List[List[str]], width: Optional[int]) -> List[List[str]]:
    """Rows whose prose cells (cells with spaces) are wrapped so that the table
    fits `width` columns where it can: the widest prose column first. Columns
    without prose (addresses, numbers, names) are never cut. None: unchanged."""
    if width is None or not rows:
        return rows
    ncol = len(headers)
    rows = [list(r) + [""] * (ncol - len(r)) for r in rows]

    def col_width(j: int) -> int:  # as tabulate counts it: a header gets 2 blanks of padding
        return max([len(headers[j]) + 2] + [len(line) for r in rows for line in str(r[j]).split("\n")])

    widths = [col_width(j) for j in range(ncol)]
    prose = [j for j in range(ncol) if any(" " in str(r[j]) for r in rows)]
    for j in sorted(prose, key=lambda k: -widths[k]):
        total = sum(widths) + 2 * (ncol - 1)
        if total <= width:
            break
        target = max(MIN_WRAP, len(headers[j]) + 2, widths[j] - (total - width))
        if target >= widths[j]:
            continue
        for r in rows:
            text = str(r[j])
            if len(text) > target:
                r[j] = "\n".join(textwrap.wrap(text, target, break_long_words=False, break_on_hyphens=False))
        widths[j] = col_width(j)
    return rows


def _narrowed(block: Table, width: Optional[int]):
    """-> (the table without its wide_only columns if it would not fit `width` otherwise, their headers)."""
    if width is None or not block.wide_only:
        return block, []
    cells = fit_columns(block.headers, [[_cell(c, False) for c in r] for r in block.rows], width)
    widest = [max([len(h) + 2] + [len(line) for r in cells for line in str(r[j]).split("\n")])
              for j, h in enumerate(block.headers)]
    if sum(widest) + 2 * (len(widest) - 1) <= width:
        return block, []
    keep = [j for j, h in enumerate(block.headers) if h not in block.wide_only]
    narrow = Table([block.headers[j] for j in keep], [[r[j] for j in keep if j < len(r)] for r in block.rows],
                   block.title)
    return narrow, [h for h in block.headers if h in block.wide_only]


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


def render_text(report: Report, dml: bool = False, width: Optional[int] = None, command_prefix: str = "") -> str:
    """Text (or DML) for people. width: fit that many columns (prose wrapped,
    prose table cells wrapped); None: as wide as the content (--wide).
    command_prefix (plain text only): what makes a "next:" link a command line
    that can be pasted, e.g. "python -m windbg_ext --image lab.hvimg "."""
    from tabulate import tabulate  # imported here: only commands that print pay for it

    out: List[str] = []
    for block in report.blocks:
        if isinstance(block, Table):
            if block.title:
                title = wrap_prose(block.title, width)
                out.append(_esc(title) if dml else title)
            block, left_out = _narrowed(block, width)
            cells = [[_cell(c, False) for c in r] for r in block.rows]
            cells = fit_columns(block.headers, cells, width)
            heights = [max([1] + [c.count("\n") + 1 for c in r]) for r in cells]
            table = tabulate(cells, headers=block.headers, tablefmt="simple", disable_numparse=True)
            out.append(_dml_table(table, block, heights) if dml else table)
            if left_out:
                out.append("(left out to fit %d columns: %s; --wide shows them)" % (width, ", ".join(left_out)))
        elif isinstance(block, Text):
            out.append(_text_block(block, dml, width, "" if dml else command_prefix))
        out.append("")
    return "\n".join(out).rstrip("\n")


def _text_block(block: Text, dml: bool, width: Optional[int], command_prefix: str = "") -> str:
    text = wrap_prose(block.text, width)
    if not block.links:
        return _esc(text) if dml else text
    if command_prefix:  # offline: each command whole, one per line, ready to paste
        return "\n".join([text] + ["  " + command_prefix + link.command for link in block.links])
    sep = " " if text.endswith(":") else "  "  # "next: vcpu 0  vmcs 0", not "next:  vcpu 0"
    visible = "  ".join(str(link.text) for link in block.links)
    last = text.split("\n")[-1]
    if width is not None and len(last) + len(sep) + len(visible) > width:
        sep = "\n  "  # the links on a line of their own
    links = "  ".join(_cell(link, dml) for link in block.links)
    return (_esc(text) if dml else text) + sep + links


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
