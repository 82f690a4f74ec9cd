"""What kd prints, read back: `r` output (`rax=0000000000000001 rbx=...`),
`lm` output (the debugger's module list) and the register-setting command
line. Pure functions (the pykd backend does the I/O)."""
from __future__ import annotations

import re
from typing import Any, Dict, List

_PAIR = re.compile(r"\b([a-z][a-z0-9]*)=([0-9a-f`]+)\b", re.I)
# `lm`: "start             end                 module name" then
#       "fffff806`10000000 fffff806`10008000   sevendays   (deferred)"
_MODULE = re.compile(r"^\s*([0-9a-f`]{8,})\s+([0-9a-f`]{8,})\s+(\S+)", re.I)

# What a snapshot gadget may change and `r` can restore (x64 WinDbg names)
RESTORED_REGISTERS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
                      "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "efl")


def parse_registers(text: str) -> Dict[str, int]:
    """`name=hex` pairs of kd's register output (lower-case names)."""
    return {m.group(1).lower(): int(m.group(2).replace("`", ""), 16) for m in _PAIR.finditer(text or "")}


def set_registers_command(values: Dict[str, int]) -> str:
    """One kd command that sets every register given: `r rax=..., rip=...`."""
    return "r " + ", ".join("%s=%x" % (name, value & 0xFFFF_FFFF_FFFF_FFFF) for name, value in values.items())


def parse_module_list(text: str) -> List[Dict[str, Any]]:
    """[{name, base, size}] of kd's `lm` output (loaded modules; the
    "Unloaded modules:" part that may follow is not a module list)."""
    mods: List[Dict[str, Any]] = []
    for line in (text or "").splitlines():
        if line.strip().lower().startswith("unloaded modules"):
            break
        m = _MODULE.match(line)
        if m:
            start, end = (int(g.replace("`", ""), 16) for g in m.group(1, 2))
            if end > start:
                mods.append({"name": m.group(3), "base": start, "size": end - start})
    return mods
