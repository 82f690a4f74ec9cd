"""The few kd commands the emulated session understands (`dbgCommand` and the
`kd>` prompt), printed the way kd prints them:

    ~Ns                  switch the debugger to processor N (target side: MSRs follow)
    r                    the general registers (WinDbg x64 layout)
    r rax, rip           the named registers
    r rax=1, rip=...     set registers (hex, as kd reads them)
    lm [m PATTERN]       the loaded modules: start, end, name (the kernel's module list)
    rdmsr 0x480          msr[480] = 00d81000`00000004
    t / p                trace one instruction
    g                    go (until the processor breaks in again or is idle)
"""
from __future__ import annotations

import fnmatch
import re
from typing import Optional

from emulated_lab.kd.base import KdError

_SWITCH = re.compile(r"^~\s*(\d+)\s*s$", re.I)
_FULL_DUMP = (("rax", "rbx", "rcx"), ("rdx", "rsi", "rdi"), ("rip", "rsp", "rbp"), ("r8", "r9", "r10"),
              ("r11", "r12", "r13"), ("r14", "r15"))


def _hex(value: int) -> str:
    return "%016x" % (value & 0xFFFF_FFFF_FFFF_FFFF)


def _number(text: str) -> int:
    t = text.strip().lower().replace("`", "")
    try:
        return int(t[2:] if t.startswith("0x") else t, 16)   # kd's default radix is 16
    except ValueError:
        raise KdError("Syntax error in '%s'" % text)


def register_dump(stub) -> str:
    lines = [" ".join("%s=%s" % (n.rjust(3), _hex(stub.register(n))) for n in row) for row in _FULL_DUMP]
    segs = "  ".join("%s=%04x" % (s, stub.register(s)) for s in ("cs", "ss", "ds", "es", "fs", "gs"))
    lines.append("%s             efl=%08x" % (segs, stub.register("efl")))
    return "\n".join(lines)


def _registers(stub, spec: str) -> Optional[str]:
    items = [i.strip() for i in spec.split(",") if i.strip()]
    if items and all("=" in i for i in items):
        for i in items:
            name, _, value = i.partition("=")
            stub.set_register(name.strip(), _number(value))
        return None
    if any("=" in i for i in items):
        raise KdError("Syntax error in 'r %s': set or show registers, not both" % spec)
    return " ".join("%s=%s" % (n, _hex(stub.register(n))) for n in items)


def module_list(stub, rest: str) -> str:
    """`lm` / `lm m PATTERN` as kd prints them (symbol state: the emulated kd loads none itself)."""
    words = rest.split()
    if not (words == [] or (len(words) == 2 and words[0].lower() == "m")):
        raise KdError("Syntax error in 'lm %s' (the emulated kd knows lm and lm m PATTERN)" % rest.strip())
    pattern = words[1].lower() if words else "*"
    lines = ["start             end                 module name"]
    for name, base, size in sorted(stub.modules(), key=lambda m: m[1]):
        if fnmatch.fnmatchcase(name.lower(), pattern):
            end = base + size
            lines.append("%08x`%08x %08x`%08x   %-11s (deferred)" % (base >> 32, base & 0xFFFFFFFF,
                                                                    end >> 32, end & 0xFFFFFFFF, name))
    return "\n".join(lines)


def run_command(stub, command: str) -> Optional[str]:
    """Runs one kd command; returns its output (None when it prints nothing)."""
    cmd = str(command).strip()
    m = _SWITCH.match(cmd)
    if m:
        stub.switch_processor(int(m.group(1)))
        return None
    word, _, rest = cmd.partition(" ")
    word = word.lower()
    if word == "r":
        return register_dump(stub) if not rest.strip() else _registers(stub, rest)
    if word == "rdmsr":
        msr = _number(rest)
        v = stub.rdmsr(msr)
        return "msr[%x] = %08x`%08x" % (msr, v >> 32, v & 0xFFFFFFFF)
    if word == "lm":
        return module_list(stub, rest)
    if word in ("t", "p"):
        what = stub.execute(True)
        return "%s: rip=%s" % (what, _hex(stub.register("rip")))
    if word == "g":
        what = stub.execute(False)
        return "%s: rip=%s" % (what, _hex(stub.register("rip")))
    raise KdError("Unknown command '%s' (the emulated kd knows ~Ns, r, rdmsr, lm, t, p, g)" % cmd)
