"""The debug descriptor inside the built hv.sys files agrees with the
structures as the host compiler lays them out (offsetof/sizeof), and with
the documented version-1 format (docs/debug-descriptor.md)."""
import pytest

from .support import IMAGES
from .pe_descriptor import HEADER, read_descriptor


def parse_host_layout(text):
    sizes, offsets, consts, members = {}, {}, {}, []
    for line in text.splitlines():
        kind, name, *rest = line.split()
        if kind == "SIZE":
            sizes[name] = int(rest[0])
        elif kind == "OFFSET":
            offsets[name] = int(rest[0])
        elif kind == "CONST":
            consts[name] = int(rest[0])
        elif kind == "MEMBER":
            members.append((name, int(rest[0]), int(rest[1])))
    return sizes, offsets, consts, members


@pytest.fixture(scope="module")
def host_layout(host_program):
    return parse_host_layout(host_program("print_layout"))


@pytest.fixture(scope="module", params=sorted(IMAGES))
def descriptor(request, built_driver):
    return read_descriptor(built_driver[request.param])


def test_header_is_version_1_layout():
    assert HEADER.size == 0xA0


def test_static_header_matches_host_sizes(descriptor, host_layout):
    _, _, h, _, _ = descriptor
    sizes, offsets, consts, members = host_layout
    assert h["Magic"] == consts["MAGIC"] == int.from_bytes(b"HVLABDBG", "little")
    assert h["Version"] == consts["VERSION"] == 1
    assert h["DescriptorSize"] == sizes["HV_DEBUG_DESCRIPTOR"]
    assert h["HeaderSize"] == h["MembersOffset"] == offsets["Members"] == 0xA0
    assert h["PointerSize"] == 8
    assert h["VmmContextSize"] == sizes["HV_VMM_CONTEXT"]
    assert h["VcpuSize"] == sizes["HV_VCPU"]
    assert h["LayoutOffset"] == offsets["Layout"]
    assert h["FailureOffset"] == offsets["LastFailure"] == h["LayoutOffset"] + 256 * h["LayoutEntrySize"]
    assert h["DescriptorSize"] == h["FailureOffset"] + sizes["HV_FAILURE_RECORD"]
    assert (h["MemberEntrySize"], h["LayoutEntrySize"], h["SnapshotEntrySize"]) == (40, 8, 16)
    assert h["SnapshotCapacity"] == 256
    assert h["HostStackSize"] == consts["HOST_STACK_SIZE"]
    assert h["HostStackPattern"] == consts["HOST_STACK_PATTERN"] == int.from_bytes(b"HVSTACK!", "little")
    assert h["MemberCount"] == len(members)
    assert h["Producer"].rstrip(b"\0").startswith(b"hvlab hv.sys")


def test_run_time_fields_are_zero_in_the_file(descriptor):
    """Before load: no pointers, no state; the driver fills these at run time."""
    _, _, h, _, blob = descriptor
    for name in ("SelfVa", "VmmContextVa", "VcpuArrayVa", "VcpuCount", "SnapshotOnEveryExit",
                 "DriverState", "LayoutStatus", "LayoutCount", "LoadStatus"):
        assert h[name] == 0, name
    assert blob[h["LayoutOffset"]:] == bytes(len(blob) - h["LayoutOffset"])


def test_member_table_equals_host_offsetof(descriptor, host_layout):
    _, _, _, image_members, _ = descriptor
    assert image_members == host_layout[3]


def test_member_table_is_consistent(descriptor, host_layout):
    """Each struct's members: unique names, inside the struct, not overlapping."""
    _, _, h, members, _ = descriptor
    struct_size = {"VMM": h["VmmContextSize"], "VCPU": h["VcpuSize"],
                   "SNAP": 24 + h["SnapshotCapacity"] * h["SnapshotEntrySize"]}
    names = [m[0] for m in members]
    assert len(set(names)) == len(names)
    for prefix, size in struct_size.items():
        own = sorted((off, sz, name) for name, off, sz in members if name.startswith(prefix + "."))
        assert own, prefix
        for (off, sz, name), nxt in zip(own, own[1:] + [(size, 0, "end")]):
            assert off + sz <= nxt[0], "%s overlaps %s" % (name, nxt[2])
    snap = {n: (o, s) for n, o, s in members}
    assert snap["VCPU.Snapshot"][1] == struct_size["SNAP"]
    assert snap["SNAP.Entries"] == (24, 256 * 16)
    assert snap["VCPU.ExitCountsByReason"][1] == 80 * 4


def test_members_the_suite_needs_are_published(descriptor):
    _, _, _, members, _ = descriptor
    names = {m[0] for m in members}
    needed = {"VMM.ProcessorCount", "VMM.Vcpus", "VMM.CapBasic", "VCPU.State", "VCPU.VmxonRegionPa",
              "VCPU.VmcsRegionPa", "VCPU.MsrBitmapPa", "VCPU.HostStack", "VCPU.LastExitReason",
              "VCPU.VmInstructionError", "VCPU.Snapshot", "SNAP.Count", "SNAP.Entries", "SNAP.Sequence"}
    assert needed <= names, needed - names
