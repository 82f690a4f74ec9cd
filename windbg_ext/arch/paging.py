"""x64 linear-address translation (SDM Vol. 3 Ch. 4, "Paging"), as a pure
function over a `read_physical(address, size) -> bytes` callable.

4-level paging (SDM 4.5) with 1 GiB and 2 MiB pages (PS bit in the PDPTE /
PDE, Tables 4-17 and 4-19); 5-level paging (CR4.LA57, SDM 4.5) adds the PML5
on top. Access rights (R/W, U/S, XD) are not checked: a debugger reads what
is mapped, whatever the protection.
"""
from __future__ import annotations

import struct
from typing import Callable, Iterator, List, Tuple

ReadPhysical = Callable[[int, int], bytes]

PAGE_SIZE = 0x1000
CR4_LA57 = 1 << 12          # SDM 2.5: 57-bit linear addresses (5-level paging)
P_BIT = 1 << 0              # present (all levels)
PS_BIT = 1 << 7             # page size: the entry maps a page (PDPTE: 1 GiB, PDE: 2 MiB)
ADDR_MASK = 0x000FFFFFFFFFF000  # bits 51:12: next table / 4 KiB frame (M = 52 at most)

# (name, shift of the 9-bit index, whether PS=1 may map a page here)
_LEVELS_4 = (("PML4E", 39, False), ("PDPTE", 30, True), ("PDE", 21, True), ("PTE", 12, False))
_LEVELS_5 = (("PML5E", 48, False),) + _LEVELS_4


class PagingError(LookupError):
    """A linear address that does not translate. `level` names the entry
    (PML5E/PML4E/PDPTE/PDE/PTE) that was not present, or "canonical"."""

    def __init__(self, address: int, level: str, entry: int, entry_address: int) -> None:
        if level == "canonical":
            why = "not a canonical address"
        else:
            why = "%s at physical 0x%x is not present (entry 0x%x)" % (level, entry_address, entry)
        super().__init__("virtual address 0x%x does not translate: %s" % (address, why))
        self.address = address
        self.level = level
        self.entry = entry
        self.entry_address = entry_address
        self.why = why


def is_canonical(address: int, la57: bool = False) -> bool:
    """SDM 4.5: bits 63:48 (63:57 with LA57) copy bit 47 (56)."""
    bits = 57 if la57 else 48
    top = address >> (bits - 1)
    return top == 0 or top == (1 << (64 - bits + 1)) - 1


def translate(address: int, cr3: int, read_physical: ReadPhysical, cr4: int = 0) -> Tuple[int, int]:
    """Linear `address` -> (physical address, size of the page that maps it)."""
    address &= 0xFFFFFFFFFFFFFFFF
    la57 = bool(cr4 & CR4_LA57)
    if not is_canonical(address, la57):
        raise PagingError(address, "canonical", 0, 0)
    table = cr3 & ADDR_MASK  # CR3 bits 11:0 are flags or the PCID (SDM 4.5, Table 4-13)
    for name, shift, may_map in (_LEVELS_5 if la57 else _LEVELS_4):
        entry_address = table + ((address >> shift) & 0x1FF) * 8
        entry = struct.unpack("<Q", read_physical(entry_address, 8))[0]
        if not entry & P_BIT:
            raise PagingError(address, name, entry, entry_address)
        if shift == 12 or (may_map and entry & PS_BIT):
            page_size = 1 << shift
            # large pages: bits shift-1:12 of the entry hold PAT/reserved, not address
            frame = entry & ADDR_MASK & ~(page_size - 1)
            return frame | (address & (page_size - 1)), page_size
        table = entry & ADDR_MASK
    raise AssertionError("unreachable: the PTE level always maps")


def translate_range(address: int, size: int, cr3: int, read_physical: ReadPhysical,
                    cr4: int = 0) -> List[Tuple[int, int]]:
    """[address, address+size) -> list of (physical address, length) pieces,
    merged where consecutive pages are physically contiguous."""
    pieces: List[Tuple[int, int]] = []
    for pa, length in _walk(address, size, cr3, read_physical, cr4):
        if pieces and pieces[-1][0] + pieces[-1][1] == pa:
            pieces[-1] = (pieces[-1][0], pieces[-1][1] + length)
        else:
            pieces.append((pa, length))
    return pieces


def _walk(address: int, size: int, cr3: int, read_physical: ReadPhysical, cr4: int) -> Iterator[Tuple[int, int]]:
    done = 0
    while done < size:
        va = (address + done) & 0xFFFFFFFFFFFFFFFF
        pa, page_size = translate(va, cr3, read_physical, cr4)
        length = min(size - done, page_size - (va & (page_size - 1)))
        yield pa, length
        done += length
