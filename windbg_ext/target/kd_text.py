"""What kd prints, read back: `r` output (`rax=0000000000000001 rbx=...`)
and the register-setting command line. Pure functions (the pykd backend
does the I/O)."""
from __future__ import annotations

import re
from typing import Dict

_PAIR = re.compile(r"\b([a-z][a-z0-9]*)=([0-9a-f`]+)\b", re.I)

# What a snapshot gadget may change and `r` can restore (x64 WinDbg names)
RESTORED_REGISTERS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
                      "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "efl")


def parse_registers(text: str) -> Dict[str, int]:
    """`name=hex` pairs of kd's register output (lower-case names)."""
    return {m.group(1).lower(): int(m.group(2).replace("`", ""), 16) for m in _PAIR.finditer(text or "")}


def set_registers_command(values: Dict[str, int]) -> str:
    """One kd command that sets every register given: `r rax=..., rip=...`."""
    return "r " + ", ".join("%s=%x" % (name, value & 0xFFFF_FFFF_FFFF_FFFF) for name, value in values.items())
