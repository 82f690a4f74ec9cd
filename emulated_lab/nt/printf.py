"""The kernel's printf dialect for DbgPrintEx (LLP64: `long` is 32-bit).

Varargs arrive in 64-bit slots whose upper half is garbage for 32-bit
arguments, so each conversion masks by its length modifier.
"""
from __future__ import annotations

import re
from typing import Callable

_SPEC = re.compile(r"%([-+ #0]*)(\*|\d+)?(?:\.(\*|\d+))?(I64|I32|ll|l|h|hh|w|z|I)?([diouxXcCsSpZ%])")


def format_message(fmt: str, next_arg: Callable[[], int], read_ansi: Callable[[int], str],
                   read_wide: Callable[[int], str], read_unicode_string: Callable[[int], str]) -> str:
    out = []
    pos = 0
    for m in _SPEC.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, prec, length, conv = m.groups()
        if conv == "%":
            out.append("%")
            continue
        if width == "*":
            width = str(next_arg() & 0xFFFFFFFF)
        if prec == "*":
            prec = str(next_arg() & 0xFFFFFFFF)
        pyspec = "%" + (flags or "") + (width or "") + (("." + prec) if prec is not None else "")
        raw = next_arg()
        wide64 = length in ("I64", "ll", "z", "I") or conv == "p"
        if conv in "di":
            bits = 64 if wide64 else (16 if length == "h" else 32)
            v = raw & ((1 << bits) - 1)
            if v >> (bits - 1):
                v -= 1 << bits
            out.append((pyspec + "d") % v)
        elif conv in "ouxX":
            bits = 64 if wide64 else (16 if length == "h" else 32)
            out.append((pyspec + conv) % (raw & ((1 << bits) - 1)))
        elif conv == "p":
            out.append("%016X" % (raw & 0xFFFF_FFFF_FFFF_FFFF))
        elif conv in "cC":
            out.append(chr(raw & (0xFFFF if (conv == "C" or length in ("l", "w")) else 0xFF)))
        elif conv == "s":
            s = "(null)" if raw == 0 else (read_wide(raw) if length in ("l", "w") else read_ansi(raw))
            out.append((pyspec + "s") % s)
        elif conv == "S":
            s = "(null)" if raw == 0 else (read_ansi(raw) if length == "h" else read_wide(raw))
            out.append((pyspec + "s") % s)
        elif conv == "Z":
            s = "(null)" if raw == 0 else read_unicode_string(raw)   # %wZ: PUNICODE_STRING
            out.append((pyspec + "s") % s)
    out.append(fmt[pos:])
    return "".join(out)
