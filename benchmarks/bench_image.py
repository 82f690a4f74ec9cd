"""The offline target's costs: writing and opening an image the size the lab
writes, physical and virtual (page-walked) 4 KiB reads per second, and a
whole-memory scan (what the hv walker does to find its descriptor)."""
import os
import shutil
import struct
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from windbg_ext.target.image import ImageTarget, ImageWriter  # noqa: E402

MIB = int(os.environ.get("BENCH_IMAGE_MIB", "64"))
VA = 0xFFFFF80000000000


def build(path):
    """MIB of memory at 16 MiB, mapped at VA with 4 KiB pages (tables below 16 MiB)."""
    w = ImageWriter()
    base, pages = 0x1000000, MIB * 256
    pml4, pdpt, pd = 0x1000, 0x2000, 0x3000
    w.add_memory(pml4 + ((VA >> 39) & 0x1FF) * 8, struct.pack("<Q", pdpt | 3))
    w.add_memory(pdpt + ((VA >> 30) & 0x1FF) * 8, struct.pack("<Q", pd | 3))
    pts = (pages + 511) // 512
    pd_entries = b"".join(struct.pack("<Q", (0x4000 + i * 0x1000) | 3) for i in range(pts))
    w.add_memory(pd, pd_entries)
    w.add_memory(0x4000, b"".join(struct.pack("<Q", (base + i * 0x1000) | 3) for i in range(pages)))
    chunk = bytes(range(256)) * 4096  # 1 MiB
    for i in range(MIB):
        w.add_memory(base + i * len(chunk), chunk)
    w.add_cpu({"cr3": pml4}, {})
    w.write(path)
    return base, pages


def rate(label, n, fn):
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    dt = time.perf_counter() - t0
    print("%-34s %10.0f /s  (%d in %.2f s)" % (label, n / dt, n, dt))


def main():
    tmp = tempfile.mkdtemp(prefix="bench-image-")
    try:
        path = os.path.join(tmp, "big.hvimg")
        t0 = time.perf_counter()
        base, pages = build(path)
        print("write %d MiB image: %.2f s (%.1f MiB on disk)" % (MIB, time.perf_counter() - t0,
                                                                os.path.getsize(path) / 2 ** 20))
        t0 = time.perf_counter()
        t = ImageTarget(path)
        print("open: %.2f ms" % ((time.perf_counter() - t0) * 1000))
        t0 = time.perf_counter()
        t.read_physical(base, 4096)
        print("first read (checks one 1 MiB piece CRC): %.1f ms" % ((time.perf_counter() - t0) * 1000))
        rate("4 KiB physical reads (incl. CRCs)", 20000, lambda i: t.read_physical(base + (i % pages) * 4096, 4096))
        rate("4 KiB virtual reads (page walk)", 20000, lambda i: t.read_virtual(VA + (i % pages) * 4096, 4096))
        t0 = time.perf_counter()
        hits = 0
        for pa, n in t.memory_ranges():
            for off in range(0, n, 1 << 20):
                hits += t.read_physical(pa + off, min(1 << 20, n - off)).count(b"HVLABDBG")
        print("scan all memory in 1 MiB reads: %.2f s" % (time.perf_counter() - t0))
        t.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
