"""Parsers for saved `bcdedit /enum {current}` and `bcdedit /dbgsettings` output,
in any display language.

What bcdedit translates and what it does not (docs/day0.md cites the
listings this rests on): the entry headings ("Windows Boot Loader" /
"Windows-Startladeprogramm") and the label of the first line of each entry
("identifier" / "Bezeichner") are translated, and so is the closing status
message; the element names (testsigning, debug, hypervisorlaunchtype,
debugtype, hostip, port, key ...) and the identifiers ({current}, GUIDs)
are not. So the parser keys on structure and element names only:

- an entry is a heading line over a rule of dashes; its first line is the
  identifier whatever its label says, recognised by the `{...}` value;
- an element line is a lower-case name, spaces, a value; a value that spans
  lines continues on lines that start with spaces;
- the last line, when it is not an element, is bcdedit's status message.

Values are kept verbatim: Yes/No may be translated, so evaluate.py says
plainly when a value is not one it understands. Lines that fit none of the
shapes are kept in `unread` and reported, never guessed at.

Output saved from PowerShell (`> file`) is UTF-16 with a BOM, from cmd.exe
it is the OEM code page: `decode` handles both.
"""
from __future__ import annotations

import re
from typing import List, Optional

_ELEMENT = re.compile(r"^([a-z][a-z0-9]*(?::[0-9a-fA-F]{8})?)\s+(\S.*?)\s*$")
_IDENTIFIER = re.compile(r"^(\S.*?)\s+(\{[^{}\s]+\})\s*$")
_DENIED = ("access is denied", "could not be opened")


class BcdOutputError(Exception):
    """Text that is not the bcdedit output we expected: one line for the user."""


class BcdAccessDenied(BcdOutputError):
    """bcdedit ran without elevation."""


class BcdEntry(dict):
    """Element name -> value, plus the lines the parser could not read."""

    def __init__(self) -> None:
        super().__init__()
        self.unread: List[str] = []


def decode(raw: bytes) -> str:
    if raw.startswith(b"\xff\xfe") or raw.startswith(b"\xfe\xff"):
        return raw.decode("utf-16")
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", "replace")
    if len(raw) > 1 and raw[1:2] == b"\x00":  # UTF-16LE without BOM
        return raw.decode("utf-16-le", "replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp437", "replace")  # cmd.exe's OEM code page for English Windows


def _check_denied(text: str, what: str) -> None:
    low = text.lower()
    if all(d in low for d in _DENIED) or (low.strip().startswith("the boot configuration data store could not be opened")):
        raise BcdAccessDenied("%s: bcdedit could not open the BCD store (run it from an elevated prompt)" % what)


def _lines(text: str) -> List[str]:
    lines = [l.rstrip() for l in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and not lines[-1][:1].isspace() and not _ELEMENT.match(lines[-1]):
        lines.pop()  # the status message ("The operation completed successfully.", translated)
    return lines


def _is_rule(line: str) -> bool:
    return bool(line.strip()) and set(line.strip()) == {"-"}


def _read(lines: List[str], entry: BcdEntry, identified: bool) -> None:
    last: Optional[str] = None
    for i, line in enumerate(lines):
        if not line.strip() or _is_rule(line):
            continue
        if line[:1].isspace():
            if last is not None:  # continuation of a multi-line value
                entry[last] = (entry[last] + " " + line.strip()).strip()
            else:
                entry.unread.append(line.strip())
            continue
        if identified and i == 0:
            continue  # the identifier line, already taken
        m = _ELEMENT.match(line)
        if m:
            last = m.group(1).lower()
            entry[last] = m.group(2)
        else:
            last = None
            entry.unread.append(line.strip())


def _sections(lines: List[str]) -> List[List[str]]:
    """Entries: the lines under each heading (a line over a dashed rule)."""
    sections: List[List[str]] = []
    cur: Optional[List[str]] = None
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if _is_rule(nxt) and line.strip() and not _is_rule(line):
            cur = []
            sections.append(cur)
            continue
        if cur is not None and not _is_rule(line):
            cur.append(line)
    return [[l for l in s if l.strip()] for s in sections]


def parse_enum(text: str, what: str = "bcdedit /enum {current}") -> BcdEntry:
    """The elements of the {current} entry; else {bootmgr}'s default; else the first entry."""
    _check_denied(text, what)
    entries: List[BcdEntry] = []
    for section in _sections(_lines(text)):
        m = _IDENTIFIER.match(section[0]) if section else None
        if not m:
            continue
        e = BcdEntry()
        e["identifier"] = m.group(2)
        _read(section, e, identified=True)
        entries.append(e)
    if not entries:
        raise BcdOutputError("%s does not look like `bcdedit /enum {current}` output (no heading over a dashed rule "
                             "followed by an identifier line with a {...} value)" % what)
    by_id = {e["identifier"].lower(): e for e in entries}
    if "{current}" in by_id:
        return by_id["{current}"]
    default = by_id.get("{bootmgr}", {}).get("default", "").lower()
    return by_id.get(default, entries[0])


def parse_dbgsettings(text: str, what: str = "bcdedit /dbgsettings") -> BcdEntry:
    _check_denied(text, what)
    pairs = BcdEntry()
    _read(_lines(text), pairs, identified=False)
    if "debugtype" not in pairs:
        raise BcdOutputError("%s does not look like `bcdedit /dbgsettings` output (no 'debugtype' line)" % what)
    return pairs
