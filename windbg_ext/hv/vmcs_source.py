"""Where a vCPU's VMCS values come from: the driver's snapshot (VMREAD values,
architectural) or the raw VMCS page decoded with the driver's layout map
(implementation-specific, SDM 25.11.1). Used by `vmcs` and `verify`.

On a live target the region of a launched vCPU is the VMCS its processor
holds active: its page is stale or in a private format (SDM 25.11.1), so it
is never the default there and is labelled as not current. A dump taken
while the VMCS was active holds the same stale page: a region whose fields do
not look like a VMCS in use (scan.plausible) is never the default either, and
is labelled as not the VMCS's values.
"""
from __future__ import annotations

from typing import Dict, Optional

from windbg_ext.hv.model import Vcpu
from windbg_ext.hv.regions import region_values
from windbg_ext.hv.scan import plausible
from windbg_ext.hv.walker import HvError, HvWalker

LIVE_REGION_NOTE = ("live: this VMCS is active on its processor; its page is stale or private (SDM 25.11.1): "
                    "NOT current values (--refresh)")
STALE_REGION_NOTE = ("this page does not hold a VMCS's values (link pointer, host state): the VMCS was active when "
                     "the target stopped, its page stale (SDM 25.11.1): NOT the VMCS's values")


class Values:
    def __init__(self, values: Dict[int, int], source: str, note: str = "") -> None:
        self.values = values
        self.source = source   # "snapshot" | "region"
        self.note = note

    @property
    def label(self) -> str:
        return {"region": "region*", "failure": "failure snapshot"}.get(self.source, "snapshot")


def load_values(w: HvWalker, v: Vcpu, source: Optional[str]) -> Values:
    """vCPU v's values from `source` ("snapshot", "region"; None: the snapshot when it has any)."""
    snap = v.snapshot()
    source_given = source
    live_active = w.target.live and v.state == "launched"
    if source is None:
        if not snap.count and live_active:
            raise HvError("vCPU %d's snapshot is empty (reason: %s) and its VMCS region is active on the "
                          "processor (stale in memory, SDM 25.11.1): run vmcs %d --refresh for current values, "
                          "or --source region for the stale page" % (v.index, snap.reason, v.index))
        source = "snapshot" if snap.count else "region"
        note = "" if snap.count else ("vCPU %d's snapshot is empty (reason: %s): showing the region; set the "
                                      "descriptor's SnapshotOnEveryExit to 1 for architectural values" %
                                      (v.index, snap.reason))
    else:
        note = ""
    if source == "snapshot" and snap.count and w.target.live:
        note = note or ("snapshot taken by hv.sys at: %s (sequence %d); not refreshed: --refresh for current "
                        "values" % (snap.reason, snap.sequence))
    if source == "snapshot":
        if snap.torn:
            note = "the snapshot was being written when the target stopped (odd sequence %d): values may be torn" \
                   % snap.sequence
        return Values(dict(snap.values), "snapshot", note)
    d = w.descriptor()
    if d.LayoutStatus != 1 or not d.LayoutCount:
        raise HvError("vCPU %d: cannot decode the VMCS region: the driver's layout map is %s"
                      % (v.index, d.layout_status))
    if not v.VmcsRegionPa:
        raise HvError("vCPU %d has no VMCS region (VmcsRegionPa is 0)" % v.index)
    page = w.read_page(v.VmcsRegionPa, "vCPU %d's VMCS region" % v.index)
    values = region_values(page, d.layout)
    if live_active:
        note = LIVE_REGION_NOTE
    elif not plausible(values):
        if source_given is None:
            raise HvError("vCPU %d: empty snapshot (reason: %s) and a stale VMCS page (active when the target "
                          "stopped, SDM 25.11.1): set SnapshotOnEveryExit to 1 for values at every exit, or "
                          "--source region for the page" % (v.index, snap.reason))
        note = STALE_REGION_NOTE
    return Values(values, "region", note)
