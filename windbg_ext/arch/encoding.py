"""The VMCS component encoding (SDM Vol. 3, 25.11.2, Table 25-21).

A 32-bit encoding packs:
  bit 0       access type (0 = full, 1 = high: the upper 32 bits of a 64-bit field)
  bits 9:1    index
  bits 11:10  type  (0 control, 1 VM-exit information = read-only data, 2 guest state, 3 host state)
  bit 12      reserved (0)
  bits 14:13  width (0 16-bit, 1 64-bit, 2 32-bit, 3 natural width)
  bits 31:15  reserved (0)
"""
from __future__ import annotations

from typing import List, NamedTuple

ACCESS_NAMES = ("full", "high")
TYPE_NAMES = ("control", "exit", "guest", "host")  # "exit" = read-only VM-exit information
TYPE_TITLES = {"control": "control", "exit": "read-only data (VM-exit information)",
               "guest": "guest state", "host": "host state"}
WIDTH_NAMES = ("16", "64", "32", "natural")
WIDTH_BITS = {"16": 16, "32": 32, "64": 64, "natural": 64}

_RESERVED_MASK = 0xFFFF8000 | (1 << 12)  # bits 31:15 and bit 12 must be zero


class EncodingParts(NamedTuple):
    access: str   # "full" | "high"
    index: int    # 0..511
    type: str     # "control" | "exit" | "guest" | "host"
    width: str    # "16" | "32" | "64" | "natural"
    valid: bool
    problems: tuple  # one short sentence per problem; empty when valid


def decode_encoding(value: int) -> EncodingParts:
    """Splits a 32-bit value into its encoding parts and says what is invalid."""
    problems: List[str] = []
    if value < 0 or value > 0xFFFFFFFF:
        problems.append("%s0x%x does not fit in 32 bits" % ("-" if value < 0 else "", abs(value)))
        value &= 0xFFFFFFFF
    access = ACCESS_NAMES[value & 1]
    index = (value >> 1) & 0x1FF
    ftype = TYPE_NAMES[(value >> 10) & 3]
    width = WIDTH_NAMES[(value >> 13) & 3]
    if value & (1 << 12):
        problems.append("reserved bit 12 is set")
    high = value & 0xFFFF8000
    if high:
        problems.append("reserved bits 31:15 are not zero (0x%x)" % high)
    if access == "high" and width != "64":
        problems.append("high access (bit 0) is only for 64-bit fields, this is a %s field"
                        % (width + "-bit" if width != "natural" else "natural-width"))
    return EncodingParts(access, index, ftype, width, not problems, tuple(problems))


def encode(access: str, index: int, type: str, width: str) -> int:  # noqa: A002 (SDM's word)
    """Builds an encoding from its parts; ValueError on parts the SDM forbids."""
    if access not in ACCESS_NAMES:
        raise ValueError("access must be one of %s" % ", ".join(ACCESS_NAMES))
    if type not in TYPE_NAMES:
        raise ValueError("type must be one of %s" % ", ".join(TYPE_NAMES))
    if width not in WIDTH_NAMES:
        raise ValueError("width must be one of %s" % ", ".join(WIDTH_NAMES))
    if not 0 <= index <= 0x1FF:
        raise ValueError("index must be 0..511")
    if access == "high" and width != "64":
        raise ValueError("high access exists only for 64-bit fields")
    return (ACCESS_NAMES.index(access) | (index << 1) | (TYPE_NAMES.index(type) << 10)
            | (WIDTH_NAMES.index(width) << 13))
