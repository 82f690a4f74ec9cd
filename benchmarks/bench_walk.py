"""bench_walk: round trips are the cost over KDNET. Runs `vmm` and
`vmcs 0 --all` on images with N = 1, 8, 64 vCPUs behind a target that sleeps
2 ms per read (a KDNET round trip), next to a naive field-by-field reader
(one read per member, the way most pykd scripts read structures), and prints
reads, wall time and the ratio.

    python benchmarks/bench_walk.py        (or: python -m benchmarks walk)

The images hold driver state laid out by the host C compiler from the
driver's headers (tests/hv/builder.py); needs gcc.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.hv.builder import HvState  # noqa: E402
from windbg_ext import cli  # noqa: E402
from windbg_ext.hv import descriptor as hd  # noqa: E402
from windbg_ext.target.base import Target  # noqa: E402
from windbg_ext.target.image import ImageTarget  # noqa: E402

ROUND_TRIP = 0.002  # seconds per target read


class SlowTarget(Target):
    """An image target whose every read costs one injected round trip."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.inner = ImageTarget(path)

    def _read_physical(self, address: int, size: int) -> bytes:
        time.sleep(ROUND_TRIP)
        return self.inner._read_physical(address, size)

    def _read_virtual(self, address: int, size: int) -> bytes:
        time.sleep(ROUND_TRIP)
        return self.inner._read_virtual(address, size)

    def _symbol(self, name: str) -> int:
        return self.inner._symbol(name)

    def processor_count(self) -> int:
        return self.inner.processor_count()

    def memory_ranges(self):
        return self.inner.memory_ranges()

    def cpuid(self, leaf, subleaf=0, cpu=0):
        return self.inner.cpuid(leaf, subleaf, cpu)


def run_command(path: str, argv: List[str]):
    target = SlowTarget(path)
    original = cli._opener
    cli._opener = lambda gopts, live: (lambda: target)
    out: List[str] = []
    try:
        t0 = time.perf_counter()
        code = cli.run(["--json"] + argv, out.append, out.append)
        elapsed = time.perf_counter() - t0
    finally:
        cli._opener = original
    if code not in (0, 1):
        raise SystemExit("bench_walk: %s failed: %s" % (" ".join(argv), out))
    return target.stats.reads, elapsed


# -- the naive reader: one read per member, like ptrDWord/ptrQWord per field ---------
def _u(t: Target, va: int, size: int) -> int:
    return int.from_bytes(t.read_virtual(va, size), "little")


def naive_descriptor(t: Target, va: int):
    offsets = hd.header_offsets()
    h = {name: _u(t, va + m.offset, m.size) for name, m in offsets.items() if name != "Producer"}
    members = {}
    for i in range(h["MemberCount"]):
        e = va + h["MembersOffset"] + i * h["MemberEntrySize"]
        name = t.read_virtual(e, 32).split(b"\0")[0].decode()
        members[name] = (_u(t, e + 32, 4), _u(t, e + 36, 4))
    return h, members


VMM_TABLE_MEMBERS = ("State", "ProcessorIndex", "VmxonRegion", "VmxonRegionPa", "VmcsRegion", "VmcsRegionPa",
                     "MsrBitmapPa", "HostStack", "HostStackSize", "ExitCount", "LastExitReason", "FailedStep",
                     "VmInstructionError", "Status", "Vmm")


def naive_vmm(path: str):
    t = SlowTarget(path)
    t0 = time.perf_counter()
    va = t.symbol("hv!HvDebugDescriptor")
    h, members = naive_descriptor(t, va)
    for name, (off, size) in members.items():
        if name.startswith("VMM."):
            _u(t, h["VmmContextVa"] + off, size)
    for i in range(h["VcpuCount"]):
        base = h["VcpuArrayVa"] + i * h["VcpuSize"]
        for m in VMM_TABLE_MEMBERS:
            off, size = members["VCPU." + m]
            _u(t, base + off, size)
    return t.stats.reads, time.perf_counter() - t0


def naive_vmcs_all(path: str):
    t = SlowTarget(path)
    t0 = time.perf_counter()
    va = t.symbol("hv!HvDebugDescriptor")
    h, members = naive_descriptor(t, va)
    snap = h["VcpuArrayVa"] + members["VCPU.Snapshot"][0]
    count = _u(t, snap + members["SNAP.Count"][0], 4)
    entries = snap + members["SNAP.Entries"][0]
    for k in range(count):
        _u(t, entries + k * h["SnapshotEntrySize"], 4)
        _u(t, entries + k * h["SnapshotEntrySize"] + 8, 8)
    return t.stats.reads, time.perf_counter() - t0


def main() -> int:
    print("injected round trip: %.0f ms per read" % (ROUND_TRIP * 1000))
    print("%-16s %4s  %10s %10s  %10s %10s  %7s  %s" % ("command", "N", "reads", "time", "naive reads",
                                                      "naive time", "ratio", "budget"))
    ok = True
    with tempfile.TemporaryDirectory() as d:
        warm = HvState(vcpus=1).build().write_image(os.path.join(d, "warm.hvimg"))
        for argv in (["vmm"], ["vmcs", "0", "--all"]):  # imports paid once, outside the measurements
            run_command(warm, argv)
        for n in (1, 8, 64):
            path = HvState(vcpus=n).build().write_image(os.path.join(d, "n%d.hvimg" % n))
            for label, argv, naive, budget in (("vmm", ["vmm"], naive_vmm, 3 + n),
                                               ("vmcs 0 --all", ["vmcs", "0", "--all"], naive_vmcs_all, 5)):
                reads, elapsed = run_command(path, argv)
                n_reads, n_elapsed = naive(path)
                within = reads <= budget
                ok = ok and within
                print("%-16s %4d  %10d %9.3fs  %10d %9.3fs  %6.1fx  %s" % (
                    label, n, reads, elapsed, n_reads, n_elapsed, n_elapsed / elapsed,
                    "<= %d ok" % budget if within else "> %d OVER BUDGET" % budget))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
