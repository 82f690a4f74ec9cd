"""hv/vmcs_source.load_values: which source a vCPU's VMCS values come from, and every note and refusal, on a
hand-laid vCPU (tests/hv/test_model_records.py's layouts) and a stand-in walker holding a hand-written
VMCS page. A live target's active VMCS page is stale or private (SDM 25.11.1)."""
from __future__ import annotations

import struct

import pytest

from windbg_ext.hv import descriptor as hd
from windbg_ext.hv import model as M
from windbg_ext.hv.vmcs_source import LIVE_REGION_NOTE, STALE_REGION_NOTE, Values, load_values
from windbg_ext.hv.walker import HvError

from .test_model_records import SNAP, _Desc, _layout, _snapshot_bytes

VCPU = _layout("VCPU", 120, State=(0, 4), VmcsRegionPa=(8, 8), Snapshot=(56, 64))
# the layout map: GUEST_RIP (681EH) at +0x40, 8 bytes; VM_EXIT_REASON (4402H) at +0x80, 4 bytes, stored
# rotated by 8 bits; a field the map did not find
LAYOUT = [hd.LayoutEntry(0x681E, 0x40, 8, hd.LAYOUT_FLAG_FOUND),
          hd.LayoutEntry(0x4402, 0x80, 4, hd.LAYOUT_FLAG_FOUND | hd.LAYOUT_FLAG_ROTATED8),
          hd.LayoutEntry(0x6820, 0, 8, 0)]
PAGE = bytearray(4096)
struct.pack_into("<Q", PAGE, 0x40, 0xFFFFF80000201000)
struct.pack_into("<I", PAGE, 0x80, 0x00000A00)   # rotated right by 8: 0x0000000A (CPUID)
# what a VMCS in use holds (hv/scan.py plausible, 3 of 5 needed): VMCS_LINK_POINTER (2800H) ~0, HOST_CR4 (6C04H)
# with VMXE, HOST_RIP (6C16H) / HOST_RSP (6C14H) in kernel space, HOST_CR3 (6C02H) page-aligned; a page
# without them is stale (SDM 25.11.1)
IN_USE = [(0x2800, 0x100, 0xFFFFFFFFFFFFFFFF), (0x6C04, 0x108, 0x2000), (0x6C16, 0x110, 0xFFFFF80000001000),
          (0x6C14, 0x118, 0xFFFFA00000006FF0), (0x6C02, 0x120, 0x1AD000)]
LAYOUT += [hd.LayoutEntry(enc, off, 8, hd.LAYOUT_FLAG_FOUND) for enc, off, _ in IN_USE]
for _, off, value in IN_USE:
    struct.pack_into("<Q", PAGE, off, value)
SHOWN = {0x681E: 0xFFFFF80000201000, 0x4402: 0xA}
SHOWN.update({enc: value for enc, _, value in IN_USE})


class _Target:
    def __init__(self, live):
        self.live = live


class _Walker:
    def __init__(self, live=False, layout_status=1, layout=LAYOUT, page=PAGE):
        self.target = _Target(live)
        self.page = page
        self.desc = _Desc({}, LayoutStatus=layout_status, LayoutCount=len(layout), layout=layout,
                          layout_status=hd.LAYOUT_STATUSES.get(layout_status, "?"))
        self.pages = []

    def descriptor(self):
        return self.desc

    def read_page(self, pa, what):
        self.pages.append((pa, what))
        return bytes(self.page)


def _vcpu(count=2, state=2, sequence=2, region=0x7000):
    data = struct.pack("<I4xQ", state, region).ljust(56, b"\0") + _snapshot_bytes(count, sequence=sequence)
    return M.Vcpu(1, M.Record(VCPU, data, 0x3000), _Desc({"SNAP": SNAP, "VCPU": VCPU}))


def _error(*args):
    with pytest.raises(HvError) as e:
        load_values(*args)
    return str(e.value)


def test_the_snapshot_by_default():
    got = load_values(_Walker(), _vcpu(), None)
    assert (got.values, got.source, got.note, got.label) == ({0x681E: 0x1000, 0x4402: 10}, "snapshot", "", "snapshot")
    live = load_values(_Walker(live=True), _vcpu(), None)
    assert live.note == ("snapshot taken by hv.sys at: every exit (sequence 2); not refreshed: --refresh for current "
                         "values")
    torn = load_values(_Walker(live=True), _vcpu(sequence=5), "snapshot")
    assert torn.note == ("the snapshot was being written when the target stopped (odd sequence 5): values may be "
                         "torn")
    assert load_values(_Walker(), _vcpu(count=0), "snapshot").values == {}


def test_the_region_decoded_with_the_layout_map():
    w = _Walker()
    got = load_values(w, _vcpu(count=0), None)
    assert got.values == SHOWN and got.source == "region"
    assert got.label == "region*" and w.pages == [(0x7000, "vCPU 1's VMCS region")]
    assert got.note == ("vCPU 1's snapshot is empty (reason: every exit): showing the region; set the descriptor's "
                        "SnapshotOnEveryExit to 1 for architectural values")
    assert load_values(_Walker(), _vcpu(), "region").note == ""
    # live, but not launched (so not active on a processor): the page is what the driver left
    assert load_values(_Walker(live=True), _vcpu(state=4), "region").note == ""
    assert load_values(_Walker(live=True), _vcpu(), "region").note == LIVE_REGION_NOTE


def test_a_stale_page_is_never_taken_for_values():
    """Offline too (a dump of an active VMCS, SDM 25.11.1): 2 of the 5 signs of a VMCS in use (here host CR4.VMXE
    and host CR3) are not enough."""
    stale = bytearray(PAGE)
    struct.pack_into("<Q", stale, 0x100, 0x5C7A3818B4BA52EC)   # link pointer not ~0
    struct.pack_into("<Q", stale, 0x110, 0x74BEAD13B547AFA8)   # host RIP not in kernel space
    with pytest.raises(HvError) as e:
        load_values(_Walker(page=stale), _vcpu(count=0), None)
    assert str(e.value) == ("vCPU 1: empty snapshot (reason: every exit) and a stale VMCS page (active when the "
                            "target stopped, SDM 25.11.1): set SnapshotOnEveryExit to 1 for values at every exit, or "
                            "--source region for the page")
    got = load_values(_Walker(page=stale), _vcpu(count=0), "region")
    assert got.source == "region" and got.note == STALE_REGION_NOTE
    # 3 of 5 is a VMCS in use (a page broken on purpose still has most of them)
    struct.pack_into("<Q", stale, 0x110, 0xFFFFF80000001000)
    assert load_values(_Walker(page=stale), _vcpu(count=0), "region").note == ""


def test_refusals():
    assert _error(_Walker(live=True), _vcpu(count=0), None) == (
        "vCPU 1's snapshot is empty (reason: every exit) and its VMCS region is active on the processor (stale in "
        "memory, SDM 25.11.1): run vmcs 1 --refresh for current values, or --source region for the stale page")
    assert _error(_Walker(layout_status=2), _vcpu(), "region") == \
        "vCPU 1: cannot decode the VMCS region: the driver's layout map is failed"
    assert _error(_Walker(layout=[]), _vcpu(), "region") == \
        "vCPU 1: cannot decode the VMCS region: the driver's layout map is discovered"
    assert _error(_Walker(), _vcpu(region=0), "region") == "vCPU 1 has no VMCS region (VmcsRegionPa is 0)"


def test_labels():
    assert [Values({}, s).label for s in ("snapshot", "region", "failure", "other")] == \
        ["snapshot", "region*", "failure snapshot", "snapshot"]
    assert Values({}, "snapshot").note == ""
