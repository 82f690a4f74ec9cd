"""hv/vmcs_source.load_values: which source a vCPU's VMCS values come from, and every note and refusal, on a
hand-laid vCPU (tests/hv/test_model_records.py's layouts) and a stand-in walker holding a hand-written
VMCS page. A live target's active VMCS page is stale or private (SDM 25.11.1)."""
from __future__ import annotations

import struct

import pytest

from windbg_ext.hv import descriptor as hd
from windbg_ext.hv import model as M
from windbg_ext.hv.vmcs_source import LIVE_REGION_NOTE, Values, load_values
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


class _Target:
    def __init__(self, live):
        self.live = live


class _Walker:
    def __init__(self, live=False, layout_status=1, layout=LAYOUT):
        self.target = _Target(live)
        self.desc = _Desc({}, LayoutStatus=layout_status, LayoutCount=len(layout), layout=layout,
                          layout_status=hd.LAYOUT_STATUSES.get(layout_status, "?"))
        self.pages = []

    def descriptor(self):
        return self.desc

    def read_page(self, pa, what):
        self.pages.append((pa, what))
        return bytes(PAGE)


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
    assert got.values == {0x681E: 0xFFFFF80000201000, 0x4402: 0xA} and got.source == "region"
    assert got.label == "region*" and w.pages == [(0x7000, "vCPU 1's VMCS region")]
    assert got.note == ("vCPU 1's snapshot is empty (reason: every exit): showing the region; set the descriptor's "
                        "SnapshotOnEveryExit to 1 for architectural values")
    assert load_values(_Walker(), _vcpu(), "region").note == ""
    # live, but not launched (so not active on a processor): the page is what the driver left
    assert load_values(_Walker(live=True), _vcpu(state=4), "region").note == ""
    assert load_values(_Walker(live=True), _vcpu(), "region").note == LIVE_REGION_NOTE


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
