"""Reserved system address ranges: MmAllocateMappingAddress and
MmFreeMappingAddress.

hvpp and MiniVisor reserve a range of system virtual addresses and map
physical pages into it themselves, by writing its page-table entries (found
by walking the page tables from CR3). So a reservation is a range whose
paging structures exist down to the page tables, every PTE not present; on
free the PTEs are cleared again. A reservation still held at the end is a
leak (NtKernel.live, kind "mapping").
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from emulated_lab.memory import PAGE
from emulated_lab.nt.allocation import Allocation
from emulated_lab.nt.services import service

if TYPE_CHECKING:
    from emulated_lab.nt.kernel import Call, NtKernel

MAPPING_AREA = 0xFFFF_B000_0000_0000     # the kernel's reserved-mapping addresses (lab layout)


@service("MmAllocateMappingAddress")
def _reserve(self: "NtKernel", c: "Call") -> int:
    # (NumberOfBytes, PoolTag)
    size, tag = c.arg(0), c.arg(1) & 0xFFFFFFFF
    if size == 0 or size > 64 * 1024 * 1024:
        return 0
    npages = (size + PAGE - 1) // PAGE
    va = MAPPING_AREA + self.mapping_cursor
    self.mapping_cursor += (npages + 1) * PAGE        # a guard page between reservations
    self.m.map(va, 0, npages * PAGE)                  # builds the paging structures ...
    self.m.unmap(va, npages * PAGE)                   # ... and leaves every PTE not present
    self.live[va] = Allocation(va, 0, size, "mapping", tag, npages)
    return va


@service("MmFreeMappingAddress")
def _free_reserved(self: "NtKernel", c: "Call") -> int:
    return self._free(c.arg(0), "mapping", "MmFreeMappingAddress")
