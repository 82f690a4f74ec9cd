"""hv/model.py on structures laid out here by hand: member tables and bytes written with struct, values
worked out by hand (little-endian, as on x64), so every expected value is independent of the reader."""
from __future__ import annotations

import struct

import pytest

from windbg_ext.arch import capabilities as C
from windbg_ext.hv import descriptor as hd
from windbg_ext.hv import model as M


def _layout(prefix, size, **members):
    layout = hd.StructLayout(prefix, size)
    layout.members.update({name: hd.Member(off, n) for name, (off, n) in members.items()})
    return layout


def _error(call):
    with pytest.raises(hd.DescriptorError) as e:
        call()
    return str(e.value)


def test_record_reads_members_at_their_offsets():
    layout = _layout("VCPU", 24, State=(0, 4), Status=(4, 4), HostStack=(8, 8), Counts=(16, 6))
    data = struct.pack("<IiQ", 2, -0x3FFFFFFF, 0xFFFFF80012345000) + struct.pack("<IH", 7, 9)
    rec = M.Record(layout, data, 0x1000)
    assert rec.u("State") == 2 and rec.s("Status") == -0x3FFFFFFF and rec.u("Status") == 0xC0000001
    assert rec.u("HostStack") == 0xFFFFF80012345000 and rec.raw("State") == b"\x02\0\0\0"
    assert rec.u32_array("Counts") == [7]            # 6 bytes: one whole dword, the rest ignored
    assert rec.get("State") == 2 and rec.get("Missing") is None and rec.get("Missing", 5) == 5
    assert rec.has("State") and not rec.has("Missing")
    short = M.Record(layout, data[:15], 0x1000)
    assert _error(lambda: short.u("HostStack")) == "VCPU.HostStack at 0x1000 lies past the 15 bytes read"
    assert M.Record(layout, data[:16], 0x1000).u("HostStack") == 0xFFFFF80012345000


SNAP = _layout("SNAP", 64, Count=(0, 4), VmInstructionError=(4, 4), Reason=(8, 4), ExitReason=(12, 4),
               Sequence=(16, 8), Entries=(24, 40))


def _snapshot_bytes(count, reason=3, sequence=2, entries=((0x681E, 0x1000), (0x4402, 10))):
    head = struct.pack("<IIIIQ", count, 7, reason, 10, sequence)
    body = b"".join(struct.pack("<IIQ", e, 0, v) for e, v in entries)
    return (head + body).ljust(64, b"\0")


def test_snapshot_values_reason_and_tearing():
    s = M.Snapshot(M.Record(SNAP, _snapshot_bytes(2), 0x2000), 16, 2)
    assert (s.count, s.vm_instruction_error, s.reason_code, s.exit_reason, s.sequence) == (2, 7, 3, 10, 2)
    assert s.values == {0x681E: 0x1000, 0x4402: 10} and s.reason == "every exit" and not s.torn
    assert M.Snapshot(M.Record(SNAP, _snapshot_bytes(1), 0), 16, 2).values == {0x681E: 0x1000}
    odd = M.Snapshot(M.Record(SNAP, _snapshot_bytes(0, reason=42, sequence=3), 0), 16, 2)
    assert odd.torn and odd.reason == "unknown (42)" and odd.values == {}
    # capacity 2 and 40 bytes of entries (two of 16): a count of 3 is corrupt either way
    assert _error(lambda: M.Snapshot(M.Record(SNAP, _snapshot_bytes(3), 0x2000), 16, 2)) == \
        "VMCS snapshot at 0x2000 is corrupt: Count 3 exceeds its capacity 2"
    assert _error(lambda: M.Snapshot(M.Record(SNAP, _snapshot_bytes(3), 0x2000), 16, 8)) == \
        "VMCS snapshot at 0x2000 is corrupt: Count 3 exceeds its capacity 2"
    # two entries of 20 bytes fill the 40 bytes exactly: not corrupt
    assert M.Snapshot(M.Record(SNAP, _snapshot_bytes(2), 0x2000), 20, 8).count == 2
    assert _error(lambda: M.Snapshot(M.Record(SNAP, _snapshot_bytes(2), 0x2000), 24, 8)) == \
        "VMCS snapshot at 0x2000 is corrupt: Count 2 exceeds its capacity 1"


VCPU = _layout("VCPU", 112, State=(0, 4), Status=(4, 4), FailedStep=(8, 4), HostStack=(16, 8),
               HostStackSize=(24, 4), Snapshot=(48, 64))


class _Desc:
    """What model reads of a descriptor: the structures and a few header fields."""

    def __init__(self, structs, **header):
        self.structs = structs
        self.__dict__.update(dict(dict(HostStackSize=0x6000, SnapshotEntrySize=16, SnapshotCapacity=2,
                                       VcpuSize=112, failure=None), **header))


def _vcpu_bytes(state=2, status=0, step=0, stack_size=0x8000, snapshot=None):
    head = struct.pack("<IiI4xQI", state, status, step, 0xFFFFF80000100000, stack_size).ljust(48, b"\0")
    return head + (snapshot if snapshot is not None else _snapshot_bytes(2))


def test_vcpu_views():
    desc = _Desc({"SNAP": SNAP, "VCPU": VCPU})
    v = M.vcpus_from_array(desc, _vcpu_bytes(status=-0x3FFFFFFF, step=4), 0x5000, first=3)[0]
    assert (v.index, v.address, v.state, v.failed_step, v.status) == (3, 0x5000, "launched", "VMXON", 0xC0000001)
    assert v.State == 2 and v.host_stack() == (0xFFFFF80000100000, 0x8000)
    snap = v.snapshot()
    assert snap.values == {0x681E: 0x1000, 0x4402: 10} and snap.record.address == 0x5000 + 48
    with pytest.raises(AttributeError) as e:
        v.lowercase_name
    assert e.value.args == ("lowercase_name",)
    assert _error(lambda: v.NoSuchMember).startswith("the driver's member table has no VCPU.NoSuchMember")
    odd = M.vcpus_from_array(desc, _vcpu_bytes(state=9, step=99, stack_size=0), 0)[0]
    assert odd.state == "unknown (9)" and odd.failed_step == "unknown (99)"
    assert odd.host_stack()[1] == 0x6000      # no size in the vCPU: the descriptor's HostStackSize
    assert odd.exit_counts() == {}
    no_step = _layout("VCPU", 112, State=(0, 4))
    assert M.Vcpu(0, M.Record(no_step, _vcpu_bytes(), 0), desc).failed_step == "none"
    assert _error(lambda: M.vcpus_from_array(_Desc({"VCPU": VCPU}), _vcpu_bytes(), 0)[0].snapshot()) == \
        "the driver's member table describes no SNAP.* members"


def test_vcpus_from_array_strides_and_exit_counts():
    counts = _layout("VCPU", 16, State=(0, 4), ExitCountsByReason=(4, 12))
    data = struct.pack("<IIII", 2, 0, 5, 1) + struct.pack("<IIII", 1, 3, 0, 0) + b"\x02\0"
    vcpus = M.vcpus_from_array(_Desc({"VCPU": counts}, VcpuSize=16), data, 0x100)
    assert [(v.index, v.address, v.state) for v in vcpus] == [(0, 0x100, "launched"), (1, 0x110, "VMX root")]
    assert [len(v.record.data) for v in vcpus] == [16, 16]       # each vCPU gets its own 16 bytes, no more
    assert vcpus[0].exit_counts() == {1: 5, 2: 1} and vcpus[1].exit_counts() == {0: 3}
    many = M.Record(counts, struct.pack("<IIII", 0, 0x80000000, 0xFFFFFFFF, 0), 0)   # counts at +4, unsigned
    assert M.Vcpu(0, many, None).exit_counts() == {0: 0x80000000, 1: 0xFFFFFFFF}
    assert _error(lambda: M.vcpus_from_array(_Desc({}), data, 0)) == \
        "the driver's member table describes no VCPU.* members"


def test_vmm_capability_members():
    names = dict(CapBasic=(0, 8), CapPinbased=(8, 8), CapProcbased=(16, 8), CapExit=(24, 8), CapEntry=(32, 8),
                 CapMisc=(40, 8))
    vmm = M.Vmm(M.Record(_layout("VMM", 48, **names), struct.pack("<Q", 1 << 55 | 4).ljust(48, b"\0"), 0))
    assert vmm.vmx_basic == 1 << 55 | 4
    # SDM A.1/A.3: with IA32_VMX_BASIC bit 55 the control members hold the TRUE_* MSRs 48DH..490H
    assert vmm.capability_members(1 << 55) == {0x480: "CapBasic", 0x485: "CapMisc", 0x48D: "CapPinbased",
                                               0x48E: "CapProcbased", 0x48F: "CapExit", 0x490: "CapEntry"}
    assert vmm.capability_members(0) == {0x480: "CapBasic", 0x485: "CapMisc", 0x481: "CapPinbased",
                                         0x482: "CapProcbased", 0x483: "CapExit", 0x484: "CapEntry"}
    assert C.IA32_VMX_BASIC == 0x480
    bare = M.Vmm(M.Record(_layout("VMM", 8, ProcessorCount=(0, 4)), bytes(8), 0))
    assert bare.vmx_basic == 0 and bare.capability_members(0) == {}


def test_failure_snapshot():
    data = _snapshot_bytes(1)
    record = hd.FailureRecord(True, 1, 8, 7, 0xC0000001, data, 0x9000)
    snap = M.failure_snapshot(_Desc({"SNAP": SNAP}, failure=record))
    assert snap.values == {0x681E: 0x1000} and snap.record.address == 0x9000
    assert M.failure_snapshot(_Desc({"SNAP": SNAP}, failure=record._replace(valid=False))) is None
    assert M.failure_snapshot(_Desc({"SNAP": SNAP})) is None
    assert M.failure_snapshot(_Desc({}, failure=record)) is None
