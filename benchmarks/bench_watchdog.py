"""Watchdog benchmark (run on demand: .venv/bin/python benchmarks/bench_watchdog.py).

Reports: emulated instructions per second in a tight loop with no Python hook
(the native instruction counter costs one interposed call per instruction:
compare with an older checkout to see its share), the counter's own count of
that loop, and how fast a driver that loops on failed VM entries
(tests/lab/fixtures/entryloop.c, built here) fails them, each one VMREAD by
the lab in nested runs, before the watchdog ends it.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emulated_lab.asm import assemble  # noqa: E402
from emulated_lab.bochs_loader import instructions  # noqa: E402
from emulated_lab.lab import run_scenario  # noqa: E402
from emulated_lab.machine import Machine, RunTimeout  # noqa: E402
from tests.support import build_fixture_driver  # noqa: E402

LOOP_COUNT = 20_000_000


def tight_loop() -> None:
    m = Machine(cpus=1)
    try:
        code = m.place_code(assemble("mov rcx, %d\n1: dec rcx\n jnz 1b\n ret" % LOOP_COUNT))
        m.run(0, m.place_code(assemble("ret")))
        best, counted = 1e9, 0
        for _ in range(3):
            before, t0 = instructions(), time.perf_counter()
            m.run(0, code)
            elapsed = time.perf_counter() - t0
            if elapsed < best:
                best, counted = elapsed, instructions() - before
        print("tight loop: %d instructions in %.2f s: %.1f M instructions/s; counter saw %d (%+d)"
              % (2 * LOOP_COUNT + 2, best, (2 * LOOP_COUNT + 2) / best / 1e6, counted,
                 counted - (2 * LOOP_COUNT + 2)))
    finally:
        m.close()


def entry_loop(seconds: float = 3.0) -> None:
    with tempfile.TemporaryDirectory() as d:
        drv = build_fixture_driver("entryloop", d)
        t0 = time.perf_counter()
        try:
            run_scenario("baseline", cpus=1, driver=drv, workload=False, run_timeout=seconds)
            print("entry loop: not stopped (unexpected)")
            sys.exit(1)
        except RunTimeout as e:
            elapsed = time.perf_counter() - t0
            print("entry loop: stopped after %.2f s (limit %g s, scenario set-up included); %s"
                  % (elapsed, seconds, e.activity.split(";")[0]))


if __name__ == "__main__":
    tight_loop()
    entry_loop()
