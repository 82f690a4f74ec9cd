"""x86-64 system structures as a Windows x64 kernel has them, built as bytes.
Pure: no I/O, no emulator. Layout facts: SDM Vol.3 3.4.5 (segment
descriptors), 7.2.3 (64-bit TSS), 6.14.1 (64-bit IDT gate), 4.5 (paging).
"""
from __future__ import annotations

import struct
from typing import Callable

# Windows x64 GDT selectors (KGDT64_*).
SEL_R0_CODE, SEL_R0_DATA, SEL_R3_CMCODE, SEL_R3_DATA, SEL_R3_CODE = 0x10, 0x18, 0x23, 0x2B, 0x33
SEL_TSS, SEL_R3_CMTEB = 0x40, 0x53
GDT_LIMIT = 0x6F
TSS_LIMIT = 0x67
IDT_LIMIT = 256 * 16 - 1

# Control registers as a Windows x64 kernel runs (the subset the CPU model has).
CR0_INIT = 0x8005_0033          # PG WP AM NE ET MP PE
CR4_INIT = 0x0004_06A0          # OSXSAVE OSXMMEXCPT OSFXSR PGE PAE
EFER_INIT = 0xD01               # NXE LMA LME SCE
XCR0_INIT = 0x3                 # x87 SSE
PAT_INIT = 0x0007_0106_0007_0106
CR4_VMXE = 1 << 13
RFLAGS_INIT = 0x202
RFLAGS_CF, RFLAGS_ZF = 1 << 0, 1 << 6
RFLAGS_TF, RFLAGS_IF, RFLAGS_NT, RFLAGS_RF = 1 << 8, 1 << 9, 1 << 14, 1 << 16   # SDM Vol.1 3.4.3
# exceptions that push an error code (SDM Vol.3 Table 6-1): #DF #TS #NP #SS #GP #PF #AC #CP
ERROR_CODE_VECTORS = frozenset((8, 10, 11, 12, 13, 14, 17, 21))

# Segment attributes in bochscpu's form: descriptor bits 40..55
# (access byte, limit 19:16, AVL, L, D/B, G).
ATTR_R0_CODE, ATTR_R0_DATA, ATTR_R3_DATA, ATTR_R3_CMTEB, ATTR_TSS_BUSY = 0xAF9B, 0xCF93, 0xCFF3, 0x40F3, 0x008B
CMTEB_LIMIT = 0x3C00

# Page-table entry bits (SDM Vol.3 4.5).
PTE_P, PTE_RW, PTE_US = 1, 2, 4
PTE_NX = 1 << 63
ADDR_MASK = 0x000F_FFFF_FFFF_F000

GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
THREAD_REGS = GPRS + ("rip", "rflags")

EXCEPTION_NAMES = {0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF",
                   10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC", 18: "#MC",
                   19: "#XM"}


def _descriptor(access: int, flags: int, limit: int = 0xFFFFF) -> bytes:
    """An 8-byte code/data descriptor with base 0."""
    d = (limit & 0xFFFF) | (access << 40) | (((limit >> 16) & 0xF) << 48) | (flags << 52)
    return struct.pack("<Q", d)


def gdt_image(tss_va: int) -> bytes:
    """The GDT of one processor, Windows x64 layout; the TSS descriptor is busy
    (type 11), as after LTR."""
    gdt = bytearray(GDT_LIMIT + 1)
    for sel, access, flags, limit in ((SEL_R0_CODE, 0x9B, 0xA, 0xFFFFF),     # 64-bit code, DPL0 (L, G)
                                      (SEL_R0_DATA, 0x93, 0xC, 0xFFFFF),     # data, DPL0 (D/B, G)
                                      (SEL_R3_CMCODE, 0xFB, 0xC, 0xFFFFF),   # 32-bit code, DPL3
                                      (SEL_R3_DATA, 0xF3, 0xC, 0xFFFFF),     # data, DPL3
                                      (SEL_R3_CODE, 0xFB, 0xA, 0xFFFFF),     # 64-bit code, DPL3
                                      (SEL_R3_CMTEB, 0xF3, 0x4, CMTEB_LIMIT)):
        at = sel & ~7
        gdt[at:at + 8] = _descriptor(access, flags, limit)
    lo = (TSS_LIMIT & 0xFFFF) | ((tss_va & 0xFFFFFF) << 16) | (0x8B << 40) | (((tss_va >> 24) & 0xFF) << 56)
    gdt[SEL_TSS:SEL_TSS + 16] = struct.pack("<QQ", lo, tss_va >> 32)
    return bytes(gdt)


def tss_image(rsp0: int, ist1: int) -> bytes:
    """A 64-bit TSS: RSP0 for ring 3 -> 0 transitions, IST1, no I/O bitmap."""
    tss = bytearray(TSS_LIMIT + 1)
    struct.pack_into("<Q", tss, 0x04, rsp0)
    struct.pack_into("<Q", tss, 0x24, ist1)
    struct.pack_into("<H", tss, 0x66, TSS_LIMIT + 1)
    return bytes(tss)


def idt_image(handler: Callable[[int], int]) -> bytes:
    """256 interrupt gates (DPL0, present, type 14) to handler(vector)."""
    idt = bytearray(IDT_LIMIT + 1)
    for v in range(256):
        h = handler(v)
        lo = (h & 0xFFFF) | (SEL_R0_CODE << 16) | (0x8E << 40) | (((h >> 16) & 0xFFFF) << 48)
        struct.pack_into("<QQ", idt, v * 16, lo, h >> 32)
    return bytes(idt)


FAULT_STUB_SIZE = 8


def fault_stubs_page(page_va: int, common_va: int) -> bytes:
    """A page of IDT handlers: vector v at page_va + 8v is `push v; jmp common`;
    the rest is HLT (a tripwire)."""
    page = bytearray(b"\xF4" * 0x1000)
    for v in range(256):
        at = FAULT_STUB_SIZE * v
        rel = common_va - (page_va + at + 7)
        page[at:at + 7] = bytes([0x6A, v & 0xFF, 0xE9]) + struct.pack("<i", rel)
    return bytes(page)
