"""msrbitmap <address|symbol|vCPU> [--phys] [--msr X]: which MSRs exit on
RDMSR/WRMSR under an MSR bitmap (SDM Vol. 3 25.6.9). One 4 KiB read.

The argument is resolved by `resolve_bitmap`: a number below 4096 can never
be a usable bitmap address (it must be 4 KiB-aligned and nonzero), so it is
a vCPU index, resolved by the hv walker (HvWalker.msr_bitmap_pa);
`module!name` is a symbol; anything else an address (virtual unless --phys).
"""
from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from windbg_ext.arch.msr_bitmap import PAGE_SIZE, decode_msr_bitmap, in_range, msr_exits
from windbg_ext.arch.msr_names import MSR_NAMES, msr_name
from windbg_ext.commands.base import CommandError, parse_int
from windbg_ext.hv.foreign import msr_bitmap_pa as foreign_msr_bitmap_pa, uses_symbols
from windbg_ext.render.report import Link, Report

SUMMARY = "decode an MSR bitmap page: which MSRs exit on read / write"
NEEDS_TARGET = True

VCPU_LIMIT = 4096  # below this: a vCPU index, never an aligned nonzero page address


def add_arguments(p) -> None:
    p.add_argument("where", metavar="address|symbol|vcpu",
                   help="bitmap address (virtual unless --phys), a symbol like hv!MsrBitmap, or a vCPU index (< 4096)")
    p.add_argument("--phys", action="store_true", help="the address is physical")
    p.add_argument("--msr", action="append", default=[], metavar="X",
                   help="only say whether this MSR exits (number or name, e.g. 0xc0000080 or IA32_EFER); repeatable")


class Bitmap(NamedTuple):
    address: int
    physical: bool
    origin: str                  # for people: "symbol hv!X", "vCPU 3", "virtual address"
    vcpu: Optional[int] = None   # the vCPU whose bitmap it is, when given as an index


def resolve_bitmap(ctx, text: str, physical: bool) -> Bitmap:
    if "!" in text:
        if physical:
            raise CommandError("%s is a symbol, i.e. a virtual address: drop --phys" % text)
        return Bitmap(ctx.target.symbol(text), False, "symbol %s" % text)
    value = parse_int(text, "address")
    if 0 <= value < VCPU_LIMIT:
        if uses_symbols(ctx):  # a driver that is not hv.sys: the map names its bitmap
            return Bitmap(foreign_msr_bitmap_pa(ctx, value), True, "vCPU %d" % value, value)
        from windbg_ext.hv.walker import walker_for  # only a vCPU index pays for the hv walker

        return Bitmap(walker_for(ctx).msr_bitmap_pa(value), True, "vCPU %d" % value, value)
    if value < 0:
        raise CommandError("%s is negative: give a vCPU index (0, 1, ...) or the bitmap's address" % text)
    if value >= 1 << 64:
        raise CommandError("address %s does not fit in 64 bits" % text)
    return Bitmap(value, physical, "%s address" % ("physical" if physical else "virtual"))


def _parse_msr(text: str) -> int:
    key = text.strip().upper()
    for number, name in MSR_NAMES.items():
        if name == key or name == "IA32_" + key:
            return number
    value = parse_int(text, "MSR")
    if not 0 <= value <= 0xFFFFFFFF:
        raise CommandError("MSR %s is outside 0..0xffffffff" % text)
    return value


def _ranges(read: List[int], write: List[int]) -> List[Tuple[int, int, bool, bool]]:
    """Consecutive MSRs with the same (read, write) exits -> (first, last, read, write)."""
    r, w = set(read), set(write)
    out: List[Tuple[int, int, bool, bool]] = []
    for msr in sorted(r | w):
        state = (msr in r, msr in w)
        if out and out[-1][1] == msr - 1 and out[-1][2:] == state:
            out[-1] = (out[-1][0], msr, state[0], state[1])
        else:
            out.append((msr, msr, state[0], state[1]))
    return out


def run(ctx, args) -> Report:
    wanted = [_parse_msr(m) for m in args.msr]
    bitmap = resolve_bitmap(ctx, args.where, args.phys)
    address, physical, origin = bitmap.address, bitmap.physical, bitmap.origin
    page = ctx.target.read_physical(address, PAGE_SIZE) if physical else ctx.target.read_virtual(address, PAGE_SIZE)
    kind = "physical" if physical else "virtual"
    head = "MSR bitmap at %s 0x%x (%s)" % (kind, address, origin)
    notes = []
    if address & 0xFFF:
        notes.append("not 4 KiB-aligned: VM entry fails with this MSR-bitmap address (SDM 27.2.1.1)")

    report = Report()
    data: Dict[str, Any] = {"address": "0x%x" % address, "physical": physical, "source": origin, "notes": notes}
    if wanted:
        rows, items = [], []
        for msr in wanted:
            rd, wr = msr_exits(page, msr)
            why = "" if in_range(msr) else "outside both bitmap ranges: always exits"
            rows.append(["0x%x" % msr, msr_name(msr), "exit" if rd else "-", "exit" if wr else "-", why or "-"])
            items.append({"msr": "0x%x" % msr, "name": msr_name(msr), "read_exits": rd, "write_exits": wr,
                          "in_bitmap_range": in_range(msr)})
        data["msrs"] = items
        report.text(head)
        report.table(["MSR", "name", "RDMSR", "WRMSR", "note"], rows)
    else:
        decoded = decode_msr_bitmap(page)
        data["read"] = ["0x%x" % m for m in decoded["read"]]
        data["write"] = ["0x%x" % m for m in decoded["write"]]
        report.text(head)
        if not decoded["read"] and not decoded["write"]:
            report.text("no MSR exits: every MSR in 0x0-0x1fff and 0xc0000000-0xc0001fff passes through "
                        "(others always exit)")
        else:
            rows = []
            for first, last, rd, wr in _ranges(decoded["read"], decoded["write"]):
                label = "0x%x" % first if first == last else "0x%x-0x%x" % (first, last)
                name = msr_name(first) if first == last else "(%d MSRs)" % (last - first + 1)
                rows.append([label, name, "exit" if rd else "-", "exit" if wr else "-"])
            report.table(["MSR", "name", "RDMSR", "WRMSR"], rows)
            report.text("%d MSR(s) exit on read, %d on write; MSRs outside the two ranges always exit"
                        % (len(decoded["read"]), len(decoded["write"])))
    for n in notes:
        report.text("note: " + n)
    if bitmap.vcpu is not None:
        report.text("next:", links=[Link("vcpu %d" % bitmap.vcpu, "vcpu %d" % bitmap.vcpu)])
    report.data = data
    return report
