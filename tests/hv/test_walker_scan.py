"""HvWalker finding the descriptor without symbols: the scan of physical memory for the magic, on a stand-in
target whose physical memory is laid out here (the descriptor bytes are the host compiler's, builder.py).
Each case places copies by hand and names the one the walker must pick, or the one line it must say."""
from __future__ import annotations

import pytest

from windbg_ext.hv import descriptor as hd
from windbg_ext.hv import walker as W
from windbg_ext.target.base import TargetMemoryError, TargetSymbolError


class _Target:
    """Physical memory as {start: bytes}; virtual reads only at SelfVa (mapped to `mapped_pa`)."""
    live = False

    def __init__(self, chunks, ranges="chunks", mapped_pa=None, self_va=0):
        self.chunks = chunks
        self.ranges = [(s, len(b)) for s, b in sorted(chunks.items())] if ranges == "chunks" else ranges
        self.mapped_pa, self.self_va = mapped_pa, self_va
        self.physical_reads = []

    def symbol(self, name):
        raise TargetSymbolError(name)

    def memory_ranges(self):
        return self.ranges

    def read_physical(self, pa, n):
        self.physical_reads.append((pa, n))
        for start, data in self.chunks.items():
            if start <= pa and pa + n <= start + len(data):
                return data[pa - start:pa - start + n]
        raise TargetMemoryError(pa, n, True)

    def read_virtual(self, va, n):
        if self.mapped_pa is not None and va == self.self_va:
            return self.read_physical(self.mapped_pa, n)
        raise TargetMemoryError(va, n, False)


@pytest.fixture
def desc(state2):
    return state2.blob[:state2.facts["sizeof"]["HV_DEBUG_DESCRIPTOR"]]


def _self_va(desc):
    return hd.parse_header(desc)["SelfVa"]


def _walk(target):
    w = W.HvWalker(target)
    return w, w.descriptor()


def test_scan_finds_the_copy_selfva_maps_to(desc):
    va = _self_va(desc)
    file_image = desc[:32] + bytes(8) + desc[40:]          # SelfVa (at +0x20) 0: the file image of hv.sys
    other = desc[:0x80] + b"hvlab other copy".ljust(32, b"\0") + desc[0xA0:]   # loaded, but not where SelfVa maps
    mem = bytes(0x100) + file_image + bytes(0x4000 - 0x100 - len(file_image)) + other
    mem += bytes(0x8000 - len(mem)) + desc + bytes(64)      # copies at +0x100, +0x4000 and +0x8000
    target = _Target({0x100000: mem}, mapped_pa=0x108000, self_va=va)
    w, d = _walk(target)
    assert d.address == 0x108000 and d.producer == hd.parse(desc).producer
    assert w.found_by == "scan (physical 0x108000 = virtual 0x%x)" % va and not w.by_symbol


def test_scan_takes_the_first_loaded_copy_when_selfva_maps_nowhere(desc):
    va = _self_va(desc)
    mem = bytes(0x10) + desc[:0x30] + bytes(0x30)          # a truncated magic at 0x10: its header does not parse
    mem += bytes(0x1000 - len(mem)) + desc + bytes(0x1003) + desc   # the second copy misaligned (pa % 8 = 3)
    w, d = _walk(_Target({0x200000: mem}))
    assert d.address == 0x201000
    assert w.found_by == "scan (physical 0x201000; SelfVa 0x%x does not map to it)" % va


def test_a_header_cut_by_the_scan_block_is_read_whole(desc, monkeypatch):
    monkeypatch.setattr(W, "SCAN_BLOCK", 0x1000)
    mem = bytes(0xF80) + desc + bytes(0x100)                 # magic 0x80 bytes before a block ends
    target = _Target({0x300000: mem})
    w, d = _walk(target)
    assert d.address == 0x300F80 and (0x300F80, hd.HEADER_SIZE) in target.physical_reads


def test_scan_refusals(desc):
    assert _scan_error(_Target({}, ranges=None)) == (
        "symbol hv!HvDebugDescriptor not found and this target cannot list its physical memory to scan for the "
        "descriptor: load hv.sys symbols (.reload hv.sys) and retry")
    assert _scan_error(_Target({0: bytes(0x3000), 0x10000: bytes(0x1000)})) == (
        "no hv debug descriptor in this target: symbol hv!HvDebugDescriptor not found and no 'HVLABDBG' magic in "
        "16384 bytes of physical memory (was hv.sys loaded?)")
    file_image = desc[:32] + bytes(8) + desc[40:]
    assert _scan_error(_Target({0x1000: bytes(8) + file_image + bytes(8) + file_image})) == (
        "found 2 'HVLABDBG' magic(s) but no loaded descriptor: the copy at physical 0x1008 has SelfVa 0 "
        "(hv.sys file image, never loaded)")
    bad_version = desc[:8] + b"\x09\0\0\0" + desc[12:]
    assert _scan_error(_Target({0x1000: bad_version})) == (
        "found 1 'HVLABDBG' magic(s) but no loaded descriptor: hv debug descriptor at 0x1000: version 9, but this "
        "windbg_ext reads version 1 (update it to match hv.sys)")


def _scan_error(target):
    with pytest.raises(W.HvError) as e:
        W.HvWalker(target).descriptor()
    return str(e.value)


def test_read_page_is_page_aligned_and_says_what_failed(desc):
    target = _Target({0x5000: bytes(range(256)) * 16})
    w = W.HvWalker(target)
    assert w.read_page(0x5ABC, "a VMCS") == bytes(range(256)) * 16 and target.physical_reads == [(0x5000, 0x1000)]
    with pytest.raises(W.HvError) as e:
        w.read_page(0x9123, "vCPU 0's VMCS region")
    assert str(e.value) == "cannot read vCPU 0's VMCS region at physical 0x9123: not present in the target"
