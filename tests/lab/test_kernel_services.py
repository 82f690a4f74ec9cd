"""The kernel services public Windows VT-x hypervisors import (docs/lab.md lists
them and who imports them), exercised by our own fixture drivers built with
mingw (tests/lab/fixtures/numadrv.c, ctxdrv.c) and compared with the lab's
topology and memory, not with the drivers' own idea of them."""
import struct

import pytest

from emulated_lab.lab import ScenarioError, run_scenario
from emulated_lab.machine import DRIVER_BASE, Machine
from emulated_lab.memory import NODE_SPAN
from emulated_lab.nt.kernel import NtKernel
from emulated_lab.nt.pe_loader import LoadError
from windbg_ext.target.image import ImageTarget


def _results(image, symbol, count):
    t = ImageTarget(image)
    try:
        return struct.unpack("<%dQ" % count, t.read_virtual(t.symbol(symbol), 8 * count)), t.meta
    finally:
        t.close()


@pytest.mark.parametrize("cpus,nodes", [(4, 2), (3, 3), (2, 1)])
def test_per_node_allocation_follows_the_topology(fixture_driver, tmp_path, cpus, nodes):
    image = str(tmp_path / "numa.hvimg")
    res = run_scenario("baseline", cpus=cpus, nodes=nodes, driver=fixture_driver("numadrv"), image=image,
                       workload=False)
    assert res.loaded and res.unload_ran and res.leaks == []
    r, _ = _results(image, "numadrv!NumaResults", 64)
    node_of = [k * nodes // cpus for k in range(cpus)]
    assert r[0] == nodes - 1 and r[1] == cpus
    assert (r[2], r[3], r[4]) == (cpus, 0, (1 << cpus) - 1)         # one processor group
    assert r[5] == cpus - 1                                          # KeGetCurrentProcessorIndex
    for n in range(nodes):
        members = [k for k in range(cpus) if node_of[k] == n]
        assert r[8 + 4 * n] == sum(1 << k for k in members)          # KeQueryNodeActiveAffinity mask
        assert r[9 + 4 * n] == r[10 + 4 * n] == len(members)
        assert r[11 + 4 * n] // NODE_SPAN == n                       # the page is in node n's memory
    for k in range(cpus):
        assert r[24 + k] == node_of[k] | k << 8                      # KeGetCurrentNodeNumber on processor k
    assert r[40] and r[40] + 0xFFF <= 0xFFFFFFFF                     # below 4 GiB: node 0 despite the preference
    assert r[41] == 0 and r[42] == 0                                 # bad protection, node that does not exist
    for pa in r[43:46]:
        assert pa and pa // 0x4000 == (pa + 0x2FFF) // 0x4000          # never across a 16 KiB multiple
    assert r[46] // NODE_SPAN == node_of[cpus - 1]                   # MM_ANY_NODE_OK: the caller's node first
    assert r[47] >= nodes and r[48] == nodes                         # every node's memory is a reported range


def test_numa_nodes_are_checked(fixture_driver):
    with pytest.raises(ScenarioError, match="--nodes must be between 1 and the processor count"):
        run_scenario("baseline", cpus=2, nodes=3, driver=fixture_driver("numadrv"))


def test_restore_context_and_ipi_order(fixture_driver, tmp_path):
    image = str(tmp_path / "ctx.hvimg")
    res = run_scenario("baseline", cpus=3, driver=fixture_driver("ctxdrv"), image=image, workload=False)
    assert res.loaded and res.leaks == []
    r, _ = _results(image, "ctxdrv!CtxResults", 32)
    assert r[0] == 4 and r[1] == 1             # continued after the capture 1 + 3 times, on the same stack
    assert r[3] == 3 and list(r[4:7]) == [0, 2, 1]   # every processor once, the caller (1) last
    assert r[2] == 0x101 and r[20] == 1        # the caller's result, the thread still on processor 1


def test_missing_imports_are_refused_with_the_list(fixture_driver):
    m = Machine(cpus=1)
    try:
        kern = NtKernel(m)
        for name in ("KeGetCurrentNodeNumber", "MmGetPhysicalMemoryRanges"):
            del kern._impl[name]
        with pytest.raises(LoadError, match="imports KeGetCurrentNodeNumber, MmGetPhysicalMemoryRanges, which"):
            kern.load_driver(fixture_driver("numadrv"), DRIVER_BASE)
    finally:
        m.close()


def test_every_allocation_of_the_numa_driver_can_fail_cleanly(fixture_driver):
    ok = run_scenario("baseline", cpus=2, nodes=2, driver=fixture_driver("numadrv"), workload=False)
    assert ok.loaded
    # the last allocation is MmGetPhysicalMemoryRanges' array: NULL makes DriverEntry fail
    res = run_scenario("alloc-fail:%d" % ok.allocation_calls, cpus=2, nodes=2, driver=fixture_driver("numadrv"),
                       workload=False)
    assert res.failed_allocations == [ok.allocation_calls] and not res.loaded


def test_power_callback_driver_leaves_vmx_before_sleep_and_returns_after(fixture_driver, tmp_path):
    image = str(tmp_path / "power.hvimg")
    res = run_scenario("sleep", cpus=3, driver=fixture_driver("powerdrv"), image=image, workload=False)
    assert res.loaded and res.unload_ran
    left = [c for c in res.checks if c.name == "left-vmx-before-sleep"]
    assert left and left[0].ok                                   # the lab saw every processor leave VMX
    r, _ = _results(image, "powerdrv!PowerResults", 16)
    assert r[0] == 2 and list(r[1:3]) == [0, 1] and r[12] == 0   # PO_CB_SYSTEM_STATE_LOCK: before, after
    assert (r[9], r[10], r[11]) == (3, 3, 3)                     # VMXON at load, VMXOFF, VMXON after resume
    t = ImageTarget(image)
    try:
        assert all(t.registers(k)["cr4"] & (1 << 13) for k in range(3))   # back in VMX operation after resume
    finally:
        t.close()
    assert res.vmx_after == ["off"] * 3 and res.leaks == [] and res.held_objects == []   # unload released all


def test_reserved_mapping_version_and_performance_counter(fixture_driver, tmp_path):
    from emulated_lab.nt.mappings import MAPPING_AREA
    from emulated_lab.nt.system import PERFORMANCE_FREQUENCY, WINDOWS_VERSION
    image = str(tmp_path / "map.hvimg")
    res = run_scenario("baseline", cpus=1, driver=fixture_driver("mapdrv"), image=image, workload=False)
    assert res.loaded and res.leaks == []                      # the reservation and the page were freed
    r, _ = _results(image, "mapdrv!MapResults", 16)
    assert tuple(r[0:3]) == WINDOWS_VERSION and r[3] == 1      # VER_NT_WORKSTATION
    assert r[4] == PERFORMANCE_FREQUENCY and r[5] == 1         # the counter moves forward
    assert MAPPING_AREA <= r[6] < MAPPING_AREA + (1 << 39)
    assert r[9] == 1 and r[7] == 0                             # paging structures there, the PTE not present
    assert r[8] == 0x48564C41424D4150                          # the page the driver mapped itself, read through it


def test_a_reservation_not_freed_is_a_leak():
    from emulated_lab.asm import assemble
    m = Machine(cpus=1)
    try:
        kern = NtKernel(m)
        stub = kern.stub("MmAllocateMappingAddress")
        code = m.place_code(assemble("sub rsp, 0x28\nmov rcx, 0x3000\nmov edx, 0x41424344\nmov rax, %d\ncall rax\n"
                                     "add rsp, 0x28\nret" % stub))
        r = kern.call_on_thread(code, ())
        va = r.regs["rax"]
        assert r.stop == "return" and va and m.translate(va) is None
        [leak] = kern.leaks()
        assert (leak.va, leak.kind, leak.npages) == (va, "mapping", 3)
    finally:
        m.close()


def test_a_dpc_runs_on_its_target_processor(fixture_driver, tmp_path):
    image = str(tmp_path / "dpc.hvimg")
    res = run_scenario("baseline", cpus=3, driver=fixture_driver("dpcdrv"), image=image, workload=False)
    assert res.loaded
    r, _ = _results(image, "dpcdrv!DpcResults", 24)
    assert r[0] == 3 and r[1] == 3                               # each ran once; each insert returned TRUE
    assert [r[2 + k] for k in range(3)] == [k << 16 | k << 8 | 1 for k in range(3)]   # on processor k, its own args
    assert r[20] == 0xC000000D                                   # STATUS_INVALID_PARAMETER: no such processor
