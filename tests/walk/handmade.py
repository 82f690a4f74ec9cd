"""A driver's symbols and memory written out by hand, for the mutation tests of the own-driver walking
modules (issue 16): every offset, address and value is chosen here, so what a test expects is worked
out from this file, not from the code under test.

The driver is shaped like sevendays (the built-in "7days" map): a global pointer g_vmm_context to a
__vmm_context_t {unsigned int processor_count @0; __vcpu_t **vcpu_table @8} and one __vcpu_t of
0x40 bytes per processor."""
from __future__ import annotations

import struct

from windbg_ext.hv.symbols import from_isf
from windbg_ext.target.base import Target, TargetError, TargetMemoryError, TargetSymbolError

ULL = {"kind": "base", "name": "unsigned long long"}
UINT = {"kind": "base", "name": "unsigned int"}
VOIDP = {"kind": "pointer", "subtype": {"kind": "base", "name": "void"}}
VCPU_T = {"kind": "struct", "name": "__vcpu_t"}
VCPU_MEMBERS = {"vmxon": (0x00, VOIDP), "vmxon_physical": (0x08, ULL), "vmcs": (0x10, VOIDP),
                "vmcs_physical": (0x18, ULL), "msr_bitmap": (0x20, VOIDP), "msr_bitmap_physical": (0x28, ULL),
                "stack": (0x30, VOIDP), "exit_count": (0x38, UINT)}
BASE = 0x140000000
CONTEXT_RVA = 0x3000


def isf(**changes):
    """The ISF document; `changes` replaces top-level user types (None removes one)."""
    types = {
        "__vmm_context_t": {"kind": "struct", "size": 0x10, "fields": {
            "processor_count": {"offset": 0, "type": UINT},
            "vcpu_table": {"offset": 8, "type": {"kind": "pointer", "subtype": {"kind": "pointer",
                                                                                 "subtype": VCPU_T}}}}},
        "__vcpu_t": {"kind": "struct", "size": 0x40, "fields": {
            name: {"offset": off, "type": t} for name, (off, t) in VCPU_MEMBERS.items()}},
    }
    for name, value in changes.items():
        if value is None:
            types.pop(name)
        else:
            types[name] = value
    return {"user_types": types, "base_types": {"unsigned int": {"size": 4}, "unsigned long long": {"size": 8}},
            "symbols": {"g_vmm_context": {"address": CONTEXT_RVA}, "DriverEntry": {"address": 0x1000}},
            "metadata": {"windows": {"pdb": {"database": "sevendays.pdb"}}}}


def table(**changes):
    return from_isf(isf(**changes), "ISF hand.json")


class Memory(Target):
    """Virtual and physical memory as {address: bytes}; reads must lie inside one piece."""

    name = "memory"

    def __init__(self, virtual=None, physical=None, msrs=None, live=False, processors=2, regs=None,
                 symbols=None, module_list=None, ranges=None):
        super().__init__()
        self.virtual, self.physical = dict(virtual or {}), dict(physical or {})
        self.msrs, self.live, self.processors, self.regs = dict(msrs or {}), live, processors, regs
        self.symbols, self.module_list, self.ranges = dict(symbols or {}), list(module_list or []), ranges
        self.asked = []

    def _symbol(self, name):
        self.asked.append(name)
        if name not in self.symbols:
            raise TargetSymbolError(name)
        return self.symbols[name]

    def modules(self):
        return self.module_list

    def memory_ranges(self):
        return self.ranges

    @staticmethod
    def _find(pieces, address, size, physical):
        for at, data in pieces.items():
            if at <= address and address + size <= at + len(data):
                return data[address - at:address - at + size]
        raise TargetMemoryError(address, size, physical)

    def _read_virtual(self, address, size):
        return self._find(self.virtual, address, size, False)

    def _read_physical(self, address, size):
        return self._find(self.physical, address, size, True)

    def _read_msr(self, msr, cpu):
        if msr not in self.msrs:
            raise TargetError("no MSR 0x%x" % msr)
        return self.msrs[msr]

    def processor_count(self):
        return self.processors

    def registers(self, cpu=0):
        if self.regs is None:
            raise TargetError("no registers")
        return dict(self.regs)


def vcpu_bytes(**values):
    """One __vcpu_t: the named members set (the rest 0)."""
    raw = bytearray(0x40)
    for name, value in values.items():
        off, t = VCPU_MEMBERS[name]
        struct.pack_into("<I" if t is UINT else "<Q", raw, off, value)
    return bytes(raw)


def sevendays_memory(vcpus, context_at=0xFFFFA00000010000, table_at=0xFFFFA00000020000, count=None, **kw):
    """A Memory holding g_vmm_context -> context -> vcpu_table -> one __vcpu_t per entry of `vcpus`
    (each a dict of member values), at 0xFFFFA00000030000 + 0x1000 * i."""
    at = [0xFFFFA00000030000 + 0x1000 * i for i in range(len(vcpus))]
    virtual = {BASE + CONTEXT_RVA: struct.pack("<Q", context_at),
               context_at: struct.pack("<IIQ", len(vcpus) if count is None else count, 0, table_at),
               table_at: struct.pack("<%dQ" % len(vcpus), *at)}
    for a, values in zip(at, vcpus):
        virtual[a] = vcpu_bytes(**values)
    return Memory(virtual=virtual, **kw), at


def spec(**changes):
    """The built-in 7days map with roles replaced (a None value removes the role)."""
    from windbg_ext.hv.rolemap import BUILTIN_MAPS

    out = dict(BUILTIN_MAPS["7days"])
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out
