"""The kernel's Debug Print Filter rule for DbgPrintEx/KdPrintEx/vDbgPrintEx
(WDK docs, "Reading and Filtering Debugging Messages"). Pure: no I/O.

A message (ComponentId, Level) reaches the debugger when
    level_mask(Level) & (Kd_<COMPONENT>_Mask | Kd_WIN2000_Mask) != 0
where Level 0..31 is a bit index (mask = 1 << Level) and a larger Level is
itself the mask. Kd_WIN2000_Mask is the system-wide mask (1 by default, so
ERROR-level messages always get through).

Since Windows Vista, DbgPrint/KdPrint are filtered too: they are component
DEFAULT (Kd_DEFAULT_Mask), level INFO.
"""
from __future__ import annotations

from typing import List, Tuple

# dpfilter.h
DPFLTR_ERROR_LEVEL = 0
DPFLTR_WARNING_LEVEL = 1
DPFLTR_TRACE_LEVEL = 2
DPFLTR_INFO_LEVEL = 3
DPFLTR_MASK = 0x80000000  # OR into Level to pass an explicit mask

DPFLTR_IHVDRIVER_ID = 77  # dpfilter.h: the component hvlab's driver prints under

LEVELS: Tuple[Tuple[str, int], ...] = (
    ("ERROR", DPFLTR_ERROR_LEVEL),
    ("WARNING", DPFLTR_WARNING_LEVEL),
    ("TRACE", DPFLTR_TRACE_LEVEL),
    ("INFO", DPFLTR_INFO_LEVEL),
)

# What a developer usually wants: every level 0..15 of the component shown.
RECOMMENDED_MASK = 0xFFFF
REGISTRY_KEY = r"HKLM\SYSTEM\CurrentControlSet\Control\Session Manager\Debug Print Filter"


def level_mask(level: int) -> int:
    """Level 0..31 is a bit index; 32..0xFFFFFFFF is the mask itself."""
    level &= 0xFFFFFFFF
    return (1 << level) if level <= 31 else level


def is_printed(level: int, component_mask: int, win2000_mask: int) -> bool:
    return bool(level_mask(level) & ((component_mask | win2000_mask) & 0xFFFFFFFF))


def which_mask(level: int, component_mask: int, win2000_mask: int) -> str:
    """Which mask lets the message through: "component", "WIN2000", "both" or ""."""
    m = level_mask(level)
    by_component, by_system = bool(m & component_mask), bool(m & win2000_mask)
    if by_component and by_system:
        return "both"
    return "component" if by_component else ("WIN2000" if by_system else "")


def fix_commands(component: str = "IHVDRIVER", mask: int = RECOMMENDED_MASK) -> List[str]:
    """The debugger command (takes effect now) and the registry value (from the next boot)."""
    return [
        "ed nt!Kd_%s_Mask 0x%x" % (component, mask),
        'reg add "%s" /v %s /t REG_DWORD /d 0x%x /f' % (REGISTRY_KEY, component, mask),
    ]
