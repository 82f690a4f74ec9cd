"""hv/foreign_views.py on a driver written out by hand (tests/walk/handmade.py): what vcpu shows, the
region checks' inputs, the layout decode and the region-against-structures checks, with every value
worked out from the hand-made memory (issue 16: kills the mutants the lab-backed tests let live)."""
from __future__ import annotations

import struct

import pytest

from windbg_ext.hv import foreign_views as views
from windbg_ext.hv.descriptor import LayoutEntry
from windbg_ext.hv.foreign import ForeignWalker
from windbg_ext.hv.rolemap import BUILTIN_MAPS, resolve

from .handmade import BASE, Memory, sevendays_memory, table

IA32_VMX_BASIC = 0x480          # SDM Appendix A.1
VMXON_PA, VMCS_PA, BITMAP_PA = 0x5000, 0x6000, 0x7000
STACK = 0xFFFFA00000100000
VCPU = {"vmxon_physical": VMXON_PA, "vmcs_physical": VMCS_PA, "msr_bitmap_physical": BITMAP_PA,
        "vmxon": 0xFFFFA00000005000, "vmcs": 0xFFFFA00000006000, "stack": STACK, "exit_count": 7}


def walker(vcpus=(VCPU,), spec=None, key="7days", **kw):
    t = table()
    mem, at = sevendays_memory(list(vcpus), **kw)
    return ForeignWalker(mem, t, resolve(spec or BUILTIN_MAPS["7days"], t, key), BASE, "--module-base"), mem, at


def region_page(dword0, dword1=0):
    return struct.pack("<II", dword0, dword1) + bytes(0x1000 - 8)


def test_header_names_the_map_and_where_it_came_from(tmp_path):
    w, _, _ = walker()
    assert views.header(w) == ("sevendays walked from its symbols: ISF hand.json\n"
                               "module base 0x140000000 (from --module-base)\n"
                               "map: 7 Days to Virtualization (built in, chosen from the type __vcpu_t)")
    spec = dict(BUILTIN_MAPS["7days"], name="mine")
    w, _, _ = walker(spec=spec, key="/maps/mine.json")
    assert views.header(w).splitlines()[2] == "map: mine (from /maps/mine.json)"


def test_vcpu_data_of_a_hand_made_vcpu():
    w, _, at = walker(spec=dict(BUILTIN_MAPS["7days"], extra={"exits": "exit_count"}), key="x.json")
    assert views.vcpu_data(w.vcpu(0)) == {
        "vcpu": 0, "address": "0x%x" % at[0], "vmxon_pa": "0x5000", "vmcs_pa": "0x6000", "msr_bitmap_pa": "0x7000",
        "vmxon_va": "0xffffa00000005000", "vmcs_va": "0xffffa00000006000",
        "host_stack": ["0xffffa00000100000", "0xffffa00000106000"],       # 0x6000 bytes: the built-in size
        "sources": {"vmxon_pa": "__vcpu_t.vmxon_physical", "vmxon_va": "__vcpu_t.vmxon",
                    "vmcs_pa": "__vcpu_t.vmcs_physical", "vmcs_va": "__vcpu_t.vmcs",
                    "msr_bitmap_pa": "__vcpu_t.msr_bitmap_physical", "msr_bitmap_va": "__vcpu_t.msr_bitmap",
                    "host_stack": "__vcpu_t.stack"},
        "extra": {"exits": "0x7"}}


def test_vcpu_data_stack_of_unknown_size_and_none():
    spec = {k: v for k, v in BUILTIN_MAPS["7days"].items() if k != "host_stack_size"}
    w, _, _ = walker(spec=spec, key="x.json")
    assert views.vcpu_data(w.vcpu(0))["host_stack"] == ["0xffffa00000100000", None]
    spec = dict(spec, vcpu={"vmcs_pa": "vmcs_physical"})
    w, _, _ = walker(spec=spec, key="x.json")
    data = views.vcpu_data(w.vcpu(0))
    assert data["host_stack"] is None and data["vmxon_pa"] is None and data["vmcs_va"] is None


def test_basic_from_the_msr_else_the_vmxon_revision_id():
    assert views._basic(Memory(msrs={IA32_VMX_BASIC: 0xDA040000000004}), b"\x05\0\0\0") == \
        (0xDA040000000004, "IA32_VMX_BASIC of processor 0")
    standin = "no IA32_VMX_BASIC in this target: the VMXON region's revision id stands in"
    assert views._basic(Memory(), b"\x12\x34\x56\xf8\0\0\0\0") == (0x78563412, standin)   # bit 31 dropped
    assert views._basic(Memory(), b"\x04\0\0\0") == (4, standin)
    assert views._basic(Memory(), b"\x04\0\0") == (0, "IA32_VMX_BASIC unknown")
    assert views._basic(Memory(), None) == (0, "IA32_VMX_BASIC unknown")


def test_head_reads_or_gives_none():
    mem = Memory(physical={0x5000: b"abcdefgh"})
    assert views._head(mem, 0x5000, 4) == b"abcd" and views._head(mem, 0x5004, 8) is None
    assert views._head(mem, None, 4) is None and mem.stats.reads == 2


def checks_by_name(checks):
    return {(c.region, c.name): c.ok for c in checks}


def test_region_checks_read_each_page_the_map_finds():
    w, mem, _ = walker()
    mem.physical = {VMXON_PA: region_page(4), VMCS_PA: region_page(5), BITMAP_PA: bytes(0x1000)}
    checks, basic, where = views.region_checks(mem, w.vcpu(0))
    assert (basic, where) == (4, "no IA32_VMX_BASIC in this target: the VMXON region's revision id stands in")
    ok = checks_by_name(checks)
    assert ok[("VMXON", "revision id")] is True and ok[("VMCS", "revision id")] is False   # 5, not 4
    assert ok[("MSR bitmap", "4 KiB aligned")] is True and ("MSR bitmap", "readable") not in ok
    assert [c.region for c in checks].count("VMXON") == 5 and checks[0].detail == "physical 0x5000"


def test_region_checks_unaligned_bitmap_and_no_vmxon():
    vcpu = dict(VCPU, msr_bitmap_physical=BITMAP_PA + 0x10)
    w, mem, _ = walker([vcpu])
    mem.physical = {VMXON_PA: region_page(4), VMCS_PA: region_page(4), BITMAP_PA: bytes(0x1000)}
    mem.msrs = {IA32_VMX_BASIC: 4}
    checks, basic, _ = views.region_checks(mem, w.vcpu(0))
    ok = checks_by_name(checks)
    assert ok[("MSR bitmap", "4 KiB aligned")] is False and ok[("MSR bitmap", "readable")] is False
    assert ok[("VMCS", "revision id")] is True and basic == 4
    spec = dict(BUILTIN_MAPS["7days"], vcpu={"vmcs_pa": "vmcs_physical"})
    w, mem, _ = walker(spec=spec, key="x.json")
    mem.physical, mem.msrs = {VMCS_PA: region_page(4)}, {IA32_VMX_BASIC: 4}
    checks, _, _ = views.region_checks(mem, w.vcpu(0))
    assert {c.region for c in checks} == {"VMCS"}
    assert checks_by_name(checks)[("VMCS", "revision id")] is True


def test_region_checks_without_a_vmcs_pa_check_address_zero():
    spec = dict(BUILTIN_MAPS["7days"], vcpu={"vmcs_va": "vmcs"})
    w, mem, _ = walker(spec=spec, key="x.json")         # no registers: the VA cannot be translated
    checks, _, _ = views.region_checks(mem, w.vcpu(0))
    ok = checks_by_name(checks)
    assert ok[("VMCS", "allocated")] is False and ok[("VMCS", "readable")] is False
    assert checks[0].detail == "physical 0x0"


LAYOUT = [LayoutEntry(0x2800, 0x10, 8, 1), LayoutEntry(0x6C14, 0x18, 8, 1), LayoutEntry(0x2004, 0x20, 8, 1)]


def test_region_layout_decodes_the_page_with_the_layout_of_its_revision(monkeypatch):
    monkeypatch.setattr(views.layouts, "find", lambda rev: ("rev%d.json" % rev, LAYOUT, "") if rev == 9 else None)
    page = bytearray(region_page(0x80000009))
    struct.pack_into("<QQQ", page, 0x10, 0xFFFFFFFFFFFFFFFF, STACK + 0x5FF0, BITMAP_PA)
    vcpu = dict(VCPU, vmcs_physical=VMCS_PA + 0x123)         # inside the page: the page is read
    w, mem, _ = walker([vcpu])
    mem.physical = {VMCS_PA: bytes(page)}
    assert views.region_layout(mem, w.vcpu(0)) == (
        {0x2800: 0xFFFFFFFFFFFFFFFF, 0x6C14: STACK + 0x5FF0, 0x2004: BITMAP_PA}, "rev9.json")
    mem.physical = {VMCS_PA: region_page(7)}
    assert views.region_layout(mem, w.vcpu(0)) == (
        {}, "no layout map for revision id 0x7 (save one from hv.sys on this processor model: layout save)")
    mem.physical = {}
    assert views.region_layout(mem, w.vcpu(0)) == ({}, "the VMCS page is not readable")
    w, mem, _ = walker([dict(VCPU, vmcs_physical=0)])
    mem.physical = {0: region_page(9)}
    assert views.region_layout(mem, w.vcpu(0)) == ({}, "the VMCS page is not readable")


# region-derived values of a VMCS in use: link ~0, host CR4.VMXE, host CR3 aligned (3 of scan's 5 checks)
IN_USE = {0x2800: 0xFFFFFFFFFFFFFFFF, 0x6C04: 0x2000, 0x6C02: 0x1AD000}


def consistency(values, vcpu=VCPU, live=False):
    w, _, _ = walker([vcpu])
    return [(c.region, c.ok, c.detail) for c in views.region_consistency(w.vcpu(0), values, live)]


def test_region_consistency_against_the_map():
    assert consistency({**IN_USE, **{0x2004: BITMAP_PA, 0x6C14: STACK + 0x6000}}) == [
        ("MSR bitmap", True, "region 0x7000, the map's bitmap 0x7000"),
        ("host stack", True, "0xffffa00000106000 in 0xffffa00000100000-0xffffa00000106000")]   # the top is in
    assert consistency({**IN_USE, **{0x2004: BITMAP_PA + 0x1000, 0x6C14: STACK}}) == [
        ("MSR bitmap", False, "region 0x8000, the map's bitmap 0x7000"),
        ("host stack", False, "0xffffa00000100000 in 0xffffa00000100000-0xffffa00000106000")]  # the base is not
    assert [ok for _, ok, _ in consistency({**IN_USE, **{0x6C14: STACK + 1}})] == [True]
    assert [ok for _, ok, _ in consistency({**IN_USE, **{0x6C14: STACK + 0x6001}})] == [False]


def test_region_consistency_names_and_sections():
    w, _, _ = walker()
    out = views.region_consistency(w.vcpu(0), {**IN_USE, **{0x2004: BITMAP_PA, 0x6C14: STACK + 8}})
    assert [(c.name, c.sdm) for c in out] == [("VMCS MSR_BITMAP field (region*)", "25.6.9"),
                                              ("HOST_RSP inside (region*)", "25.5")]


def test_region_consistency_stale_and_live_are_not_decided():
    stale = {0x2800: 0x1234, 0x2004: BITMAP_PA, 0x6C14: STACK + 8}
    assert consistency(stale) == [("MSR bitmap", None, views.STALE_PAGE), ("host stack", None, views.STALE_PAGE)]
    assert consistency({**IN_USE, **{0x2004: BITMAP_PA, 0x6C14: STACK + 8}}, live=True) == [
        ("MSR bitmap", None, views.STALE_LIVE), ("host stack", None, views.STALE_LIVE)]
    assert views.STALE_LIVE == "not checked live: the VMCS page is stale while the processor holds it (25.11.1)"
    assert views.STALE_PAGE == "not checked: the page holds no VMCS values (stale while the VMCS was active, 25.11.1)"


def test_region_consistency_needs_both_sides():
    assert consistency({}) == []
    no_bitmap = {k: v for k, v in VCPU.items() if k != "msr_bitmap_physical"}
    spec_vcpu = {"vmcs_pa": "vmcs_physical", "host_stack": "stack"}
    w, _, _ = walker([no_bitmap], spec=dict(BUILTIN_MAPS["7days"], vcpu=spec_vcpu), key="x.json")
    out = views.region_consistency(w.vcpu(0), {**IN_USE, **{0x2004: BITMAP_PA, 0x6C14: STACK + 8}})
    assert [c.region for c in out] == ["host stack"]
    spec = {k: v for k, v in BUILTIN_MAPS["7days"].items() if k != "host_stack_size"}
    w, _, _ = walker(spec=spec, key="x.json")              # stack size unknown: no stack check
    out = views.region_consistency(w.vcpu(0), {**IN_USE, **{0x2004: BITMAP_PA, 0x6C14: STACK + 8}})
    assert [c.region for c in out] == ["MSR bitmap"]


@pytest.mark.parametrize("encoding", [0x6C14, 0x2004])
def test_the_encodings_are_the_sdm_ones(encoding):
    assert encoding in (views.HOST_RSP, views.MSR_BITMAP)    # SDM Appendix B: HOST_RSP 0x6C14, MSR_BITMAP 0x2004
