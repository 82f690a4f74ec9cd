"""The driver's debug descriptor (driver/include/hv_debug.h, docs/debug-descriptor.md).

Pure parsing: bytes in, a Descriptor out, or DescriptorError with one line
naming what is wrong and where. The fixed header is frozen per version (the
header's own static asserts keep it true); the driver's structures are known
only through the member table {name, offset, size} the driver generates with
offsetof, so a member that moves costs nothing and a member we do not know is
ignored.
"""
from __future__ import annotations

import struct
from typing import Dict, List, NamedTuple, Optional

from windbg_ext.target.base import TargetFormatError

MAGIC_BYTES = b"HVLABDBG"           # in memory order (HV_DEBUG_MAGIC)
MAGIC = struct.unpack("<Q", MAGIC_BYTES)[0]
SUPPORTED_VERSIONS = (1,)

# Version 1 fixed header (hv_debug.h, HV_DEBUG_DESCRIPTOR up to Members[]).
_HEADER_FIELDS = (
    ("Magic", "Q"), ("Version", "I"), ("DescriptorSize", "I"), ("HeaderSize", "I"), ("PointerSize", "I"),
    ("VmmContextSize", "I"), ("VcpuSize", "I"), ("SelfVa", "Q"), ("VmmContextVa", "Q"), ("VcpuArrayVa", "Q"),
    ("VcpuCount", "I"), ("SnapshotOnEveryExit", "I"), ("SnapshotCapacity", "I"), ("SnapshotEntrySize", "I"),
    ("HostStackSize", "I"), ("DriverState", "I"), ("HostStackPattern", "Q"), ("MemberCount", "I"),
    ("MemberEntrySize", "I"), ("MembersOffset", "I"), ("LayoutStatus", "I"), ("LayoutCount", "I"),
    ("LayoutEntrySize", "I"), ("LayoutOffset", "I"), ("LayoutRevisionId", "I"), ("LoadStatus", "i"),
    ("FailureOffset", "I"), ("Producer", "32s"),
)
HEADER = struct.Struct("<" + "".join(f for _, f in _HEADER_FIELDS))
HEADER_SIZE = HEADER.size  # 0xA0: where Members[] starts in version 1
assert HEADER_SIZE == 0xA0



def header_offsets() -> Dict[str, Member]:
    """{field: (offset, size)} of the version 1 header, as this parser reads it."""
    out: Dict[str, Member] = {}
    off = 0
    for name, fmt in _HEADER_FIELDS:
        size = struct.calcsize("<" + fmt)
        out[name] = Member(off, size)
        off += size
    return out


MEMBER_NAME_LEN = 32
MEMBER = struct.Struct("<32sII")     # HV_DEBUG_MEMBER
FAILURE = struct.Struct("<IIIIiI")   # HV_FAILURE_RECORD header; its HV_VMCS_SNAPSHOT follows at +24
LAYOUT = struct.Struct("<IHBB")      # HV_VMCS_LAYOUT_ENTRY
SNAP_ENTRY = struct.Struct("<IIQ")   # HV_VMCS_SNAPSHOT_ENTRY

# Sanity bounds: beyond these a count or size is corruption, not a big machine.
MAX_VCPUS = 2048          # Windows supports at most 2048 logical processors
MAX_STRUCT_SIZE = 1 << 20
MAX_DESCRIPTOR_SIZE = 1 << 20
MAX_TABLE_ENTRIES = 4096

DRIVER_STATES = {0: "not loaded", 1: "loading", 2: "running", 3: "failed", 4: "unloaded"}
LAYOUT_STATUSES = {0: "not discovered", 1: "discovered", 2: "failed"}

LAYOUT_FLAG_FOUND = 0x01
LAYOUT_FLAG_ROTATED8 = 0x02
LAYOUT_FLAG_UNSUPPORTED = 0x04
LAYOUT_FLAG_UNMATCHED = 0x08


class DescriptorError(TargetFormatError):
    """The bytes are not a descriptor this suite can use; one line for the user
    (a TargetError: the front end prints it as one line, exit 2)."""


class Member(NamedTuple):
    offset: int
    size: int


class StructLayout:
    """One driver structure as the member table describes it."""

    def __init__(self, prefix: str, size: Optional[int]) -> None:
        self.prefix = prefix
        self.size = size
        self.members: Dict[str, Member] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.members

    def member(self, name: str) -> Member:
        try:
            return self.members[name]
        except KeyError:
            raise DescriptorError("the driver's member table has no %s.%s (descriptor from another build of "
                                  "hv.sys? rebuild or update windbg_ext)" % (self.prefix, name))


class LayoutEntry(NamedTuple):
    encoding: int
    offset: int
    width: int
    flags: int

    @property
    def found(self) -> bool:
        return bool(self.flags & LAYOUT_FLAG_FOUND)


class FailureRecord(NamedTuple):
    """HV_FAILURE_RECORD: the last failure, kept in the descriptor so it survives the driver's cleanup."""
    valid: bool
    processor: int
    failed_step: int
    vm_instruction_error: int
    status: int
    snapshot_bytes: bytes   # an HV_VMCS_SNAPSHOT (SNAP.* members)
    address: int            # of the snapshot


class Descriptor:
    def __init__(self, header: Dict[str, object], structs: Dict[str, StructLayout],
                 layout: List[LayoutEntry], address: int) -> None:
        self.header = header
        self.structs = structs
        self.layout = layout
        self.address = address  # where it was read (VA by symbol, PA by scan)
        self.failure: Optional[FailureRecord] = None

    def __getattr__(self, name: str):
        header = self.__dict__.get("header", {})
        if name in header:
            return header[name]
        raise AttributeError(name)

    @property
    def producer(self) -> str:
        return self.header["Producer"]  # type: ignore[return-value]

    @property
    def driver_state(self) -> str:
        return DRIVER_STATES.get(self.DriverState, "unknown (%d)" % self.DriverState)

    @property
    def layout_status(self) -> str:
        return LAYOUT_STATUSES.get(self.LayoutStatus, "unknown (%d)" % self.LayoutStatus)

    @property
    def tables_end(self) -> int:
        """Bytes of the descriptor a parser needs: through the end of both tables."""
        return max(self.MembersOffset + self.MemberCount * self.MemberEntrySize,
                   self.LayoutOffset + self.LayoutCount * self.LayoutEntrySize)

    def layout_by_encoding(self) -> Dict[int, LayoutEntry]:
        return {e.encoding: e for e in self.layout}


def _where(address: int) -> str:
    return "at 0x%x" % address


def parse_header(data: bytes, address: int = 0) -> Dict[str, object]:
    """Checks magic, version and the sizes/counts of the fixed header; returns its fields."""
    where = _where(address)
    if len(data) < 8:
        raise DescriptorError("hv debug descriptor %s: only %d bytes, not even the magic" % (where, len(data)))
    magic = struct.unpack_from("<Q", data)[0]
    if magic != MAGIC:
        raise DescriptorError("no hv debug descriptor %s: magic is %r, expected b'HVLABDBG'"
                              % (where, data[:8]))
    if len(data) >= 12:
        version = struct.unpack_from("<I", data, 8)[0]
        if version not in SUPPORTED_VERSIONS:
            raise DescriptorError("hv debug descriptor %s: version %d, but this windbg_ext reads version %s "
                                  "(update it to match hv.sys)"
                                  % (where, version, "/".join(map(str, SUPPORTED_VERSIONS))))
    if len(data) < HEADER_SIZE:
        raise DescriptorError("hv debug descriptor %s is truncated: %d bytes, the version 1 header is %d"
                              % (where, len(data), HEADER_SIZE))
    values = HEADER.unpack_from(data)
    h: Dict[str, object] = {name: v for (name, _), v in zip(_HEADER_FIELDS, values)}
    h["Producer"] = h["Producer"].split(b"\0", 1)[0].decode("ascii", "replace")  # type: ignore[union-attr]

    def bad(what: str) -> DescriptorError:
        return DescriptorError("hv debug descriptor %s (corrupt): %s" % (where, what))

    size = h["DescriptorSize"]
    if not HEADER_SIZE <= size <= MAX_DESCRIPTOR_SIZE:  # type: ignore[operator]
        raise bad("DescriptorSize %d is outside %d..%d" % (size, HEADER_SIZE, MAX_DESCRIPTOR_SIZE))
    if h["HeaderSize"] != HEADER_SIZE:
        raise bad("HeaderSize %d, version 1 has %d" % (h["HeaderSize"], HEADER_SIZE))
    if h["PointerSize"] != 8:
        raise bad("PointerSize %d (only x64 drivers, 8, are supported)" % h["PointerSize"])
    for key in ("VmmContextSize", "VcpuSize"):
        if not 0 < h[key] <= MAX_STRUCT_SIZE:  # type: ignore[operator]
            raise bad("%s %d is absurd (expected 1..%d)" % (key, h[key], MAX_STRUCT_SIZE))
    count = h["VcpuCount"]
    if count > MAX_VCPUS:  # type: ignore[operator]
        raise bad("VcpuCount %d is absurd (Windows has at most %d processors)" % (count, MAX_VCPUS))
    if h["MemberEntrySize"] < MEMBER.size or h["MemberCount"] > MAX_TABLE_ENTRIES:  # type: ignore[operator]
        raise bad("member table of %d entries of %d bytes" % (h["MemberCount"], h["MemberEntrySize"]))
    if h["LayoutEntrySize"] < LAYOUT.size or h["LayoutCount"] > MAX_TABLE_ENTRIES:  # type: ignore[operator]
        raise bad("layout map of %d entries of %d bytes" % (h["LayoutCount"], h["LayoutEntrySize"]))
    if h["SnapshotEntrySize"] < SNAP_ENTRY.size or h["SnapshotCapacity"] > MAX_TABLE_ENTRIES:  # type: ignore[operator]
        raise bad("snapshot of %d entries of %d bytes" % (h["SnapshotCapacity"], h["SnapshotEntrySize"]))
    fo = h["FailureOffset"]
    if fo and (fo < HEADER_SIZE or fo + FAILURE.size > size):  # type: ignore[operator]
        raise bad("FailureOffset 0x%x lies outside the descriptor (0x%x..0x%x)" % (fo, HEADER_SIZE, size))
    for table, off, n, esz in (("member table", "MembersOffset", "MemberCount", "MemberEntrySize"),
                               ("layout map", "LayoutOffset", "LayoutCount", "LayoutEntrySize")):
        start, end = h[off], h[off] + h[n] * h[esz]  # type: ignore[operator]
        if start < HEADER_SIZE or end > size:  # type: ignore[operator]
            raise bad("the %s (0x%x..0x%x) lies outside the descriptor (0x%x..0x%x)"
                      % (table, start, end, HEADER_SIZE, size))
    return h


def parse(data: bytes, address: int = 0) -> Descriptor:
    """Parses a whole descriptor (header and both tables)."""
    h = parse_header(data, address)
    where = _where(address)
    d = Descriptor(h, {}, [], address)
    if len(data) < d.tables_end:
        raise DescriptorError("hv debug descriptor %s is truncated: %d bytes, its tables end at 0x%x"
                              % (where, len(data), d.tables_end))
    sizes = {"VMM": h["VmmContextSize"], "VCPU": h["VcpuSize"], "SNAP": None}
    structs: Dict[str, StructLayout] = {}
    for i in range(h["MemberCount"]):  # type: ignore[arg-type]
        off = h["MembersOffset"] + i * h["MemberEntrySize"]  # type: ignore[operator]
        raw_name, m_off, m_size = MEMBER.unpack_from(data, off)
        if b"\0" not in raw_name:
            raise DescriptorError("hv debug descriptor %s is corrupt: member %d's name is not NUL-terminated"
                                  % (where, i))
        name = raw_name.split(b"\0", 1)[0].decode("ascii", "replace")
        prefix, _, member = name.partition(".")
        if not member:
            continue  # a name we do not understand: newer drivers may add kinds
        layout = structs.setdefault(prefix, StructLayout(prefix, sizes.get(prefix)))
        if m_size == 0:  # said apart: SNAP.*'s structure size is not known yet here, so no size to compare
            raise DescriptorError("hv debug descriptor %s is corrupt: member %s (offset 0x%x) is 0 bytes long, but "
                                  "hv.sys records each member's sizeof, never 0: the descriptor's memory is "
                                  "damaged (reload hv.sys for a fresh one)" % (where, name, m_off))
        limit = layout.size
        if limit is not None and m_off + m_size > limit:
            raise DescriptorError("hv debug descriptor %s is corrupt: member %s (offset 0x%x, %d bytes) does not "
                                  "fit its %d-byte structure" % (where, name, m_off, m_size, limit))
        layout.members[member] = Member(m_off, m_size)
    # The snapshot's size is that of the vCPU member holding it.
    if "SNAP" in structs and "VCPU" in structs and "Snapshot" in structs["VCPU"]:
        snap_size = structs["VCPU"].members["Snapshot"].size
        structs["SNAP"].size = snap_size
        for name, m in structs["SNAP"].members.items():
            if m.offset + m.size > snap_size:
                raise DescriptorError("hv debug descriptor %s is corrupt: SNAP.%s lies outside the %d-byte "
                                      "snapshot" % (where, name, snap_size))
    layout_entries = []
    for i in range(h["LayoutCount"]):  # type: ignore[arg-type]
        off = h["LayoutOffset"] + i * h["LayoutEntrySize"]  # type: ignore[operator]
        layout_entries.append(LayoutEntry(*LAYOUT.unpack_from(data, off)))
    d.structs = structs
    d.layout = layout_entries
    fo = h["FailureOffset"]
    snap = structs.get("SNAP")
    if fo and snap is not None and snap.size and fo + FAILURE.size + snap.size <= min(len(data), h["DescriptorSize"]):
        valid, cpu, step, err, status, _ = FAILURE.unpack_from(data, fo)  # type: ignore[arg-type]
        start = fo + FAILURE.size  # type: ignore[operator]
        d.failure = FailureRecord(bool(valid), cpu, step, err, status & 0xFFFFFFFF,
                                  bytes(data[start:start + snap.size]), address + start)
    return d
