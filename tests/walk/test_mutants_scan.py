"""hv/scan.py's evidence, weights and page walking against hand-worked pages (issue 16: each test
kills mutants the lab-backed tests of test_scan.py let live). The oracles are written out here: the
field encodings from SDM Appendix B, the bit positions from SDM 2.5 (CR0.PE bit 0, CR0.PG bit 31,
CR4.VMXE bit 13), the weights from scan.py's docstring table, and a layout of our own choosing (the
offsets are arbitrary: scan must read wherever the map says)."""
from __future__ import annotations

import struct

import pytest

from windbg_ext.hv import scan
from windbg_ext.hv.descriptor import LayoutEntry
from windbg_ext.target.base import TargetMemoryError

# SDM Appendix B encodings, spelled out (not looked up through the code under test)
LINK, GUEST_CR0, HOST_CR3, HOST_CR4, HOST_RSP, HOST_RIP = 0x2800, 0x6800, 0x6C02, 0x6C04, 0x6C14, 0x6C16
OFFSETS = {LINK: 0x100, GUEST_CR0: 0x200, HOST_CR3: 0x300, HOST_CR4: 0x308, HOST_RSP: 0x400, HOST_RIP: 0x408}
LAYOUT = [LayoutEntry(enc, off, 8, 1) for enc, off in OFFSETS.items()]
KERNEL = 0xFFFFF80000001000            # a canonical kernel-half address
IN_USE = {LINK: 0xFFFFFFFFFFFFFFFF, GUEST_CR0: 0x80000001, HOST_CR3: 0x1AD000, HOST_CR4: 1 << 13,
          HOST_RSP: KERNEL + 0x8000, HOST_RIP: KERNEL}


def page(dword0=4, abort=0, **values):
    """A 4 KiB page: dword 0, the abort indicator, then each field (by encoding) at OFFSETS."""
    raw = bytearray(0x1000)
    struct.pack_into("<II", raw, 0, dword0, abort)
    for enc, value in values.get("fields", {}).items():
        struct.pack_into("<Q", raw, OFFSETS[enc], value)
    return bytes(raw)


def with_(**changes):
    out = dict(IN_USE)
    for name, value in changes.items():
        enc = globals()[name]
        if value is None:
            out.pop(enc)
        else:
            out[enc] = value
    return out


def test_the_encodings_and_bits_are_the_sdm_ones():
    assert (scan.LINK, scan.GUEST_CR0, scan.HOST_CR3, scan.HOST_CR4, scan.HOST_RSP, scan.HOST_RIP) == \
        (LINK, GUEST_CR0, HOST_CR3, HOST_CR4, HOST_RSP, HOST_RIP)
    assert (scan.CR4_VMXE, scan.CR0_PE, scan.CR0_PG) == (0x2000, 0x1, 0x80000000)
    assert scan.KERNEL_HALF == 0xFFFF800000000000 and scan.PAGE == 4096


def test_every_check_passing_gives_the_weights_of_the_table():
    score, evidence, passed = scan.field_evidence(IN_USE)
    assert score == pytest.approx(0.75)                       # 0.25 + 0.15 + 0.15 + 0.10 + 0.10
    assert passed == ["link pointer", "host CR4", "host RIP/RSP", "host CR3", "guest CR0"]
    assert evidence == ["VMCS link pointer ~0 (25.4.2)", "host CR4.VMXE set (27.2.2)",
                        "host RIP 0xfffff80000001000 and RSP 0xfffff80000009000 in kernel space (27.2.3)",
                        "host CR3 0x1ad000 page-aligned physical (27.2.2)", "guest CR0.PE and CR0.PG set (25.4.1)"]


@pytest.mark.parametrize("change,lost,weight", [
    ({"LINK": 0}, "link pointer", 0.25),
    ({"LINK": 0xFFFFFFFFFFFFFFFE}, "link pointer", 0.25),
    ({"HOST_CR4": 0xFFFFFFFFFFFFDFFF}, "host CR4", 0.15),     # every bit but VMXE
    ({"HOST_CR4": None}, "host CR4", 0.15),
    ({"HOST_RIP": 0xFFFF7FFFFFFFFFFF}, "host RIP/RSP", 0.15),  # one below the kernel half
    ({"HOST_RSP": 0xFFFF7FFFFFFFFFFF}, "host RIP/RSP", 0.15),
    ({"HOST_RIP": None}, "host RIP/RSP", 0.15),
    ({"HOST_RSP": None}, "host RIP/RSP", 0.15),
    ({"HOST_CR3": 0}, "host CR3", 0.10),
    ({"HOST_CR3": None}, "host CR3", 0.10),
    ({"HOST_CR3": 1 << 52}, "host CR3", 0.10),                 # above any physical address
    ({"HOST_CR3": 0x1AD001}, "host CR3", 0.10),
    ({"HOST_CR3": 0x1AD800}, "host CR3", 0.10),
    ({"GUEST_CR0": 0x80000000}, "guest CR0", 0.10),            # PG without PE
    ({"GUEST_CR0": 0x1}, "guest CR0", 0.10),                   # PE without PG
    ({"GUEST_CR0": None}, "guest CR0", 0.10),
])
def test_each_check_fails_alone(change, lost, weight):
    score, evidence, passed = scan.field_evidence(with_(**change))
    assert lost not in passed and len(passed) == 4
    assert score == pytest.approx(0.75 - weight)
    assert len(evidence) == 4 + (1 if "LINK" in change else 0)


@pytest.mark.parametrize("change", [{"HOST_RIP": 0xFFFF800000000000, "HOST_RSP": 0xFFFF800000000000},
                                    {"HOST_CR3": (1 << 52) - 0x1000}, {"HOST_CR3": 0x1000},
                                    {"GUEST_CR0": 0x80000001}, {"HOST_CR4": 0x2000}])
def test_the_boundaries_still_pass(change):
    assert len(scan.field_evidence(with_(**change))[2]) == 5


def test_a_link_pointer_not_all_ones_is_named():
    evidence = scan.field_evidence(with_(LINK=0x27F000))[1]
    assert evidence[0] == "VMCS link pointer 0x27f000, not ~0"
    assert not any("link pointer" in e for e in scan.field_evidence(with_(LINK=None))[1])


def test_plausible_needs_three_checks():
    three = with_(HOST_RIP=0, HOST_CR3=0)
    assert scan.plausible(three)
    assert not scan.plausible(with_(HOST_RIP=0, HOST_CR3=0, GUEST_CR0=0))
    assert not scan.plausible({})
    assert scan.PLAUSIBLE == 3


def test_assess_a_vmcs_in_use_scores_one():
    c = scan.assess(page(fields=IN_USE), 0x27F000, 4, LAYOUT)
    assert c.pa == 0x27F000 and c.revision_id == 4 and c.confidence == 1.0   # 0.25 + 0.75, capped at 1.0
    assert c.evidence[:2] == ["revision id 0x4 in dword 0, shadow bit clear (SDM 25.2)",
                              "VMX-abort indicator 0 (28.7)"]
    assert len(c.evidence) == 7 and c.fields == IN_USE


def test_assess_three_checks_adds_their_weights():
    fields = with_(HOST_RIP=0, HOST_CR3=0)                   # link, CR4, CR0 pass: 0.25 + 0.15 + 0.10
    c = scan.assess(page(fields=fields), 0x5000, 4, LAYOUT)
    assert c.confidence == pytest.approx(0.75) and c.fields == fields
    assert scan.STALE_NOTE not in c.evidence


def test_assess_a_stale_page_keeps_the_header_evidence_only():
    stale = with_(LINK=0x1234, HOST_CR4=0, GUEST_CR0=0)      # two checks pass: not a VMCS in use
    c = scan.assess(page(fields=stale), 0x6000, 4, LAYOUT)
    assert c.confidence == pytest.approx(0.25) and c.fields == {}
    assert c.evidence[-1] == scan.STALE_NOTE and len(c.evidence) == 3


def test_assess_the_header_alone():
    shadow = scan.assess(page(dword0=0x80000004, abort=5, fields=IN_USE), 0x7000, 4, LAYOUT)
    assert shadow.confidence == pytest.approx(0.75)          # neither header weight, every field one
    assert shadow.evidence[0] == "VMX-abort indicator 5 (a VMX abort happened, 28.7)"
    other = scan.assess(page(dword0=5, fields=IN_USE), 0x7000, 4, LAYOUT)
    assert other.confidence == pytest.approx(0.80) and other.evidence[0] == "VMX-abort indicator 0 (28.7)"
    # the indicator is an unsigned 32-bit value (SDM 28.7)
    high = scan.assess(page(abort=0xFFFFFFFF, fields=IN_USE), 0x7000, 4, LAYOUT)
    assert high.evidence[1] == "VMX-abort indicator 4294967295 (a VMX abort happened, 28.7)"


def test_assess_live_and_without_a_layout_check_no_field():
    live = scan.assess(page(fields=IN_USE), 0x8000, 4, LAYOUT, live=True)
    assert live.confidence == pytest.approx(0.25) and live.fields == {}
    assert live.evidence[-1] == scan.LIVE_NOTE and len(live.evidence) == 3
    for layout in (None, []):
        bare = scan.assess(page(dword0=7, fields=IN_USE), 0x9000, 7, layout)
        assert bare.confidence == pytest.approx(0.25) and bare.fields == {}
        assert bare.evidence[-1] == "no layout map for revision id 0x7: fields not checked (see: layout load)"


def test_candidate_as_json():
    c = scan.Candidate(0x27F000, 4, 0.754, ["a"], {LINK: 1})
    assert c.as_json() == {"pa": "0x27f000", "revision_id": "0x4", "confidence": 0.75, "evidence": ["a"]}


def test_pages_with_revision_finds_whole_pages_only():
    block = page(4) + page(5) + page(0x80000004) + page(4) + page(4)[:0xFFF]
    assert list(scan.pages_with_revision(block, 0x100000, 4)) == [0x100000, 0x103000]
    # the shadow bit of the id asked for is dropped (SDM 25.2: bits 30:0 are the revision id)
    assert list(scan.pages_with_revision(page(4), 0x2000, 0x80000004)) == [0x2000]
    assert list(scan.pages_with_revision(page(4)[:0xFFF], 0, 4)) == []
    # a VMCS region is 4 KiB aligned (SDM 25.2): the id inside a page is no candidate
    inside = bytearray(0x2000)
    struct.pack_into("<I", inside, 0x10, 4)
    struct.pack_into("<I", inside, 0x1001, 4)
    assert list(scan.pages_with_revision(bytes(inside), 0, 4)) == []


class Memory:
    """Physical memory of a few pages; reads touching a hole raise as KD does; every read recorded."""

    def __init__(self, pages, holes=(), live=False):
        self.pages, self.holes, self.reads = pages, set(holes), []
        if live:
            self.live = True

    def read_physical(self, pa, n):
        self.reads.append((pa, n))
        if any(pa <= h < pa + n for h in self.holes):
            raise TargetMemoryError(pa, n, True)
        return b"".join(self.pages.get(p, bytes(0x1000)) for p in range(pa, pa + n, 0x1000))[:n]


def test_find_candidates_reads_around_holes(monkeypatch):
    monkeypatch.setattr(scan.layouts, "find", lambda rev: ("x.json", LAYOUT, "") if rev == 4 else None)
    mem = Memory({0x3000: page(4, fields=IN_USE), 0x5000: page(7, fields=IN_USE)}, holes=[0x1000])
    found, scanned, unreadable = scan.find_candidates(mem, [(0, 0x6000)], [4, 7])
    assert [(c.pa, c.revision_id, round(c.confidence, 2)) for c in found] == [(0x3000, 4, 1.0), (0x5000, 7, 0.25)]
    assert found[0].fields == IN_USE and scanned == 0x5000 and unreadable == 0x1000
    assert mem.reads == [(0, 0x6000)] + [(pa, 0x1000) for pa in range(0, 0x6000, 0x1000)]


def test_find_candidates_live_and_in_blocks(monkeypatch):
    monkeypatch.setattr(scan.layouts, "find", lambda rev: ("x.json", LAYOUT, ""))
    monkeypatch.setattr(scan, "BLOCK", 0x2000)
    mem = Memory({0x2000: page(4, fields=IN_USE)}, live=True)
    found, scanned, unreadable = scan.find_candidates(mem, [(0x1000, 0x2800)], [4])
    assert mem.reads == [(0x1000, 0x2000), (0x3000, 0x800)]          # the last block only as long as the range
    assert [(c.pa, c.confidence, c.fields) for c in found] == [(0x2000, 0.25, {})]
    assert scan.LIVE_NOTE in found[0].evidence and (scanned, unreadable) == (0x2800, 0)


def test_a_short_hole_block_reads_pages_of_the_remaining_length():
    mem = Memory({}, holes=[0x1000])
    out = scan._read_block(mem, 0, 0x1800)
    assert [(a, None if b is None else len(b)) for a, b in out] == [(0, 0x1000), (0x1000, None)]
    assert mem.reads == [(0, 0x1800), (0, 0x1000), (0x1000, 0x800)]
