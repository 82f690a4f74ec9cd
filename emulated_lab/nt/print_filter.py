"""The emulated kernel's Debug Print Filter: whether DbgPrintEx / vDbgPrintEx /
DbgPrint output reaches the debugger.

Written for the lab on its own, the way the kernel does it, and deliberately
not shared with windbg_ext.arch.dbgprint: the lab is the oracle the suite's
`dbgfilter` is tested against, so the two must not be one function.

The kernel keeps one 32-bit mask variable per component (nt!Kd_<NAME>_Mask),
reached through a table indexed by the component id, plus the system-wide
Kd_WIN2000_Mask. For a message (ComponentId, Level):

    mask  = Level            if Level > 31   (an explicit bit field)
            1 << Level       otherwise       (a bit number: ERROR=0 ... INFO=3)
    shown = (mask & Kd_WIN2000_Mask) != 0 or (mask & *KdComponentTable[ComponentId]) != 0

(WDK: "Reading and Filtering Debugging Messages"; DbgPrintEx's Level
parameter.) DbgPrint/KdPrint carry no component or level: since Windows Vista
they are filtered as component DEFAULT, level INFO. This lab models a table in
which ids it has no variable for hold 0 (a stock install), and ids beyond the
table use Kd_DEFAULT_Mask.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

# dpfilter.h component ids and levels the lab's drivers use
IHVDRIVER_ID = 77
DEFAULT_ID = 101
TABLE_SIZE = DEFAULT_ID + 1           # ids 0..101 have a slot in the lab's component table
ERROR_LEVEL, WARNING_LEVEL, TRACE_LEVEL, INFO_LEVEL = 0, 1, 2, 3
BIT_NUMBER_LIMIT = 31                 # Level 0..31 is a bit number; above, the bit field itself

# the component table: id -> the Kd_<NAME>_Mask the lab's nt module holds for it
COMPONENT_TABLE: Dict[int, str] = {IHVDRIVER_ID: "IHVDRIVER", DEFAULT_ID: "DEFAULT"}
SYSTEM_MASK = "WIN2000"


def component_variable(component_id: int) -> Optional[str]:
    """The Kd_<NAME>_Mask the kernel consults for this component id, None for a
    table slot whose variable the lab does not model (its value is 0)."""
    if component_id >= TABLE_SIZE:
        return COMPONENT_TABLE[DEFAULT_ID]
    return COMPONENT_TABLE.get(component_id)


def shown(component_id: int, level: int, read_mask: Callable[[str], int]) -> bool:
    """The kernel's decision for one message; `read_mask(NAME)` reads nt!Kd_NAME_Mask
    from the machine's memory (so a debugger's `ed` before the print takes effect)."""
    level &= 0xFFFFFFFF
    if level > BIT_NUMBER_LIMIT:
        bits = level
    else:
        bits = 1 << level
    if bits & read_mask(SYSTEM_MASK):
        return True
    variable = component_variable(component_id)
    component_mask = read_mask(variable) if variable is not None else 0
    return bool(bits & component_mask)
