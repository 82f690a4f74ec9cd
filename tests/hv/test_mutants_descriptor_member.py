"""A member of size 0 in the driver's member table (issue 16: descriptor.parse__mutmut_110). hv.sys writes each
entry from offsetof/sizeof (driver/core/debug_descriptor.c), so 0 bytes means damaged memory; the message says
that and what to do, also for a SNAP.* member, whose structure's size is not known when it is read (it is the
size of VCPU.Snapshot, taken after the table). Bytes are the host compiler's descriptor (builder.py); entries
are 40 bytes from 0xA0 (hv_debug.h: name[32], offset, size), entry 0 VMM.ProcessorCount (0, 4), entry 57
SNAP.Count (0, 4)."""
from __future__ import annotations

import struct

import pytest

from windbg_ext.hv import descriptor as hd


def _with_size(state2, index, size):
    data = bytearray(state2.blob[:state2.facts["sizeof"]["HV_DEBUG_DESCRIPTOR"]])
    at = 0xA0 + 40 * index
    struct.pack_into("<I", data, at + 36, size)
    return bytes(data), data[at:at + 32].rstrip(b"\0").decode()


@pytest.mark.parametrize("index,name", [(0, "VMM.ProcessorCount"), (57, "SNAP.Count")])
def test_a_zero_size_member_says_the_memory_is_damaged(state2, index, name):
    data, found = _with_size(state2, index, 0)
    assert found == name
    with pytest.raises(hd.DescriptorError) as e:
        hd.parse(data, 0x5000)
    assert str(e.value) == (
        "hv debug descriptor at 0x5000 is corrupt: member %s (offset 0x0) is 0 bytes long, but hv.sys records each "
        "member's sizeof, never 0: the descriptor's memory is damaged (reload hv.sys for a fresh one)" % name)


def test_one_byte_members_are_fine_in_either_kind_of_structure(state2):
    for index in (0, 57):
        data, _ = _with_size(state2, index, 1)
        d = hd.parse(data)
        assert d.structs["VMM"].member("ProcessorCount") == (0, 1 if index == 0 else 4)
        assert d.structs["SNAP"].member("Count") == (0, 1 if index == 57 else 4)
