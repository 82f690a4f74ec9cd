"""The map of roles: where a driver that is not hv.sys keeps its VMM context,
its vCPU table, the processor count, and per vCPU the VMXON / VMCS /
MSR-bitmap regions and the host stack. A small JSON file (docs/walk.md), or
one of the built-in maps chosen from the type names the driver's symbols
define. Pure: maps are checked against a SymbolTable, nothing is read here.

    {"name": "...",
     "context": {"symbol": "g_vmm_context", "type": "__vmm_context_t", "pointer": true},  (optional;
              "offset": N adds to the symbol's address, "address": "0x..." replaces the symbol)
     "count":   {"member": "processor_count"} | {"symbol": "g_count"} | "processors" | 4,
     "vcpus":   {"member": "vcpu_table"} | {"symbol": "g_GuestState", "layout": "pointer_to_structs"},
     "vcpu_type": "__vcpu_t",
     "vcpu": {"vmxon_pa": "vmxon_physical", "vmcs_pa": "vmcs_physical", "host_stack": "stack", ...},
     "host_stack_size": 24576 | "member",
     "extra": {"exits": "exit_count"},                      (optional members shown as they are)
     "vmcs_fields": {"GUEST_RIP": "saved_rip"}}             (VMCS values the driver stored itself)

A symbol may be a list of names: the first one the module has is used.
"""
from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional, Sequence, Union

from windbg_ext.arch.vmcs_fields import FieldLookupError, by_name
from windbg_ext.hv.symbols import Field, SymbolsError, SymbolTable, describe_type, pointee, read_json

# vCPU roles: physical addresses (the processor's view) and virtual ones (translated when no PA is named)
REGION_ROLES = ("vmxon", "vmcs", "msr_bitmap")
VCPU_ROLES = tuple("%s_%s" % (r, k) for r in REGION_ROLES for k in ("pa", "va")) + ("host_stack",)
LAYOUTS = ("pointer_to_pointers", "pointer_to_structs", "pointers", "structs")
MAX_VCPUS = 1024

BUILTIN_MAPS: Dict[str, Dict[str, Any]] = {
    "7days": {
        "name": "7 Days to Virtualization",
        "context": {"symbol": ["g_vmm_context", "vmm_context"], "type": "__vmm_context_t", "pointer": True},
        "count": {"member": "processor_count"},
        "vcpus": {"member": "vcpu_table"},
        "vcpu_type": "__vcpu_t",
        "vcpu": {"vmxon_pa": "vmxon_physical", "vmxon_va": "vmxon", "vmcs_pa": "vmcs_physical", "vmcs_va": "vmcs",
                 "msr_bitmap_pa": "msr_bitmap_physical", "msr_bitmap_va": "msr_bitmap", "host_stack": "stack"},
        "host_stack_size": 0x6000,
    },
    "hfs": {
        "name": "Hypervisor From Scratch",
        "count": "processors",
        "vcpus": {"symbol": ["g_GuestState", "GuestState"], "layout": "pointer_to_structs"},
        "vcpu_type": "VIRTUAL_MACHINE_STATE",
        "vcpu": {"vmxon_pa": "VmxonRegionPhysicalAddress", "vmxon_va": "VmxonRegionVirtualAddress",
                 "vmcs_pa": "VmcsRegionPhysicalAddress", "vmcs_va": "VmcsRegionVirtualAddress",
                 "msr_bitmap_pa": "MsrBitmapPhysicalAddress", "msr_bitmap_va": "MsrBitmapVirtualAddress",
                 "host_stack": "VmmStack"},
        "host_stack_size": 0x8000,
    },
    "gbhv": {
        "name": "gbhv",
        "context": {"symbol": ["GlobalContext"], "type": "VMM_CONTEXT", "pointer": True},
        "count": {"member": "ProcessorCount"},
        "vcpus": {"member": "AllProcessorContexts"},
        "vcpu_type": "VMM_PROCESSOR_CONTEXT",
        "vcpu": {"vmxon_pa": "VmxonRegionPhysical", "vmxon_va": "VmxonRegion", "vmcs_pa": "VmcsRegionPhysical",
                 "vmcs_va": "VmcsRegion", "msr_bitmap_pa": "MsrBitmapPhysical", "msr_bitmap_va": "MsrBitmap",
                 "host_stack": "HostStack"},
    },
}


class MapError(SymbolsError):
    """A map that does not fit the driver's symbols: one line naming what is missing."""


class Member(NamedTuple):
    role: str
    field: Field
    size: int
    inline: bool      # an array/struct member: its address is the value (e.g. an inline host stack)


class ResolvedMap:
    """A map checked against a SymbolTable: every offset and size known."""

    def __init__(self) -> None:
        self.name = ""
        self.key = ""                       # built-in key or the file path
        self.context_symbol: Optional[str] = None
        self.context_offset = 0                  # "symbol": "g_hv", "offset": 16 -> g_hv + 16
        self.context_address: Optional[int] = None   # "address": "0x..." (no symbol)
        self.context_type: Optional[str] = None
        self.context_pointer = False
        self.context_size = 0
        self.count: Union[int, str, Member, None] = None   # int, "processors", a context member, or a symbol
        self.count_symbol: Optional[str] = None
        self.count_size = 4
        self.vcpus_symbol: Optional[str] = None
        self.vcpus_member: Optional[Member] = None
        self.layout = ""
        self.vcpu_type = ""
        self.vcpu_size = 0
        self.roles: Dict[str, Member] = {}
        self.host_stack_size: Union[int, Member, None] = None
        self.extra: Dict[str, Member] = {}
        self.vmcs_fields: Dict[str, Member] = {}


def _first_symbol(table: SymbolTable, names: Union[str, Sequence[str]], what: str, mapname: str) -> str:
    names = [names] if isinstance(names, str) else list(names)
    for n in names:
        if n in table.symbols:
            return n
    raise MapError("map %s: the %s symbol %s is not in the symbols of %s (a tentative, uninitialised global can "
                   "be missing from a PDB: initialise it, e.g. = NULL)" % (mapname, what, " / ".join(names),
                                                                          table.module))


def _member(table: SymbolTable, struct: str, name: str, role: str, mapname: str) -> Member:
    s = table.struct(struct)
    if not isinstance(name, str) or name not in s.fields:
        import difflib
        close = difflib.get_close_matches(str(name), list(s.fields), n=2)
        raise MapError("map %s: %s names %s.%s, which does not exist%s" % (
            mapname, role, struct, name, (" (did you mean %s?)" % " or ".join(close)) if close else ""))
    f = s.fields[name]
    try:   # a hand-written or damaged ISF type (e.g. an array with no "subtype") is refused in one line
        kind = f.type.get("kind")
        size = table.size_of(f.type)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise MapError("map %s: %s names %s.%s, whose type in %s is malformed (%s)" % (
            mapname, role, struct, name, table.source, ("no %s key" % e) if isinstance(e, KeyError) else e))
    return Member(role, f, size, kind in ("array", "struct", "union"))


def _vcpu_layout(t: Dict[str, Any]) -> str:
    kind = t.get("kind")
    if kind == "pointer":   # no subtype: a void * (as describe_type spells it), so a pointer to structs
        inner = pointee(t)
        return "pointer_to_pointers" if isinstance(inner, dict) and inner.get("kind") == "pointer" \
            else "pointer_to_structs"
    if kind == "array":
        return "pointers" if t.get("subtype", {}).get("kind") == "pointer" else "structs"
    return ""


def resolve(spec: Dict[str, Any], table: SymbolTable, key: str = "") -> ResolvedMap:
    """Checks a map against the driver's symbols. Raises MapError (one line) on the first problem."""
    if not isinstance(spec, dict):
        raise MapError("map %s: expected a JSON object" % (key or "?"))
    m = ResolvedMap()
    m.key = key
    m.name = str(spec.get("name") or key or "map")
    name = key or m.name
    builtin = key in BUILTIN_MAPS
    unknown = set(spec) - {"name", "context", "count", "vcpus", "vcpu_type", "vcpu", "host_stack_size", "extra",
                           "vmcs_fields", "comment"}
    if unknown:
        raise MapError("map %s: unknown key %s (known: context, count, vcpus, vcpu_type, vcpu, host_stack_size, "
                       "extra, vmcs_fields)" % (name, ", ".join(sorted(unknown))))
    ctx = spec.get("context")
    if ctx is not None:
        if not isinstance(ctx, dict) or not ("symbol" in ctx or "address" in ctx) or "type" not in ctx:
            raise MapError("map %s: context needs a symbol (or an address) and a type" % name)
        try:
            if "address" in ctx:
                m.context_address = int(str(ctx["address"]).replace("`", ""), 0)
            m.context_offset = int(str(ctx.get("offset", 0)), 0)
        except ValueError:
            raise MapError("map %s: context address/offset %r is not a number (0x... or decimal)"
                           % (name, ctx.get("address", ctx.get("offset"))))
        if m.context_address is None:
            m.context_symbol = _first_symbol(table, ctx["symbol"], "context", name)
        m.context_type = str(ctx["type"])
        m.context_size = table.struct(m.context_type).size
        m.context_pointer = bool(ctx.get("pointer", False))
    m.vcpu_type = str(spec.get("vcpu_type") or "")
    if not m.vcpu_type:
        raise MapError("map %s: vcpu_type (the per-processor struct) is missing" % name)
    m.vcpu_size = table.struct(m.vcpu_type).size
    vc = spec.get("vcpus")
    if not isinstance(vc, dict) or not ("member" in vc or "symbol" in vc):
        raise MapError("map %s: vcpus needs a member (of the context) or a symbol" % name)
    if "member" in vc:
        if m.context_type is None:
            raise MapError("map %s: vcpus names a member but the map has no context" % name)
        m.vcpus_member = _member(table, m.context_type, vc["member"], "vcpus", name)
        m.layout = vc.get("layout") or _vcpu_layout(m.vcpus_member.field.type)
        if not m.layout:
            raise MapError("map %s: %s.%s is a %s, not a pointer or an array: give vcpus.layout" % (
                name, m.context_type, vc["member"], describe_type(m.vcpus_member.field.type)))
    else:
        m.vcpus_symbol = _first_symbol(table, vc["symbol"], "vCPU table", name)
        m.layout = str(vc.get("layout") or "")
    if m.layout not in LAYOUTS:
        raise MapError("map %s: vcpus.layout must be one of %s (got %r)" % (name, ", ".join(LAYOUTS), m.layout))
    count = spec.get("count", "processors")
    if isinstance(count, int) and not isinstance(count, bool):
        m.count = count
    elif count == "processors":
        m.count = "processors"
    elif isinstance(count, dict) and "member" in count:
        if m.context_type is None:
            raise MapError("map %s: count names a member but the map has no context" % name)
        m.count = _member(table, m.context_type, count["member"], "count", name)
    elif isinstance(count, dict) and "symbol" in count:
        m.count_symbol = _first_symbol(table, count["symbol"], "processor count", name)
        m.count_size = int(count.get("size", 4))
        m.count = "symbol"
    else:
        raise MapError("map %s: count must be a number, \"processors\", {\"member\": M} or {\"symbol\": S}" % name)
    roles = spec.get("vcpu") or {}
    if not isinstance(roles, dict):
        raise MapError("map %s: vcpu must map roles to members" % name)
    for role, member in roles.items():
        if role not in VCPU_ROLES:
            raise MapError("map %s: unknown vCPU role %r (roles: %s)" % (name, role, ", ".join(VCPU_ROLES)))
        if builtin and isinstance(member, str) and member not in table.struct(m.vcpu_type).fields:
            continue  # built-in maps name every member a tutorial might have; keep those this driver has
        m.roles[role] = _member(table, m.vcpu_type, member, "vcpu." + role, name)
    if "vmcs_pa" not in m.roles and "vmcs_va" not in m.roles:
        raise MapError("map %s: no VMCS role: name vcpu.vmcs_pa or vcpu.vmcs_va" % name)
    size = spec.get("host_stack_size")
    if isinstance(size, str):
        m.host_stack_size = _member(table, m.vcpu_type, size, "host_stack_size", name)
    elif isinstance(size, int):
        m.host_stack_size = size
    for label, member in (spec.get("extra") or {}).items():
        m.extra[str(label)] = _member(table, m.vcpu_type, member, "extra." + str(label), name)
    for field_name, member in (spec.get("vmcs_fields") or {}).items():
        try:
            by_name(field_name)
        except FieldLookupError:
            raise MapError("map %s: vmcs_fields names %r, which is not a VMCS field (see: field --all)"
                           % (name, field_name))
        m.vmcs_fields[field_name] = _member(table, m.vcpu_type, member, "vmcs_fields." + field_name, name)
    return m


def builtin_for(table: SymbolTable) -> Optional[str]:
    """The built-in map whose per-processor type the symbols define, or None."""
    for key, spec in BUILTIN_MAPS.items():
        if table.has_struct(spec["vcpu_type"]):
            return key
    return None


def choose(table: SymbolTable, map_path: Optional[str]) -> ResolvedMap:
    """The map to use: the user's file, else the built-in one the type names select."""
    if map_path:
        if map_path in BUILTIN_MAPS:
            return resolve(BUILTIN_MAPS[map_path], table, map_path)
        return resolve(read_json(map_path, "the map", MapError), table, map_path)
    key = builtin_for(table)
    if key is None:
        raise MapError("no built-in map fits %s (none of %s is defined): write a map (see: map --suggest) and "
                       "give it with --map FILE" % (table.module, ", ".join(s["vcpu_type"]
                                                                           for s in BUILTIN_MAPS.values())))
    return resolve(BUILTIN_MAPS[key], table, key)


# -- map --suggest ----------------------------------------------------------------
_HINTS = {
    "vmxon_pa": ("vmxon", "phys"), "vmcs_pa": ("vmcs", "phys"), "msr_bitmap_pa": ("msr", "phys"),
    "vmxon_va": ("vmxon",), "vmcs_va": ("vmcs",), "msr_bitmap_va": ("msr",), "host_stack": ("stack",),
}


def _score_vcpu_struct(s) -> int:
    names = " ".join(s.fields).lower()
    return sum(1 for k in ("vmxon", "vmcs", "msr", "stack") if k in names)


def _guess_global(table: SymbolTable, type_name: str) -> str:
    """A global whose name looks like it holds the context (ISF symbols carry no types: a guess to check).
    Names with a word of the type's name win; `g_` names first."""
    words = [w for w in type_name.lower().replace("_", " ").split() if len(w) > 2] or ["context"]
    hits = [n for n in table.symbols if any(w in n.lower() for w in words)]
    hits.sort(key=lambda n: (not n.lower().startswith("g_"), len(n), n))
    return hits[0] if hits else "TODO: the global that holds a %s" % type_name


def suggest(table: SymbolTable) -> Dict[str, Any]:
    """A starter map from the types and symbols the driver defines (to be checked by a person)."""
    ranked = sorted(table.structs.values(), key=lambda s: (-_score_vcpu_struct(s), s.name))
    if not ranked or _score_vcpu_struct(ranked[0]) == 0:
        raise MapError("the symbols of %s define no struct with VMXON/VMCS members: are the PDB's types there "
                       "(compile with -g -gcodeview or /Zi)?" % table.module)
    vcpu = ranked[0]
    roles: Dict[str, str] = {}
    for role, words in _HINTS.items():
        physical = role.endswith("_pa")
        for fname in vcpu.fields:
            low = fname.lower()
            is_phys = "phys" in low or low.endswith("pa")
            if all(w in low for w in words[:1]) and is_phys == physical and fname not in roles.values():
                if role.endswith("_va") and vcpu.fields[fname].type.get("kind") != "pointer":
                    continue
                roles[role] = fname
                break
    for role in ("vmxon_pa", "vmcs_pa"):
        if role not in roles and role.replace("_pa", "_va") not in roles:
            roles[role] = "TODO: the %s member of %s" % (role, vcpu.name)
    spec: Dict[str, Any] = {"name": "%s (suggested: check every line)" % table.module, "vcpu_type": vcpu.name,
                            "vcpu": roles}
    # a struct holding a pointer/array of the vCPU type is the context
    for s in table.structs.values():
        for f in s.fields.values():
            inner = pointee(f.type) or f.type.get("subtype") or {}
            inner2 = pointee(inner) or {}
            if vcpu.name in (inner.get("name"), inner2.get("name")) and s.name != vcpu.name:
                spec["context"] = {"symbol": _guess_global(table, s.name), "type": s.name, "pointer": True}
                spec["vcpus"] = {"member": f.name}
                counts = [n for n in s.fields if "count" in n.lower() or "number" in n.lower()]
                spec["count"] = {"member": counts[0]} if counts else "processors"
                break
        if "vcpus" in spec:
            break
    if "vcpus" not in spec:
        spec["vcpus"] = {"symbol": "TODO: the global that holds the vCPUs", "layout": "pointer_to_structs"}
        spec["count"] = "processors"
    return spec
