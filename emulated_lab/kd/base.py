"""What a debugger stub is to the emulated pykd (emulated_lab/kd/pykd_api.py):
its one error type and WinDbg's register names. Two stubs implement it: the
live emulated machine (kd/stub.py) and the tests' image stand-in
(tests/pykd_standin/pykd.py).

A stub has: processor_count, debugger_cpu (runs the debugger loop: RDMSR and
execution happen there), context_cpu (whose registers are seen),
read_physical/read_virtual(address, size) -> bytes, symbol(name) -> int,
register(name) -> int, set_register(name, value), rdmsr(msr) -> int,
switch_processor(k) (`~Ns`), set_context(k) (setCurrentThreadId),
execute(single_step) -> what stopped it, modules() -> [(name, base, size)]
(the kernel's loaded-module list, `lm`); optionally `dump` (a dump session).
"""
from __future__ import annotations

GPR_NAMES = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


class KdError(Exception):
    """A debugger operation the target refuses; `kind` picks pykd's exception class."""

    def __init__(self, message: str, kind: str = "debugger") -> None:
        super().__init__(message)
        self.kind = kind   # debugger | memory | symbol | cpu


_ALIASES = {"efl": "rflags", "gdtr": "gdtr_base", "gdtl": "gdtr_limit", "idtr": "idtr_base", "idtl": "idtr_limit"}
# WinDbg's 32-bit sub-registers: name -> (full register, mask)
SUBREGISTERS = {"e" + r: ("r" + r, 0xFFFFFFFF) for r in ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "ip")}
SUBREGISTERS.update({"r%dd" % i: ("r%d" % i, 0xFFFFFFFF) for i in range(8, 16)})
WRITABLE = set(GPR_NAMES) | {"rip", "rflags"}


def register_key(name: str) -> str:
    """A WinDbg x64 register name (`efl`, `gdtr`, ...) -> the context's key (`rflags`, `gdtr_base`, ...)."""
    n = str(name).strip().lower()
    return _ALIASES.get(n, n)


def read_register(ctx: dict, name: str) -> int:
    key = register_key(name)
    if key in ctx:
        return ctx[key]
    sub = SUBREGISTERS.get(key)
    if sub is not None and sub[0] in ctx:
        return ctx[sub[0]] & sub[1]
    raise KdError("Invalid register name '%s'" % name, "cpu")


def write_register(ctx: dict, name: str, value: int) -> None:
    key = register_key(name)
    if key not in WRITABLE:
        raise KdError("Invalid register name '%s' (or not writable here)" % name, "cpu")
    ctx[key] = int(value) & 0xFFFF_FFFF_FFFF_FFFF
