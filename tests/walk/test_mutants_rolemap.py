"""hv/rolemap.py against the hand-made driver's symbols (tests/walk/handmade.py): every offset and size
a map resolves to is read off that file, every refusal is one line naming what is wrong (issue 16:
kills the mutants that test_maps.py's built-driver tests let live)."""
from __future__ import annotations

import json

import pytest

from windbg_ext.hv import rolemap
from windbg_ext.hv.rolemap import BUILTIN_MAPS, MapError, resolve

from .handmade import ULL, UINT, VCPU_T, VOIDP, isf, spec, table

SEVEN = BUILTIN_MAPS["7days"]


def refused(s, key="m.json", t=None):
    with pytest.raises(MapError) as e:
        resolve(s, t or table(), key)
    return str(e.value)


def test_the_builtin_map_resolves_to_the_hand_made_offsets():
    m = resolve(SEVEN, table(), "7days")
    assert (m.key, m.name) == ("7days", "7 Days to Virtualization")
    assert (m.context_symbol, m.context_offset, m.context_address, m.context_type, m.context_pointer,
            m.context_size) == ("g_vmm_context", 0, None, "__vmm_context_t", True, 0x10)
    assert (m.vcpu_type, m.vcpu_size, m.layout, m.vcpus_symbol) == ("__vcpu_t", 0x40, "pointer_to_pointers", None)
    assert (m.vcpus_member.field.name, m.vcpus_member.field.offset, m.vcpus_member.size,
            m.vcpus_member.inline, m.vcpus_member.role) == ("vcpu_table", 8, 8, False, "vcpus")
    assert (m.count.field.name, m.count.field.offset, m.count.size, m.count.role) == \
        ("processor_count", 0, 4, "count")
    assert {r: (x.field.offset, x.size, x.inline, x.role) for r, x in m.roles.items()} == {
        "vmxon_pa": (8, 8, False, "vcpu.vmxon_pa"), "vmxon_va": (0, 8, False, "vcpu.vmxon_va"),
        "vmcs_pa": (0x18, 8, False, "vcpu.vmcs_pa"), "vmcs_va": (0x10, 8, False, "vcpu.vmcs_va"),
        "msr_bitmap_pa": (0x28, 8, False, "vcpu.msr_bitmap_pa"), "msr_bitmap_va": (0x20, 8, False,
                                                                                  "vcpu.msr_bitmap_va"),
        "host_stack": (0x30, 8, False, "vcpu.host_stack")}
    assert m.host_stack_size == 0x6000 and m.extra == {} and m.vmcs_fields == {}
    assert m.count_symbol is None and m.count_size == 4


def test_names_default_from_the_key():
    assert resolve(spec(name=None), table(), "k.json").name == "k.json"
    assert resolve(spec(name=None), table(), "").name == "map"
    assert resolve(spec(name="x"), table(), "").name == "x"


def test_context_by_address_and_offset():
    m = resolve(spec(context={"address": "0xfffff800`00001000", "offset": "0x10", "type": "__vmm_context_t"}),
                table(), "m.json")
    assert (m.context_address, m.context_offset, m.context_symbol, m.context_pointer) == \
        (0xFFFFF80000001000, 0x10, None, False)
    m = resolve(spec(context={"symbol": "g_vmm_context", "offset": 24, "type": "__vmm_context_t",
                              "pointer": False}), table(), "m.json")
    assert (m.context_symbol, m.context_offset, m.context_address) == ("g_vmm_context", 24, None)
    m = resolve(spec(context={"symbol": ["g_missing", "g_vmm_context"], "type": "__vmm_context_t"}), table(), "m")
    assert m.context_symbol == "g_vmm_context" and m.context_size == 0x10 and m.context_pointer is False


@pytest.mark.parametrize("change,message", [
    ({"context": "g"}, "map m.json: context needs a symbol (or an address) and a type"),
    ({"context": {"type": "__vmm_context_t"}}, "map m.json: context needs a symbol (or an address) and a type"),
    ({"context": {"symbol": "g_vmm_context"}}, "map m.json: context needs a symbol (or an address) and a type"),
    ({"context": {"address": "0xzz", "type": "__vmm_context_t"}},
     "map m.json: context address/offset '0xzz' is not a number (0x... or decimal)"),
    ({"context": {"symbol": "g_vmm_context", "offset": "ten", "type": "__vmm_context_t"}},
     "map m.json: context address/offset 'ten' is not a number (0x... or decimal)"),
    ({"context": {"symbol": ["g_a", "g_b"], "type": "__vmm_context_t"}},
     "map m.json: the context symbol g_a / g_b is not in the symbols of sevendays (a tentative, uninitialised "
     "global can be missing from a PDB: initialise it, e.g. = NULL)"),
    ({"vcpu_type": None}, "map m.json: vcpu_type (the per-processor struct) is missing"),
    ({"vcpu_type": ""}, "map m.json: vcpu_type (the per-processor struct) is missing"),
    ({"vcpus": None}, "map m.json: vcpus needs a member (of the context) or a symbol"),
    ({"vcpus": {"layout": "structs"}}, "map m.json: vcpus needs a member (of the context) or a symbol"),
    ({"context": None, "count": 2}, "map m.json: vcpus names a member but the map has no context"),
    ({"vcpus": {"member": "processor_count"}},
     "map m.json: __vmm_context_t.processor_count is a unsigned int, not a pointer or an array: give vcpus.layout"),
    ({"vcpus": {"member": "vcpu_table", "layout": "list"}},
     "map m.json: vcpus.layout must be one of pointer_to_pointers, pointer_to_structs, pointers, structs "
     "(got 'list')"),
    ({"vcpus": {"symbol": "g_vmm_context"}},
     "map m.json: vcpus.layout must be one of pointer_to_pointers, pointer_to_structs, pointers, structs (got '')"),
    ({"vcpus": {"member": "vcpu_tabel"}},
     "map m.json: vcpus names __vmm_context_t.vcpu_tabel, which does not exist (did you mean vcpu_table?)"),
    ({"vcpus": {"member": 5}}, "map m.json: vcpus names __vmm_context_t.5, which does not exist"),
    ({"count": True}, 'map m.json: count must be a number, "processors", {"member": M} or {"symbol": S}'),
    ({"count": "cpus"}, 'map m.json: count must be a number, "processors", {"member": M} or {"symbol": S}'),
    ({"count": {"size": 4}}, 'map m.json: count must be a number, "processors", {"member": M} or {"symbol": S}'),
    ({"context": None, "vcpus": {"symbol": "g_vmm_context", "layout": "structs"}, "count": {"member": "x"}},
     "map m.json: count names a member but the map has no context"),
    ({"count": {"symbol": "g_count"}},
     "map m.json: the processor count symbol g_count is not in the symbols of sevendays (a tentative, "
     "uninitialised global can be missing from a PDB: initialise it, e.g. = NULL)"),
    ({"vcpu": ["vmcs_physical"]}, "map m.json: vcpu must map roles to members"),
    ({"vcpu": {"vmcs": "vmcs"}}, "map m.json: unknown vCPU role 'vmcs' (roles: vmxon_pa, vmxon_va, vmcs_pa, "
                                 "vmcs_va, msr_bitmap_pa, msr_bitmap_va, host_stack)"),
    ({"vcpu": {"vmxon_pa": "vmxon_physical"}}, "map m.json: no VMCS role: name vcpu.vmcs_pa or vcpu.vmcs_va"),
    ({"vcpu": {}}, "map m.json: no VMCS role: name vcpu.vmcs_pa or vcpu.vmcs_va"),
    ({"vcpu": {"vmcs_pa": "vmcs_phys"}},
     "map m.json: vcpu.vmcs_pa names __vcpu_t.vmcs_phys, which does not exist (did you mean vmcs_physical or "
     "vmcs?)"),
    ({"host_stack_size": "stack_size"}, "map m.json: host_stack_size names __vcpu_t.stack_size, which does not "
                                        "exist (did you mean stack?)"),
    ({"extra": {"exits": "exit_cnt"}}, "map m.json: extra.exits names __vcpu_t.exit_cnt, which does not "
                                       "exist (did you mean exit_count?)"),
    ({"vmcs_fields": {"GUEST_RIPP": "exit_count"}},
     "map m.json: vmcs_fields names 'GUEST_RIPP', which is not a VMCS field (see: field --all)"),
    ({"vmcs_fields": {"GUEST_RIP": "rip"}}, "map m.json: vmcs_fields.GUEST_RIP names __vcpu_t.rip, which does "
                                            "not exist"),
    ({"stack": 1, "vcpu_count": 2}, "map m.json: unknown key stack, vcpu_count (known: context, count, vcpus, "
                                    "vcpu_type, vcpu, host_stack_size, extra, vmcs_fields)"),
])
def test_bad_maps_one_line(change, message):
    assert refused(spec(**change)) == message


def test_a_map_that_is_not_an_object():
    assert refused([], key="") == "map ?: expected a JSON object"
    assert refused("x", key="k") == "map k: expected a JSON object"
    assert refused(spec(name="named", vcpu_type=None), key="") == \
        "map named: vcpu_type (the per-processor struct) is missing"


def test_counts():
    assert resolve(spec(count=4), table(), "m").count == 4
    assert resolve(spec(count=None), table(), "m").count == "processors"
    assert resolve(spec(count="processors"), table(), "m").count == "processors"
    t = table()
    t.symbols["g_count"] = 0x4000
    m = resolve(spec(count={"symbol": ["g_n", "g_count"], "size": 8}), t, "m")
    assert (m.count, m.count_symbol, m.count_size) == ("symbol", "g_count", 8)
    m = resolve(spec(count={"symbol": "g_count"}), t, "m")
    assert m.count_size == 4


def test_vcpu_layouts_from_the_member_type():
    def layout_of(t):
        doc = isf()
        doc["user_types"]["__vmm_context_t"]["fields"]["vcpu_table"]["type"] = t
        return resolve(SEVEN, rolemap_table(doc), "m").layout

    assert layout_of({"kind": "pointer", "subtype": VCPU_T}) == "pointer_to_structs"
    assert layout_of({"kind": "array", "count": 4, "subtype": {"kind": "pointer", "subtype": VCPU_T}}) == "pointers"
    assert layout_of({"kind": "array", "count": 4, "subtype": VCPU_T}) == "structs"
    assert layout_of({"kind": "pointer", "subtype": {"kind": "pointer", "subtype": VCPU_T}}) == \
        "pointer_to_pointers"
    assert resolve(spec(vcpus={"member": "vcpu_table", "layout": "structs"}), table(), "m").layout == "structs"
    m = resolve(spec(vcpus={"symbol": ["g_none", "g_vmm_context"], "layout": "pointers"}), table(), "m")
    assert (m.vcpus_symbol, m.layout, m.vcpus_member) == ("g_vmm_context", "pointers", None)


def rolemap_table(doc):
    from windbg_ext.hv.symbols import from_isf
    return from_isf(doc, "ISF hand.json")


def test_inline_members_and_member_sizes():
    doc = isf()
    fields = doc["user_types"]["__vcpu_t"]["fields"]
    fields["stack"] = {"offset": 0x40, "type": {"kind": "array", "count": 0x6000, "subtype":
                                                {"kind": "base", "name": "unsigned char"}}}
    fields["regs"] = {"offset": 0x38, "type": {"kind": "union", "name": "__vmm_context_t"}}
    fields["inner"] = {"offset": 0x30, "type": {"kind": "struct", "name": "__vmm_context_t"}}
    m = resolve(spec(extra={"u": "regs", "s": "inner", "n": "exit_count"}, host_stack_size="exit_count"),
                rolemap_table(doc), "m")
    assert (m.roles["host_stack"].inline, m.roles["host_stack"].size) == (True, 0x6000)
    assert {k: (x.inline, x.size) for k, x in m.extra.items()} == {"u": (True, 0x10), "s": (True, 0x10),
                                                                   "n": (False, 4)}
    assert (m.host_stack_size.field.name, m.host_stack_size.role) == ("exit_count", "host_stack_size")
    m = resolve(spec(host_stack_size=None, vmcs_fields={"GUEST_RIP": "vmcs"}), table(), "m")
    assert m.host_stack_size is None and m.vmcs_fields["GUEST_RIP"].role == "vmcs_fields.GUEST_RIP"


def test_builtin_maps_keep_only_the_members_the_driver_has():
    doc = isf()
    fields = doc["user_types"]["__vcpu_t"]["fields"]
    for name in ("msr_bitmap", "msr_bitmap_physical"):
        del fields[name]
    m = resolve(SEVEN, rolemap_table(doc), "7days")
    assert "msr_bitmap_pa" not in m.roles and "msr_bitmap_va" not in m.roles and "vmcs_pa" in m.roles
    assert "msr_bitmap_physical" in refused(SEVEN, key="m.json", t=rolemap_table(doc))   # a file's map: all


def test_builtin_for_and_choose(tmp_path):
    assert rolemap.builtin_for(table()) == "7days"
    plain = table(__vcpu_t=None)
    assert rolemap.builtin_for(plain) is None
    with pytest.raises(MapError) as e:
        rolemap.choose(plain, None)
    assert str(e.value) == ("no built-in map fits sevendays (none of __vcpu_t, VIRTUAL_MACHINE_STATE, "
                            "VMM_PROCESSOR_CONTEXT is defined): write a map (see: map --suggest) and give it "
                            "with --map FILE")
    assert rolemap.choose(table(), None).key == "7days" and rolemap.choose(table(), "").key == "7days"
    assert rolemap.choose(table(), "7days").name == "7 Days to Virtualization"
    path = tmp_path / "m.json"
    path.write_text(json.dumps(spec(name="from a file")))
    m = rolemap.choose(table(), str(path))
    assert (m.key, m.name) == (str(path), "from a file")
    with pytest.raises(MapError) as e:
        rolemap.choose(table(), str(tmp_path / "none.json"))
    assert "none.json" in str(e.value)


def test_suggest_finds_the_roles_of_the_hand_made_driver():
    assert rolemap.suggest(table()) == {
        "name": "sevendays (suggested: check every line)", "vcpu_type": "__vcpu_t",
        "vcpu": {"vmxon_pa": "vmxon_physical", "vmcs_pa": "vmcs_physical", "msr_bitmap_pa": "msr_bitmap_physical",
                 "vmxon_va": "vmxon", "vmcs_va": "vmcs", "msr_bitmap_va": "msr_bitmap", "host_stack": "stack"},
        "context": {"symbol": "g_vmm_context", "type": "__vmm_context_t", "pointer": True},
        "vcpus": {"member": "vcpu_table"}, "count": {"member": "processor_count"}}


def test_suggest_without_a_context_or_physical_members():
    vcpu = {"kind": "struct", "size": 0x20, "fields": {
        "VmcsRegion": {"offset": 0, "type": ULL}, "VmxonArea": {"offset": 8, "type": VOIDP},
        "Stack": {"offset": 0x10, "type": VOIDP}, "Cookie": {"offset": 0x18, "type": UINT}}}
    t = table(__vcpu_t=None, __vmm_context_t=None, CPU_STATE=vcpu)
    assert rolemap.suggest(t) == {
        "name": "sevendays (suggested: check every line)", "vcpu_type": "CPU_STATE",
        # VmcsRegion is no pointer and not named physical: neither role; VmxonArea stands for VMXON
        "vcpu": {"vmxon_va": "VmxonArea", "host_stack": "Stack", "vmcs_pa": "TODO: the vmcs_pa member of CPU_STATE"},
        "vcpus": {"symbol": "TODO: the global that holds the vCPUs", "layout": "pointer_to_structs"},
        "count": "processors"}


def test_suggest_picks_the_struct_with_most_region_words_and_a_count_member():
    doc = isf()
    doc["user_types"]["__vmm_context_t"]["fields"]["number_of_cpus"] = {"offset": 4, "type": UINT}
    del doc["user_types"]["__vmm_context_t"]["fields"]["processor_count"]
    doc["user_types"]["stack_only"] = {"kind": "struct", "size": 8, "fields": {"stack": {"offset": 0, "type": VOIDP}}}
    doc["symbols"] = {"ctx_vmm_holder": {"address": 1}, "vmm_context_copy": {"address": 2}, "other": {"address": 3}}
    s = rolemap.suggest(rolemap_table(doc))
    assert s["vcpu_type"] == "__vcpu_t" and s["count"] == {"member": "number_of_cpus"}
    assert s["context"]["symbol"] == "ctx_vmm_holder"          # the shortest name with a word of the type
    doc["symbols"] = {"g_vmm_context_long": {"address": 1}, "vmm_context": {"address": 2}}
    assert rolemap.suggest(rolemap_table(doc))["context"]["symbol"] == "g_vmm_context_long"   # g_ first
    doc["symbols"] = {}
    assert rolemap.suggest(rolemap_table(doc))["context"]["symbol"] == \
        "TODO: the global that holds a __vmm_context_t"


def test_suggest_with_no_vmx_struct():
    t = table(__vcpu_t=None, __vmm_context_t={"kind": "struct", "size": 4, "fields": {"n": {"offset": 0,
                                                                                          "type": UINT}}})
    with pytest.raises(MapError) as e:
        rolemap.suggest(t)
    assert str(e.value) == ("the symbols of sevendays define no struct with VMXON/VMCS members: are the PDB's "
                            "types there (compile with -g -gcodeview or /Zi)?")
    with pytest.raises(MapError):
        rolemap.suggest(table(__vcpu_t=None, __vmm_context_t=None))


def test_roles_and_layouts_tables():
    assert rolemap.VCPU_ROLES == ("vmxon_pa", "vmxon_va", "vmcs_pa", "vmcs_va", "msr_bitmap_pa", "msr_bitmap_va",
                                  "host_stack")
    assert rolemap.MAX_VCPUS == 1024


# -- malformed ISF types (the first mutation run on rolemap found them; issue 16) ---------------------------
def _with_stack_type(t):
    doc = isf()
    doc["user_types"]["__vcpu_t"]["fields"]["stack"]["type"] = t
    return rolemap_table(doc)


@pytest.mark.parametrize("t,why", [
    ({"kind": "array", "count": 4}, "no 'subtype' key"),
    ({"kind": "struct"}, "no 'name' key"),
    ({"kind": "bitfield"}, "no 'type' key"),
    ({"kind": "array", "count": "x", "subtype": UINT}, "invalid literal for int() with base 10: 'x'"),
    ({"kind": "array", "count": 4, "subtype": "char"}, "'str' object has no attribute 'get'"),
    ("int", "'str' object has no attribute 'get'"),
])
def test_a_malformed_member_type_is_one_line(t, why):
    assert refused(spec(), t=_with_stack_type(t)) == \
        "map m.json: vcpu.host_stack names __vcpu_t.stack, whose type in ISF hand.json is malformed (%s)" % why


def test_a_list_count_is_one_line_too():
    msg = refused(spec(), t=_with_stack_type({"kind": "array", "count": [4], "subtype": UINT}))
    assert msg.startswith("map m.json: vcpu.host_stack names __vcpu_t.stack, whose type in ISF hand.json is "
                          "malformed (int() argument must be ")   # the rest of the text varies with Python
    assert msg.endswith(", not 'list')")
    assert "\n" not in msg


def test_a_pointer_with_no_subtype_is_a_pointer_to_structs():
    # describe_type spells it `void *`; a pointer of unknown pointee is a pointer, never "not a pointer"
    doc = isf()
    doc["user_types"]["__vmm_context_t"]["fields"]["vcpu_table"]["type"] = {"kind": "pointer"}
    m = resolve(SEVEN, rolemap_table(doc), "m")
    assert (m.layout, m.vcpus_member.size, m.vcpus_member.inline) == ("pointer_to_structs", 8, False)
    doc["user_types"]["__vmm_context_t"]["fields"]["vcpu_table"]["type"] = {"kind": "pointer", "subtype": "x"}
    assert resolve(SEVEN, rolemap_table(doc), "m").layout == "pointer_to_structs"


def test_suggest_gives_each_member_one_role():
    # VmxonVmcsArea names both regions: VMXON (the first role asked) takes it, VMCS takes the next vmcs member
    vcpu = {"kind": "struct", "size": 0x18, "fields": {
        "VmxonVmcsArea": {"offset": 0, "type": VOIDP}, "VmcsRegion": {"offset": 8, "type": VOIDP},
        "Stack": {"offset": 0x10, "type": VOIDP}}}
    s = rolemap.suggest(table(__vcpu_t=None, __vmm_context_t=None, CPU=vcpu))
    assert s["vcpu"] == {"vmxon_va": "VmxonVmcsArea", "vmcs_va": "VmcsRegion", "host_stack": "Stack"}


# -- the first mutation run's survivors (docs/mutation-notes.md; issue 16) ---------------------------------
def test_a_fresh_resolved_map_and_one_without_context():
    assert vars(rolemap.ResolvedMap()) == {
        "name": "", "key": "", "context_symbol": None, "context_offset": 0, "context_address": None,
        "context_type": None, "context_pointer": False, "context_size": 0, "count": None, "count_symbol": None,
        "count_size": 4, "vcpus_symbol": None, "vcpus_member": None, "layout": "", "vcpu_type": "",
        "vcpu_size": 0, "roles": {}, "host_stack_size": None, "extra": {}, "vmcs_fields": {}}
    m = resolve(spec(context=None, vcpus={"symbol": "g_vmm_context", "layout": "structs"}, count=2), table(), "m")
    assert (m.context_symbol, m.context_offset, m.context_address, m.context_type, m.context_pointer,
            m.context_size) == (None, 0, None, None, False, 0)


def test_resolve_without_a_key_and_with_a_comment():
    m = resolve(spec(name=None), table())
    assert (m.key, m.name) == ("", "map")
    assert resolve(spec(comment="hand-written"), table(), "m").name == "7 Days to Virtualization"


@pytest.mark.parametrize("change,message", [
    ({"context": None, "vcpus": {"symbol": ["g_vcpus", "GuestState"], "layout": "structs"}, "count": 1},
     "map m.json: the vCPU table symbol g_vcpus / GuestState is not in the symbols of sevendays (a tentative, "
     "uninitialised global can be missing from a PDB: initialise it, e.g. = NULL)"),
    ({"count": {"member": "processor_cnt"}},
     "map m.json: count names __vmm_context_t.processor_cnt, which does not exist (did you mean processor_count?)"),
])
def test_more_bad_maps_one_line(change, message):
    assert refused(spec(**change)) == message


def test_choose_keeps_the_builtin_key_and_words_a_bad_file(tmp_path):
    assert rolemap.choose(table(), "7days").key == "7days"
    path = tmp_path / "m.json"
    path.write_text("{")
    with pytest.raises(MapError) as e:
        rolemap.choose(table(), str(path))
    assert str(e.value) == "the map %s is not valid JSON (Expecting property name enclosed in double quotes: " \
                           "line 1 column 2 (char 1))" % path
    with pytest.raises(MapError) as e:
        rolemap.choose(table(), str(tmp_path))
    assert str(e.value) == "the map %s is a directory: give a file inside it" % tmp_path


def test_builtin_maps_skip_a_missing_member_and_go_on():
    doc = isf()
    del doc["user_types"]["__vcpu_t"]["fields"]["vmxon"]          # vmxon_va, the second role, is missing
    m = resolve(SEVEN, rolemap_table(doc), "7days")
    assert sorted(m.roles) == ["host_stack", "msr_bitmap_pa", "msr_bitmap_va", "vmcs_pa", "vmcs_va", "vmxon_pa"]


@pytest.mark.parametrize("field", ["vmxon_region", "vmcs_region", "msr_area", "host_stack"])
def test_one_region_word_is_enough_for_suggest(field):
    vcpu = {"kind": "struct", "size": 8, "fields": {field: {"offset": 0, "type": ULL}}}
    assert rolemap.suggest(table(__vcpu_t=None, __vmm_context_t=None, CPU=vcpu))["vcpu_type"] == "CPU"


def _holder(member_type, **more):
    fields = {"cpus": {"offset": 0, "type": member_type}}
    fields.update(more)
    return {"kind": "struct", "size": 0x20, "fields": fields}


def test_suggest_finds_a_pointer_to_or_an_array_of_vcpus_and_no_count():
    for t in ({"kind": "pointer", "subtype": VCPU_T}, {"kind": "array", "count": 4, "subtype": VCPU_T}):
        s = rolemap.suggest(table(__vmm_context_t=None, AAA={"kind": "struct", "size": 4, "fields": {
            "n": {"offset": 0, "type": UINT}}}, HOLDER=_holder(t)))
        assert (s["context"], s["vcpus"], s["count"]) == (
            {"symbol": "TODO: the global that holds a HOLDER", "type": "HOLDER", "pointer": True},
            {"member": "cpus"}, "processors")


def test_suggest_takes_the_first_holder():
    p = {"kind": "pointer", "subtype": VCPU_T}
    s = rolemap.suggest(table(__vmm_context_t=None, FIRST=_holder(p), SECOND=_holder(p, cpu_count={
        "offset": 8, "type": UINT})))
    assert (s["context"]["type"], s["count"]) == ("FIRST", "processors")


def test_suggest_skips_a_non_pointer_va_and_looks_further():
    vcpu = {"kind": "struct", "size": 0x10, "fields": {"vmcs_id": {"offset": 0, "type": UINT},
                                                       "vmcs": {"offset": 8, "type": VOIDP}}}
    assert rolemap.suggest(table(__vcpu_t=None, __vmm_context_t=None, CPU=vcpu))["vcpu"] == {
        "vmcs_va": "vmcs", "vmxon_pa": "TODO: the vmxon_pa member of CPU"}


@pytest.mark.parametrize("type_name,symbols,guess", [
    ("HV_STATE", ["g_hv_ptr", "state_holder"], "state_holder"),     # words of 2 letters do not count
    ("HV", ["g_context_ptr", "other"], "g_context_ptr"),            # no word of 3 letters: "context"
    ("VMM_DATA", ["a_vmm", "g_vmm_data_long"], "g_vmm_data_long"),   # g_ names first
    ("VMM_DATA", ["vmm_b_long", "vmm_c"], "vmm_c"),                  # then the shortest
])
def test_guess_global(type_name, symbols, guess):
    doc = isf()
    doc["symbols"] = {n: {"address": 0x100} for n in symbols}
    assert rolemap._guess_global(rolemap_table(doc), type_name) == guess


def test_one_vmcs_role_is_enough():
    assert sorted(resolve(spec(vcpu={"vmcs_pa": "vmcs_physical"}), table(), "m").roles) == ["vmcs_pa"]
    assert sorted(resolve(spec(vcpu={"vmcs_va": "vmcs"}), table(), "m").roles) == ["vmcs_va"]


def test_suggest_takes_a_name_ending_in_pa_as_physical():
    vcpu = {"kind": "struct", "size": 0x10, "fields": {"VmxonPa": {"offset": 0, "type": ULL},
                                                       "VmcsPa": {"offset": 8, "type": ULL}}}
    assert rolemap.suggest(table(__vcpu_t=None, __vmm_context_t=None, CPU=vcpu))["vcpu"] == {
        "vmxon_pa": "VmxonPa", "vmcs_pa": "VmcsPa"}
