"""arch/paging.py on page tables the test builds (SDM Vol. 3 4.5)."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from windbg_ext.arch.paging import PagingError, is_canonical, translate, translate_range


class Memory:
    def __init__(self):
        self.pages = {}

    def write_q(self, pa, value):
        page = self.pages.setdefault(pa & ~0xFFF, bytearray(0x1000))
        struct.pack_into("<Q", page, pa & 0xFFF, value)

    def read(self, pa, n):
        page = self.pages.get(pa & ~0xFFF)
        if page is None:
            raise KeyError(hex(pa))
        return bytes(page[pa & 0xFFF:(pa & 0xFFF) + n])


def idx(va, shift):
    return (va >> shift) & 0x1FF


def build(va, leaf_level, frame, extra_bits=0):
    """Tables at 0x1000.. mapping va with a leaf at PDPTE (1G), PDE (2M) or PTE (4K)."""
    m = Memory()
    tables = [0x1000, 0x2000, 0x3000, 0x4000]
    shifts = [39, 30, 21, 12]
    for level, shift in enumerate(shifts):
        entry_pa = tables[level] + idx(va, shift) * 8
        if shift == leaf_level:
            m.write_q(entry_pa, frame | 0x3 | (0x80 if shift != 12 else 0) | extra_bits)
            break
        m.write_q(entry_pa, tables[level + 1] | 0x3)
    return m


@given(offset=st.integers(0, 0xFFF), page=st.integers(0, 0x1FF))
def test_4k(offset, page):
    va = 0xFFFFF80000000000 | (page << 12) | offset
    m = build(va, 12, 0x12345000)
    assert translate(va, 0x1000, m.read) == (0x12345000 | offset, 0x1000)


def test_2m_and_1g_large_pages_ignore_pat_bit():
    va = 0xFFFFF80000000000 + 0x7654321
    # bit 12 of a large-page entry is PAT, not address (SDM Table 4-17/4-19)
    m = build(va, 21, 0x40000000, extra_bits=1 << 12)
    assert translate(va, 0x1000, m.read) == (0x40000000 | (va & 0x1FFFFF), 0x200000)
    m = build(va, 30, 0x80000000, extra_bits=1 << 12)
    assert translate(va, 0x1000, m.read) == (0x80000000 | (va & 0x3FFFFFFF), 0x40000000)


def test_cr3_flags_and_pcid_ignored():
    va = 0xFFFFF80000001008
    m = build(va, 12, 0x5000)
    assert translate(va, 0x1000 | 0x18 | 0x7, m.read)[0] == 0x5008


@pytest.mark.parametrize("cut,level", [(39, "PML4E"), (30, "PDPTE"), (21, "PDE"), (12, "PTE")])
def test_not_present_names_level(cut, level):
    va = 0xFFFFF80000201000
    m = build(va, 12, 0x5000)
    tables = {39: 0x1000, 30: 0x2000, 21: 0x3000, 12: 0x4000}
    m.write_q(tables[cut] + idx(va, cut) * 8, 0xABC000)  # present bit clear
    with pytest.raises(PagingError) as e:
        translate(va, 0x1000, m.read)
    assert e.value.level == level
    assert "0xfffff80000201000" in str(e.value) and level in str(e.value)


def test_non_canonical():
    assert is_canonical(0xFFFF800000000000) and is_canonical(0x00007FFFFFFFFFFF)
    assert not is_canonical(0x0000800000000000)
    with pytest.raises(PagingError) as e:
        translate(0x0000800000000000, 0x1000, Memory().read)
    assert e.value.level == "canonical"


def build_5_level(va, frame):
    """Tables at 0x1000..0x5000 mapping va through PML5E..PTE to a 4 KiB frame."""
    m = Memory()
    tables = [0x1000, 0x2000, 0x3000, 0x4000, 0x5000]
    for level, shift in enumerate([48, 39, 30, 21]):
        m.write_q(tables[level] + idx(va, shift) * 8, tables[level + 1] | 3)
    m.write_q(0x5000 + idx(va, 12) * 8, frame | 3)
    return m


def test_5_level():
    va = 0xFF5F800000003000  # canonical for 57 bits
    m = build_5_level(va, 0x77000)
    assert translate(va, 0x1000, m.read, cr4=1 << 12) == (0x77000, 0x1000)


def test_range_splits_at_pages_and_merges_contiguous():
    va = 0xFFFFF80000000800
    m = build(va, 12, 0x9000)
    m.write_q(0x4000 + (idx(va, 12) + 1) * 8, 0xA000 | 3)   # next page contiguous
    m.write_q(0x4000 + (idx(va, 12) + 2) * 8, 0x20000 | 3)  # then elsewhere
    assert translate_range(va, 0x2000, 0x1000, m.read) == [(0x9800, 0x1800), (0x20000, 0x800)]


def test_paging_error_says_where_the_walk_stopped():
    va = 0xFFFFF80000201000
    m = build(va, 12, 0x5000)
    entry_pa = 0x3000 + idx(va, 21) * 8
    m.write_q(entry_pa, 0xABC000)
    with pytest.raises(PagingError) as e:
        translate(va, 0x1000, m.read)
    assert str(e.value) == ("virtual address 0xfffff80000201000 does not translate: PDE at physical 0x%x is not "
                            "present (entry 0xabc000)" % entry_pa)
    assert (e.value.address, e.value.level, e.value.entry, e.value.entry_address) == (va, "PDE", 0xABC000, entry_pa)
    assert e.value.why == "PDE at physical 0x%x is not present (entry 0xabc000)" % entry_pa
    with pytest.raises(PagingError) as c:
        translate(0x0000800000000000, 0x1000, Memory().read)
    assert str(c.value) == "virtual address 0x800000000000 does not translate: not a canonical address"
    assert (c.value.entry, c.value.entry_address, c.value.why) == (0, 0, "not a canonical address")


def test_entry_bits_outside_51_12_are_not_address():
    """XD (bit 63), bits 62:52 and the flag bits 11:0 of every level are ignored (SDM Tables 4-15..4-20)."""
    va = 0xFFFFF80000001234
    m = Memory()
    high = (1 << 63) | (0x7FF << 52)
    for level, (table, shift) in enumerate(zip([0x1000, 0x2000, 0x3000, 0x4000], [39, 30, 21, 12])):
        nxt = [0x2000, 0x3000, 0x4000, 0x123456789000][level]
        m.write_q(table + idx(va, shift) * 8, high | nxt | 0x63)   # present, R/W, accessed, dirty; PS clear
    assert translate(va, 0x1000, m.read) == (0x123456789234, 0x1000)
    assert translate(va | (1 << 64), 0x1000 | high, m.read)[0] == 0x123456789234   # 64-bit address, CR3 high bits


def test_5_level_addresses_beyond_48_bits():
    va = 0x00FF800000003000      # canonical for 57 bits only (bit 56 = 0, bits 55:47 set)
    assert is_canonical(va, True) and not is_canonical(va)
    assert is_canonical(0xFF00000000000000, True) and not is_canonical(0x0100000000000000, True)
    with pytest.raises(PagingError):
        translate(va, 0x1000, Memory().read)     # 4-level: not canonical
    m = build_5_level(va, 0x77000)
    assert translate(va, 0x1000, m.read, cr4=1 << 12) == (0x77000, 0x1000)
    m.write_q(0x1000 + idx(va, 48) * 8, 0)
    with pytest.raises(PagingError) as e:
        translate(va, 0x1000, m.read, cr4=1 << 12)
    assert e.value.level == "PML5E"


def test_range_of_one_byte_and_across_a_large_page():
    va = 0xFFFFF80000000FFF
    m = build(va, 12, 0x9000)
    assert translate_range(va, 1, 0x1000, m.read) == [(0x9FFF, 1)]
    assert translate_range(va, 0, 0x1000, m.read) == []
    big = 0xFFFFF800001FF000                           # the last 4 KiB of a 2 MiB page
    m2 = build(big, 21, 0x40000000)
    m2.write_q(0x3000 + (idx(big, 21) + 1) * 8, 0x80000000 | 0x83)
    assert translate_range(big, 0x2000, 0x1000, m2.read) == [(0x401FF000, 0x1000), (0x80000000, 0x1000)]


def test_range_crossing_pages_from_an_odd_address():
    va = 0xFFFFF80000000FFF                    # last byte of a page; the next page is elsewhere
    m = build(va, 12, 0x9000)
    m.write_q(0x4000 + (idx(va, 12) + 1) * 8, 0x20000 | 3)
    assert translate_range(va, 2, 0x1000, m.read) == [(0x9FFF, 1), (0x20000, 1)]


def test_range_under_5_level_paging():
    va = 0x00FF800000003000                    # needs 57-bit linear addresses
    m = build_5_level(va, 0x77000)
    assert translate_range(va, 0x10, 0x1000, m.read, cr4=1 << 12) == [(0x77000, 0x10)]
