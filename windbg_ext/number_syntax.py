"""Numbers as WinDbg writes them: one parser for every argument of both tools.

Explicit forms mean the same everywhere:

- ``0x1c``, ``1ch`` (h suffix), ``fffff801`12345678`` (backtick separators): hex
- ``0n28``: decimal

A bare number (digits and, for hex, a-f only) is read by the rule of its kind
of argument, one rule per kind:

=========  =====================================================================
kind       a bare number is
=========  =====================================================================
hex        hex, as WinDbg shows addresses, field encodings, MSR numbers and
           field values (``field 681e``, ``--qual 184``, ``caps --msr 480=...``)
decimal    decimal: the SDM numbers VM-instruction errors in decimal; indices,
           counts and bit widths are small decimal numbers (``vmerror 12``,
           ``vcpu 1``, ``--maxphyaddr 39``)
reason     decimal, as SDM Appendix C numbers basic exit reasons (``exit 48``),
           except a number of exactly 8 digits, which is the 32-bit
           exit-reason field as WinDbg prints it and so hex (``exit 80000021``,
           ``exit 00000030`` = 48)
=========  =====================================================================

`parse_number` returns the value; `parse_with_other` also returns what the
other radix would have given for a bare number, so that a command can say
which reading it used where both readings make sense.
"""
from __future__ import annotations

from typing import Optional, Tuple

from windbg_ext.errors import InputError

_RULES = {
    "hex": "a bare number is hex",
    "decimal": "a bare number is decimal",
    "reason": "a bare number is decimal, 8 digits are hex",
}
HEXDIGITS = "0123456789abcdef"


class NumberError(InputError, ValueError):
    """A one-line message: what was given, what the syntax is."""


def syntax_help(kind: str) -> str:
    """The syntax in a few words, for error messages and help."""
    return "0x1c, 1ch or 0n28 (%s)" % _RULES[kind]


def _digits(s: str, base: int) -> bool:
    allowed = HEXDIGITS[:base]
    return bool(s) and all(c in allowed for c in s)


def parse_with_other(text: object, kind: str = "hex", what: str = "number") -> Tuple[int, Optional[int], str]:
    """-> (value, other, radix): `other` is the value in the other radix when
    `text` was a bare number that reads differently there (else None);
    `radix` says which reading was used ("hex" or "decimal")."""
    if kind not in _RULES:
        raise ValueError("unknown number kind %r" % kind)
    if isinstance(text, bool) or text is None:
        raise NumberError("%s: %r is not a number (write %s)" % (what, text, syntax_help(kind)))
    if isinstance(text, int):
        if text < 0:
            raise NumberError("%s: %d is negative" % (what, text))
        return text, None, "decimal"
    raw = str(text)
    s = raw.strip().lower()
    if s.startswith("-"):
        raise NumberError("%s %s is negative: give a number from 0 up" % (what, raw.strip()))
    if "`" in s:  # WinDbg's 64-bit separator: fffff801`12345678 is hex
        body = s.replace("`", "")
        if body.startswith("0x"):
            body = body[2:]
        if not _digits(body, 16) or s.startswith("`") or s.endswith("`"):
            raise NumberError("%s %r is not a number (write %s)" % (what, raw, syntax_help(kind)))
        return int(body, 16), None, "hex"
    if s.startswith("0n"):
        if _digits(s[2:], 10):
            return int(s[2:], 10), None, "decimal"
        raise NumberError("%s %r is not a number: 0n takes decimal digits (e.g. 0n28)" % (what, raw))
    if s.startswith("0x"):
        if _digits(s[2:], 16):
            return int(s[2:], 16), None, "hex"
        raise NumberError("%s %r is not a number: 0x takes hex digits (e.g. 0x1c)" % (what, raw))
    if s.endswith("h") and _digits(s[:-1], 16):
        return int(s[:-1], 16), None, "hex"
    bare_hex = kind == "hex" or (kind == "reason" and len(s) == 8)
    if bare_hex:
        if _digits(s, 16):
            value = int(s, 16)
            other = int(s, 10) if _digits(s, 10) and int(s, 10) != value else None
            return value, other, "hex"
        raise NumberError("%s %r is not a number (write %s)" % (what, raw, syntax_help(kind)))
    if _digits(s, 10):
        value = int(s, 10)
        other = int(s, 16) if int(s, 16) != value else None
        return value, other, "decimal"
    if _digits(s, 16):
        raise NumberError("%s %r is not a decimal number: %s; for hex write 0x%s"
                          % (what, raw, _RULES[kind], s.lstrip("0") or "0"))
    raise NumberError("%s %r is not a number (write %s)" % (what, raw, syntax_help(kind)))


def parse_number(text: object, kind: str = "hex", what: str = "number") -> int:
    """The value of `text` (see the module docstring); NumberError if it is not one."""
    return parse_with_other(text, kind, what)[0]


def reading_note(text: str, value: int, other: Optional[int], radix: str) -> str:
    """One line saying which reading of a bare number was used and what the
    other would be, e.g. "30 read as decimal 30 (0x1e); as hex it would be 48"."""
    if other is None:
        return ""
    t = str(text).strip()
    if radix == "decimal":
        return "%s read as decimal %d (0x%x); as hex (0x%x) it would be %d" % (t, value, value, other, other)
    return "%s read as hex 0x%x (%d); as decimal (0n%d) it would be %d (0x%x)" % (t, value, value, other, other, other)
