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


# -- parse(): the member table and the failure record -------------------------------------------------
# The compiler's member table starts at 0xA0, entries of 40 bytes (name[32], offset, size): entry 0 is
# VMM.ProcessorCount (0, 4), entry 27 VMM.PowerTransitions (188, 4) ending the 192-byte VMM context,
# entry 62 SNAP.Entries (24, 4096) ending the 4120-byte snapshot.
def _member(data, index, name=None, offset=None, size=None):
    data = bytearray(data)
    at = 0xA0 + 40 * index
    if name is not None:
        data[at:at + 32] = name.ljust(32, b"\0")
    if offset is not None:
        struct.pack_into("<I", data, at + 32, offset)
    if size is not None:
        struct.pack_into("<I", data, at + 36, size)
    return bytes(data)


def _parse_error(data):
    with pytest.raises(hd.DescriptorError) as e:
        hd.parse(data)
    return str(e.value)


def test_member_table_entries(header):
    good = header()
    d = hd.parse(good)
    assert d.structs["VMM"].member("PowerTransitions") == (188, 4) and d.structs["SNAP"].size == 4120
    assert _parse_error(_member(good, 27, size=5)) == ("hv debug descriptor at 0x0 is corrupt: member "
                                                      "VMM.PowerTransitions (offset 0xbc, 5 bytes) does not fit its "
                                                      "192-byte structure")
    assert _parse_error(_member(good, 62, size=4097)) == \
        "hv debug descriptor at 0x0 is corrupt: SNAP.Entries lies outside the 4120-byte snapshot"
    assert _parse_error(_member(good, 3, name=b"A" * 32)) == \
        "hv debug descriptor at 0x0 is corrupt: member 3's name is not NUL-terminated"
    # a name without "STRUCT." is a kind this parser does not know: skipped, not an error
    skipped = hd.parse(_member(good, 0, name=b"ProcessorCount"))
    assert "ProcessorCount" not in skipped.structs["VMM"] and "ProcessorCount" not in skipped.structs
    with pytest.raises(hd.DescriptorError) as e:
        skipped.structs["VMM"].member("ProcessorCount")
    assert str(e.value) == ("the driver's member table has no VMM.ProcessorCount (descriptor from another build of "
                            "hv.sys? rebuild or update windbg_ext)")


def test_truncated_tables_and_the_failure_record(header):
    good = header()
    # tables end at max(0xA0 + 63 * 40, 4000 + 70 * 8) = 4560 = 0x11d0
    assert _parse_error(good[:4559]) == "hv debug descriptor at 0x0 is truncated: 4559 bytes, its tables end at 0x11d0"
    assert hd.parse(good[:4560]).failure is None
    # the failure record: 24-byte header at 6048 (valid, processor, step, error, status (signed), pad),
    # then the 4120-byte snapshot up to 10192, the end of the descriptor
    data = bytearray(good)
    struct.pack_into("<IIIIiI", data, 6048, 1, 1, 5, 7, -0x3FFFFFFF, 0)
    data[6072:6072 + 4120] = bytes(range(256)) * 16 + bytes(24)
    f = hd.parse(bytes(data), 0x5000).failure
    assert f == (True, 1, 5, 7, 0xC0000001, bytes(range(256)) * 16 + bytes(24), 0x5000 + 6072)
    assert hd.parse(bytes(data[:-1])).failure is None
    assert hd.parse(header(FailureOffset=0)).failure is None


def test_descriptor_views(header):
    d = hd.parse(header())
    assert d.driver_state == "running" and d.layout_status == "discovered" and d.tables_end == 4560
    odd = hd.parse(header(DriverState=9, LayoutStatus=7))
    assert odd.driver_state == "unknown (9)" and odd.layout_status == "unknown (7)"
    assert [hd.parse(header(DriverState=s)).driver_state for s in range(5)] == \
        ["not loaded", "loading", "running", "failed", "unloaded"]
    with pytest.raises(AttributeError):
        d.NoSuchHeaderField
    by_encoding = d.layout_by_encoding()
    assert len(by_encoding) == len(d.layout) and all(by_encoding[e.encoding] == e for e in d.layout)
    assert hd.LayoutEntry(0x681E, 8, 8, 1).found and not hd.LayoutEntry(0x681E, 8, 8, 2).found


def test_producer_version_and_addresses_in_messages(header, state2):
    d = hd.parse(header())
    raw = state2.blob[0x80:0xA0]   # hv_debug.h: char Producer[32] at 0x80, "hvlab hv.sys <version>", NUL-padded
    assert d.producer == raw.split(b"\0")[0].decode() and d.producer.startswith("hvlab hv.sys ")
    assert "Producer" in d.header and d.Producer == d.producer
    with pytest.raises(hd.DescriptorError) as e:
        hd.parse_header(b"HVLAB")
    assert str(e.value) == "hv debug descriptor at 0x0: only 5 bytes, not even the magic"
    with pytest.raises(hd.DescriptorError) as e:
        hd.parse(header(HeaderSize=0), 0x1000)
    assert str(e.value) == "hv debug descriptor at 0x1000 (corrupt): HeaderSize 0, version 1 has 160"
    # the version is unsigned: 0xFFFFFFFF is 4294967295, not -1
    assert _error(header(Version=0xFFFFFFFF)).startswith("hv debug descriptor at 0x0: version 4294967295, but")


def test_vcpu_members_fit_the_vcpu_and_optional_snapshot_parts(header):
    good = header()
    # entry 56 is VCPU.Snapshot (480, 4120), ending the 4600-byte vCPU
    assert _parse_error(_member(good, 56, size=4121)) == ("hv debug descriptor at 0x0 is corrupt: member "
                                                         "VCPU.Snapshot (offset 0x1e0, 4121 bytes) does not fit its "
                                                         "4600-byte structure")
    # no VCPU.Snapshot member: the snapshot's size stays unknown; no SNAP.* members: no snapshot layout
    no_member = hd.parse(_member(good, 56, name=b"VCPU.NotTheSnapshot"))
    assert no_member.structs["SNAP"].size is None and no_member.failure is None
    no_snap = good
    for i in range(57, 63):
        no_snap = _member(no_snap, i, name=b"SNAQ.Member%d" % i)
    assert "SNAP" not in hd.parse(no_snap).structs
    # the structure is named by what comes before the first dot
    dotted = hd.parse(_member(good, 0, name=b"VMM.Processor.Count"))
    assert dotted.structs["VMM"].member("Processor.Count") == (0, 4)


def test_a_copied_descriptor_keeps_its_header(header):
    import copy
    d = hd.parse(header())
    twin = copy.copy(d)   # copy makes an empty object first and asks it for __setstate__: not a header field
    assert twin.DriverState == d.DriverState and twin.header is d.header
    with pytest.raises(AttributeError) as e:
        d.NoSuchHeaderField
    assert e.value.args == ("NoSuchHeaderField",)
