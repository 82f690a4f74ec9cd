"""Helpers for the knowledge-base tests: images written through the real
ImageWriter (shared fixtures, e.g. the pykd stand-in: tests/conftest.py)."""
from __future__ import annotations

from typing import Dict, Sequence

from windbg_ext.target.image import ImageWriter


def write_caps_image(path, cpus_msrs: Sequence[Dict[int, int]]) -> str:
    """An image whose processors carry exactly these MSRs, and a KPCR each (GS base:
    a live session proves where the debugger's RDMSR runs with it)."""
    import struct

    from tests.ext.images import KPCR_PA, KPCR_VA, PAGE, PageTables

    w = ImageWriter()
    pt = PageTables(w)
    for n, msrs in enumerate(cpus_msrs):
        kpcr = bytearray(PAGE)
        struct.pack_into("<Q", kpcr, 0x18, KPCR_VA + n * PAGE)
        kpcr[0x184] = n
        pt.map(KPCR_VA + n * PAGE, KPCR_PA + n * PAGE)
        w.add_memory(KPCR_PA + n * PAGE, bytes(kpcr))
        w.add_cpu({"rip": 0xFFFFF80000001000, "cr0": 0x80050033, "cr3": pt.cr3, "cr4": 0x406A0,
                   "gs_base": KPCR_VA + n * PAGE}, dict(msrs))
    pt.flush()
    w.write(str(path))
    return str(path)
