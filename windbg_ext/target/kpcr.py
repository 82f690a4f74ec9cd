"""How a live session proves which processor the debugger stub runs on:
IA32_GS_BASE (SDM Vol.4 Table 2-2) of a processor in kernel mode is its KPCR
(Windows x64), whose Self pointer is at +0x18 and whose processor number is
the byte KeGetCurrentProcessorNumber reads, gs:[0x184]."""
from __future__ import annotations

import struct
from typing import Optional

IA32_GS_BASE = 0xC0000101
KPCR_SELF = 0x18
KPCR_NUMBER = 0x184
KPCR_SPAN = KPCR_NUMBER + 4


def kpcr_processor(gs_base: int, kpcr: bytes) -> Optional[int]:
    """The processor number a KPCR image says, or None when the bytes at gs_base are not a KPCR."""
    if len(kpcr) < KPCR_SPAN or struct.unpack_from("<Q", kpcr, KPCR_SELF)[0] != gs_base:
        return None
    return kpcr[KPCR_NUMBER]
