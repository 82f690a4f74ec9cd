"""Checks of the VMXON / VMCS / MSR-bitmap pages and decoding of a VMCS region
with the driver's layout map. Pure: bytes and integers in, rows out.
"""
from __future__ import annotations

import struct
from typing import Dict, Iterable, List, NamedTuple, Optional

from windbg_ext.arch.capabilities import decode_basic
from windbg_ext.arch.entry_checks.model import DEFAULT_MAXPHYADDR  # SDM 4.1.4: MAXPHYADDR is at most 52
from windbg_ext.arch.msr_bitmap import decode_msr_bitmap
from windbg_ext.arch.vm_errors import VMX_ABORT_CODES
from windbg_ext.hv.descriptor import LAYOUT_FLAG_FOUND, LAYOUT_FLAG_ROTATED8, LayoutEntry

PAGE = 0x1000

class Check(NamedTuple):
    region: str      # "VMXON", "VMCS", "MSR bitmap"
    name: str
    ok: Optional[bool]   # None: cannot be decided here (shown as "n/a")
    detail: str
    sdm: str


def verdict(ok: Optional[bool]) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def _address_checks(region: str, pa: int, basic: int, maxphyaddr: Optional[int], sdm: str) -> List[Check]:
    out = [Check(region, "allocated", pa != 0, "physical 0x%x" % pa, sdm)]
    out.append(Check(region, "4 KiB aligned", pa % PAGE == 0,
                     "0x%x %s" % (pa, "is page aligned" if pa % PAGE == 0 else "has low bits 0x%x" % (pa % PAGE)),
                     sdm))
    if decode_basic(basic)["phys_addr_32bit_only"]:  # A.1: bit 48 set -> these addresses are limited to 32 bits
        width, why = 32, "IA32_VMX_BASIC[48]=1"
    elif maxphyaddr:
        width, why = maxphyaddr, "MAXPHYADDR %d" % maxphyaddr
    else:
        width, why = DEFAULT_MAXPHYADDR, "MAXPHYADDR unknown: the architectural maximum"
    out.append(Check(region, "within address width", pa >> width == 0,
                     "0x%x vs %d bits (%s)" % (pa, width, why), "A.1"))
    return out


def vmx_region_checks(region: str, pa: int, head: Optional[bytes], basic: int,
                      maxphyaddr: Optional[int] = None) -> List[Check]:
    """VMXON region (SDM 25.11.5, 31.3 VMXON) or VMCS region (25.2, 31.3 VMPTRLD).
    `head`: the region's first 8 bytes or more; None when unreadable."""
    sdm = "25.11.5" if region == "VMXON" else "25.2"
    out = _address_checks(region, pa, basic, maxphyaddr, sdm)
    if head is None or len(head) < 8:
        out.append(Check(region, "readable", False, "the page at 0x%x is not in the target" % pa, sdm))
        return out
    dword0, dword1 = struct.unpack_from("<II", head)
    want = decode_basic(basic)["revision_id"]
    got = dword0 & 0x7FFFFFFF
    out.append(Check(region, "revision id", got == want,
                     "region 0x%x, IA32_VMX_BASIC[30:0] 0x%x" % (got, want), sdm))
    shadow = bool(dword0 >> 31)
    if region == "VMXON":
        out.append(Check(region, "bit 31 clear", not shadow,
                         "bit 31 of dword 0 is %d (VMXON fails if set)" % shadow, "31.3"))
    else:
        out.append(Check(region, "shadow-VMCS indicator", not shadow,
                         "bit 31 is %d: %s" % (shadow, "a shadow VMCS cannot be launched" if shadow
                                               else "ordinary VMCS"), "25.2"))
        out.append(Check(region, "VMX-abort indicator", dword1 == 0,
                         "0 (no VMX abort)" if dword1 == 0 else
                         "%d: %s" % (dword1, VMX_ABORT_CODES.get(dword1, "unknown abort code")), "28.7"))
    return out


def msr_bitmap_checks(pa: int, page: Optional[bytes], basic: int, maxphyaddr: Optional[int] = None,
                      uses_bitmap: Optional[bool] = None) -> List[Check]:
    """MSR bitmap page (SDM 25.6.9): 4 KiB aligned, within the width; content summarised."""
    out = _address_checks("MSR bitmap", pa, basic, maxphyaddr, "27.2.1.1")  # VM-entry checks on the address
    if page is None:
        out.append(Check("MSR bitmap", "readable", False, "the page at 0x%x is not in the target" % pa, "25.6.9"))
        return out

    decoded = decode_msr_bitmap(page)
    detail = "%d read / %d write intercepts" % (len(decoded["read"]), len(decoded["write"]))
    if uses_bitmap is False:
        detail += " (\"use MSR bitmaps\" is off: every RDMSR/WRMSR exits)"
    out.append(Check("MSR bitmap", "content", None, detail, "25.6.9"))
    return out


class Page(NamedTuple):
    label: str    # "vCPU 0 VMXON": names the page in messages
    region: str   # "VMXON", "VMCS", "MSR bitmap"
    pa: int


def distinct_pages(pages: Iterable[Page]) -> List[Check]:
    """Every VMXON/VMCS/bitmap page of every vCPU is its own (SDM 31.3: VMPTRLD
    with the VMXON pointer fails with error 10; sharing a VMCS corrupts both)."""
    seen: Dict[int, str] = {}
    out = []
    for p in pages:
        page = p.pa & ~(PAGE - 1)
        if page and page in seen:
            out.append(Check(p.region, "distinct page", False,
                             "%s shares page 0x%x with %s" % (p.label, page, seen[page]), "31.3"))
        elif page:
            seen[page] = p.label
    return out


# -- VMCS region decoding (implementation-specific) ---------------------------------
def _ror8_32(v: int) -> int:
    v &= 0xFFFFFFFF
    return ((v >> 8) | (v << 24)) & 0xFFFFFFFF


def region_value(page: bytes, entry: LayoutEntry) -> Optional[int]:
    """The value of one field in a raw VMCS region, or None when the map has no offset."""
    if not entry.flags & LAYOUT_FLAG_FOUND or entry.width not in (1, 2, 4, 8):
        return None
    if entry.offset + entry.width > len(page):
        return None
    value = int.from_bytes(page[entry.offset:entry.offset + entry.width], "little")
    if entry.flags & LAYOUT_FLAG_ROTATED8:
        value = _ror8_32(value)
    return value


def region_values(page: bytes, layout: Iterable[LayoutEntry]) -> Dict[int, int]:
    out = {}
    for e in layout:
        v = region_value(page, e)
        if v is not None:
            out[e.encoding] = v
    return out


def stack_high_water(stack: bytes, pattern: int, reserved_top: int = 16) -> int:
    """Bytes of the host stack ever used: from the top down to the lowest qword
    that no longer holds the fill pattern (the top `reserved_top` bytes hold
    the vCPU pointer and never held the pattern)."""
    pat = struct.pack("<Q", pattern)
    usable = len(stack) - reserved_top
    for off in range(0, usable - usable % 8, 8):
        if stack[off:off + 8] != pat:
            return len(stack) - off
    return reserved_top
