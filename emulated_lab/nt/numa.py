"""NUMA services: node numbers, node affinity, memory from a node, and the
physical memory ranges (what hypervisors that build EPT identity maps read).

The lab's topology (NtKernel.nodes): processors are split into nodes in order
(node of processor k = k * nodes // processors); node n's memory is its own
span of physical addresses (emulated_lab.memory.NODE_SPAN), so the node of an
allocation shows in its physical address.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from emulated_lab.nt.services import service

if TYPE_CHECKING:
    from emulated_lab.nt.kernel import Call, NtKernel

MM_ANY_NODE_OK = 0x80000000                       # wdm.h: NODE_REQUIREMENT "any node"
PAGE_READWRITE, PAGE_EXECUTE_READWRITE = 0x04, 0x40
PAGE_NOCACHE, PAGE_WRITECOMBINE = 0x200, 0x400


@service("KeGetCurrentNodeNumber")
def _current_node(self: "NtKernel", c: "Call") -> int:
    return self.node_of(self.m.current)


@service("KeQueryHighestNodeNumber")
def _highest_node(self: "NtKernel", c: "Call") -> int:
    return self.nodes - 1


@service("KeQueryNodeMaximumProcessorCount")
def _node_count(self: "NtKernel", c: "Call") -> int:
    return len(self.node_processors(c.arg(0) & 0xFFFF))


@service("KeQueryNodeActiveAffinity")
def _node_affinity(self: "NtKernel", c: "Call") -> int:
    # (NodeNumber, PGROUP_AFFINITY Affinity, PUSHORT Count): GROUP_AFFINITY is
    # {KAFFINITY Mask; USHORT Group; USHORT Reserved[3]}; a node that does not
    # exist has an empty mask
    cpus = self.node_processors(c.arg(0) & 0xFFFF)
    if c.arg(1):
        self.m.write_virt(c.arg(1), struct.pack("<QHHHH", sum(1 << k for k in cpus), 0, 0, 0, 0))
    if c.arg(2):
        self.m.write_virt(c.arg(2), struct.pack("<H", len(cpus)))
    return 0


@service("MmAllocateContiguousNodeMemory")
def _contig_node(self: "NtKernel", c: "Call") -> int:
    # (NumberOfBytes, LowestAcceptableAddress, HighestAcceptableAddress,
    #  BoundaryAddressMultiple, Protect, PreferredNode). Protect is exactly one of
    # PAGE_READWRITE / PAGE_EXECUTE_READWRITE, with at most one of PAGE_NOCACHE /
    # PAGE_WRITECOMBINE; anything else, or a node that does not exist, gets NULL.
    # Memory comes from the preferred node, or another one when the address
    # constraints exclude it (MM_ANY_NODE_OK: the current processor's node first).
    protect, preferred = c.arg(4) & 0xFFFFFFFF, c.arg(5) & 0xFFFFFFFF
    base, modifier = protect & ~(PAGE_NOCACHE | PAGE_WRITECOMBINE), protect & (PAGE_NOCACHE | PAGE_WRITECOMBINE)
    boundary = c.arg(3)
    if base not in (PAGE_READWRITE, PAGE_EXECUTE_READWRITE) or modifier == PAGE_NOCACHE | PAGE_WRITECOMBINE:
        return 0
    if boundary & (boundary - 1):      # a multiple that is not a power of two
        return 0
    if preferred == MM_ANY_NODE_OK:
        nodes = self.nodes_from(self.node_of(self.m.current))
    elif preferred < self.nodes:
        nodes = self.nodes_from(preferred)
    else:
        return 0
    return self._allocate(c.arg(0), "contiguous", zero=False, nodes=nodes, lowest=c.arg(1), highest=c.arg(2),
                          boundary=boundary)


@service("MmGetPhysicalMemoryRanges")
def _memory_ranges(self: "NtKernel", c: "Call") -> int:
    # An array of PHYSICAL_MEMORY_RANGE {BaseAddress, NumberOfBytes} ending with
    # an all-zero entry, in nonpaged pool the caller frees with ExFreePool. The
    # lab's RAM is every physical page it has created (merged runs), the array's
    # own page included; NULL when the allocation fails.
    guess = len(self.m.phys_ranges()) + 2
    va = self._allocate(16 * (guess + 1), "pool", 0, zero=True)
    if not va:
        return 0
    ranges = self.m.phys_ranges()[:guess]
    self.m.write_virt(va, b"".join(struct.pack("<QQ", pa, size) for pa, size in ranges) + bytes(16))
    return va
