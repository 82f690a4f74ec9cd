"""bench_kd_refresh: what `vmcs N --refresh --all` costs a live session.

Runs the real hv.sys in `emulated_lab kd` (2 and 8 processors, the debugger
loop on processor 0, N = the last processor) and counts, from the pykd calls
the suite made:
  - target operations: what changes or runs the target (dbgCommand `~Ns` and
    `r`, trace/step/go, setReg/setIP, rdmsr) -- goal: at most 6 for a refresh;
  - reads: loadBytes (descriptor, vCPU and its snapshot);
  - host-side: symbol lookups and the debugger's own state (getOffset,
    getCurrentThreadId, getNumberThreads, is*), answered without the target;
and the wall time of the whole command on the emulated CPU.

    python benchmarks/bench_kd_refresh.py        (or: python -m benchmarks kd_refresh)
"""
from __future__ import annotations

import io
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from emulated_lab.kd import pykd_live  # noqa: E402
from emulated_lab.kd.session import kd_session  # noqa: E402
from tests.support import hv_sys  # noqa: E402

TARGET_OPERATIONS = {"dbgCommand", "trace", "step", "go", "setReg", "setIP", "rdmsr"}
READS = {"loadBytes"}
GOAL = 6


def measure(cpus: int) -> dict:
    n = cpus - 1
    stats: dict = {}
    stream = io.StringIO()

    def read_line(prompt: str) -> str:
        if "done" in stats:
            return "g"
        del pykd_live._calls[:]
        stats["t0"] = time.perf_counter()
        stats["done"] = True
        return "!py -m windbg_ext vmcs %d --refresh --all" % n

    kd_session("baseline", cpus, hv_sys(), 0, None, [], interactive=True, stream=stream, read_line=read_line)
    calls = list(pykd_live._calls)
    return {"cpus": cpus, "n": n,
            "target": [c for c in calls if c in TARGET_OPERATIONS],
            "reads": sum(1 for c in calls if c in READS),
            "host": sum(1 for c in calls if c not in TARGET_OPERATIONS | READS | {"dprint", "dprintln"}),
            "fresh": "fresh: hv.sys VMREAD every field" in stream.getvalue()}


def main() -> int:
    worst = 0
    for cpus in (2, 8):
        t0 = time.perf_counter()
        r = measure(cpus)
        worst = max(worst, len(r["target"]))
        print("%d processors, vmcs %d --refresh --all: %d target operations (%s), %d reads, %d host-side lookups, "
              "fresh=%s; session %.2f s" % (cpus, r["n"], len(r["target"]), " ".join(r["target"]), r["reads"],
                                           r["host"], r["fresh"], time.perf_counter() - t0))
        if not r["fresh"]:
            print("FAILED: the snapshot was not refreshed")
            return 1
    print("goal: at most %d target operations besides the snapshot read: %s" % (GOAL, "met" if worst <= GOAL
                                                                                   else "MISSED (%d)" % worst))
    return 0 if worst <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
