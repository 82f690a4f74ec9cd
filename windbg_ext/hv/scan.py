"""VMCS discovery with no help from the driver, the way memory forensics does
it (Rekall / Volatility `vmscan`): every 4 KiB page whose dword 0 is the VMCS
revision id (SDM 25.2) is a candidate, then the fields a layout map locates
are checked for what a VMCS in use must hold. Pure: pages in, candidates out
(the command reads the memory).

Evidence and weights (confidence = sum, at most 1.0):
  revision id in dword 0, shadow bit clear (25.2)                 0.20
  VMX-abort indicator (dword 1) is 0 (28.7)                        0.05
  VMCS link pointer = ~0 (25.4.2; VM entry checks it, 27.3.1.5)    0.25
  host CR4.VMXE = 1 (27.2.2: VM entry requires it)                 0.15
  host RIP and host RSP canonical kernel addresses (27.2.3)        0.15
  host CR3 a physical address below 2^52, 4 KiB aligned (27.2.2)   0.10
  guest CR0.PE and CR0.PG set, as Windows runs (25.4.1)            0.10
Without a layout map for the revision id only the first two can be checked.
Live, neither can the fields: a processor may hold its current VMCS on chip in
a private format, its page stale (SDM 25.11.1; the lab's kd session models
this), so a live scan checks the first 8 bytes only and says so. A dump
holds the same stale pages for every VMCS that was active when it was taken
(the lab's images model this too): offline the fields are checked, and a page
whose fields do not look like a VMCS in use is said to be stale or not a VMCS
(`plausible`, also what `vmcs`/`verify` use before trusting a region).
"""
from __future__ import annotations

import struct
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Tuple

from windbg_ext.arch.registers import CR0_BITS, CR4_BITS, bit_of
from windbg_ext.arch.vmcs_fields import by_name
from windbg_ext.hv import layouts
from windbg_ext.hv.descriptor import LayoutEntry
from windbg_ext.hv.regions import region_values
from windbg_ext.target.base import TargetMemoryError

PAGE = 0x1000
REPORT_THRESHOLD = 0.70      # below this a page is not reported as a VMCS
LIVE_THRESHOLD = 0.25        # live: revision id and abort indicator are all a page can show
KERNEL_HALF = 0xFFFF800000000000   # canonical upper half, where Windows kernel code and pools live
CR4_VMXE = 1 << bit_of(CR4_BITS, "VMXE")
CR0_PE, CR0_PG = 1 << bit_of(CR0_BITS, "PE"), 1 << bit_of(CR0_BITS, "PG")
LINK, HOST_CR4, HOST_RIP, HOST_RSP, HOST_CR3, GUEST_CR0 = (
    by_name(n).encoding for n in ("VMCS_LINK_POINTER", "HOST_CR4", "HOST_RIP", "HOST_RSP", "HOST_CR3", "GUEST_CR0"))


class Candidate(NamedTuple):
    pa: int
    revision_id: int
    confidence: float
    evidence: List[str]
    fields: Dict[int, int]      # region-derived values (encoding -> value), empty without a layout

    def as_json(self) -> Dict[str, Any]:
        return {"pa": "0x%x" % self.pa, "revision_id": "0x%x" % self.revision_id,
                "confidence": round(self.confidence, 2), "evidence": list(self.evidence)}


def pages_with_revision(block: bytes, base: int, revision_id: int) -> Iterable[int]:
    """Physical addresses of the pages in `block` (at physical `base`) whose dword 0 is revision_id."""
    want = struct.pack("<I", revision_id & 0x7FFFFFFF)
    for off in range(0, len(block) - PAGE + 1, PAGE):
        if block[off:off + 4] == want:
            yield base + off


LIVE_NOTE = ("live: an active VMCS's page is stale or in a private format (SDM 25.11.1): its fields are not "
             "checked, and VMXON regions carry the revision id too")


def assess(page: bytes, pa: int, revision_id: int, layout: Optional[List[LayoutEntry]],
           live: bool = False) -> Candidate:
    """Evidence that the 4 KiB `page` at `pa` is a VMCS in use (live: the first 8 bytes only)."""
    dword0, abort = struct.unpack_from("<II", page)
    score, evidence = 0.0, []
    if dword0 & 0x7FFFFFFF == revision_id and not dword0 >> 31:
        score += 0.20
        evidence.append("revision id 0x%x in dword 0, shadow bit clear (SDM 25.2)" % revision_id)
    if abort == 0:
        score += 0.05
        evidence.append("VMX-abort indicator 0 (28.7)")
    else:
        evidence.append("VMX-abort indicator %d (a VMX abort happened, 28.7)" % abort)
    if live:
        evidence.append(LIVE_NOTE)
        return Candidate(pa, revision_id, score, evidence, {})
    if not layout:
        evidence.append("no layout map for revision id 0x%x: fields not checked (see: layout load)" % revision_id)
        return Candidate(pa, revision_id, score, evidence, {})
    v = region_values(page, layout)
    if not plausible(v):   # scrambled bytes are no evidence either way, and their "HOST_RIP" leads nowhere
        return Candidate(pa, revision_id, score, evidence + [STALE_NOTE], {})
    more, why, _ = field_evidence(v)
    return Candidate(pa, revision_id, min(score + more, 1.0), evidence + why, v)


PLAUSIBLE = 3   # of the 5 field checks below: a stale (scrambled) page passes at most 2 by chance
STALE_NOTE = ("its fields do not look like a VMCS in use: a VMCS active on its processor when the dump was taken "
              "has a stale page (SDM 25.11.1), or this is not a VMCS")


def plausible(v: Dict[int, int]) -> bool:
    """Region-derived values hold what a VMCS in use holds (at least PLAUSIBLE of field_evidence's
    five checks): a VMCS broken on purpose still passes most; a stale page passes a random few
    (link pointer ~0: 2^-64; kernel-half host RIP and RSP, an aligned host CR3: about 2^-17 each)."""
    return len(field_evidence(v)[2]) >= PLAUSIBLE


def field_evidence(v: Dict[int, int]) -> Tuple[float, List[str], List[str]]:
    """(score, evidence, the checks passed) of region-derived VMCS values (encoding -> value) that a
    VMCS in use holds: the link pointer, host state and guest CR0 checks of `assess`."""
    score, evidence, passed = 0.0, [], []
    link = v.get(LINK)
    if link == 0xFFFFFFFFFFFFFFFF:
        score += 0.25
        passed.append("link pointer")
        evidence.append("VMCS link pointer ~0 (25.4.2)")
    elif link is not None:
        evidence.append("VMCS link pointer 0x%x, not ~0" % link)
    cr4 = v.get(HOST_CR4)
    if cr4 is not None and cr4 & CR4_VMXE:
        score += 0.15
        passed.append("host CR4")
        evidence.append("host CR4.VMXE set (27.2.2)")
    rip, rsp = v.get(HOST_RIP), v.get(HOST_RSP)
    if rip is not None and rsp is not None and rip >= KERNEL_HALF and rsp >= KERNEL_HALF:
        score += 0.15
        passed.append("host RIP/RSP")
        evidence.append("host RIP 0x%x and RSP 0x%x in kernel space (27.2.3)" % (rip, rsp))
    cr3 = v.get(HOST_CR3)
    if cr3 and cr3 >> 52 == 0 and cr3 & 0xFFF == 0:
        score += 0.10
        passed.append("host CR3")
        evidence.append("host CR3 0x%x page-aligned physical (27.2.2)" % cr3)
    cr0 = v.get(GUEST_CR0)
    if cr0 is not None and cr0 & CR0_PE and cr0 & CR0_PG:
        score += 0.10
        passed.append("guest CR0")
        evidence.append("guest CR0.PE and CR0.PG set (25.4.1)")
    return score, evidence, passed


# -- the one function here that reads the target --------------------------------------
BLOCK = 1 << 20   # physical bytes per read


def find_candidates(target, ranges, revisions) -> Tuple[List, int, int]:
    """(every page carrying a revision id, assessed; bytes scanned; bytes unreadable) over
    [(start, length)] ranges. A block the target cannot read whole (a hole: KD refuses the read)
    is read again page by page."""
    maps = {}
    for rev in revisions:
        hit = layouts.find(rev)
        maps[rev] = hit[1] if hit else None
    live = bool(getattr(target, "live", False))
    found, scanned, unreadable = [], 0, 0
    for start, length in ranges:
        at, end = start, start + length
        while at < end:
            n = min(BLOCK, end - at)
            for base, block in _read_block(target, at, n):
                if block is None:
                    unreadable += PAGE
                    continue
                scanned += len(block)
                for rev in revisions:
                    for pa in pages_with_revision(block, base, rev):
                        off = pa - base
                        found.append(assess(block[off:off + PAGE], pa, rev, maps[rev], live))
            at += n
    return found, scanned, unreadable


def _read_block(target, at: int, n: int):
    """[(address, bytes or None)]: the block whole, else each page (None where unreadable)."""
    try:
        return [(at, target.read_physical(at, n))]
    except TargetMemoryError:
        pass
    out = []
    for pa in range(at, at + n, PAGE):
        try:
            out.append((pa, target.read_physical(pa, min(PAGE, at + n - pa))))
        except TargetMemoryError:
            out.append((pa, None))
    return out
