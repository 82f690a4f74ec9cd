"""hv/foreign.py: what the walker reads once, how it translates a region's virtual address (processor
0's CR3, every way a target can fail to give one), which scanned VMCS it trusts for the module base,
and the map a context names (issue 16: kills survivors of the first mutation run of foreign.py).
Addresses and values are worked out by hand from tests/walk/handmade.py and SDM 4.5 (4-level paging)."""
from __future__ import annotations

import json
import struct
from types import SimpleNamespace

import pytest

from windbg_ext.hv import foreign
from windbg_ext.hv.descriptor import LayoutEntry
from windbg_ext.hv.foreign import ForeignWalker
from windbg_ext.hv.rolemap import BUILTIN_MAPS, resolve
from windbg_ext.target.base import TargetError

from .handmade import BASE, Memory, isf, sevendays_memory, spec, table, vcpu_bytes

VCPU = {"vmxon_physical": 0x5000, "vmcs_physical": 0x6000, "msr_bitmap_physical": 0x7000}


def walker(map_spec=None, vcpus=(VCPU,), **kw):
    t = table()
    mem, at = sevendays_memory(list(vcpus), **kw)
    return ForeignWalker(mem, t, resolve(map_spec or BUILTIN_MAPS["7days"], t, "x.json"), BASE, "x"), mem, at


def test_the_context_is_read_once():
    w, mem, _ = walker()
    assert w.processor_count() == 1 and mem.stats.reads == 2        # g_vmm_context, then the context
    assert w.processor_count() == 1 and mem.stats.reads == 2        # not again


def test_a_map_without_a_context_leaves_it_empty():
    t = table()
    t.symbols["g_array"] = 0x4000
    mem = Memory(virtual={BASE + 0x4000: vcpu_bytes(**VCPU)}, processors=1)
    m = resolve(spec(context=None, count=None, vcpus={"symbol": "g_array", "layout": "structs"}), t, "m")
    w = ForeignWalker(mem, t, m, BASE, "x")
    assert [v.pa["vmcs"] for v in w.vcpus()] == [0x6000]
    assert (w.context_address, w.context_where, w.context_data) == (None, "", b"")
    assert mem.stats.reads == 1                                      # the array alone


# 4-level paging by hand (SDM 4.5): VA 0xFFFFA00000005000 -> PML4[320] PDPT[0] PD[0] PT[5] -> 0x5000
VA = 0xFFFFA00000005000


def page_tables(cr3):
    pml4, pdpt, pd, pt = (bytearray(0x1000) for _ in range(4))
    struct.pack_into("<Q", pml4, 320 * 8, cr3 + 0x1000 | 3)
    struct.pack_into("<Q", pdpt, 0, cr3 + 0x2000 | 3)
    struct.pack_into("<Q", pd, 0, cr3 + 0x3000 | 3)
    struct.pack_into("<Q", pt, 5 * 8, 0x5000 | 3)
    return {cr3: bytes(pml4), cr3 + 0x1000: bytes(pdpt), cr3 + 0x2000: bytes(pd), cr3 + 0x3000: bytes(pt)}


class PerCpu(Memory):
    """Processor 0's CR3 is 0x20000, processor 1's 0x40000 (tables that map nothing)."""

    def registers(self, cpu=0):
        return {"cr3": (0x20000, 0x40000)[cpu], "cr4": 0}


class NoRegisters(Memory):
    """A target without registers at all: the base class's NotImplementedError."""

    registers = foreign.Target.registers


def test_translate_uses_processor_0s_page_tables():
    w, mem, _ = walker()
    mem.__class__ = PerCpu
    mem.physical = {**page_tables(0x20000), 0x40000: bytes(0x1000)}
    assert w.translate(VA + 0x10) == 0x5010


def test_translate_without_any_register_support():
    w, mem, _ = walker()
    mem.__class__ = NoRegisters
    assert w.translate(VA) is None


def test_translate_of_a_non_canonical_address():
    w, mem, _ = walker()
    mem.physical, mem.regs = page_tables(0x20000), {"cr3": 0x20000, "cr4": 0}
    assert w.translate(0x0000A00000005000 | 1 << 63) is None        # bits 63:47 differ (SDM 4.5): PagingError


class Cpu0Registers(Memory):
    """A target that has registers for processor 0 only."""

    def registers(self, cpu=0):
        if cpu:
            raise TargetError("no processor %d" % cpu)
        return {"cr3": 0x20000, "cr4": 0}


def test_translated_regions_name_their_source():
    vcpu = {"vmcs": VA}
    w, mem, _ = walker(spec(vcpu={"vmcs_va": "vmcs"}), vcpus=[vcpu])
    mem.__class__ = Cpu0Registers
    mem.physical = page_tables(0x20000)
    v = w.vcpu(0)
    assert v.pa == {"vmxon": None, "vmcs": 0x5000, "msr_bitmap": None}
    assert v.sources == {"vmcs_va": "__vcpu_t.vmcs", "vmcs_pa": "translated from __vcpu_t.vmcs"}


LAYOUT = [LayoutEntry(0x2800, 0x10, 8, 1), LayoutEntry(0x6C04, 0x18, 8, 1), LayoutEntry(0x6C02, 0x20, 8, 1),
          LayoutEntry(0x6C16, 0x28, 8, 1), LayoutEntry(0x6800, 0x30, 8, 1)]


def vmcs_page(host_rip, link=0xFFFFFFFFFFFFFFFF, host_cr4=0x2000, guest_cr0=0, abort=0):
    page = bytearray(0x1000)
    struct.pack_into("<II", page, 0, 9, abort)
    struct.pack_into("<QQQQQ", page, 0x10, link, host_cr4, 0x1AD000, host_rip, guest_cr0)
    return bytes(page)


@pytest.fixture
def layout9(monkeypatch):
    monkeypatch.setattr(foreign.layouts, "revision_ids", lambda: [9])
    monkeypatch.setattr(foreign.layouts, "find", lambda rev: ("rev9.json", LAYOUT, "") if rev == 9 else None)


def test_base_from_host_rip_skips_an_unreadable_base(layout9):
    t = table()                        # RVAs 0x1000 and 0x3000: bases rip - 0x1000 (unreadable), rip - 0x3000
    mem = Memory(physical={0x8000: vmcs_page(BASE + 0x3000)}, ranges=[(0x8000, 0x1000)], virtual={BASE: b"MZ"})
    assert foreign.base_from_host_rip(mem, t) == BASE


def test_base_from_host_rip_skips_a_page_below_the_threshold(layout9):
    t = table()
    # page 0x8000: revision 0.20, link 0.25, host CR3 0.10, guest CR0.PE|PG 0.10 = 0.65 < 0.70 (scan.py's
    # weights; VMX-abort indicator 1, so not its 0.05), yet its fields look like a VMCS in use (3 checks
    # pass) and its HOST_RIP would give BASE - 0x10000; page 0x9000 (0.75) gives BASE
    low = vmcs_page(BASE - 0x10000 + 0x3000, host_cr4=0, guest_cr0=0x80000001, abort=1)
    mem = Memory(physical={0x8000: low, 0x9000: vmcs_page(BASE + 0x3000)}, ranges=[(0x8000, 0x2000)],
                 virtual={BASE: b"MZ", BASE - 0x10000: b"MZ"})
    assert foreign.base_from_host_rip(mem, t) == BASE


def test_base_from_host_rip_takes_a_page_at_the_threshold(layout9):
    t = table()
    # revision 0.20, abort 0.05, link 0.25, host CR3 0.10, guest CR0.PE|PG 0.10 = 0.70: reported (not below)
    mem = Memory(physical={0x8000: vmcs_page(BASE + 0x3000, host_cr4=0, guest_cr0=0x80000001)},
                 ranges=[(0x8000, 0x1000)], virtual={BASE: b"MZ"})
    assert foreign.base_from_host_rip(mem, t) == BASE


def test_walker_for_reads_the_map_the_context_names(tmp_path):
    path, mine = tmp_path / "sevendays.json", tmp_path / "mine.json"
    path.write_text(json.dumps(isf()))
    mine.write_text(json.dumps(dict(BUILTIN_MAPS["7days"], name="my map")))
    mem, _ = sevendays_memory([VCPU])
    w = foreign.walker_for(SimpleNamespace(target=mem, symbols_path=str(path), module_base=BASE,
                                           map_path=str(mine)))
    assert (w.map.name, w.map.key) == ("my map", str(mine))


def test_translate_follows_cr4_la57():
    # CR4.LA57 (bit 12) set: 5-level paging (SDM 4.5), CR3 is the PML5 table; the VA's bits 56:48 are
    # 0x1FF, so PML5[511] leads to the same PML4 as above -> 0x5000. Read as 4-level it would reach
    # PML4[320] of the PML5 page, which is empty.
    w, mem, _ = walker()
    pml5 = bytearray(0x1000)
    struct.pack_into("<Q", pml5, 511 * 8, 0x20000 | 3)
    mem.physical = {**page_tables(0x20000), 0x30000: bytes(pml5)}
    mem.regs = {"cr3": 0x30000, "cr4": 1 << 12}
    assert w.translate(VA + 0x20) == 0x5020


def test_an_inline_extra_is_its_address():
    from windbg_ext.hv.symbols import from_isf
    doc = isf()
    doc["user_types"]["__vcpu_t"]["fields"]["stack"] = {"offset": 0x30, "type": {
        "kind": "array", "count": 0x10, "subtype": {"kind": "base", "name": "unsigned char"}}}
    t = from_isf(doc, "ISF hand.json")
    mem, at = sevendays_memory([VCPU])
    w = ForeignWalker(mem, t, resolve(spec(extra={"stack area": "stack"}), t, "m"), BASE, "x")
    assert w.vcpu(0).extras() == {"stack area": at[0] + 0x30}      # where the array lies, not its bytes


def test_a_module_list_entry_without_a_name_matches_nothing():
    mods = [{"base": 0x1000}, {"name": "None.sys", "base": BASE}]
    assert foreign.module_base(Memory(module_list=mods), "none", None) == (BASE, "the target's module list")


@pytest.mark.parametrize("module", ["none", "xxxx"])
def test_a_nameless_entry_matches_no_module_name(module):
    mods = [{"base": 0x1000}]
    with pytest.raises(foreign.ForeignError):
        foreign.module_base(Memory(module_list=mods), module, None)


def error(fn, *args):
    with pytest.raises(foreign.ForeignError) as e:
        fn(*args)
    return str(e.value)


def test_unreadable_pointers_name_what():
    w, mem, _ = walker()
    del mem.virtual[BASE + 0x3000]
    assert error(w.vcpus).startswith("cannot read sevendays!g_vmm_context at 0x140003000: ")
    t = table()
    t.symbols.update({"g_count": 0x5000, "g_array": 0x4000})
    m = resolve(spec(context=None, count={"symbol": "g_count"}, vcpus={"symbol": "g_array", "layout": "structs"}),
                t, "m")
    assert error(ForeignWalker(Memory(), t, m, BASE, "x").vcpus).startswith("cannot read g_count at 0x140005000: ")
    m = resolve(spec(context=None, count=2, vcpus={"symbol": "g_array", "layout": "pointer_to_structs"}), t, "m")
    w = ForeignWalker(Memory(), t, m, BASE, "x")
    assert error(w.vcpus).startswith("cannot read sevendays!g_array at 0x140004000: ")
    w = ForeignWalker(Memory(virtual={BASE + 0x4000: bytes(8)}), t, m, BASE, "x")
    assert error(w.vcpus) == "sevendays!g_array is NULL: no vCPU table"
    w = ForeignWalker(Memory(virtual={BASE + 0x4000: struct.pack("<Q", 0xFFFFA00000040000)}), t, m, BASE, "x")
    assert error(w.vcpus).startswith("cannot read the vCPU array (2 x __vcpu_t) at 0xffffa00000040000: ")


def test_each_struct_of_an_array_is_its_own_bytes():
    t = table()
    t.symbols["g_array"] = 0x4000
    vcpus = [dict(VCPU, exit_count=1), dict(VCPU, exit_count=2)]
    mem = Memory(virtual={BASE + 0x4000: b"".join(vcpu_bytes(**v) for v in vcpus)})
    m = resolve(spec(context=None, count=2, vcpus={"symbol": "g_array", "layout": "structs"}), t, "m")
    vs = ForeignWalker(mem, t, m, BASE, "x").vcpus()
    assert [v.data for v in vs] == [vcpu_bytes(**vcpus[0]), vcpu_bytes(**vcpus[1])]   # 0x40 bytes each


def test_no_scan_without_symbols(layout9):
    # a dump holding a VMCS whose HOST_RIP could give a base: without symbols there is no RVA to subtract
    mem = Memory(physical={0x8000: vmcs_page(BASE + 0x3000)}, ranges=[(0x8000, 0x1000)], virtual={BASE: b"MZ"})
    with pytest.raises(foreign.ForeignError):
        foreign.module_base(mem, "sevendays", None, None)


def test_walker_for_without_a_module_base_attribute(tmp_path):
    path = tmp_path / "sevendays.json"
    path.write_text(json.dumps(isf()))
    mem, _ = sevendays_memory([VCPU])
    mem.module_list = [{"name": "sevendays.sys", "base": BASE}]
    w = foreign.walker_for(SimpleNamespace(target=mem, symbols_path=str(path)))
    assert (w.module_base, w.base_found_by) == (BASE, "the target's module list")


def test_load_table_keeps_the_table_it_loaded():
    t = table()
    assert foreign.load_table(SimpleNamespace(_symbol_table=t)) is t      # no --symbols needed a second time
