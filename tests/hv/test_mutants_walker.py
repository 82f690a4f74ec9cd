"""HvWalker's refusals word for word, its boundaries on both sides and the reads it makes (issue 16: the
walker's mutation survivors). The driver's structures are the host C compiler's (builder.py, state2); a
stand-in target holds them at addresses chosen here, and each case patches one header field at the offset
hv_debug.h gives it (its comments and HV_STATIC_ASSERTs), or one member at the compiler's offsetof. So every
expected message, address and read below is worked out from those inputs, not from the walker."""
from __future__ import annotations

import struct

import pytest

from windbg_ext.hv import walker as W
from windbg_ext.hv.descriptor import DescriptorError
from windbg_ext.target.base import TargetMemoryError, TargetSymbolError

D = 0xFFFF_F800_0010_0000   # the descriptor (virtual), as builder.py places it
V = 0xFFFF_F800_0020_0000   # the VMM context
A = 0xFFFF_F800_0030_0000   # the vCPU array
HEADER = 0xA0               # hv_debug.h: Members[] at 0xA0, the end of the fixed header
# hv_debug.h's header offsets and widths (HV_DEBUG_DESCRIPTOR's comments)
FIELD = {"DescriptorSize": (0x0C, 4), "VmmContextSize": (0x18, 4), "VcpuSize": (0x1C, 4),
         "SelfVa": (0x20, 8), "VmmContextVa": (0x28, 8), "VcpuArrayVa": (0x30, 8), "VcpuCount": (0x38, 4),
         "DriverState": (0x4C, 4), "MemberCount": (0x58, 4), "MembersOffset": (0x60, 4), "LayoutCount": (0x68, 4),
         "LayoutOffset": (0x70, 4), "LoadStatus": (0x78, 4),
         "FailureOffset": (0x7C, 4)}


class _Target:
    """Memory as {address: bytes} (virtual and physical apart); a region may be a list of successive
    contents, one per read (a live target that changes under the debugger). Every read is logged."""

    def __init__(self, virtual, physical=None, symbol=D, live=False):
        self.virtual, self.physical, self.sym, self.live = virtual, physical, symbol, live
        self.reads = []

    def symbol(self, name):
        assert name == "hv!HvDebugDescriptor"
        if self.sym is None:
            raise TargetSymbolError(name)
        return self.sym

    def memory_ranges(self):
        return None if self.physical is None else sorted((s, len(b)) for s, b in self.physical.items())

    def _read(self, space, address, n, physical):
        self.reads.append(("p" if physical else "v", address, n))
        for start, data in space.items():
            if isinstance(data, list):
                if not start <= address < start + len(data[0]):
                    continue
                data = data.pop(0) if len(data) > 1 else data[0]
            if start <= address and address + n <= start + len(data):
                return data[address - start:address - start + n]
        raise TargetMemoryError(address, n, physical)

    def read_virtual(self, va, n):
        return self._read(self.virtual, va, n, False)

    def read_physical(self, pa, n):
        return self._read(self.physical or {}, pa, n, True)


@pytest.fixture
def parts(state2):
    """(descriptor, VMM context, vCPU 0, vCPU 1) as bytearrays, and the compiler's member offsets."""
    sizes = state2.facts["sizeof"]
    dsize, vsize, csize = sizes["HV_DEBUG_DESCRIPTOR"], sizes["HV_VMM_CONTEXT"], sizes["HV_VCPU"]
    assert (dsize, csize) == (0x27D0, 4600) and state2.va == {"desc": D, "vmm": V, "vcpus": A}
    blob = state2.blob
    return ([bytearray(blob[:dsize]), bytearray(blob[dsize:dsize + vsize]),
             bytearray(blob[dsize + vsize:dsize + vsize + csize]), bytearray(blob[dsize + vsize + csize:])],
            state2.facts["offsetof"])


def _set(data, offset, width, value):
    data[offset:offset + width] = (value & ((1 << 8 * width) - 1)).to_bytes(width, "little")


def _member(data, offsets, name, value):
    off, size = offsets[name]
    _set(data, off, size, value)


def _header(desc, **fields):
    for name, value in fields.items():
        _set(desc, *FIELD[name], value)
    return desc


def _walker(parts, live=False, **fields):
    (desc, vmm, v0, v1), _ = parts
    desc = _header(bytearray(desc), **fields)
    t = _Target({D: bytes(desc), V: bytes(vmm), A: bytes(v0 + v1)}, live=live)
    return W.HvWalker(t), t


def _error(call, kind=W.HvError):
    with pytest.raises(kind) as e:
        call()
    return str(e.value)


# -- the descriptor: where it is, how it is read ---------------------------------------------------------------
def test_by_symbol_two_reads_then_one_per_structure(parts):
    w, t = _walker(parts)
    assert w.vmm().record.address == V and w.found_by == "symbol hv!HvDebugDescriptor" and w.by_symbol
    assert w.vmm() is w.vmm()                       # read once, kept
    assert [v.address for v in w.vcpus()] == [A, A + 4600]
    # the module's promise: header, then the rest of the descriptor; the VMM context; the whole array
    assert t.reads == [("v", D, HEADER), ("v", D + HEADER, 0x27D0 - HEADER), ("v", V, 192), ("v", A, 9200)]


def test_a_descriptor_without_tables_is_read_in_one(parts):
    # DescriptorSize = the header alone (no members, no layout, no failure record): nothing more to read
    w, t = _walker(parts, DescriptorSize=HEADER, MemberCount=0, MembersOffset=HEADER, LayoutCount=0,
                   LayoutOffset=HEADER, FailureOffset=0)
    assert _error(w.vmm, DescriptorError) == "the driver's member table describes no VMM.* members"
    assert t.reads == [("v", D, HEADER)]


def test_descriptor_read_failures_say_where(parts):
    (desc, *_), _ = parts
    t = _Target({}, symbol=D + 0x1000)
    assert _error(W.HvWalker(t).descriptor) == (
        "cannot read the hv debug descriptor at virtual 0x%x (hv!HvDebugDescriptor): cannot read 160 bytes at "
        "virtual address 0x%x: not present in the target" % (D + 0x1000, D + 0x1000))
    t = _Target({D: bytes(desc[:0x200])})
    assert _error(W.HvWalker(t).descriptor) == (
        "the hv debug descriptor at virtual 0x%x is cut short (its tables end at +0x27d0): cannot read 10032 "
        "bytes at virtual address 0x%x: not present in the target" % (D, D + HEADER))
    # a header that does not parse is named by the address the symbol gave
    t = _Target({D: bytes(desc[:8]) + b"\x09\0\0\0" + bytes(desc[12:])})
    assert _error(W.HvWalker(t).descriptor, DescriptorError) == (
        "hv debug descriptor at 0x%x: version 9, but this windbg_ext reads version 1 (update it to match hv.sys)" % D)
    # found by the scan: the same, at its physical address
    t = _Target({}, physical={0x5000: bytes(desc[:0x200])}, symbol=None)
    assert _error(W.HvWalker(t).descriptor) == (
        "the hv debug descriptor at physical 0x5000 is cut short (its tables end at +0x27d0): cannot read 10032 "
        "bytes at physical address 0x50a0: not present in the target")


# -- _require_loaded ------------------------------------------------------------------------------------------
def _fail(parts, processor, count):
    """A valid last-failure record (hv_debug.h HV_FAILURE_RECORD at FailureOffset): processor, step 8,
    its snapshot holding `count` entries (Count at +24, after six dwords)."""
    desc = parts[0][0]
    fo = struct.unpack_from("<I", desc, 0x7C)[0]
    struct.pack_into("<IIIIiI", desc, fo, 1, processor, 8, 7, 0, 0)
    struct.pack_into("<I", desc, fo + 24, count)


@pytest.mark.parametrize("pointers", [dict(VmmContextVa=0), dict(VcpuArrayVa=0)])
def test_not_running_when_either_pointer_is_zero(parts, pointers):
    # LoadStatus is an NTSTATUS (int32 at +0x78): STATUS_UNSUCCESSFUL reads back as 0xc0000001; state 3 = failed
    w, _ = _walker(parts, DriverState=3, LoadStatus=0xC0000001, **pointers)
    assert _error(w.vcpu_count) == "hv.sys is not running (failed, load status 0xc0000001): no vCPUs; see: vmm"


def test_not_running_lists_the_failure_commands(parts):
    _fail(parts, processor=1, count=1)              # a VMCS was current: its fields were recorded
    w, _ = _walker(parts, VmmContextVa=0, VcpuArrayVa=0, DriverState=4, LoadStatus=0)
    assert _error(w.vmm) == ("hv.sys is not running (unloaded, load status 0x00000000): no vCPUs; see: vmm, "
                             "vmcs 1 --source failure, verify 1")
    _fail(parts, processor=1, count=0)              # no VMCS yet: only `check` helps
    w, _ = _walker(parts, VmmContextVa=0, VcpuArrayVa=0, DriverState=4, LoadStatus=0)
    assert _error(w.vmm).endswith("no vCPUs; see: vmm, check")


@pytest.mark.parametrize("name,va", [("VmmContextVa", V + 4), ("VcpuArrayVa", A + 4), ("VcpuArrayVa", A + 1)])
def test_misaligned_pointers(parts, name, va):
    w, _ = _walker(parts, **{name: va})
    assert _error(w.vcpu_count) == (
        "hv debug descriptor's %s 0x%x is misaligned (structures are 8-byte aligned): corrupt" % (name, va))


def test_8_byte_alignment_is_enough(parts):
    # 8-aligned but not a multiple of 9 or 16: only 8-byte alignment is required
    assert (V + 8) % 9 and (V + 8) % 16
    w, _ = _walker(parts, VmmContextVa=V + 8)
    assert w.vcpu_count() == 2


def test_vcpu_count_zero_and_one(parts):
    w, _ = _walker(parts, VcpuCount=0)
    assert _error(w.vcpu_count) == (
        "hv debug descriptor says VcpuCount 0 with a VMM context at 0x%x: corrupt descriptor" % V)
    w, _ = _walker(parts, VcpuCount=1)
    assert w.vcpu_count() == 1


def test_vcpu_array_size_limit_is_64_mib(parts):
    # 2048 x 32768 = 64 MiB exactly: allowed; 8 bytes more per vCPU: not
    w, _ = _walker(parts, VcpuCount=2048, VcpuSize=32768)
    assert w.vcpu_count() == 2048
    w, _ = _walker(parts, VcpuCount=2048, VcpuSize=32776)
    assert _error(w.vcpu_count) == (
        "hv debug descriptor's vCPU array (2048 x 32776 bytes) is absurd: corrupt descriptor")


def _overlap_message(vmm, array):
    return ("hv debug descriptor's pointers overlap (VMM context 0x%x, vCPU array 0x%x, descriptor 0x%x): cyclic "
            "or corrupt" % (vmm, array, D))


@pytest.mark.parametrize("pointers", [
    dict(VcpuArrayVa=V - 8),            # the array's last 8 bytes are the VMM context's first
    dict(VcpuArrayVa=V + 184),          # the array starts at the VMM context's last 8 bytes
    dict(VcpuArrayVa=D + 0x100),        # the array inside the descriptor (pointers are virtual: comparable)
    dict(VmmContextVa=D + 0x27D0 - 8),  # the VMM context over the descriptor's last 8 bytes
])
def test_overlapping_pointers(parts, pointers):
    w, _ = _walker(parts, **pointers)
    assert _error(w.vcpu_count) == _overlap_message(pointers.get("VmmContextVa", V),
                                                    pointers.get("VcpuArrayVa", A))


@pytest.mark.parametrize("pointers", [
    dict(VcpuArrayVa=V + 192),          # right after the VMM context
    dict(VcpuArrayVa=V - 9200),         # ends where the VMM context starts
    dict(VmmContextVa=D + 0x27D0),      # right after the descriptor
    dict(VcpuArrayVa=D - 9200),         # ends where the descriptor starts
])
def test_adjacent_pointers_do_not_overlap(parts, pointers):
    w, _ = _walker(parts, **pointers)
    assert w.vcpu_count() == 2


def test_a_scanned_descriptor_is_not_compared_with_virtual_pointers(parts):
    # found at physical 0x5000 by the scan: a vCPU array at virtual 0x5100 is elsewhere, not inside it
    (desc, *_), _ = parts
    _header(desc, VcpuArrayVa=0x5100)
    t = _Target({}, physical={0x5000: bytes(desc)}, symbol=None)
    w = W.HvWalker(t)
    assert w.vcpu_count() == 2 and not w.by_symbol
    assert w.found_by == "scan (physical 0x5000; SelfVa 0x%x does not map to it)" % D


# -- the VMM context ------------------------------------------------------------------------------------------
def test_vmm_refusals(parts):
    (desc, vmm, v0, v1), offsets = parts
    w, _ = _walker(parts, VmmContextVa=V + 0x10000)
    assert _error(w.vmm) == ("cannot read the VMM context (VmmContextVa) at 0x%x (192 bytes): not present in the "
                             "target" % (V + 0x10000))
    _member(vmm, offsets, "VMM.ProcessorCount", 3)
    w, _ = _walker(parts)
    assert _error(w.vmm) == ("VMM context at 0x%x says 3 processors but the descriptor says 2 vCPUs: corrupt or "
                             "torn state" % V)
    _member(vmm, offsets, "VMM.ProcessorCount", 2)
    _member(vmm, offsets, "VMM.Vcpus", A + 8)
    w, _ = _walker(parts)
    assert _error(w.vmm) == "VMM context at 0x%x points at vCPUs 0x%x but the descriptor at 0x%x: corrupt" % (
        V, A + 8, A)


def _rename(desc, old, new):
    """One member's name in the member table, same length, so the driver 'lacks' that member."""
    assert len(old) == len(new) and desc.count(old + b"\0") == 1
    at = desc.index(old + b"\0")
    desc[at:at + len(new)] = new


def test_vmm_checks_only_the_members_the_table_has(parts):
    (desc, vmm, v0, v1), offsets = parts
    _member(vmm, offsets, "VMM.ProcessorCount", 3)
    _member(vmm, offsets, "VMM.Vcpus", A + 8)
    _rename(desc, b"VMM.ProcessorCount", b"VMM.ProcessorCounX")
    _rename(desc, b"VMM.Vcpus", b"VMM.VcpuX")
    w, _ = _walker(parts)
    assert w.vmm().record.data == bytes(vmm)


def test_vmm_without_vmm_members(parts):
    (desc, *_), _ = parts
    for at in range(HEADER, len(desc) - 4):
        if desc[at:at + 4] == b"VMM.":
            desc[at:at + 4] = b"VMX."
    w, _ = _walker(parts)
    assert _error(w.vmm, DescriptorError) == "the driver's member table describes no VMM.* members"


# -- vCPUs ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [-1, 2, 3])
def test_vcpu_index_out_of_range(parts, n):
    w, _ = _walker(parts)
    assert _error(lambda: w.vcpu(n)) == "vCPU %d does not exist: hv.sys has 2 (0-1)" % n


def test_vcpu_reads_its_own_stride_once(parts):
    (_, _, v0, v1), _ = parts
    w, t = _walker(parts)
    one = w.vcpu(1)
    assert (one.index, one.address, one.record.data) == (1, A + 4600, bytes(v1))
    assert w.vcpu(1) is one and w.vcpu(0).record.data == bytes(v0)
    assert t.reads[2:] == [("v", A + 4600, 4600), ("v", A, 4600)]


def test_vcpu_read_failures(parts):
    (desc, vmm, v0, v1), _ = parts
    t = _Target({D: bytes(desc), V: bytes(vmm), A: bytes(v0)})      # the array holds one vCPU of two
    w = W.HvWalker(t)
    assert w.vcpu(0).index == 0
    assert _error(lambda: w.vcpu(1)) == (
        "cannot read vCPU 1 at 0x%x (4600 bytes): not present in the target" % (A + 4600))
    assert _error(W.HvWalker(t).vcpus) == (
        "cannot read the vCPU array (2 x 4600 bytes) at 0x%x (9200 bytes): not present in the target" % A)


def _sequence(v, offsets, value):
    # SNAP.Sequence inside VCPU.Snapshot: odd while the driver writes the snapshot (hv_debug.h)
    _set(v, offsets["VCPU.Snapshot"][0] + offsets["SNAP.Sequence"][0], 8, value)
    return bytes(v)


@pytest.mark.parametrize("live,first,expected,reads", [
    (True, 5, 6, 2),     # live and torn: read again, the second copy kept
    (True, 4, 4, 1),     # live, complete: one read
    (False, 5, 5, 1),    # a dump cannot change: one read, torn as it is
])
def test_a_torn_snapshot_is_read_again_only_on_a_live_target(parts, live, first, expected, reads):
    (desc, vmm, v0, v1), offsets = parts
    versions = [_sequence(v1, offsets, first), _sequence(v1, offsets, 6)]
    t = _Target({D: bytes(desc), V: bytes(vmm), A + 4600: versions}, live=live)
    v = W.HvWalker(t).vcpu(1)
    assert v.snapshot().sequence == expected and v.address == A + 4600
    assert t.reads[2:] == [("v", A + 4600, 4600)] * reads


def test_a_torn_snapshot_whose_second_read_fails(parts):
    (desc, vmm, v0, v1), offsets = parts
    versions = [_sequence(v1, offsets, 5), b""]      # the vCPU is gone by the second read
    t = _Target({D: bytes(desc), V: bytes(vmm), A + 4600: versions}, live=True)
    assert _error(lambda: W.HvWalker(t).vcpu(1)) == (
        "cannot read vCPU 1 at 0x%x (4600 bytes): not present in the target" % (A + 4600))


def test_a_corrupt_snapshot_is_not_taken_for_a_torn_one(parts):
    # Count past the capacity: the snapshot cannot be read at all, so there is no sequence to wait for
    (desc, vmm, v0, v1), offsets = parts
    _set(v1, offsets["VCPU.Snapshot"][0] + offsets["SNAP.Count"][0], 4, 0xFFFF)
    t = _Target({D: bytes(desc), V: bytes(vmm), A + 4600: bytes(v1)}, live=True)
    assert W.HvWalker(t).vcpu(1).index == 1
    assert t.reads[2:] == [("v", A + 4600, 4600)]


def test_reload_of_a_vcpu_never_read(parts):
    w, t = _walker(parts)
    assert w.reload_vcpu(1).address == A + 4600 and t.reads[2:] == [("v", A + 4600, 4600)]


@pytest.mark.parametrize("read", ["vcpu", "vcpus"])
def test_vcpu_identity_checks(parts, read):
    (desc, vmm, v0, v1), offsets = parts
    get = (lambda w: w.vcpu(1)) if read == "vcpu" else (lambda w: w.vcpus())
    _member(v1, offsets, "VCPU.ProcessorIndex", 0)
    w, _ = _walker(parts)
    assert _error(lambda: get(w)) == ("vCPU 1 at 0x%x says it is processor 0: the vCPU array is corrupt or VcpuSize "
                                      "is wrong" % (A + 4600))
    _member(v1, offsets, "VCPU.ProcessorIndex", 1)
    _member(v1, offsets, "VCPU.Vmm", V + 0x40)
    w, _ = _walker(parts)
    assert _error(lambda: get(w)) == "vCPU 1 at 0x%x points back at VMM context 0x%x, not 0x%x: corrupt" % (
        A + 4600, V + 0x40, V)
    # a driver whose table lacks both members: nothing to compare, the vCPU is taken as it is
    _member(v1, offsets, "VCPU.ProcessorIndex", 0)
    _rename(desc, b"VCPU.ProcessorIndex", b"VCPU.ProcessorIndeX")
    _rename(desc, b"VCPU.Vmm", b"VCPU.VmX")
    w, _ = _walker(parts)
    got = get(w)
    assert (got if read == "vcpu" else got[1]).record.data == bytes(v1)


# -- the scan -------------------------------------------------------------------------------------------------
def test_scan_reads_block_by_block_and_finds_copies_at_range_and_block_starts(parts, monkeypatch):
    (desc, *_), _ = parts
    monkeypatch.setattr(W, "SCAN_BLOCK", 0x4000)
    file_image = _header(bytearray(desc[:HEADER]), SelfVa=0)
    # range 1: a file image at its very first byte, 0x5000 bytes (two blocks); range 2: the loaded copy at a
    # block's first byte (its second block), whose header the block holds whole
    low = bytes(file_image) + bytes(0x5000 - HEADER)
    high = bytes(0x4000) + bytes(desc) + bytes(0x7000 - 0x4000 - len(desc))
    t = _Target({}, physical={0x10000: low, 0x80000: high}, symbol=None)
    w = W.HvWalker(t)
    assert w.descriptor().address == 0x84000
    assert t.reads == [("p", 0x10000, 0x4000), ("p", 0x14000, 0x1000), ("p", 0x80000, 0x4000),
                       ("p", 0x84000, 0x3000),          # the blocks, each once, none past a range
                       ("v", D, HEADER),                # does SelfVa map to this copy? (no)
                       ("p", 0x840A0, 0x27D0 - HEADER)]  # the rest of the copy found


def test_scan_prefers_the_copy_selfva_maps_to_after_an_unreadable_one(parts):
    (desc, *_), _ = parts
    first = _header(bytearray(desc), SelfVa=D + 0x100000)  # loaded too, but its SelfVa is not readable
    mem = bytes(first) + bytes(0x3000 - len(first)) + bytes(desc)
    t = _Target({D: bytes(desc)}, physical={0x20000: mem}, symbol=None)
    w = W.HvWalker(t)
    assert w.descriptor().address == 0x23000
    assert w.found_by == "scan (physical 0x23000 = virtual 0x%x)" % D
    # the block, the two SelfVa probes, then only the rest of the chosen copy: its header is not read again
    assert t.reads == [("p", 0x20000, len(mem)), ("v", D + 0x100000, HEADER), ("v", D, HEADER),
                       ("p", 0x230A0, 0x27D0 - HEADER)]


def test_a_magic_at_the_end_of_memory_is_a_problem_not_a_crash(parts):
    # the last 8 bytes of memory hold the magic: its header cannot be read (0 bytes of it)
    t = _Target({}, physical={0x1000: bytes(0xFF8) + b"HVLABDBG"}, symbol=None)
    assert _error(W.HvWalker(t).descriptor) == (
        "found 1 'HVLABDBG' magic(s) but no loaded descriptor: hv debug descriptor at 0x1ff8: only 0 bytes, not "
        "even the magic")


# -- one walker per command run -------------------------------------------------------------------------------
class _Context:
    def __init__(self, target):
        self.target = target


def test_one_walker_per_context_and_target():
    first, second = _Target({}), _Target({})
    ctx = _Context(first)
    w = W.walker_for(ctx)
    assert isinstance(w, W.HvWalker) and w.target is first and W.walker_for(ctx) is w
    ctx.target = second                              # another target: another walker, kept in turn
    again = W.walker_for(ctx)
    assert again is not w and again.target is second and W.walker_for(ctx) is again


def test_a_context_that_keeps_nothing_gets_a_walker_each_time():
    class Slotted:
        __slots__ = ("target",)
    ctx = Slotted()
    ctx.target = _Target({})
    a, b = W.walker_for(ctx), W.walker_for(ctx)
    assert a.target is ctx.target and b.target is ctx.target and a is not b
