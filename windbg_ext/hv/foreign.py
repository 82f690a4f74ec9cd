"""Walks a driver that is not hv.sys: its symbols (hv/symbols.py) and a map of
roles (hv/rolemap.py) say where its VMM context, vCPUs and regions are.

Reads: the context pointer (1), the context (1), the vCPU table (1), one read
per vCPU struct when the table holds pointers; each struct is read whole.
"""
from __future__ import annotations

import struct
from typing import Any, Dict, List, Optional, Tuple

from windbg_ext.arch.paging import PagingError, translate
from windbg_ext.hv import layouts
from windbg_ext.hv.rolemap import MAX_VCPUS, Member, ResolvedMap, choose
from windbg_ext.hv.scan import HOST_RIP, REPORT_THRESHOLD, find_candidates
from windbg_ext.hv.symbols import SymbolsError, SymbolTable, load_symbol_file
from windbg_ext.target.base import Target, TargetError, TargetMemoryError

PAGE = 0x1000


class ForeignError(TargetError):
    """The driver's state cannot be walked with these symbols and this map; one line."""


def _value(data: bytes, m: Member) -> int:
    f = m.field
    size = min(m.size, 8) if m.size else 8
    return int.from_bytes(data[f.offset:f.offset + size], "little")


class ForeignVcpu:
    def __init__(self, index: int, address: int, data: bytes, rmap: ResolvedMap) -> None:
        self.index = index
        self.address = address
        self.data = data
        self.map = rmap
        self.values: Dict[str, int] = {}      # role -> value as stored
        self.sources: Dict[str, str] = {}     # role -> "member x" / "translated from member y"
        for role, m in rmap.roles.items():
            self.values[role] = address + m.field.offset if m.inline else _value(data, m)
            self.sources[role] = "%s.%s" % (rmap.vcpu_type, m.field.name)
        self.pa: Dict[str, Optional[int]] = {}    # region -> physical address (filled by the walker)

    def member(self, m: Member) -> int:
        return self.address + m.field.offset if m.inline else _value(self.data, m)

    def host_stack(self) -> Optional[Tuple[int, int]]:
        """(lowest address, size) when the map names the stack; size 0 when unknown."""
        m = self.map.roles.get("host_stack")
        if m is None:
            return None
        base = self.values["host_stack"]
        size = self.map.host_stack_size
        if m.inline:
            return base, m.size
        if isinstance(size, int):
            return base, size
        if size is not None:
            return base, self.member(size)
        return base, 0

    def extras(self) -> Dict[str, int]:
        return {label: self.member(m) for label, m in self.map.extra.items()}

    def stored_vmcs_fields(self) -> Dict[str, int]:
        return {name: self.member(m) for name, m in self.map.vmcs_fields.items()}


class ForeignWalker:
    def __init__(self, target: Target, table: SymbolTable, rmap: ResolvedMap, module_base: int,
                 base_found_by: str) -> None:
        self.target = target
        self.table = table
        self.map = rmap
        self.module_base = module_base
        self.base_found_by = base_found_by
        self._vcpus: Optional[List[ForeignVcpu]] = None
        self.context_address: Optional[int] = None
        self.context_where = ""      # how the map reached it: "sevendays!g_vmm_context", "0x..."
        self.context_data = b""
        self.count = 0
        self.count_source = ""

    # -- reading ---------------------------------------------------------------
    def _read(self, va: int, size: int, what: str) -> bytes:
        try:
            return self.target.read_virtual(va, size)
        except TargetMemoryError as e:
            raise ForeignError("cannot read %s at 0x%x: %s" % (what, va, e))

    def _qword(self, va: int, what: str) -> int:
        return struct.unpack("<Q", self._read(va, 8, what))[0]

    def symbol_address(self, name: str) -> int:
        return self.module_base + self.table.symbols[name]

    def _context(self) -> None:
        m = self.map
        if m.context_type is None or self.context_address is not None:
            return
        if m.context_address is not None:
            at, where = m.context_address + m.context_offset, "0x%x" % (m.context_address + m.context_offset)
        else:
            at = self.symbol_address(m.context_symbol or "") + m.context_offset
            where = "%s!%s%s" % (self.table.module, m.context_symbol,
                                 "+0x%x" % m.context_offset if m.context_offset else "")
        if m.context_pointer:
            ptr = self._qword(at, where)
            if not ptr:
                raise ForeignError("%s is NULL: the driver has no VMM context (not loaded, failed, or unloaded)"
                                   % where)
            at = ptr
        self.context_where = where
        self.context_address = at
        self.context_data = self._read(at, m.context_size, "the VMM context (%s)" % m.context_type)

    def processor_count(self) -> int:
        m = self.map
        self._context()
        if isinstance(m.count, int):
            n, src = m.count, "the map"
        elif m.count == "processors":
            n, src = self.target.processor_count(), "the target's processor count"
        elif m.count == "symbol":
            raw = self._read(self.symbol_address(m.count_symbol or ""), m.count_size, m.count_symbol or "")
            n, src = int.from_bytes(raw, "little"), "%s!%s" % (self.table.module, m.count_symbol)
        else:
            n, src = _value(self.context_data, m.count), "%s.%s" % (m.context_type, m.count.field.name)
        if not 0 < n <= MAX_VCPUS:
            raise ForeignError("processor count %d (from %s) is implausible: wrong map or corrupt context" % (n, src))
        self.count, self.count_source = n, src
        return n

    def vcpus(self) -> List[ForeignVcpu]:
        if self._vcpus is not None:
            return self._vcpus
        m = self.map
        n = self.processor_count()
        if m.vcpus_member is not None:
            table_at = self.context_address + m.vcpus_member.field.offset  # type: ignore[operator]
            where = "%s.%s" % (m.context_type, m.vcpus_member.field.name)
        else:
            table_at = self.symbol_address(m.vcpus_symbol or "")
            where = "%s!%s" % (self.table.module, m.vcpus_symbol)
        if m.layout in ("pointer_to_pointers", "pointer_to_structs"):
            table_at = self._qword(table_at, where)
            if not table_at:
                raise ForeignError("%s is NULL: no vCPU table" % where)
        out: List[ForeignVcpu] = []
        if m.layout in ("pointer_to_structs", "structs"):
            data = self._read(table_at, n * m.vcpu_size, "the vCPU array (%d x %s)" % (n, m.vcpu_type))
            for i in range(n):
                out.append(ForeignVcpu(i, table_at + i * m.vcpu_size, data[i * m.vcpu_size:(i + 1) * m.vcpu_size], m))
        else:
            raw = self._read(table_at, n * 8, "the vCPU pointer table (%s)" % where)
            for i, ptr in enumerate(struct.unpack("<%dQ" % n, raw)):
                if not ptr:
                    raise ForeignError("vCPU %d: the table at 0x%x holds NULL" % (i, table_at))
                out.append(ForeignVcpu(i, ptr, self._read(ptr, m.vcpu_size, "vCPU %d (%s)" % (i, m.vcpu_type)), m))
        for v in out:
            self._regions(v)
        self._vcpus = out
        return out

    def vcpu(self, n: int) -> ForeignVcpu:
        vs = self.vcpus()
        if not 0 <= n < len(vs):
            raise ForeignError("vCPU %d does not exist: %s has %d (0-%d)" % (n, self.table.module, len(vs), len(vs) - 1))
        return vs[n]

    def translate(self, va: int) -> Optional[int]:
        """Physical address of a kernel VA through the target's page tables (None when unmapped)."""
        try:
            regs = self.target.register_values(["cr3", "cr4"], 0)
        except (TargetError, NotImplementedError):
            return None
        if "cr3" not in regs:
            return None
        try:
            return translate(va, regs["cr3"], self.target.read_physical, regs.get("cr4", 0))[0]
        except (PagingError, TargetError):
            return None

    def _regions(self, v: ForeignVcpu) -> None:
        for region in ("vmxon", "vmcs", "msr_bitmap"):
            pa_role, va_role = region + "_pa", region + "_va"
            if pa_role in v.values:
                v.pa[region] = v.values[pa_role]
            elif va_role in v.values and v.values[va_role]:
                v.pa[region] = self.translate(v.values[va_role])
                v.sources[pa_role] = "translated from %s" % v.sources[va_role]
            else:
                v.pa[region] = None


def base_from_host_rip(target: Target, table: SymbolTable) -> Optional[int]:
    """A dump lists no modules: the VMCS regions a scan finds hold HOST_RIP, the driver's exit
    handler (region-derived). base = HOST_RIP - the RVA of a symbol, page aligned, with "MZ" there."""
    ranges = target.memory_ranges()
    if not ranges:
        return None
    found, _, _ = find_candidates(target, ranges, layouts.revision_ids())
    for c in found:
        rip = c.fields.get(HOST_RIP)
        if c.confidence < REPORT_THRESHOLD or not rip:
            continue
        for rva in sorted(set(table.symbols.values())):
            base = rip - rva
            if rva and base % PAGE == 0:
                try:
                    if target.read_virtual(base, 2) == b"MZ":
                        return base
                except TargetError:
                    continue
    return None


def module_base(target: Target, module: str, override: Optional[int], table: Optional[SymbolTable] = None
                ) -> Tuple[int, str]:
    """The driver's load address: --module-base, else the target's module list, else the symbol's
    address the debugger knows (live), else (dumps) a VMCS's HOST_RIP found by scanning."""
    if override is not None:
        return override, "--module-base"
    for mod in target.modules():
        if str(mod.get("name", "")).lower() in (module.lower(), module.lower() + ".sys"):
            return int(mod["base"]), "the target's module list"
    if table is not None:
        # live: the debugger loaded the PDB and knows where the driver's symbols are (a few lookups at most)
        for name in (["DriverEntry"] + [n for n in sorted(table.symbols) if n != "DriverEntry"])[:3]:
            if name not in table.symbols:
                continue
            try:
                at = target.symbol("%s!%s" % (module, name))
            except TargetError:
                continue
            return at - table.symbols[name], "the debugger's %s!%s less its RVA" % (module, name)
    if table is not None and not target.live:   # a scan over all memory: offline only
        base = base_from_host_rip(target, table)
        if base is not None:
            return base, "a scanned VMCS's HOST_RIP less a symbol's RVA"
    raise ForeignError("module %s is not in the target's module list: give its load address with --module-base "
                       "(WinDbg: lm m %s), or use scan, which needs no symbols" % (module, module))


def walker_for(ctx) -> ForeignWalker:
    w = getattr(ctx, "_foreign_walker", None)
    if w is None:
        table = load_table(ctx)
        rmap = choose(table, getattr(ctx, "map_path", None))
        base, how = module_base(ctx.target, table.module, getattr(ctx, "module_base", None), table)
        w = ForeignWalker(ctx.target, table, rmap, base, how)
        ctx._foreign_walker = w
    return w


def load_table(ctx) -> SymbolTable:
    t = getattr(ctx, "_symbol_table", None)
    if t is None:
        path = getattr(ctx, "symbols_path", None)
        if not path:
            raise SymbolsError("this needs the driver's symbols: give --symbols FILE (a .pdb or an ISF .json)")
        t = load_symbol_file(path, getattr(ctx, "module_name", None))
        ctx._symbol_table = t
    return t


def uses_symbols(ctx) -> bool:
    """True when the user asked to walk a driver from its symbols (--symbols or --map)."""
    return bool(getattr(ctx, "symbols_path", None) or getattr(ctx, "map_path", None))


def msr_bitmap_pa(ctx, n: int) -> int:
    """Physical address of vCPU n's MSR bitmap (msrbitmap N) as the map finds it."""
    pa = walker_for(ctx).vcpu(n).pa.get("msr_bitmap")
    if not pa:
        raise ForeignError("vCPU %d has no MSR bitmap the map can find (name vcpu.msr_bitmap_pa or msr_bitmap_va)" % n)
    return pa


def describe(w: ForeignWalker) -> Dict[str, Any]:
    m = w.map
    return {"module": w.table.module, "module_base": "0x%x" % w.module_base, "module_base_from": w.base_found_by,
            "symbols": w.table.source, "map": m.key or m.name, "map_name": m.name}
