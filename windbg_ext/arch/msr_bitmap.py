"""The MSR bitmap codec (SDM Vol. 3, 25.6.9).

One 4 KiB page, four 1 KiB bitmaps; bit n of a bitmap is byte n>>3, bit n&7:
  0x000-0x3FF  read bitmap for low MSRs   0x00000000-0x00001FFF
  0x400-0x7FF  read bitmap for high MSRs  0xC0000000-0xC0001FFF
  0x800-0xBFF  write bitmap for low MSRs
  0xC00-0xFFF  write bitmap for high MSRs
A set bit makes RDMSR/WRMSR of that MSR exit. MSRs outside both ranges
always exit when the bitmap is in use (the "use MSR bitmaps" control).
"""
from __future__ import annotations

import struct
from typing import Dict, Iterable, List, Optional, Tuple

PAGE_SIZE = 4096
LOW_FIRST, LOW_LAST = 0x00000000, 0x00001FFF
HIGH_FIRST, HIGH_LAST = 0xC0000000, 0xC0001FFF
READ_LOW, READ_HIGH, WRITE_LOW, WRITE_HIGH = 0x000, 0x400, 0x800, 0xC00


def _slot(msr: int) -> Optional[Tuple[int, int]]:
    """(offset of its read bitmap, bit number) or None when outside both ranges."""
    if LOW_FIRST <= msr <= LOW_LAST:
        return READ_LOW, msr - LOW_FIRST
    if HIGH_FIRST <= msr <= HIGH_LAST:
        return READ_HIGH, msr - HIGH_FIRST
    return None


def in_range(msr: int) -> bool:
    return _slot(msr) is not None


def _check_page(page: bytes) -> None:
    if len(page) != PAGE_SIZE:
        raise ValueError("an MSR bitmap is exactly 4096 bytes, got %d" % len(page))


_WORDS = struct.Struct("<128Q")  # one 1 KiB bitmap as 64-bit little-endian words


def _msrs_in(page: bytes, offset: int, first: int) -> List[int]:
    # Word by word, then one step per set bit: an all-zero bitmap costs 128 tests.
    out = []
    for i, word in enumerate(_WORDS.unpack_from(page, offset)):
        base = first + i * 64
        while word:
            low = word & -word
            out.append(base + low.bit_length() - 1)
            word ^= low
    return out


def decode_msr_bitmap(page: bytes) -> Dict[str, List[int]]:
    """{"read": [msrs that exit on RDMSR], "write": [msrs that exit on WRMSR]}, ascending."""
    _check_page(page)
    page = bytes(page)
    return {"read": _msrs_in(page, READ_LOW, LOW_FIRST) + _msrs_in(page, READ_HIGH, HIGH_FIRST),
            "write": _msrs_in(page, WRITE_LOW, LOW_FIRST) + _msrs_in(page, WRITE_HIGH, HIGH_FIRST)}


def build_msr_bitmap(read: Iterable[int] = (), write: Iterable[int] = ()) -> bytes:
    """A 4 KiB page where exactly the given MSRs exit. ValueError for an MSR
    outside both ranges (those always exit: a bitmap cannot express them)."""
    page = bytearray(PAGE_SIZE)
    for msrs, extra in ((read, 0), (write, WRITE_LOW)):
        for msr in msrs:
            slot = _slot(msr)
            if slot is None:
                raise ValueError("MSR 0x%x is outside 0x0-0x1FFF and 0xC0000000-0xC0001FFF: "
                                 "it always exits, a bitmap cannot select it" % msr)
            offset, bit = slot
            page[offset + extra + (bit >> 3)] |= 1 << (bit & 7)
    return bytes(page)


def msr_exits(page: bytes, msr: int) -> Tuple[bool, bool]:
    """(RDMSR exits, WRMSR exits) for one MSR under this bitmap."""
    _check_page(page)
    slot = _slot(msr)
    if slot is None:
        return True, True
    offset, bit = slot
    read = bool(page[offset + (bit >> 3)] >> (bit & 7) & 1)
    write = bool(page[offset + WRITE_LOW + (bit >> 3)] >> (bit & 7) & 1)
    return read, write
