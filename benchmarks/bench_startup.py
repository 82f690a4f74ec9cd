"""What a WinDbg user feels per command: every `!py -m windbg_ext ...` starts a
fresh interpreter, so import + one `field` command is the latency.

Measures, each in a fresh interpreter (N runs, median and best):
  - python itself (`-c pass`), the floor nothing can beat
  - `import windbg_ext.cli` (the front end)
  - `python -m windbg_ext field GUEST_RIP` (import + parse + catalogue + render)
  - `python -m windbg_ext --json field GUEST_RIP`
  - `python -m windbg_ext --image F dbgfilter` (a target-reading command on a small image)
and the modules `field` imports (-X importtime), heaviest first.
Goal: the field command under 150 ms. Exit 1 when the goal is missed.
"""
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = int(os.environ.get("BENCH_RUNS", "15"))
GOAL_MS = 150.0


# An installed package has its .pyc files; PYTHONDONTWRITEBYTECODE (set in some
# CI shells) would make every run recompile and measure the compiler instead.
ENV = dict(os.environ)
ENV.pop("PYTHONDONTWRITEBYTECODE", None)


def _time(argv):
    samples = []
    subprocess.run(argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # writes .pyc
    for _ in range(RUNS):
        t0 = time.perf_counter()
        r = subprocess.run(argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        samples.append((time.perf_counter() - t0) * 1000)
        if r.returncode != 0:
            raise SystemExit("benchmark command failed: %s\n%s" % (" ".join(argv), r.stderr.decode()))
    return statistics.median(samples), min(samples)


def _import_profile():
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "windbg_ext", "field", "GUEST_RIP"],
                       cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True)
    rows = []
    for line in r.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[0].startswith("import time:") and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    return sorted(rows, reverse=True)


def _small_image(path):
    """Just enough for dbgfilter: one page table chain, the three masks."""
    import struct
    sys.path.insert(0, ROOT)
    from windbg_ext.target.image import ImageWriter
    va, page = 0xFFFFF80000010000, 0x200000
    w = ImageWriter()
    tables = [0x1000, 0x2000, 0x3000, 0x4000]
    for level, shift in enumerate((39, 30, 21, 12)):
        nxt = tables[level + 1] if level < 3 else page
        w.add_memory(tables[level] + ((va >> shift) & 0x1FF) * 8, struct.pack("<Q", nxt | 3))
    w.add_memory(page, struct.pack("<III", 1, 0, 0xFFFF))
    for i, name in enumerate(("nt!Kd_WIN2000_Mask", "nt!Kd_DEFAULT_Mask", "nt!Kd_IHVDRIVER_Mask")):
        w.add_symbol(name, va + 4 * i)
    w.add_cpu({"cr3": 0x1000, "cr4": 0x6F8}, {})
    w.write(path)


def main():
    import tempfile
    py = sys.executable
    tmp = tempfile.mkdtemp(prefix="bench-startup-")
    image = os.path.join(tmp, "small.hvimg")
    _small_image(image)
    cases = [
        ("python -c pass (floor)", [py, "-c", "pass"]),
        ("import windbg_ext.cli", [py, "-c", "import windbg_ext.cli"]),
        ("field GUEST_RIP", [py, "-m", "windbg_ext", "field", "GUEST_RIP"]),
        ("--json field GUEST_RIP", [py, "-m", "windbg_ext", "--json", "field", "GUEST_RIP"]),
        ("--image F dbgfilter", [py, "-m", "windbg_ext", "--image", image, "dbgfilter"]),
    ]
    print("fresh-interpreter latency, %d runs each after one warm-up (.pyc present; python %s)"
          % (RUNS, sys.version.split()[0]))
    print("%-28s %10s %10s" % ("case", "median ms", "best ms"))
    results = {}
    for label, argv in cases:
        med, best = _time(argv)
        results[label] = med
        print("%-28s %10.1f %10.1f" % (label, med, best))
    floor = results["python -c pass (floor)"]
    field = results["field GUEST_RIP"]
    print("field command: %.1f ms (%.1f ms above the bare interpreter); goal < %.0f ms: %s"
          % (field, field - floor, GOAL_MS, "met" if field < GOAL_MS else "MISSED"))
    print("heaviest imports of `field` (cumulative us):")
    for us, name in _import_profile()[:8]:
        print("  %8d  %s" % (us, name))
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if field < GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
