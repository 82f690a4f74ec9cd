"""Builds hvlab images for the suite's tests through the real writer
(ImageWriter): page tables laid out like x64 4-level paging, kernel symbols,
per-processor registers, MSRs and CPUID."""
from __future__ import annotations

import struct
from typing import Dict, Iterable, Optional

from windbg_ext.target.image import ImageWriter

PAGE = 0x1000
P, RW, PS = 1, 2, 0x80

# Where the standard test image puts things (physical / virtual)
KD_PAGE_VA = 0xFFFFF80000010000
KD_PAGE_PA = 0x00200000
KD_MASK_OFFSETS = {"nt!Kd_WIN2000_Mask": 0x100, "nt!Kd_DEFAULT_Mask": 0x104, "nt!Kd_IHVDRIVER_Mask": 0x108}
BITMAP_PA = 0x00300000
BITMAP_VA = 0xFFFFF80000020000
KPCR_PA = 0x00400000            # one page per processor: KPCR.Self at +0x18, its number at +0x184
KPCR_VA = 0xFFFFF80000070000

# SDM Appendix A values a Bochs-like CPU reports (docs/lab.md: measured BASIC)
CAPS = {
    0x480: 0x00D8100000000004,  # IA32_VMX_BASIC: revision 4, 4 KiB regions, WB, true controls
    0x486: 0x80000021,          # IA32_VMX_CR0_FIXED0: PE, NE, PG must be 1
    0x487: 0xFFFFFFFF,          # IA32_VMX_CR0_FIXED1
    0x488: 0x00002000,          # IA32_VMX_CR4_FIXED0: VMXE must be 1
    0x489: 0x003727FF,          # IA32_VMX_CR4_FIXED1
}
CR0_WINDOWS = 0x80050033        # PG WP NE ET MP PE
CR4_WINDOWS = 0x000006F8        # DE PSE PAE MCE PGE OSFXSR OSXMMEXCPT (no VMXE yet)


class PageTables:
    """4-level page tables in a dict of physical pages; bump-allocates tables."""

    def __init__(self, writer: ImageWriter, table_base: int = 0x1000) -> None:
        self.w = writer
        self.next_table = table_base
        self.tables: Dict[int, bytearray] = {}
        self.cr3 = self._new_table()

    def _new_table(self) -> int:
        pa = self.next_table
        self.next_table += PAGE
        self.tables[pa] = bytearray(PAGE)
        return pa

    def _entry(self, table: int, index: int) -> int:
        return struct.unpack_from("<Q", self.tables[table], index * 8)[0]

    def _set(self, table: int, index: int, value: int) -> None:
        struct.pack_into("<Q", self.tables[table], index * 8, value)

    def map(self, va: int, pa: int, size: int = PAGE, page_size: int = PAGE) -> None:
        """Maps [va, va+size) to [pa, ...) with pages of page_size (4K, 2M or 1G)."""
        leaf_shift = {PAGE: 12, 0x200000: 21, 0x40000000: 30}[page_size]
        for off in range(0, size, page_size):
            v, p = va + off, pa + off
            table = self.cr3
            for shift in (39, 30, 21, 12):
                index = (v >> shift) & 0x1FF
                if shift == leaf_shift:
                    self._set(table, index, p | P | RW | (PS if shift != 12 else 0))
                    break
                entry = self._entry(table, index)
                if not entry & P:
                    child = self._new_table()
                    self._set(table, index, child | P | RW)
                    entry = child | P | RW
                table = entry & 0x000FFFFFFFFFF000

    def flush(self) -> None:
        for pa, data in self.tables.items():
            self.w.add_memory(pa, bytes(data))


def standard_image(path, cpus: int = 2, masks: Optional[Dict[str, int]] = None,
                   msrs: Optional[Dict[int, int]] = None, cr0: int = CR0_WINDOWS, cr4: int = CR4_WINDOWS,
                   cpuid_vmx: Optional[bool] = True, bitmap: Optional[bytes] = None,
                   feature_control: int = 0x5, per_cpu: Optional[Iterable[Dict]] = None,
                   extra=None) -> str:
    """An image like the lab writes: two processors, kernel page tables,
    the Debug Print Filter masks, capability MSRs, an MSR bitmap page."""
    w = ImageWriter()
    pt = PageTables(w)
    pt.map(KD_PAGE_VA, KD_PAGE_PA)
    pt.map(BITMAP_VA, BITMAP_PA)
    kd = bytearray(PAGE)
    values = {"nt!Kd_WIN2000_Mask": 0x1, "nt!Kd_DEFAULT_Mask": 0x0, "nt!Kd_IHVDRIVER_Mask": 0x0}
    values.update(masks or {})
    for name, off in KD_MASK_OFFSETS.items():
        struct.pack_into("<I", kd, off, values[name])
        w.add_symbol(name, KD_PAGE_VA + off)
    w.add_memory(KD_PAGE_PA, bytes(kd))
    w.add_memory(BITMAP_PA, bitmap if bitmap is not None else bytes(PAGE))
    w.add_symbol("hv!HvMsrBitmapPage", BITMAP_VA)
    w.add_module("nt", 0xFFFFF80000000000, 0x100000)
    overrides = list(per_cpu or [])
    for n in range(cpus):
        kpcr = bytearray(PAGE)
        struct.pack_into("<Q", kpcr, 0x18, KPCR_VA + n * PAGE)
        kpcr[0x184] = n
        pt.map(KPCR_VA + n * PAGE, KPCR_PA + n * PAGE)
        w.add_memory(KPCR_PA + n * PAGE, bytes(kpcr))
        regs = {"rip": 0xFFFFF80000001000 + n, "rsp": 0xFFFFF80000090000, "cr0": cr0, "cr3": pt.cr3,
                "cr4": cr4, "efer": 0xD01, "rflags": 0x202, "dr7": 0x400, "cs": 0x10, "ss": 0x18,
                "ds": 0x2B, "es": 0x2B, "fs": 0x53, "gs": 0x2B, "tr": 0x40, "ldtr": 0,
                "gdtr_base": 0xFFFFF80000050000, "gdtr_limit": 0x57,
                "idtr_base": 0xFFFFF80000060000, "idtr_limit": 0xFFF, "gs_base": KPCR_VA + n * PAGE}
        m = dict(CAPS)
        m[0x3A] = feature_control
        m.update(msrs or {})
        cpuid = None
        if cpuid_vmx is not None:
            cpuid = {1: (0x000306A9, 0x00010800 | (n << 24), 0x80A22201 | (0x20 if cpuid_vmx else 0), 0x178BFBFF)}
        if n < len(overrides):
            regs.update(overrides[n].get("regs", {}))
            m.update(overrides[n].get("msrs", {}))
        w.add_cpu(regs, m, cpuid=cpuid)
    pt.flush()
    w.meta["scenario"] = "test"
    if extra:
        extra(w, pt)
    w.write(str(path))
    return str(path)
