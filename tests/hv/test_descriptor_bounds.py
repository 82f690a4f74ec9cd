"""parse_header's limits, each on both sides, and its messages word for word.

The descriptor is the one the host C compiler laid out (builder.py, from driver/include); a field is
changed at the offset the compiler reports for it, not the parser's. The limits are the documented
ones (docs/debug-descriptor.md): header 0xA0 bytes, at most 2048 vCPUs (Windows' processor limit),
structures and descriptor up to 1 MiB, tables up to 4096 entries; entry sizes are the compiler's
sizeof (HV_DEBUG_MEMBER 40, HV_VMCS_LAYOUT_ENTRY 8, HV_VMCS_SNAPSHOT_ENTRY 16, HV_FAILURE_RECORD 24)."""
from __future__ import annotations

import struct

import pytest

from windbg_ext.hv import descriptor as hd

MIB = 1 << 20


@pytest.fixture
def header(state2):
    """patch(**fields) -> the compiler's descriptor bytes with those header fields replaced."""
    dsize = state2.facts["sizeof"]["HV_DEBUG_DESCRIPTOR"]
    offsets = state2.facts["header"]

    def patch(**fields):
        data = bytearray(state2.blob[:dsize])
        for name, value in fields.items():
            off, size = offsets[name]
            struct.pack_into("<" + {4: "I", 8: "Q"}[size], data, off, value)
        return bytes(data)
    return patch


def _error(data, address=0):
    with pytest.raises(hd.DescriptorError) as e:
        hd.parse_header(data, address)
    return str(e.value)


def _corrupt(what):
    return "hv debug descriptor at 0x0 (corrupt): " + what


def test_the_compilers_descriptor_is_what_these_cases_assume(header):
    h = hd.parse_header(header())
    assert (h["DescriptorSize"], h["MemberCount"], h["LayoutCount"], h["LayoutOffset"], h["FailureOffset"]) == \
        (10192, 63, 70, 4000, 6048)


def test_short_data_and_magic(header):
    good = header()
    assert _error(good[:7]) == "hv debug descriptor at 0x0: only 7 bytes, not even the magic"
    assert _error(good[:8]) == "hv debug descriptor at 0x0 is truncated: 8 bytes, the version 1 header is 160"
    assert _error(good[:159], 0x1000) == \
        "hv debug descriptor at 0x1000 is truncated: 159 bytes, the version 1 header is 160"
    assert _error(b"HVLABDBX" + good[8:]) == "no hv debug descriptor at 0x0: magic is b'HVLABDBX', expected b'HVLABDBG'"
    two = header(Version=2)
    expected = "hv debug descriptor at 0x0: version 2, but this windbg_ext reads version 1 (update it to match hv.sys)"
    assert _error(two[:12]) == _error(two) == expected
    assert _error(two[:11]).endswith("is truncated: 11 bytes, the version 1 header is 160")


def test_descriptor_and_structure_sizes(header):
    small = dict(FailureOffset=0, MemberCount=0, LayoutCount=0, LayoutOffset=160)
    assert hd.parse_header(header(DescriptorSize=160, **small))["DescriptorSize"] == 160
    assert _error(header(DescriptorSize=159, **small)) == _corrupt("DescriptorSize 159 is outside 160..1048576")
    assert hd.parse_header(header(DescriptorSize=MIB))["DescriptorSize"] == MIB
    assert _error(header(DescriptorSize=MIB + 1)) == _corrupt("DescriptorSize 1048577 is outside 160..1048576")
    assert _error(header(HeaderSize=161)) == _corrupt("HeaderSize 161, version 1 has 160")
    assert _error(header(PointerSize=4)) == _corrupt("PointerSize 4 (only x64 drivers, 8, are supported)")
    for key in ("VmmContextSize", "VcpuSize"):
        assert hd.parse_header(header(**{key: 1}))[key] == 1
        assert hd.parse_header(header(**{key: MIB}))[key] == MIB
        assert _error(header(**{key: 0})) == _corrupt("%s 0 is absurd (expected 1..1048576)" % key)
        assert _error(header(**{key: MIB + 1})) == _corrupt("%s 1048577 is absurd (expected 1..1048576)" % key)
    assert hd.parse_header(header(VcpuCount=2048))["VcpuCount"] == 2048
    assert _error(header(VcpuCount=2049)) == \
        _corrupt("VcpuCount 2049 is absurd (Windows has at most 2048 processors)")


def test_table_entry_sizes_and_counts(header):
    big = dict(DescriptorSize=MIB)
    assert _error(header(MemberEntrySize=39)) == _corrupt("member table of 63 entries of 39 bytes")
    assert hd.parse_header(header(MemberCount=4096, **big))["MemberCount"] == 4096
    assert _error(header(MemberCount=4097, **big)) == _corrupt("member table of 4097 entries of 40 bytes")
    assert _error(header(LayoutEntrySize=7)) == _corrupt("layout map of 70 entries of 7 bytes")
    assert hd.parse_header(header(LayoutCount=4096, **big))["LayoutCount"] == 4096
    assert _error(header(LayoutCount=4097, **big)) == _corrupt("layout map of 4097 entries of 8 bytes")
    assert _error(header(SnapshotEntrySize=15)) == _corrupt("snapshot of 256 entries of 15 bytes")
    assert hd.parse_header(header(SnapshotCapacity=4096))["SnapshotCapacity"] == 4096
    assert _error(header(SnapshotCapacity=4097)) == _corrupt("snapshot of 4097 entries of 16 bytes")


def test_failure_record_and_tables_inside_the_descriptor(header):
    # 10192 = 0x27d0 bytes; the failure record header is 24 bytes
    assert hd.parse_header(header(FailureOffset=0))["FailureOffset"] == 0
    assert hd.parse_header(header(FailureOffset=160))["FailureOffset"] == 160
    assert hd.parse_header(header(FailureOffset=10192 - 24))["FailureOffset"] == 10168
    for fo in (159, 10169):
        assert _error(header(FailureOffset=fo)) == \
            _corrupt("FailureOffset 0x%x lies outside the descriptor (0xa0..0x27d0)" % fo)
    # the member table: 63 entries of 40 bytes = 2520; the layout map: 70 of 8 = 560
    assert _error(header(MembersOffset=159)) == \
        _corrupt("the member table (0x9f..0xa77) lies outside the descriptor (0xa0..0x27d0)")
    assert hd.parse_header(header(LayoutOffset=10192 - 560))["LayoutOffset"] == 9632
    assert _error(header(LayoutOffset=9633)) == \
        _corrupt("the layout map (0x25a1..0x27d1) lies outside the descriptor (0xa0..0x27d0)")
    assert _error(header(MembersOffset=10192 - 2520 + 1)).startswith(_corrupt("the member table (0x1df9..0x27d1)"))
