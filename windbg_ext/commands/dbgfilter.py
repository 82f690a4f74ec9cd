"""dbgfilter: will the driver's DbgPrintEx(DPFLTR_IHVDRIVER_ID, level, ...)
messages reach the debugger? Reads the three filter masks and applies the
kernel's rule (arch/dbgprint.py)."""
from __future__ import annotations

import struct
from typing import Dict, List

from windbg_ext.arch import dbgprint
from windbg_ext.commands.base import CommandError, parse_int
from windbg_ext.render.report import Report

SUMMARY = "show whether IHVDRIVER DbgPrintEx messages reach the debugger, and how to fix the filter"
NEEDS_TARGET = True

MASK_SYMBOLS = ("nt!Kd_IHVDRIVER_Mask", "nt!Kd_DEFAULT_Mask", "nt!Kd_WIN2000_Mask")
ONE_READ_SPAN = 0x1000  # masks closer together than this are fetched in one read


def add_arguments(p) -> None:
    p.add_argument("--level", action="append", default=[], metavar="L",
                   help="also evaluate this DbgPrintEx Level (0..31 = bit index, larger = explicit mask); repeatable")


def read_masks(target) -> Dict[str, Dict[str, int]]:
    """{symbol: {"address", "value"}} with one read when the masks are close together."""
    addresses = {name: target.symbol(name) for name in MASK_SYMBOLS}
    lo, hi = min(addresses.values()), max(addresses.values()) + 4
    values: Dict[str, int] = {}
    if hi - lo <= ONE_READ_SPAN:
        block = target.read_virtual(lo, hi - lo)
        for name, va in addresses.items():
            values[name] = struct.unpack_from("<I", block, va - lo)[0]
    else:
        for name, va in addresses.items():
            values[name] = struct.unpack("<I", target.read_virtual(va, 4))[0]
    return {name: {"address": addresses[name], "value": values[name]} for name in MASK_SYMBOLS}


def run(ctx, args) -> Report:
    extra = []
    for text in args.level:
        named = str(text).strip().upper().replace("DPFLTR_", "").replace("_LEVEL", "")
        if named in dict(dbgprint.LEVELS):
            raise CommandError("level %s: ERROR, WARNING, TRACE and INFO are always shown; --level adds a numeric "
                               "Level (0..31 = bit index, larger = explicit mask)" % text)
        value = parse_int(text, "level", "decimal")
        if not 0 <= value <= 0xFFFFFFFF:
            raise CommandError("level %s is outside 0..0xffffffff (DbgPrintEx takes a ULONG)" % text)
        extra.append(("explicit", value))

    masks = read_masks(ctx.target)
    component = masks["nt!Kd_IHVDRIVER_Mask"]["value"]
    default = masks["nt!Kd_DEFAULT_Mask"]["value"]
    win2000 = masks["nt!Kd_WIN2000_Mask"]["value"]

    rows: List[list] = []
    levels = []
    for name, value in list(dbgprint.LEVELS) + extra:
        printed = dbgprint.is_printed(value, component, win2000)
        via = dbgprint.which_mask(value, component, win2000)
        label = name if name != "explicit" else ("bit %d" % value if value <= 31 else "mask")
        rows.append([label, "0x%x" % value, "0x%08x" % dbgprint.level_mask(value),
                     "yes" if printed else "NO", via or "-"])
        levels.append({"level": label, "value": value, "level_mask": "0x%08x" % dbgprint.level_mask(value),
                       "printed": printed, "via": via or None})
    dbgprint_printed = dbgprint.is_printed(dbgprint.DPFLTR_INFO_LEVEL, default, win2000)
    dropped = [l["level"] for l in levels if not l["printed"]]
    fix = dbgprint.fix_commands("IHVDRIVER", dbgprint.RECOMMENDED_MASK)

    report = Report(data={
        "masks": {name.split("!")[1]: {"address": "0x%x" % m["address"], "value": "0x%08x" % m["value"]}
                  for name, m in masks.items()},
        "levels": levels,
        "dbgprint_default_printed": dbgprint_printed,
        "dropped": dropped,
        "fix": {"debugger": fix[0], "registry": fix[1], "registry_key": dbgprint.REGISTRY_KEY,
                "registry_value": "IHVDRIVER", "registry_type": "REG_DWORD"},
    })
    report.table(["mask", "address", "value"],
                 [[name, "0x%x" % m["address"], "0x%08x" % m["value"]] for name, m in masks.items()],
                 title="Debug Print Filter masks")
    report.table(["DbgPrintEx level", "Level", "level mask", "printed", "via"], rows,
                 title="DbgPrintEx(DPFLTR_IHVDRIVER_ID, Level, ...): printed if level mask & "
                       "(Kd_IHVDRIVER_Mask | Kd_WIN2000_Mask)")
    report.text("DbgPrint/KdPrint (component DEFAULT, level INFO): %s"
                % ("printed" if dbgprint_printed else "NOT printed (Kd_DEFAULT_Mask lacks bit 3)"))
    if dropped:
        report.text("IHVDRIVER messages at %s are dropped. Fix now (until reboot):\n  %s\n"
                    "Fix permanently: in %s set DWORD IHVDRIVER = 0x%x (then reboot):\n  %s"
                    % (", ".join(dropped), fix[0], dbgprint.REGISTRY_KEY, dbgprint.RECOMMENDED_MASK, fix[1]))
        report.exit_code = 1
    else:
        report.text("All listed IHVDRIVER levels reach the debugger.")
    return report
