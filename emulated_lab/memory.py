"""Guest physical memory and 4-level paging of the emulated machine.

Physical pages are host pages handed to bochscpu (page_insert); they persist
across Sessions. The allocator only moves forward, so every allocation gets
fresh addresses (Bochs caches decoded instructions by address). Page tables
live in emulated memory and are walked the way the CPU walks them.
"""
from __future__ import annotations

import ctypes
import struct
from typing import Dict, List, Optional, Tuple

from emulated_lab.errors import MachineError
from emulated_lab.x64 import ADDR_MASK, PTE_NX, PTE_P, PTE_RW, PTE_US

PAGE = 0x1000
FIRST_PA = 0x20_0000
# NUMA: node n's memory starts at n * NODE_SPAN (node 0 at FIRST_PA); a node's
# allocations stay below the next node's start. MAXPHYADDR is 40 here.
NODE_SPAN = 1 << 32
# Every physical page the machine allocates is also mapped at DIRECT_MAP + pa.
DIRECT_MAP = 0xFFFF_A000_0000_0000


class GuestMemory:
    def __init__(self, backend) -> None:
        self._backend = backend            # bochscpu.memory
        self._pages: Dict[int, int] = {}   # gpa -> host address
        self._next_pa = FIRST_PA
        self._next_in_node: Dict[int, int] = {}   # node >= 1 -> next free pa in its span
        self.pml4 = 0
        self.pml4 = self.alloc_phys(1)
        # paging-structure pages not yet in the direct map (drivers walk page
        # tables through MmGetVirtualForPhysical, as on Windows)
        self._tables_to_map: List[int] = [self.pml4]

    # -- physical -------------------------------------------------------------
    def _new_page(self, pa: int) -> None:
        hva = self._backend.allocate_host_page()
        if not hva:
            raise MachineError("out of host memory for the emulated machine")
        ctypes.memset(hva, 0, PAGE)
        self._backend.page_insert(pa, hva)
        self._pages[pa] = hva

    def next_phys(self, npages: int, align_pages: int = 1, node: int = 0, at_least: int = 0) -> Optional[int]:
        """Where alloc_phys with the same arguments would put the pages (None: the node is full)."""
        align = align_pages * PAGE
        start = self._next_pa if node == 0 else self._next_in_node.get(node, node * NODE_SPAN)
        pa = (max(start, at_least) + align - 1) // align * align
        return pa if pa + npages * PAGE <= (node + 1) * NODE_SPAN else None

    def alloc_phys(self, npages: int, align_pages: int = 1, node: int = 0, at_least: int = 0) -> int:
        """Allocates zeroed, contiguous physical pages (in NUMA node `node`'s memory,
        at or above `at_least`); also maps them at DIRECT_MAP + pa."""
        pa = self.next_phys(npages, align_pages, node, at_least)
        if pa is None:
            raise MachineError("NUMA node %d of the emulated machine is out of memory" % node)
        if node == 0:
            self._next_pa = pa + npages * PAGE
        else:
            self._next_in_node[node] = pa + npages * PAGE
        for i in range(npages):
            self._new_page(pa + i * PAGE)
        if self.pml4:
            self.map(DIRECT_MAP + pa, pa, npages * PAGE)
        return pa

    def alloc_page(self) -> Tuple[int, int]:
        """One zeroed page: (virtual address, physical address)."""
        pa = self.alloc_phys(1)
        return DIRECT_MAP + pa, pa

    @staticmethod
    def node_of(pa: int) -> int:
        """The NUMA node whose memory holds physical address pa."""
        return pa // NODE_SPAN

    def is_backed(self, pa: int) -> bool:
        return (pa & ~0xFFF) in self._pages

    def _hva(self, pa: int) -> int:
        hva = self._pages.get(pa & ~0xFFF)
        if hva is None:
            raise MachineError("physical address 0x%x is not backed by memory" % pa)
        return hva + (pa & 0xFFF)

    def write_phys(self, pa: int, data: bytes) -> None:
        off = 0
        while off < len(data):
            n = min(len(data) - off, PAGE - ((pa + off) & 0xFFF))
            ctypes.memmove(self._hva(pa + off), bytes(data[off:off + n]), n)
            off += n

    def read_phys(self, pa: int, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            cur = pa + len(out)
            n = min(size - len(out), PAGE - (cur & 0xFFF))
            out += ctypes.string_at(self._hva(cur), n)
        return bytes(out)

    def read_phys_u64(self, pa: int) -> int:
        """The little-endian qword at pa (8-aligned, so within one page): the fast path of
        hooks that run at every VM exit."""
        return ctypes.c_uint64.from_address(self._hva(pa)).value

    def phys_ranges(self) -> List[Tuple[int, int]]:
        """(pa, size) runs of every backed physical page, merged."""
        runs: List[Tuple[int, int]] = []
        for pa in sorted(self._pages):
            if runs and runs[-1][0] + runs[-1][1] == pa:
                runs[-1] = (runs[-1][0], runs[-1][1] + PAGE)
            else:
                runs.append((pa, PAGE))
        return runs

    def release_memory(self) -> None:
        """Gives every page back (bochscpu's physical memory is process-global)."""
        for gpa, hva in self._pages.items():
            self._backend.page_remove(gpa)
            self._backend.release_host_page(hva)
        self._pages.clear()

    # -- paging -----------------------------------------------------------------
    def _read_q(self, pa: int) -> int:
        return struct.unpack("<Q", self.read_phys(pa, 8))[0]

    def _write_q(self, pa: int, v: int) -> None:
        self.write_phys(pa, struct.pack("<Q", v))

    def map(self, va: int, pa: int, size: int, user: bool = False, writable: bool = True,
            executable: bool = True) -> None:
        """Maps [va, va+size) to [pa, pa+size) with 4 KiB pages."""
        va &= ~0xFFF
        pa &= ~0xFFF
        for off in range(0, (size + 0xFFF) & ~0xFFF, PAGE):
            self._map_page(va + off, pa + off, user, writable, executable)
        # then the new paging-structure pages at DIRECT_MAP + pa (which may make
        # more of them: few, as they are allocated next to each other)
        while self._tables_to_map:
            t = self._tables_to_map.pop()
            self._map_page(DIRECT_MAP + t, t, False, True, False)

    def _map_page(self, va: int, pa: int, user: bool, writable: bool, executable: bool) -> None:
        table = self.pml4
        upper = PTE_P | PTE_RW | (PTE_US if user else 0)
        for shift in (39, 30, 21):
            e_pa = table + ((va >> shift) & 0x1FF) * 8
            e = self._read_q(e_pa)
            if not e & PTE_P:
                # direct-mapped by map() afterwards (not here: that would recurse)
                nxt = (self._next_pa + PAGE - 1) & ~0xFFF
                self._next_pa = nxt + PAGE
                self._new_page(nxt)
                self._tables_to_map.append(nxt)
                e = nxt | upper
                self._write_q(e_pa, e)
            elif user and not e & PTE_US:
                self._write_q(e_pa, e | PTE_US)
            table = e & ADDR_MASK
        leaf = pa | PTE_P | (PTE_RW if writable else 0) | (PTE_US if user else 0) | (0 if executable else PTE_NX)
        self._write_q(table + ((va >> 12) & 0x1FF) * 8, leaf)

    def unmap(self, va: int, size: int) -> None:
        for off in range(0, (size + 0xFFF) & ~0xFFF, PAGE):
            pte = self._pte_pa(va + off)
            if pte is not None:
                self._write_q(pte, 0)

    def _pte_pa(self, va: int) -> Optional[int]:
        table = self.pml4
        for shift in (39, 30, 21):
            e = self._read_q(table + ((va >> shift) & 0x1FF) * 8)
            if not e & PTE_P:
                return None
            table = e & ADDR_MASK
        return table + ((va >> 12) & 0x1FF) * 8

    def translate(self, va: int) -> Optional[int]:
        """Walks the 4-level page tables in emulated memory (SDM Vol.3 4.5);
        None when the address is not mapped."""
        pte = self._pte_pa(va)
        if pte is None:
            return None
        e = self._read_q(pte)
        if not e & PTE_P:
            return None
        return (e & ADDR_MASK) | (va & 0xFFF)

    def read_virt(self, va: int, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            cur = va + len(out)
            pa = self.translate(cur)
            if pa is None:
                raise MachineError("virtual address 0x%x is not mapped" % cur)
            n = min(size - len(out), PAGE - (cur & 0xFFF))
            out += self.read_phys(pa, n)
        return bytes(out)

    def write_virt(self, va: int, data: bytes) -> None:
        off = 0
        while off < len(data):
            cur = va + off
            pa = self.translate(cur)
            if pa is None:
                raise MachineError("virtual address 0x%x is not mapped" % cur)
            n = min(len(data) - off, PAGE - (cur & 0xFFF))
            self.write_phys(pa, data[off:off + n])
            off += n

    def read_u64(self, va: int) -> int:
        return struct.unpack("<Q", self.read_virt(va, 8))[0]

    def write_u64(self, va: int, v: int) -> None:
        self.write_virt(va, struct.pack("<Q", v & 0xFFFF_FFFF_FFFF_FFFF))
