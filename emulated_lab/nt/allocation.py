"""One tracked allocation of the emulated kernel (pool, contiguous, noncached
memory, or a reserved address range): what NtKernel.live and leaks() hold."""
from __future__ import annotations


class Allocation:
    __slots__ = ("va", "pa", "size", "kind", "tag", "npages", "node")

    def __init__(self, va: int, pa: int, size: int, kind: str, tag: int, npages: int, node: int = 0) -> None:
        self.va, self.pa, self.size, self.kind, self.tag, self.npages = va, pa, size, kind, tag, npages
        self.node = node     # NUMA node of its memory

    def __repr__(self) -> str:
        return "Allocation(%s, va=0x%x, pa=0x%x, size=0x%x)" % (self.kind, self.va, self.pa, self.size)
