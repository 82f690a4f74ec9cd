"""Helpers for the knowledge-base tests: images written through the real
ImageWriter (shared fixtures, e.g. the pykd stand-in: tests/conftest.py)."""
from __future__ import annotations

from typing import Dict, Sequence

from windbg_ext.target.image import ImageWriter


def write_caps_image(path, cpus_msrs: Sequence[Dict[int, int]]) -> str:
    """An image whose processors carry exactly these MSRs (and one page of memory)."""
    w = ImageWriter()
    w.add_memory(0x1000, bytes(0x1000))
    for msrs in cpus_msrs:
        w.add_cpu({"rip": 0xFFFFF80000001000, "cr0": 0x80050033, "cr3": 0x1000, "cr4": 0x406A0}, dict(msrs))
    w.write(str(path))
    return str(path)
