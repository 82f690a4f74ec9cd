"""Parsers for English `bcdedit /enum {current}` and `bcdedit /dbgsettings` output.

bcdedit prints `name<spaces>value` lines; a value that spans lines (e.g.
displayorder) continues on lines that start with spaces. Names are matched
case-insensitively. Output saved from PowerShell (`> file`) is UTF-16 with a
BOM, from cmd.exe it is the OEM code page: `decode` handles both.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional

_LINE = re.compile(r"^(\S+)\s+(.*?)\s*$")
_DONE = "the operation completed successfully"
_DENIED = ("access is denied", "could not be opened")


class BcdOutputError(Exception):
    """Text that is not the bcdedit output we expected: one line for the user."""


class BcdAccessDenied(BcdOutputError):
    """bcdedit ran without elevation."""


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


def _pairs(lines: List[str]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    last: Optional[str] = None
    for line in lines:
        if not line.strip() or set(line.strip()) == {"-"}:
            continue
        if line[:1].isspace():
            if last is not None:  # continuation of a multi-line value
                out[last] = (out[last] + " " + line.strip()).strip()
            continue
        if line.strip().lower().startswith(_DONE):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        if not m.group(2):  # a section title such as "Windows Boot Loader"
            last = None
            continue
        last = m.group(1).lower()
        out[last] = m.group(2)
    return out


def parse_enum(text: str, what: str = "bcdedit /enum {current}") -> Dict[str, str]:
    """The elements of the {current} entry (or the only entry shown)."""
    _check_denied(text, what)
    sections: List[List[str]] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cur: List[str] = []
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if nxt.strip() and set(nxt.strip()) == {"-"} and line.strip():  # title over a dashed rule
            if cur:
                sections.append(cur)
            cur = []
            continue
        cur.append(line)
    if cur:
        sections.append(cur)
    entries = [_pairs(s) for s in sections]
    entries = [e for e in entries if "identifier" in e]
    if not entries:
        raise BcdOutputError("%s does not look like English `bcdedit /enum {current}` output (no 'identifier' line)" % what)
    for e in entries:
        if e["identifier"].lower() == "{current}":
            return e
    return entries[0]


def parse_dbgsettings(text: str, what: str = "bcdedit /dbgsettings") -> Dict[str, str]:
    _check_denied(text, what)
    pairs = _pairs(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    if "debugtype" not in pairs:
        raise BcdOutputError("%s does not look like English `bcdedit /dbgsettings` output (no 'debugtype' line)" % what)
    return pairs


def start_options(text: Optional[str]) -> List[str]:
    """Tokens of HKLM\\SYSTEM\\CurrentControlSet\\Control\\SystemStartOptions (the
    loader options of the current boot, e.g. ' TESTSIGNING  NOEXECUTE=OPTIN')."""
    return [t.upper() for t in (text or "").split()]
