"""Both builds of hv.sys run on the emulated VMX CPU (emulated_lab, Bochs
CPU model); the image taken while every processor is virtualized is then
read with the documented descriptor format: the layout map discovered at
load decodes the raw VMCS pages to what VMREAD returns, the snapshot is
complete, the host stacks hold their pattern and vCPU pointer."""
import struct

import pytest

from emulated_lab.lab import run_scenario
from windbg_ext.target.image import ImageTarget

from .pe_descriptor import HEADER, SNAP_ENTRY, SNAP_HEADER, parse_header, parse_layout, parse_members
from .support import IMAGES, driver_on_one_cpu

CPUS = 2
FOUND, ROTATED8 = 0x01, 0x02
VCPU_LAUNCHED, DRIVER_RUNNING, LAYOUT_DISCOVERED = 2, 2, 1
ACCESS_RIGHTS = range(0x4814, 0x4824, 2)        # GUEST_ES..TR_ACCESS_RIGHTS
ENTRY_EVENT_FIELDS = {0x4016, 0x4018, 0x401A}   # VM-entry event injection: consumed by each entry
CATALOGUE = 168


@pytest.fixture(scope="module", params=sorted(IMAGES))
def lab_run(request, built_driver, lab_images):
    path, res = lab_images("baseline", cpus=CPUS, driver=built_driver[request.param])
    target = ImageTarget(path)
    yield res, target
    target.close()


def _descriptor(target):
    va = target.symbol("hv!HvDebugDescriptor")
    header = parse_header(target.read_virtual(va, HEADER.size))
    blob = target.read_virtual(va, header["DescriptorSize"])
    return va, header, {n: (o, s) for n, o, s in parse_members(header, blob)}, blob


def _field(raw, members, name):
    off, size = members[name]
    return int.from_bytes(raw[off:off + size], "little")


def test_loads_runs_and_unloads_cleanly(lab_run):
    res, _ = lab_run
    assert res.loaded and res.load_status == 0
    assert res.unload_ran and res.vmx_after == ["off"] * CPUS and res.leaks == []


def test_descriptor_run_time_state(lab_run):
    _, target = lab_run
    va, h, members, _ = _descriptor(target)
    assert h["SelfVa"] == va and h["DriverState"] == DRIVER_RUNNING and h["LoadStatus"] == 0
    assert h["VcpuCount"] == CPUS and h["VmmContextVa"] and h["VcpuArrayVa"]
    vmm = target.read_virtual(h["VmmContextVa"], h["VmmContextSize"])
    assert _field(vmm, members, "VMM.ProcessorCount") == CPUS
    assert _field(vmm, members, "VMM.VirtualizedCount") == CPUS
    assert _field(vmm, members, "VMM.Vcpus") == h["VcpuArrayVa"]
    basic = _field(vmm, members, "VMM.CapBasic")
    assert basic == 0x00D8100000000004  # docs/lab.md, measured facts
    assert h["LayoutStatus"] == LAYOUT_DISCOVERED and h["LayoutRevisionId"] == basic & 0x7FFFFFFF
    # the controls the driver wrote obey the capability MSRs it read (App. A.3-A.5)
    for cap, ctl in (("CapPinbased", "PinbasedControls"), ("CapProcbased", "ProcbasedControls"),
                     ("CapExit", "ExitControls"), ("CapEntry", "EntryControls")):
        c, v = _field(vmm, members, "VMM." + cap), _field(vmm, members, "VMM." + ctl)
        assert v & (c & 0xFFFFFFFF) == c & 0xFFFFFFFF and v & ~(c >> 32) & 0xFFFFFFFF == 0, ctl
    assert _field(vmm, members, "VMM.ExitControls") & (1 << 9)    # 64-bit host
    assert _field(vmm, members, "VMM.EntryControls") & (1 << 9)   # IA-32e mode guest
    assert not _field(vmm, members, "VMM.PinbasedControls") & (1 << 6)  # never the preemption timer


def test_layout_map_decodes_the_region_like_vmread(lab_run):
    res, target = lab_run
    _, h, members, blob = _descriptor(target)
    layout = parse_layout(h, blob)
    assert len(layout) == CATALOGUE
    offsets = [off for _, off, _, flags in layout if flags & FOUND]
    assert len(offsets) == CATALOGUE and len(set(offsets)) == CATALOGUE and min(offsets) >= 4
    assert {enc for enc, _, _, flags in layout if flags & ROTATED8} == set(ACCESS_RIGHTS)
    for k in range(CPUS):
        vcpu = target.read_virtual(h["VcpuArrayVa"] + k * h["VcpuSize"], h["VcpuSize"])
        assert _field(vcpu, members, "VCPU.State") == VCPU_LAUNCHED
        # the emulator's own copy of the page: the image's is stale, as a dump's (debugger_view.py)
        region = res.vmcs_pages[k]
        stale = target.read_physical(_field(vcpu, members, "VCPU.VmcsRegionPa"), 4096)
        assert stale[:8] == region[:8] and stale[8:] != region[8:]
        compared = 0
        for enc, off, width, flags in layout:
            if enc not in res.vmreads[k]:
                continue
            value = int.from_bytes(region[off:off + width], "little")
            if flags & ROTATED8:
                value = ((value >> 8) | (value << 24)) & 0xFFFFFFFF
            assert value == res.vmreads[k][enc], "cpu %d field 0x%x" % (k, enc)
            compared += 1
        assert compared >= 150


def test_snapshot_matches_vmread_for_fields_that_do_not_change(lab_run):
    res, target = lab_run
    _, h, members, _ = _descriptor(target)
    snap_off = members["VCPU.Snapshot"][0]
    for k in range(CPUS):
        vcpu = target.read_virtual(h["VcpuArrayVa"] + k * h["VcpuSize"], h["VcpuSize"])
        count, error, reason, exit_reason, seq = SNAP_HEADER.unpack_from(vcpu, snap_off)
        assert count == CATALOGUE and error == 0 and seq % 2 == 0 and seq > 0
        entries = dict((e, v) for e, _pad, v in (SNAP_ENTRY.unpack_from(vcpu, snap_off + 24 + 16 * i)
                                                 for i in range(count)))
        assert entries[0x4402] == exit_reason  # EXIT_REASON field = the exit it was taken at
        for enc, value in entries.items():
            kind = (enc >> 10) & 3
            if kind == 3 or (kind == 0 and enc not in ENTRY_EVENT_FIELDS):  # host state, controls
                assert value == res.vmreads[k][enc], "cpu %d field 0x%x" % (k, enc)


def test_host_stack_pattern_and_vcpu_pointer(lab_run):
    _, target = lab_run
    _, h, members, _ = _descriptor(target)
    for k in range(CPUS):
        vcpu_va = h["VcpuArrayVa"] + k * h["VcpuSize"]
        vcpu = target.read_virtual(vcpu_va, h["VcpuSize"])
        base, size = _field(vcpu, members, "VCPU.HostStack"), _field(vcpu, members, "VCPU.HostStackSize")
        assert size == h["HostStackSize"]
        stack = target.read_virtual(base, size)
        qwords = struct.unpack("<%dQ" % (size // 8), stack)
        assert qwords[-2] == vcpu_va and qwords[-1] == 0
        untouched = next(i for i in range(len(qwords) - 1, -1, -1) if qwords[i] == h["HostStackPattern"])
        used = size - 8 * (untouched + 1)
        assert 64 < used < size // 2, "exit handler used %d bytes of host stack" % used
        assert all(q == h["HostStackPattern"] for q in qwords[:untouched + 1][:len(qwords) // 2])


def test_launch_failure_is_recorded_and_undone(built_driver, lab_images):
    """The lab breaks the last processor's TSS descriptor (type 9, not busy):
    VM entry fails its guest-state check (SDM 27.3.1.2) with exit reason
    33 | bit 31. The driver records it, takes the snapshot, devirtualizes the
    processors already launched and frees everything; the record survives in
    the descriptor (hv.sys .data)."""
    path, res = lab_images("launch-failure", cpus=CPUS, driver=built_driver["mingw"])
    assert not res.loaded and res.load_status == 0xC0000001
    assert res.vmx_after == ["off"] * CPUS and res.leaks == []
    assert all(not cr4 & (1 << 13) for cr4 in res.cr4_after)
    target = ImageTarget(path)
    try:
        _, h, _, blob = _descriptor(target)
    finally:
        target.close()
    assert h["DriverState"] == 3 and h["VmmContextVa"] == 0 and h["VcpuArrayVa"] == 0
    valid, cpu, step, vm_error, status, _pad = struct.unpack_from("<IIIIiI", blob, h["FailureOffset"])
    assert (valid, cpu, step, vm_error, status) == (1, CPUS - 1, 8, 0, -0x3FFFFFFF)
    count, error, reason, exit_reason, seq = SNAP_HEADER.unpack_from(blob, h["FailureOffset"] + 24)
    assert (reason, exit_reason, error, seq % 2) == (5, 0x80000021, 0, 0) and count == CATALOGUE
    entries = dict((e, v) for e, _p, v in (SNAP_ENTRY.unpack_from(blob, h["FailureOffset"] + 48 + 16 * i)
                                           for i in range(count)))
    assert entries[0x4402] == 0x80000021
    assert entries[0x4822] & 0xF == 9  # GUEST_TR_ACCESS_RIGHTS: the broken "available TSS" type


def test_allocation_failure_leaks_nothing(built_driver):
    for k in (1, 2, 3, 7):
        res = run_scenario("alloc-fail:%d" % k, cpus=CPUS, driver=built_driver["clang"], workload=False)
        assert not res.loaded and res.load_status == 0xC000009A, k
        assert res.leaks == [] and res.vmx_after == ["off"] * CPUS, k


def test_snapshot_at_every_exit_when_the_debugger_sets_the_flag(built_driver):
    """SnapshotOnEveryExit (descriptor +0x3C) written from outside, as a
    debugger would: from then on each VM exit refreshes the vCPU snapshot."""
    from emulated_lab.asm import assemble

    with driver_on_one_cpu(built_driver["mingw"]) as (m, kern, img, drv):
        va = img.exports["HvDebugDescriptor"]
        h = parse_header(m.read_virt(va, HEADER.size))
        blob = m.read_virt(va, h["DescriptorSize"])
        members = {n: (o, s) for n, o, s in parse_members(h, blob)}
        # fields this CPU model's VMREAD accepts, per the driver's layout discovery (the set
        # depends on how the emulator was initialised: run_scenario reads CPUID first)
        supported = sum(1 for _e, _o, _w, flags in parse_layout(h, blob) if not flags & 0x04)
        assert supported >= 150
        snap_va = h["VcpuArrayVa"] + members["VCPU.Snapshot"][0]

        def snapshot():
            return SNAP_HEADER.unpack(m.read_virt(snap_va, SNAP_HEADER.size))

        three_cpuids = m.place_code(assemble("cpuid\ncpuid\ncpuid\nret"))
        before = snapshot()
        r = m.run(0, three_cpuids, regs={"rax": 0, "rcx": 0})
        assert [e.basic_reason for e in r.exits] == [10, 10, 10]
        assert snapshot() == before, "flag off: no snapshot"

        m.write_virt(va + 0x3C, (1).to_bytes(4, "little"))
        r = m.run(0, three_cpuids, regs={"rax": 0, "rcx": 0})
        assert [e.basic_reason for e in r.exits] == [10, 10, 10]
        count, error, reason, exit_reason, seq = snapshot()
        assert (count, error, reason, exit_reason) == (supported, 0, 3, 10)
        assert seq == before[4] + 2 * 3
        entries = dict((e, v) for e, _p, v in (SNAP_ENTRY.unpack(m.read_virt(snap_va + 24 + 16 * i, 16))
                                               for i in range(count)))
        assert entries[0x681E] == three_cpuids + 4  # GUEST_RIP: the third CPUID (2 bytes each)

        unload = kern.driver_unload_routine(drv)
        assert kern.call_on_thread(unload, (drv,)).stop == "return"
        assert kern.leaks() == []


def test_triple_fault_is_recorded_then_bugchecks(built_driver):
    """A guest with an empty IDT turns INT3 into a triple fault (SDM Vol. 3
    6.15 "Double Fault Exception"): VM exit reason 2. The driver records it,
    takes the snapshot and stops the machine with bugcheck 0x48564C42
    (P1 1 = triple fault, P2 exit reason, P3 vCPU, P4 guest RIP)."""
    from emulated_lab.asm import assemble
    from emulated_lab.nt.kernel import BugCheck

    with driver_on_one_cpu(built_driver["clang"]) as (m, _kern, img, _drv):
        code = m.place_code(assemble("push 0\npush 0\nlidt [rsp+6]\nint3\nret"))
        with pytest.raises(BugCheck) as bc:
            m.run(0, code)
        va = img.exports["HvDebugDescriptor"]
        h = parse_header(m.read_virt(va, HEADER.size))
        members = {n: o for n, o, _ in parse_members(h, m.read_virt(va, h["DescriptorSize"]))}
        vcpu_va = h["VcpuArrayVa"]
        assert bc.value.code == 0x48564C42
        assert bc.value.params == [1, 2, vcpu_va, code + 9]  # 9 = offset of INT3
        vcpu = m.read_virt(vcpu_va, h["VcpuSize"])
        assert int.from_bytes(vcpu[members["VCPU.TripleFault"]:][:4], "little") == 1
        count, error, reason, exit_reason, seq = SNAP_HEADER.unpack_from(vcpu, members["VCPU.Snapshot"])
        assert (reason, exit_reason, error, seq % 2) == (6, 2, 0, 0) and count >= 150
