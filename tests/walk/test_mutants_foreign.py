"""hv/foreign.py walking the hand-made driver (tests/walk/handmade.py) through every layout a map can
name, with the addresses and values worked out from that file; the module base from each source
(issue 16: kills the mutants that the built-driver tests let live)."""
from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest

from windbg_ext.hv import foreign
from windbg_ext.hv.descriptor import LayoutEntry
from windbg_ext.hv.foreign import ForeignError, ForeignWalker
from windbg_ext.hv.rolemap import BUILTIN_MAPS, resolve
from windbg_ext.hv.symbols import SymbolsError

from .handmade import BASE, CONTEXT_RVA, Memory, sevendays_memory, spec, table, vcpu_bytes

SEVEN = BUILTIN_MAPS["7days"]
CONTEXT, TABLE = 0xFFFFA00000010000, 0xFFFFA00000020000
VCPUS = [{"vmxon_physical": 0x5000 + 0x3000 * i, "vmcs_physical": 0x6000 + 0x3000 * i,
          "msr_bitmap_physical": 0x7000 + 0x3000 * i, "stack": 0xFFFFA00000100000 + 0x10000 * i,
          "exit_count": 10 + i} for i in range(3)]


def walker(map_spec=None, vcpus=VCPUS, key="x.json", **kw):
    t = table()
    mem, at = sevendays_memory(list(vcpus), **kw)
    return ForeignWalker(mem, t, resolve(map_spec or SEVEN, t, key), BASE, "--module-base"), mem, at


def error(fn, *args):
    with pytest.raises(ForeignError) as e:
        fn(*args)
    return str(e.value)


def test_pointer_to_pointers_reads_each_vcpu():
    w, mem, at = walker()
    vs = w.vcpus()
    assert [(v.index, v.address) for v in vs] == [(0, at[0]), (1, at[1]), (2, at[2])]
    assert [v.pa for v in vs] == [{"vmxon": 0x5000, "vmcs": 0x6000, "msr_bitmap": 0x7000},
                                  {"vmxon": 0x8000, "vmcs": 0x9000, "msr_bitmap": 0xA000},
                                  {"vmxon": 0xB000, "vmcs": 0xC000, "msr_bitmap": 0xD000}]
    assert (w.count, w.count_source, w.context_address, w.context_where) == \
        (3, "__vmm_context_t.processor_count", CONTEXT, "sevendays!g_vmm_context")
    assert w.context_data == struct.pack("<IIQ", 3, 0, TABLE)
    # reads: the pointer, the context, vcpu_table, the table, each vCPU; then nothing more (cached)
    assert mem.stats.reads == 7 and w.vcpus() is vs and mem.stats.reads == 7
    assert vs[1].host_stack() == (0xFFFFA00000110000, 0x6000)
    assert vs[2].values["vmcs_va"] == 0 and vs[2].data == vcpu_bytes(**VCPUS[2])


def test_vcpu_by_number():
    w, _, at = walker()
    assert w.vcpu(2).address == at[2] and w.vcpu(0).index == 0
    assert error(w.vcpu, 3) == "vCPU 3 does not exist: sevendays has 3 (0-2)"
    assert error(w.vcpu, -1) == "vCPU -1 does not exist: sevendays has 3 (0-2)"


def test_structs_in_a_global_array():
    t = table()
    array = b"".join(vcpu_bytes(**v) for v in VCPUS[:2])
    mem = Memory(virtual={BASE + 0x4000: array}, processors=2)
    m = resolve(spec(context=None, count=None, vcpus={"symbol": "g_vmm_context", "layout": "structs"}), t, "m")
    t.symbols["g_vmm_context"] = 0x4000
    w = ForeignWalker(mem, t, m, BASE, "x")
    vs = w.vcpus()
    assert [v.address for v in vs] == [BASE + 0x4000, BASE + 0x4040]
    assert [v.pa["vmcs"] for v in vs] == [0x6000, 0x9000]
    assert (w.count, w.count_source, w.context_address) == (2, "the target's processor count", None)


def test_pointer_to_structs_and_pointers():
    t = table()
    array = b"".join(vcpu_bytes(**v) for v in VCPUS[:2])
    mem = Memory(virtual={BASE + 0x4000: struct.pack("<Q", 0xFFFFA00000040000), 0xFFFFA00000040000: array})
    m = resolve(spec(context=None, count=2, vcpus={"symbol": "g_vmm_context", "layout": "pointer_to_structs"}),
                t, "m")
    t.symbols["g_vmm_context"] = 0x4000
    w = ForeignWalker(mem, t, m, BASE, "x")
    assert [v.address for v in w.vcpus()] == [0xFFFFA00000040000, 0xFFFFA00000040040]
    assert (w.count, w.count_source) == (2, "the map")
    mem = Memory(virtual={BASE + 0x4000: struct.pack("<2Q", 0xFFFFA00000050000, 0xFFFFA00000060000),
                          0xFFFFA00000050000: vcpu_bytes(**VCPUS[0]), 0xFFFFA00000060000: vcpu_bytes(**VCPUS[1])})
    m = resolve(spec(context=None, count=2, vcpus={"symbol": "g_vmm_context", "layout": "pointers"}), t, "m")
    w = ForeignWalker(mem, t, m, BASE, "x")
    assert [(v.address, v.pa["vmxon"]) for v in w.vcpus()] == [(0xFFFFA00000050000, 0x5000),
                                                               (0xFFFFA00000060000, 0x8000)]


def test_null_pointers_and_tables():
    w, mem, _ = walker()
    mem.virtual[BASE + CONTEXT_RVA] = bytes(8)
    assert error(w.vcpus) == ("sevendays!g_vmm_context is NULL: the driver has no VMM context (not loaded, failed, "
                              "or unloaded)")
    w, mem, _ = walker()
    mem.virtual[CONTEXT] = struct.pack("<IIQ", 3, 0, 0)
    assert error(w.vcpus) == "__vmm_context_t.vcpu_table is NULL: no vCPU table"
    w, mem, at = walker()
    mem.virtual[TABLE] = struct.pack("<3Q", at[0], 0, at[2])
    assert error(w.vcpus) == "vCPU 1: the table at 0x%x holds NULL" % TABLE


def test_unreadable_memory_names_what():
    w, mem, _ = walker()
    del mem.virtual[CONTEXT]
    assert error(w.vcpus) == ("cannot read the VMM context (__vmm_context_t) at 0x%x: cannot read 16 bytes at "
                              "virtual address 0x%x: not present in the target" % (CONTEXT, CONTEXT))
    w, mem, at = walker()
    del mem.virtual[at[1]]
    assert error(w.vcpus).startswith("cannot read vCPU 1 (__vcpu_t) at 0x%x" % at[1])
    w, mem, _ = walker()
    del mem.virtual[TABLE]
    assert error(w.vcpus).startswith("cannot read the vCPU pointer table (__vmm_context_t.vcpu_table) at 0x%x: "
                                     "cannot read 24 bytes" % TABLE)


@pytest.mark.parametrize("count,ok", [(0, False), (1, True), (1024, True), (1025, False)])
def test_processor_count_bounds(count, ok):
    w, _, _ = walker(vcpus=VCPUS[:1], count=count)
    if ok:
        assert w.processor_count() == count
    else:
        assert error(w.processor_count) == ("processor count %d (from __vmm_context_t.processor_count) is "
                                            "implausible: wrong map or corrupt context" % count)


def test_count_from_a_symbol():
    t = table()
    t.symbols["g_count"] = 0x5000
    m = resolve(spec(count={"symbol": "g_count", "size": 2}), t, "m")
    mem, _ = sevendays_memory(VCPUS[:2])
    mem.virtual[BASE + 0x5000] = b"\x02\x05"
    w = ForeignWalker(mem, t, m, BASE, "x")
    assert error(w.processor_count) == ("processor count 1282 (from sevendays!g_count) is implausible: wrong map "
                                        "or corrupt context")
    mem.virtual[BASE + 0x5000] = b"\x02\x00"
    assert w.processor_count() == 2 and w.count_source == "sevendays!g_count"


def test_context_by_address_with_offset():
    mem, at = sevendays_memory(VCPUS[:1])
    t = table()
    m = resolve(spec(context={"address": "0x%x" % (CONTEXT - 0x20), "offset": "0x20", "type": "__vmm_context_t"}),
                t, "m")
    w = ForeignWalker(mem, t, m, BASE, "x")
    assert [v.address for v in w.vcpus()] == at
    assert (w.context_where, w.context_address) == ("0x%x" % CONTEXT, CONTEXT)
    m = resolve(spec(context={"symbol": "g_vmm_context", "offset": 8, "type": "__vmm_context_t", "pointer": True}),
                t, "m")
    mem.virtual[BASE + CONTEXT_RVA] = struct.pack("<QQ", 0, CONTEXT)
    w = ForeignWalker(mem, t, m, BASE, "x")
    assert w.processor_count() == 1 and w.context_where == "sevendays!g_vmm_context+0x8"


def test_host_stack_extras_and_stored_fields():
    w, _, at = walker(spec(host_stack_size="exit_count", extra={"exits": "exit_count", "table": "vmcs_physical"},
                           vmcs_fields={"GUEST_RIP": "msr_bitmap_physical"}))
    v = w.vcpu(1)
    assert v.host_stack() == (0xFFFFA00000110000, 11)
    assert v.extras() == {"exits": 11, "table": 0x9000} and v.stored_vmcs_fields() == {"GUEST_RIP": 0xA000}
    w, _, _ = walker(spec(host_stack_size=None))
    assert w.vcpu(0).host_stack() == (0xFFFFA00000100000, 0)
    w, _, _ = walker(spec(vcpu={"vmcs_pa": "vmcs_physical"}))
    assert w.vcpu(0).host_stack() is None and w.vcpu(0).pa == {"vmxon": None, "vmcs": 0x6000, "msr_bitmap": None}


def test_an_inline_stack_is_its_address_and_size():
    from .handmade import isf
    from windbg_ext.hv.symbols import from_isf
    doc = isf()
    doc["user_types"]["__vcpu_t"]["fields"]["stack"] = {"offset": 0x30, "type": {
        "kind": "array", "count": 0x10, "subtype": {"kind": "base", "name": "unsigned char"}}}
    t = from_isf(doc, "ISF hand.json")
    mem, at = sevendays_memory(VCPUS[:1])
    w = ForeignWalker(mem, t, resolve(SEVEN, t, "7days"), BASE, "x")
    v = w.vcpu(0)
    assert v.values["host_stack"] == at[0] + 0x30 and v.host_stack() == (at[0] + 0x30, 0x10)


def test_a_member_wider_than_a_qword_reads_eight_bytes():
    from windbg_ext.hv.rolemap import Member
    from windbg_ext.hv.symbols import Field
    data = bytes(range(1, 17))
    assert foreign._value(data, Member("r", Field("f", 2, {}), 16, False)) == int.from_bytes(data[2:10], "little")
    assert foreign._value(data, Member("r", Field("f", 2, {}), 0, False)) == int.from_bytes(data[2:10], "little")
    assert foreign._value(data, Member("r", Field("f", 2, {}), 2, False)) == 0x0403


# 4-level paging by hand (SDM 4.5): VA 0xFFFFA00000005000 -> PML4[320] PDPT[0] PD[0] PT[5]
VA = 0xFFFFA00000005000


def paged_memory(mem, leaf=0x5000):
    pml4, pdpt, pd, pt = (bytearray(0x1000) for _ in range(4))
    struct.pack_into("<Q", pml4, 320 * 8, 0x21000 | 3)
    struct.pack_into("<Q", pdpt, 0, 0x22000 | 3)
    struct.pack_into("<Q", pd, 0, 0x23000 | 3)
    struct.pack_into("<Q", pt, 5 * 8, leaf | 3)
    mem.physical.update({0x20000: bytes(pml4), 0x21000: bytes(pdpt), 0x22000: bytes(pd), 0x23000: bytes(pt)})
    mem.regs = {"cr3": 0x20000, "cr4": 0}


def test_virtual_regions_are_translated():
    vcpu = {"vmxon": VA, "vmcs": VA + 0x1000 - 0x1000 + 0x10, "stack": 1}
    w, mem, _ = walker(spec(vcpu={"vmxon_va": "vmxon", "vmcs_va": "vmcs", "msr_bitmap_va": "msr_bitmap"}),
                       vcpus=[vcpu])
    paged_memory(mem)
    v = w.vcpu(0)
    assert v.pa == {"vmxon": 0x5000, "vmcs": 0x5010, "msr_bitmap": None}    # msr_bitmap 0: not translated
    assert v.sources["vmxon_pa"] == "translated from __vcpu_t.vmxon" and "msr_bitmap_pa" not in v.sources
    assert w.translate(VA + 0x1000) is None                                 # PT[6] not present


def test_translate_without_registers():
    w, mem, _ = walker()
    assert w.translate(VA) is None                   # the target gives no registers
    mem.regs = {"cr4": 0}
    assert w.translate(VA) is None                   # no CR3
    mem.regs = {"cr3": 0x20000}
    assert w.translate(VA) is None                   # CR3's table not in memory
    paged_memory(mem)
    del mem.regs["cr4"]
    assert w.translate(VA + 0x123) == 0x5123         # CR4 absent: 4-level paging


LAYOUT = [LayoutEntry(0x2800, 0x10, 8, 1), LayoutEntry(0x6C04, 0x18, 8, 1), LayoutEntry(0x6C02, 0x20, 8, 1),
          LayoutEntry(0x6C16, 0x28, 8, 1)]


def vmcs_page(host_rip, link=0xFFFFFFFFFFFFFFFF):
    page = bytearray(0x1000)
    struct.pack_into("<II", page, 0, 9, 0)
    struct.pack_into("<QQQQ", page, 0x10, link, 0x2000, 0x1AD000, host_rip)
    return bytes(page)


@pytest.fixture
def layout9(monkeypatch):
    monkeypatch.setattr(foreign.layouts, "revision_ids", lambda: [9])
    monkeypatch.setattr(foreign.layouts, "find", lambda rev: ("rev9.json", LAYOUT, "") if rev == 9 else None)


def test_base_from_host_rip(layout9):
    t = table()                                       # RVAs 0x1000 (DriverEntry) and 0x3000 (g_vmm_context)
    rip = BASE + 0x3000
    mem = Memory(physical={0x8000: vmcs_page(rip)}, ranges=[(0x8000, 0x1000)],
                 virtual={BASE: b"MZ", BASE + 0x2000: b"PE"})
    assert foreign.base_from_host_rip(mem, t) == BASE                 # rip - 0x3000; rip - 0x1000 has no MZ
    mem = Memory(physical={0x8000: vmcs_page(rip + 0x10)}, ranges=[(0x8000, 0x1000)], virtual={BASE: b"MZ"})
    assert foreign.base_from_host_rip(mem, t) is None                 # no RVA leaves a page-aligned base
    mem = Memory(physical={0x8000: vmcs_page(rip, link=0)}, ranges=[(0x8000, 0x1000)], virtual={BASE: b"MZ"})
    assert foreign.base_from_host_rip(mem, t) is None                 # below the report threshold
    mem = Memory(physical={0x8000: vmcs_page(0)}, ranges=[(0x8000, 0x1000)], virtual={BASE: b"MZ"})
    assert foreign.base_from_host_rip(mem, t) is None                 # no HOST_RIP
    assert foreign.base_from_host_rip(Memory(ranges=[]), t) is None
    assert foreign.base_from_host_rip(Memory(), t) is None


def test_base_from_host_rip_needs_a_nonzero_rva(layout9):
    t = table()
    t.symbols = {"at_zero": 0, "g": 0x3000}
    mem = Memory(physical={0x8000: vmcs_page(BASE)}, ranges=[(0x8000, 0x1000)],
                 virtual={BASE: b"MZ", BASE - 0x3000: b"MZ"})
    assert foreign.base_from_host_rip(mem, t) == BASE - 0x3000   # RVA 0 would give BASE itself: not taken


def test_module_base_from_each_source(layout9):
    t = table()
    assert foreign.module_base(Memory(), "sevendays", 0x1234, t) == (0x1234, "--module-base")
    mods = [{"name": "nt", "base": 1}, {"name": "SevenDays.sys", "base": BASE}]
    assert foreign.module_base(Memory(module_list=mods), "sevendays", None, t) == (BASE, "the target's module list")
    mods = [{"name": "sevendays", "base": BASE + 0x1000}]
    assert foreign.module_base(Memory(module_list=mods), "SevenDays", None) == (BASE + 0x1000,
                                                                                 "the target's module list")
    live = Memory(symbols={"sevendays!DriverEntry": BASE + 0x1000}, live=True)
    assert foreign.module_base(live, "sevendays", None, t) == (BASE, "the debugger's sevendays!DriverEntry less its "
                                                                     "RVA")
    assert live.asked == ["sevendays!DriverEntry"]
    live = Memory(symbols={"sevendays!g_vmm_context": BASE + 0x3000}, live=True)
    assert foreign.module_base(live, "sevendays", None, t) == (BASE, "the debugger's sevendays!g_vmm_context less "
                                                                     "its RVA")
    assert live.asked == ["sevendays!DriverEntry", "sevendays!g_vmm_context"]      # DriverEntry asked once
    dump = Memory(physical={0x8000: vmcs_page(BASE + 0x3000)}, ranges=[(0x8000, 0x1000)], virtual={BASE: b"MZ"})
    assert foreign.module_base(dump, "sevendays", None, t) == (BASE, "a scanned VMCS's HOST_RIP less a symbol's RVA")
    dump.live = True                                  # live: no scan over all memory
    with pytest.raises(ForeignError) as e:
        foreign.module_base(dump, "sevendays", None, t)
    assert str(e.value) == ("module sevendays is not in the target's module list: give its load address with "
                            "--module-base (WinDbg: lm m sevendays), or use scan, which needs no symbols")
    with pytest.raises(ForeignError):
        foreign.module_base(Memory(), "sevendays", None)


def test_module_base_asks_the_debugger_three_names_at_most():
    t = table()
    t.symbols.update({"a": 0x10, "b": 0x20, "c": 0x30})
    live = Memory(live=True)
    with pytest.raises(ForeignError):
        foreign.module_base(live, "sevendays", None, t)
    assert live.asked == ["sevendays!DriverEntry", "sevendays!a", "sevendays!b"]
    t.symbols.pop("DriverEntry")
    live = Memory(live=True)
    with pytest.raises(ForeignError):
        foreign.module_base(live, "sevendays", None, t)
    assert live.asked == ["sevendays!a", "sevendays!b"]


def ctx(**kw):
    return SimpleNamespace(**kw)


def test_the_context_helpers(tmp_path):
    import json
    from .handmade import isf
    path = tmp_path / "sevendays.json"
    path.write_text(json.dumps(isf()))
    mem, at = sevendays_memory(VCPUS[:2])
    c = ctx(target=mem, symbols_path=str(path), module_base=BASE)
    w = foreign.walker_for(c)
    assert foreign.walker_for(c) is w and c._foreign_walker is w and c._symbol_table is w.table
    assert (w.module_base, w.base_found_by, w.map.key) == (BASE, "--module-base", "7days")
    assert foreign.msr_bitmap_pa(c, 1) == 0xA000
    assert foreign.describe(w) == {"module": "sevendays", "module_base": "0x140000000",
                                   "module_base_from": "--module-base", "symbols": "ISF %s" % path,
                                   "map": "7days", "map_name": "7 Days to Virtualization"}
    w.map.key = ""
    assert foreign.describe(w)["map"] == "7 Days to Virtualization"
    assert foreign.load_table(ctx(symbols_path=str(path), module_name="other")).module == "other"
    with pytest.raises(SymbolsError) as e:
        foreign.load_table(ctx())
    assert str(e.value) == "this needs the driver's symbols: give --symbols FILE (a .pdb or an ISF .json)"
    assert foreign.uses_symbols(ctx(symbols_path="x")) and foreign.uses_symbols(ctx(map_path="m"))
    assert not foreign.uses_symbols(ctx()) and not foreign.uses_symbols(ctx(symbols_path="", map_path=None))


def test_msr_bitmap_pa_needs_one():
    w, _, _ = walker(spec(vcpu={"vmcs_pa": "vmcs_physical"}))
    c = ctx(_foreign_walker=w)
    with pytest.raises(ForeignError) as e:
        foreign.msr_bitmap_pa(c, 0)
    assert str(e.value) == ("vCPU 0 has no MSR bitmap the map can find (name vcpu.msr_bitmap_pa or msr_bitmap_va)")
    w, _, _ = walker(vcpus=[dict(VCPUS[0], msr_bitmap_physical=0)])
    with pytest.raises(ForeignError):
        foreign.msr_bitmap_pa(ctx(_foreign_walker=w), 0)
