"""scan and --symbols costs: VMCS discovery over an image of BENCH_SCAN_MIB MiB
(every 64th page carries the revision id, as VMXON pages and freed regions do,
so the field checks run too), and a driver PDB converted by volatility3 versus
loaded from the ISF cache."""
import os
import shutil
import struct
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from windbg_ext.hv.scan import find_candidates  # noqa: E402
from windbg_ext.target.image import ImageTarget, ImageWriter  # noqa: E402

MIB = int(os.environ.get("BENCH_SCAN_MIB", "256"))
PDB = os.path.join(ROOT, "driver", "out", "clang", "sevendays.pdb")


def build(path):
    w = ImageWriter()
    page = bytearray(bytes(range(256)) * 16)
    decoy = bytearray(page)
    decoy[0:8] = struct.pack("<II", 4, 0)
    chunk = b"".join(bytes(decoy if i % 64 == 0 else page) for i in range(256))   # 1 MiB
    for i in range(MIB):
        w.add_memory(0x100000 + i * len(chunk), chunk)
    w.add_cpu({"cr3": 0x1000}, {0x480: 0x00D8100000000004})
    w.write(path)


def main():
    d = tempfile.mkdtemp(prefix="bench-scan-")
    try:
        path = os.path.join(d, "scan.hvimg")
        build(path)
        t = ImageTarget(path)
        t0 = time.perf_counter()
        found, scanned, _unreadable = find_candidates(t, t.memory_ranges(), [4])
        dt = time.perf_counter() - t0
        print("scan: %d MiB in %.2f s = %.0f MiB/s; %d pages carry the revision id, %d read ops"
              % (scanned >> 20, dt, (scanned >> 20) / dt, len(found), t.stats.reads))
        t.close()
        if os.path.isfile(PDB):
            os.environ["HVLAB_CACHE"] = os.path.join(d, "cache")
            from windbg_ext.hv.symbols import load_symbol_file
            t0 = time.perf_counter()
            load_symbol_file(PDB)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            load_symbol_file(PDB)
            again = time.perf_counter() - t0
            print("symbols: sevendays.pdb converted by volatility3 in %.2f s, from the ISF cache in %.3f s"
                  % (first, again))
        else:
            print("symbols: %s not built (make -C driver): skipped" % PDB)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
