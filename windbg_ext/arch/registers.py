"""Register layouts a hypervisor developer checks: CR0, CR4, EFER, RFLAGS,
DR7, CPUID.1:ECX, segment selectors and VMX access rights.

Sources: SDM Vol. 3 2.5 (CR0, CR4), 2.2.1 / Vol. 4 (IA32_EFER), Vol. 1 3.4.3
(RFLAGS), Vol. 3 18.2.4 (DR7), Vol. 2A CPUID (leaf 1 ECX), Vol. 3 3.4.2
(selectors) and 25.4.1 Table 25-2 (access-rights format in the VMCS).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

BitTable = Dict[int, Tuple[str, str]]

CR0_BITS: BitTable = {
    0: ("PE", "protection enable"), 1: ("MP", "monitor coprocessor"), 2: ("EM", "x87 emulation"),
    3: ("TS", "task switched"), 4: ("ET", "extension type"), 5: ("NE", "numeric error"),
    16: ("WP", "write protect"), 18: ("AM", "alignment mask"), 29: ("NW", "not write-through"),
    30: ("CD", "cache disable"), 31: ("PG", "paging"),
}

CR4_BITS: BitTable = {
    0: ("VME", "virtual-8086 mode extensions"), 1: ("PVI", "protected-mode virtual interrupts"),
    2: ("TSD", "time stamp disable"), 3: ("DE", "debugging extensions"), 4: ("PSE", "page size extensions"),
    5: ("PAE", "physical address extension"), 6: ("MCE", "machine-check enable"),
    7: ("PGE", "page global enable"), 8: ("PCE", "performance-monitoring counter enable"),
    9: ("OSFXSR", "FXSAVE/FXRSTOR support"), 10: ("OSXMMEXCPT", "unmasked SIMD exceptions"),
    11: ("UMIP", "user-mode instruction prevention"), 12: ("LA57", "57-bit linear addresses"),
    13: ("VMXE", "VMX enable"), 14: ("SMXE", "SMX enable"), 16: ("FSGSBASE", "RDFSBASE & co. enable"),
    17: ("PCIDE", "PCID enable"), 18: ("OSXSAVE", "XSAVE and extended states enable"),
    19: ("KL", "Key Locker enable"), 20: ("SMEP", "supervisor-mode execution prevention"),
    21: ("SMAP", "supervisor-mode access prevention"), 22: ("PKE", "protection keys for user pages"),
    23: ("CET", "control-flow enforcement"), 24: ("PKS", "protection keys for supervisor pages"),
    25: ("UINTR", "user interrupts enable"), 27: ("LASS", "linear-address-space separation"),
    28: ("LAM_SUP", "supervisor linear-address masking"), 32: ("FRED", "flexible return and event delivery"),
}

EFER_BITS: BitTable = {
    0: ("SCE", "SYSCALL enable"), 8: ("LME", "IA-32e mode enable"), 10: ("LMA", "IA-32e mode active"),
    11: ("NXE", "execute-disable enable"),
}

RFLAGS_BITS: BitTable = {
    0: ("CF", "carry"), 1: ("RESERVED1", "reserved, always 1"), 2: ("PF", "parity"), 4: ("AF", "auxiliary carry"),
    6: ("ZF", "zero"), 7: ("SF", "sign"), 8: ("TF", "trap"), 9: ("IF", "interrupt enable"),
    10: ("DF", "direction"), 11: ("OF", "overflow"), 14: ("NT", "nested task"), 16: ("RF", "resume"),
    17: ("VM", "virtual-8086 mode"), 18: ("AC", "alignment check / access control"),
    19: ("VIF", "virtual interrupt"), 20: ("VIP", "virtual interrupt pending"), 21: ("ID", "CPUID available"),
}

DR7_BITS: BitTable = {
    0: ("L0", "local enable 0"), 1: ("G0", "global enable 0"), 2: ("L1", "local enable 1"),
    3: ("G1", "global enable 1"), 4: ("L2", "local enable 2"), 5: ("G2", "global enable 2"),
    6: ("L3", "local enable 3"), 7: ("G3", "global enable 3"), 8: ("LE", "local exact"),
    9: ("GE", "global exact"), 10: ("RESERVED1", "reserved, always 1"), 11: ("RTM", "restricted transactional memory"),
    13: ("GD", "general detect"),
}

CPUID1_ECX_BITS: BitTable = {
    0: ("SSE3", "SSE3"), 1: ("PCLMULQDQ", "PCLMULQDQ"), 2: ("DTES64", "64-bit DS area"),
    3: ("MONITOR", "MONITOR/MWAIT"), 4: ("DS_CPL", "CPL-qualified debug store"),
    5: ("VMX", "virtual machine extensions (VT-x)"), 6: ("SMX", "safer mode extensions"),
    7: ("EIST", "enhanced SpeedStep"), 8: ("TM2", "thermal monitor 2"), 9: ("SSSE3", "SSSE3"),
    10: ("CNXT_ID", "L1 context ID"), 11: ("SDBG", "silicon debug"), 12: ("FMA", "FMA"),
    13: ("CMPXCHG16B", "CMPXCHG16B"), 14: ("XTPR", "xTPR update control"), 15: ("PDCM", "perfmon/debug capability"),
    17: ("PCID", "process-context identifiers"), 18: ("DCA", "direct cache access"), 19: ("SSE4_1", "SSE4.1"),
    20: ("SSE4_2", "SSE4.2"), 21: ("X2APIC", "x2APIC"), 22: ("MOVBE", "MOVBE"), 23: ("POPCNT", "POPCNT"),
    24: ("TSC_DEADLINE", "TSC-deadline APIC timer"), 25: ("AESNI", "AES-NI"), 26: ("XSAVE", "XSAVE"),
    27: ("OSXSAVE", "OS enabled XSAVE"), 28: ("AVX", "AVX"), 29: ("F16C", "F16C"), 30: ("RDRAND", "RDRAND"),
    31: ("HYPERVISOR", "running under a hypervisor"),
}

REGISTER_TABLES: Dict[str, BitTable] = {"cr0": CR0_BITS, "cr4": CR4_BITS, "efer": EFER_BITS,
                                        "rflags": RFLAGS_BITS, "dr7": DR7_BITS, "cpuid1_ecx": CPUID1_ECX_BITS}


def set_bits(table: BitTable, value: int) -> List[str]:
    """Names of the bits of `value` that are 1 (unknown ones as bitN)."""
    out = []
    bit, v = 0, value
    while v:
        if v & 1:
            out.append(table[bit][0] if bit in table else "bit%d" % bit)
        v >>= 1
        bit += 1
    return out


def bit_of(table: BitTable, name: str) -> int:
    """The position of the bit a table names `name` (KeyError when it names none)."""
    for bit, entry in table.items():
        if entry[0] == name:
            return bit
    raise KeyError(name)


def bit_names(table: BitTable, mask: int) -> str:
    """'PE NE PG' for a mask; '-' when empty."""
    names = set_bits(table, mask)
    return " ".join(names) if names else "-"


def decode_rflags(v: int) -> Dict[str, Any]:
    out: Dict[str, Any] = {name: bool(v >> bit & 1) for bit, (name, _) in RFLAGS_BITS.items()}
    out["IOPL"] = (v >> 12) & 3
    return out


def decode_dr7(v: int) -> Dict[str, Any]:
    out: Dict[str, Any] = {name: bool(v >> bit & 1) for bit, (name, _) in DR7_BITS.items()}
    conditions = ("execute", "write", "I/O", "read/write")
    lengths = (1, 2, 8, 4)
    for n in range(4):
        out["RW%d" % n] = conditions[(v >> (16 + 4 * n)) & 3]
        out["LEN%d" % n] = lengths[(v >> (18 + 4 * n)) & 3]
    return out


def decode_selector(v: int) -> Dict[str, Any]:
    """Segment selector: index 15:3, table indicator bit 2, RPL 1:0."""
    v &= 0xFFFF
    return {"value": v, "index": v >> 3, "ti": "LDT" if v & 4 else "GDT", "rpl": v & 3}


SEGMENT_TYPES_DATA = ("read-only", "read-only, accessed", "read/write", "read/write, accessed",
                      "read-only, expand-down", "read-only, expand-down, accessed",
                      "read/write, expand-down", "read/write, expand-down, accessed")
SEGMENT_TYPES_CODE = ("execute-only", "execute-only, accessed", "execute/read", "execute/read, accessed",
                      "execute-only, conforming", "execute-only, conforming, accessed",
                      "execute/read, conforming", "execute/read, conforming, accessed")
SYSTEM_TYPES = {1: "16-bit TSS (available)", 2: "LDT", 3: "16-bit TSS (busy)", 4: "16-bit call gate",
                5: "task gate", 6: "16-bit interrupt gate", 7: "16-bit trap gate", 9: "64/32-bit TSS (available)",
                11: "64/32-bit TSS (busy)", 12: "64/32-bit call gate", 14: "64/32-bit interrupt gate",
                15: "64/32-bit trap gate"}

AR_RESERVED_MASK = 0xFFFE0F00  # bits 11:8 and 31:17 must be 0 (25.4.1)


def decode_access_rights(v: int) -> Dict[str, Any]:
    """VMX access-rights format (25.4.1, Table 25-2): type 3:0, S 4, DPL 6:5,
    P 7, AVL 12, L 13, D/B 14, G 15, unusable 16."""
    v &= 0xFFFFFFFF
    seg_type = v & 0xF
    s = bool(v >> 4 & 1)
    if s:
        desc = (SEGMENT_TYPES_CODE if seg_type & 8 else SEGMENT_TYPES_DATA)[seg_type & 7]
    else:
        desc = SYSTEM_TYPES.get(seg_type, "reserved system type")
    return {"value": v, "type": seg_type, "type_name": desc, "s": s, "dpl": (v >> 5) & 3, "p": bool(v >> 7 & 1),
            "avl": bool(v >> 12 & 1), "l": bool(v >> 13 & 1), "db": bool(v >> 14 & 1), "g": bool(v >> 15 & 1),
            "unusable": bool(v >> 16 & 1), "reserved_bits": v & AR_RESERVED_MASK}


def access_rights_from_descriptor(descriptor: int) -> int:
    """The VMX access-rights value for an 8-byte GDT descriptor (bits 47:40 ->
    7:0, bits 55:52 -> 15:12); a not-present descriptor gives 'unusable'."""
    ar = ((descriptor >> 40) & 0xFF) | (((descriptor >> 52) & 0xF) << 12)
    if not ar & 0x80:
        ar |= 1 << 16
    return ar


def cr_seen_by_guest(real: int, guest_host_mask: int, read_shadow: int) -> int:
    """What MOV from CR0/CR4 returns in VMX non-root (SDM Vol.3 25.6.6): bits set
    in the guest/host mask come from the read shadow, the others from the
    register. A debugger that broke in on a virtualized processor reads this."""
    return (real & ~guest_host_mask) | (read_shadow & guest_host_mask)
