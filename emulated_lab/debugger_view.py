"""The machine as a debugger or a crash dump sees it, not as the emulator does.

Shared by the kd session (kd/stub.py) and the image writer (lab.py), so that a
live session and an image of the same moment show the same thing:

- **Registers are the guest's** on a processor hv.sys virtualized: the
  debugger (and the bugcheck code that freezes processors for a dump) runs in
  the guest, so its registers are the guest state the CPU keeps in the VMCS
  (SDM Vol.3 25.4), with CR0/CR4 read through the guest/host masks and read
  shadows (25.6.6): CR4.VMXE is not visible there.
- **An active VMCS is not in memory.** A processor may keep its current VMCS
  on chip in a private format; the page is stale while active (SDM Vol.3
  25.11.1). Bytes 0-7 (revision identifier, VMX-abort indicator, 25.2) stay as
  in memory; every byte after them is changed.
"""
from __future__ import annotations

import hashlib
import struct
from typing import Dict

from windbg_ext.arch.registers import cr_seen_by_guest
from windbg_ext.arch.vmcs_fields import lookup

from emulated_lab.memory import PAGE

VMCS_HEADER = 8     # revision identifier + VMX-abort indicator (SDM 25.2)

# the guest-state fields a virtualized processor's debugger context comes from (SDM 25.4)
GUEST_FIELDS = {
    "rip": "GUEST_RIP", "rsp": "GUEST_RSP", "rflags": "GUEST_RFLAGS", "cr3": "GUEST_CR3", "dr7": "GUEST_DR7",
    "cs": "GUEST_CS_SELECTOR", "ss": "GUEST_SS_SELECTOR", "ds": "GUEST_DS_SELECTOR", "es": "GUEST_ES_SELECTOR",
    "fs": "GUEST_FS_SELECTOR", "gs": "GUEST_GS_SELECTOR", "tr": "GUEST_TR_SELECTOR", "ldtr": "GUEST_LDTR_SELECTOR",
    "gdtr_base": "GUEST_GDTR_BASE", "gdtr_limit": "GUEST_GDTR_LIMIT", "idtr_base": "GUEST_IDTR_BASE",
    "idtr_limit": "GUEST_IDTR_LIMIT", "fs_base": "GUEST_FS_BASE", "gs_base": "GUEST_GS_BASE",
    "tr_base": "GUEST_TR_BASE", "efer": "GUEST_IA32_EFER",
}


def encoding(name: str) -> int:
    f = lookup(name)
    return (f[0] if isinstance(f, tuple) else f).encoding


def guest_context(vmcs: Dict[int, int], gprs: Dict[str, int], saved: Dict[str, int]) -> Dict[str, int]:
    """A virtualized processor's registers as its debugger sees them: the guest
    fields of its VMCS (`vmcs`: encoding -> VMREAD value), the guest's GPRs as
    they were at the exit that parked it, CR0/CR4 through the shadows; CR2 and
    CR8 are not in the guest-state area (unchanged by VMX), so from `saved`."""
    ctx = {name: vmcs[encoding(field)] for name, field in GUEST_FIELDS.items() if encoding(field) in vmcs}
    ctx.update(gprs)
    ctx["rsp"] = vmcs[encoding("GUEST_RSP")]
    ctx["cr0"] = cr_seen_by_guest(vmcs[encoding("GUEST_CR0")], vmcs.get(encoding("CR0_GUEST_HOST_MASK"), 0),
                                  vmcs.get(encoding("CR0_READ_SHADOW"), 0))
    ctx["cr4"] = cr_seen_by_guest(vmcs[encoding("GUEST_CR4")], vmcs.get(encoding("CR4_GUEST_HOST_MASK"), 0),
                                  vmcs.get(encoding("CR4_READ_SHADOW"), 0))
    ctx.update(cr2=saved.get("cr2", 0), cr8=saved.get("cr8", 0))
    return ctx


class StaleVmcs:
    """The bytes of active VMCS pages as a reader of memory gets them. Deterministic
    for a given `seed`, so that two reads of the same page agree."""

    def __init__(self, active_pages: Dict[int, int], seed: bytes) -> None:
        self.active_pages: Dict[int, int] = {}
        self.update(active_pages)
        self._key = hashlib.blake2b(seed, digest_size=16).digest()
        self._streams: Dict[int, bytes] = {}

    def update(self, active_pages: Dict[int, int]) -> None:
        """The pages now active (page -> processor): a processor may VMCLEAR or leave VMX between reads."""
        self.active_pages = {pa & ~(PAGE - 1): k for pa, k in active_pages.items()}

    def _stream(self, page: int) -> bytes:
        stream = self._streams.get(page)
        if stream is None:
            raw = b"".join(hashlib.blake2b(self._key + struct.pack("<QH", page, i), digest_size=64).digest()
                           for i in range(PAGE // 64))
            stream = bytes(VMCS_HEADER) + bytes(b | 1 for b in raw[VMCS_HEADER:])   # every byte after changes
            self._streams[page] = stream
        return stream

    def read(self, pa: int, data: bytes) -> bytes:
        """`data` read from physical address `pa` (within one page), as memory shows it."""
        page, off = pa & ~(PAGE - 1), pa & (PAGE - 1)
        if page not in self.active_pages:
            return data
        ks = int.from_bytes(self._stream(page)[off:off + len(data)], "little")
        return (int.from_bytes(data, "little") ^ ks).to_bytes(len(data), "little")

    def range(self, pa: int, data: bytes) -> bytes:
        """`data` of any length from `pa`, page by page."""
        out = bytearray()
        while len(out) < len(data):
            cur = pa + len(out)
            n = min(len(data) - len(out), PAGE - (cur & (PAGE - 1)))
            out += self.read(cur, data[len(out):len(out) + n])
        return bytes(out)


def active_vmcs_pages(m) -> Dict[int, int]:
    """Pages of the VMCS each processor in VMX operation holds current (the CPU's truth) -> processor."""
    return {t.vmcs_pa & ~(PAGE - 1): t.index for t in m.truth.processors
            if t.vmx != "off" and t.vmcs_pa is not None}

