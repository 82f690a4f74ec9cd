"""Reads HvDebugDescriptor out of a hv.sys file (the static initializer),
independently of windbg_ext: the test's own reading of the documented
format (docs/debug-descriptor.md)."""
import struct

import pefile

HEADER = struct.Struct("<QIIIIIIQQQIIIIIIQIIIIIIIIiI32s")
HEADER_FIELDS = ("Magic Version DescriptorSize HeaderSize PointerSize VmmContextSize VcpuSize SelfVa "
                 "VmmContextVa VcpuArrayVa VcpuCount SnapshotOnEveryExit SnapshotCapacity SnapshotEntrySize "
                 "HostStackSize DriverState HostStackPattern MemberCount MemberEntrySize MembersOffset "
                 "LayoutStatus LayoutCount LayoutEntrySize LayoutOffset LayoutRevisionId LoadStatus "
                 "FailureOffset Producer").split()
MEMBER = struct.Struct("<32sII")
LAYOUT = struct.Struct("<IHBB")
SNAP_HEADER = struct.Struct("<IIIIQ")
SNAP_ENTRY = struct.Struct("<IIQ")


def export_rva(pe, name):
    for sym in pe.DIRECTORY_ENTRY_EXPORT.symbols:
        if sym.name == name.encode():
            return sym.address
    raise KeyError(name)


def parse_header(head):
    return dict(zip(HEADER_FIELDS, HEADER.unpack_from(head)))


def parse_members(header, blob):
    members = []
    for i in range(header["MemberCount"]):
        raw, off, size = MEMBER.unpack_from(blob, header["MembersOffset"] + i * header["MemberEntrySize"])
        members.append((raw.split(b"\0", 1)[0].decode("ascii"), off, size))
    return members


def parse_layout(header, blob):
    """[(encoding, offset, width, flags)] of the discovered VMCS layout map."""
    return [LAYOUT.unpack_from(blob, header["LayoutOffset"] + i * header["LayoutEntrySize"])
            for i in range(header["LayoutCount"])]


def read_descriptor(path):
    pe = pefile.PE(path)
    rva = export_rva(pe, "HvDebugDescriptor")
    header = parse_header(pe.get_data(rva, HEADER.size))
    blob = pe.get_data(rva, header["DescriptorSize"])
    return pe, rva, header, parse_members(header, blob), blob
