"""The few x86-64 instructions the lab watches as they execute, decoded from
their bytes: the VMX instructions that name a VMXON region or a VMCS
(VMXON, VMPTRLD, VMCLEAR, VMPTRST: one m64 operand), the VMX transitions
(VMLAUNCH, VMRESUME, VMXOFF, VMCALL), CPUID, RDMSR, WRMSR and MOV to CR4.

Pure functions of bytes and register values (SDM Vol.2 2.1-2.2: legacy
prefixes, REX, ModR/M, SIB, displacement; Vol.2 opcode map: 0F 01 C1-C4,
0F C7 /6 /7, 0F A2, 0F 30, 0F 32, 0F 22 /4). Anything else decodes to None.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

REGS64 = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
          "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")

# 0F 01 xx (no operand): VMX transitions (Vol.2 VMX instruction reference)
_0F01 = {0xC1: "vmcall", 0xC2: "vmlaunch", 0xC3: "vmresume", 0xC4: "vmxoff"}
# 0F C7 /6 with the mandatory prefix: none = VMPTRLD, 66 = VMCLEAR, F3 = VMXON; /7 none = VMPTRST
_0FC7 = {(6, None): "vmptrld", (6, 0x66): "vmclear", (6, 0xF3): "vmxon", (7, None): "vmptrst"}
_PLAIN = {0xA2: "cpuid", 0x30: "wrmsr", 0x32: "rdmsr"}
OPCODE_MARKS = (b"\x0f\x01", b"\x0f\xc7", b"\x0f\xa2", b"\x0f\x30", b"\x0f\x32", b"\x0f\x22")
MOV_TO_CR = 0x22        # 0F 22 /r: MOV CRn, r64 (ModR/M reg = n, REX.R = 8 more; rm = the source, mod ignored)
MAX_PREFIX = 2          # one mandatory/legacy prefix and a REX byte


class MemOperand:
    """[base + index*scale + disp] or [rip + disp] (rip = the next instruction)."""
    __slots__ = ("base", "index", "scale", "disp", "rip_relative")

    def __init__(self, base: Optional[str], index: Optional[str], scale: int, disp: int, rip_relative: bool):
        self.base, self.index, self.scale, self.disp, self.rip_relative = base, index, scale, disp, rip_relative


class Insn:
    __slots__ = ("kind", "length", "mem", "src")

    def __init__(self, kind: str, length: int, mem: Optional[MemOperand] = None, src: Optional[str] = None):
        self.kind, self.length, self.mem, self.src = kind, length, mem, src    # src: a register operand

    def __repr__(self) -> str:
        return "Insn(%s, %d)" % (self.kind, self.length)


def _signed(raw: bytes) -> int:
    return int.from_bytes(raw, "little", signed=True)


def _modrm_memory(code: bytes, i: int, rex: int) -> Optional[Tuple[int, MemOperand, int]]:
    """ModR/M (+SIB, +disp) at code[i] in 64-bit mode -> (reg field, operand, bytes used);
    None for a register operand (mod = 3) or truncated bytes."""
    if i >= len(code):
        return None
    modrm = code[i]
    mod, reg, rm = modrm >> 6, (modrm >> 3) & 7, modrm & 7
    if mod == 3:
        return None
    used = 1
    base: Optional[str] = None
    index: Optional[str] = None
    scale = 1
    rip_relative = False
    if rm == 4:
        if i + 1 >= len(code):
            return None
        sib = code[i + 1]
        used += 1
        scale = 1 << (sib >> 6)
        idx = ((sib >> 3) & 7) | ((rex & 2) << 2)
        index = None if idx == 4 else REGS64[idx]
        b = sib & 7
        if b == 5 and mod == 0:
            disp_size = 4
        else:
            base = REGS64[b | ((rex & 1) << 3)]
            disp_size = (0, 1, 4)[mod]
    elif rm == 5 and mod == 0:
        rip_relative = True
        disp_size = 4
    else:
        base = REGS64[rm | ((rex & 1) << 3)]
        disp_size = (0, 1, 4)[mod]
    if i + used + disp_size > len(code):
        return None
    disp = _signed(code[i + used:i + used + disp_size]) if disp_size else 0
    return reg, MemOperand(base, index, scale, disp, rip_relative), used + disp_size


def decode(code: bytes) -> Optional[Insn]:
    """The watched instruction at the start of code, or None."""
    i = 0
    prefix = None
    rex = 0
    if i < len(code) and code[i] in (0x66, 0xF3, 0xF2):
        prefix = code[i]
        i += 1
    if i < len(code) and 0x40 <= code[i] <= 0x4F:
        rex = code[i]
        i += 1
    if i + 1 >= len(code) or code[i] != 0x0F:
        return None
    op = code[i + 1]
    i += 2
    if op in _PLAIN:
        return Insn(_PLAIN[op], i) if prefix is None else None
    if op == 0x01:
        if i < len(code) and code[i] in _0F01 and prefix is None:
            return Insn(_0F01[code[i]], i + 1)
        return None
    if op == MOV_TO_CR:
        if i >= len(code) or prefix is not None or (code[i] >> 3) & 7 != 4 or rex & 4:
            return None
        return Insn("mov_cr4", i + 1, src=REGS64[(code[i] & 7) | ((rex & 1) << 3)])
    if op == 0xC7:
        m = _modrm_memory(code, i, rex)
        if m is None:
            return None
        reg, mem, used = m
        kind = _0FC7.get((reg, prefix))
        return Insn(kind, i + used, mem) if kind else None
    return None


def scan(code: bytes, va: int) -> Dict[int, Insn]:
    """Every address in code (placed at va) where a watched instruction may
    start. A byte sequence can also decode from inside another instruction; such
    an address is never executed, so listing it costs nothing."""
    out: Dict[int, Insn] = {}
    for mark in OPCODE_MARKS:
        at = code.find(mark)
        while at >= 0:
            for start in range(max(0, at - MAX_PREFIX), at + 1):
                insn = decode(code[start:start + 15])
                if insn is not None and start + insn.length > at + 1:
                    out[va + start] = insn
            at = code.find(mark, at + 1)
    return out


def effective_address(mem: MemOperand, reg: Callable[[str], int], next_rip: int) -> int:
    """The linear address of a memory operand (flat 64-bit segments)."""
    ea = mem.disp
    if mem.rip_relative:
        ea += next_rip
    if mem.base:
        ea += reg(mem.base)
    if mem.index:
        ea += reg(mem.index) * mem.scale
    return ea & 0xFFFF_FFFF_FFFF_FFFF
