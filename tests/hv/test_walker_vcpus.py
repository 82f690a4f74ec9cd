"""HvWalker's vCPU helpers on the builder's two-vCPU image, with a vCPU altered by hand where a case needs one."""
from __future__ import annotations

import struct

import pytest

from windbg_ext.hv import descriptor as hd
from windbg_ext.hv import model as M
from windbg_ext.hv import walker as W
from windbg_ext.target.image import ImageTarget


@pytest.fixture
def walker(image2):
    t = ImageTarget(image2)
    try:
        yield W.HvWalker(t)
    finally:
        t.close()


def _altered(v, **members):
    """vCPU v with some members rewritten in its bytes (at the member table's offsets)."""
    data = bytearray(v.record.data)
    for name, value in members.items():
        m = v.record.layout.member(name)
        data[m.offset:m.offset + m.size] = value.to_bytes(m.size, "little")
    return M.Vcpu(v.index, M.Record(v.record.layout, bytes(data), v.address), v.desc)


def test_reload_reads_the_vcpu_again(walker):
    first = walker.vcpu(1)
    assert walker.vcpu(1) is first
    again = walker.reload_vcpu(1)
    assert again is not first and again.index == 1 and again.record.data == first.record.data
    assert walker.vcpu(1) is again and walker.vcpu(0).index == 0


def test_msr_bitmap_and_host_stack_messages(walker):
    v = walker.vcpu(0)
    assert walker.msr_bitmap_pa(0) == v.MsrBitmapPa != 0
    walker._vcpus[0] = _altered(v, MsrBitmapPa=0)
    with pytest.raises(W.HvError) as e:
        walker.msr_bitmap_pa(0)
    assert str(e.value) == "vCPU 0 has no MSR bitmap (MsrBitmapPa is 0; state: launched)"
    base, size = v.host_stack()
    assert len(walker.read_host_stack(v)) == size
    with pytest.raises(W.HvError) as e:
        walker.read_host_stack(_altered(v, HostStack=0xFFFF_8000_DEAD_0000))
    assert str(e.value).startswith("cannot read vCPU 0's host stack at 0xffff8000dead0000 (%d bytes): " % size)


def test_a_corrupt_failure_snapshot_points_at_check(state2):
    dsize = state2.facts["sizeof"]["HV_DEBUG_DESCRIPTOR"]
    data = bytearray(state2.blob[:dsize])
    fo = struct.unpack_from("<I", data, 124)[0]                 # FailureOffset (hv_debug.h, +0x7C)
    struct.pack_into("<IIIIiI", data, fo, 1, 1, 8, 7, 0, 0)     # valid, processor 1, step 8 (VMLAUNCH)
    struct.pack_into("<I", data, fo + 24, 1)                    # its snapshot: Count 1
    assert W.failure_commands(hd.parse(bytes(data))) == ["vmcs 1 --source failure", "verify 1"]
    struct.pack_into("<I", data, fo + 24, 0xFFFF)               # Count past the capacity: corrupt
    assert W.failure_commands(hd.parse(bytes(data))) == ["check"]
