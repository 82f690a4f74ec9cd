"""VM exits: basic exit reasons (SDM Vol. 3 Appendix C, Table C-1), the exit
reason field (28.2.1), exit qualifications (28.2.1, Tables 28-1..28-7) and
the interruption-information formats (25.9.2, 25.9.3, 25.8.3).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, NamedTuple, Tuple


class ExitReason(NamedTuple):
    name: str
    meaning: str
    sdm: str


def _r(name: str, meaning: str, sdm: str = "App. C, Table C-1") -> ExitReason:
    return ExitReason(name, meaning, sdm)


EXIT_REASONS: Dict[int, ExitReason] = {
    0: _r("EXCEPTION_NMI", "exception or non-maskable interrupt (exception bitmap / NMI exiting)"),
    1: _r("EXTERNAL_INTERRUPT", "external interrupt (external-interrupt exiting)"),
    2: _r("TRIPLE_FAULT", "triple fault in the guest"),
    3: _r("INIT_SIGNAL", "INIT signal arrived"),
    4: _r("SIPI", "start-up IPI arrived while in wait-for-SIPI"),
    5: _r("IO_SMI", "I/O system-management interrupt"),
    6: _r("OTHER_SMI", "other SMI"),
    7: _r("INTERRUPT_WINDOW", "interrupt window open (interrupt-window exiting)"),
    8: _r("NMI_WINDOW", "NMI window open (NMI-window exiting)"),
    9: _r("TASK_SWITCH", "task switch"),
    10: _r("CPUID", "guest executed CPUID (always exits)"),
    11: _r("GETSEC", "guest executed GETSEC"),
    12: _r("HLT", "guest executed HLT (HLT exiting)"),
    13: _r("INVD", "guest executed INVD (always exits)"),
    14: _r("INVLPG", "guest executed INVLPG (INVLPG exiting)"),
    15: _r("RDPMC", "guest executed RDPMC (RDPMC exiting)"),
    16: _r("RDTSC", "guest executed RDTSC (RDTSC exiting)"),
    17: _r("RSM", "guest executed RSM in SMM"),
    18: _r("VMCALL", "guest executed VMCALL (always exits)"),
    19: _r("VMCLEAR", "guest executed VMCLEAR"),
    20: _r("VMLAUNCH", "guest executed VMLAUNCH"),
    21: _r("VMPTRLD", "guest executed VMPTRLD"),
    22: _r("VMPTRST", "guest executed VMPTRST"),
    23: _r("VMREAD", "guest executed VMREAD"),
    24: _r("VMRESUME", "guest executed VMRESUME"),
    25: _r("VMWRITE", "guest executed VMWRITE"),
    26: _r("VMXOFF", "guest executed VMXOFF"),
    27: _r("VMXON", "guest executed VMXON"),
    28: _r("CR_ACCESS", "control-register access (MOV CR, CLTS, LMSW)"),
    29: _r("DR_ACCESS", "MOV DR (MOV-DR exiting)"),
    30: _r("IO_INSTRUCTION", "I/O instruction (IN/OUT/INS/OUTS)"),
    31: _r("MSR_READ", "RDMSR (MSR bitmap or no MSR bitmaps)"),
    32: _r("MSR_WRITE", "WRMSR (MSR bitmap or no MSR bitmaps)"),
    33: _r("INVALID_GUEST_STATE", "VM-entry failure due to invalid guest state (SDM 27.3.1)"),
    34: _r("MSR_LOAD_FAIL", "VM-entry failure due to MSR loading (SDM 27.4)"),
    36: _r("MWAIT_INSTRUCTION", "guest executed MWAIT (MWAIT exiting)"),
    37: _r("MONITOR_TRAP_FLAG", "monitor trap flag"),
    39: _r("MONITOR_INSTRUCTION", "guest executed MONITOR (MONITOR exiting)"),
    40: _r("PAUSE_INSTRUCTION", "guest executed PAUSE (PAUSE exiting / PAUSE-loop exiting)"),
    41: _r("MCE_DURING_VMENTRY", "VM-entry failure due to machine-check event"),
    43: _r("TPR_BELOW_THRESHOLD", "TPR below threshold"),
    44: _r("APIC_ACCESS", "APIC access"),
    45: _r("EOI_INDUCED", "virtualized EOI"),
    46: _r("GDTR_IDTR", "access to GDTR or IDTR (descriptor-table exiting)"),
    47: _r("LDTR_TR", "access to LDTR or TR (descriptor-table exiting)"),
    48: _r("EPT_VIOLATION", "EPT violation"),
    49: _r("EPT_MISCONFIG", "EPT misconfiguration"),
    50: _r("INVEPT", "guest executed INVEPT"),
    51: _r("RDTSCP", "guest executed RDTSCP (RDTSC exiting)"),
    52: _r("PREEMPTION_TIMER", "VMX-preemption timer expired"),
    53: _r("INVVPID", "guest executed INVVPID"),
    54: _r("WBINVD", "guest executed WBINVD or WBNOINVD (WBINVD exiting)"),
    55: _r("XSETBV", "guest executed XSETBV (always exits)"),
    56: _r("APIC_WRITE", "APIC write (APIC-register virtualization)"),
    57: _r("RDRAND", "guest executed RDRAND (RDRAND exiting)"),
    58: _r("INVPCID", "guest executed INVPCID"),
    59: _r("VMFUNC", "VMFUNC failed or an unsupported VM function"),
    60: _r("ENCLS", "guest executed ENCLS (ENCLS exiting)"),
    61: _r("RDSEED", "guest executed RDSEED (RDSEED exiting)"),
    62: _r("PML_FULL", "page-modification log full"),
    63: _r("XSAVES", "guest executed XSAVES"),
    64: _r("XRSTORS", "guest executed XRSTORS"),
    65: _r("PCONFIG", "guest executed PCONFIG"),
    66: _r("SPP_EVENT", "SPP-related event (sub-page permissions)"),
    67: _r("UMWAIT", "guest executed UMWAIT"),
    68: _r("TPAUSE", "guest executed TPAUSE"),
    69: _r("LOADIWKEY", "guest executed LOADIWKEY"),
    70: _r("ENCLV", "guest executed ENCLV (ENCLV exiting)"),
    72: _r("ENQCMD_PASID_FAIL", "ENQCMD PASID translation failure"),
    73: _r("ENQCMDS_PASID_FAIL", "ENQCMDS PASID translation failure"),
    74: _r("BUS_LOCK", "bus lock (VMM bus-lock detection)"),
    75: _r("INSTRUCTION_TIMEOUT", "instruction timeout (formerly notify window)"),
    76: _r("SEAMCALL", "guest executed SEAMCALL"),
    77: _r("TDCALL", "guest executed TDCALL"),
    78: _r("RDMSRLIST", "guest executed RDMSRLIST"),
    79: _r("WRMSRLIST", "guest executed WRMSRLIST"),
    80: _r("URDMSR", "guest executed URDMSR"),
    81: _r("UWRMSR", "guest executed UWRMSR"),
    84: _r("RDMSR_IMM", "guest executed RDMSR with an immediate MSR index (the immediate form)"),
    85: _r("WRMSRNS_IMM", "guest executed WRMSRNS with an immediate MSR index (the immediate form)"),
}

# 28.2.1 / 27.8: bit 31 (VM-entry failure) comes only with these basic reasons
ENTRY_FAILURE_REASONS = (33, 34, 41)

ENTRY_FAILURE_BIT = 31  # 28.2.1: "VM-entry failure (0 = true VM exit; 1 = VM-entry failure)"

# Bits of the exit-reason field besides the basic reason (SDM 28.2.1):
EXIT_REASON_FLAGS = {
    25: ("shadow_stack_busy", "shadow stack prematurely busy"),
    26: ("bus_lock", "a bus lock was asserted while executing the instruction"),
    27: ("enclave", "VM exit from enclave mode"),
    28: ("pending_mtf", "pending MTF VM exit (SMM)"),
    29: ("from_vmx_root", "VM exit from VMX root operation (SMM)"),
    31: ("entry_failure", "VM-entry failure (not a true VM exit)"),
}


def decode_exit_reason(value: int) -> Dict[str, Any]:
    """The 32-bit exit-reason field -> basic reason, its name and the flag bits."""
    value &= 0xFFFFFFFF
    basic = value & 0xFFFF
    known = EXIT_REASONS.get(basic)
    out = {"value": value, "basic": basic,
           "name": known.name if known else "UNKNOWN_%d" % basic,
           "meaning": known.meaning if known else "not a basic exit reason in SDM Appendix C",
           "known": known is not None}
    for bit, (key, _) in EXIT_REASON_FLAGS.items():
        out[key] = bool(value >> bit & 1)
    reserved = value & 0x41FF0000  # bits 30 and 24:16 are reserved/undefined
    out["reserved_bits"] = reserved
    return out


# -- exit qualifications (28.2.1) ------------------------------------------
Qual = List[Tuple[str, Any, str]]

GPR_NAMES = ("RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI",
             "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15")


def _bits(q: int, lo: int, hi: int) -> int:
    return (q >> lo) & ((1 << (hi - lo + 1)) - 1)


def _cr_access(q: int) -> Qual:  # Table 28-3
    access = _bits(q, 4, 5)
    kinds = ("MOV to CR", "MOV from CR", "CLTS", "LMSW")
    out: Qual = [("cr", _bits(q, 0, 3), "control register number (CR%d)" % _bits(q, 0, 3)),
                 ("access_type", kinds[access], "bits 5:4 = %d" % access)]
    if access in (0, 1):
        out.append(("gpr", GPR_NAMES[_bits(q, 8, 11)], "general-purpose register (bits 11:8)"))
    if access == 3:
        out.append(("lmsw_operand", "memory" if q >> 6 & 1 else "register", "LMSW operand type (bit 6)"))
        out.append(("lmsw_source", _bits(q, 16, 31), "LMSW source data (bits 31:16)"))
    return out


def _dr_access(q: int) -> Qual:  # Table 28-4
    return [("dr", _bits(q, 0, 2), "debug register number (DR%d)" % _bits(q, 0, 2)),
            ("direction", "MOV from DR" if q >> 4 & 1 else "MOV to DR", "bit 4"),
            ("gpr", GPR_NAMES[_bits(q, 8, 11)], "general-purpose register (bits 11:8)")]


def _io(q: int) -> Qual:  # Table 28-5
    return [("size", IO_SIZE_ENCODINGS.get(_bits(q, 0, 2), "not used (%d)" % _bits(q, 0, 2)),
             "access size in bytes (bits 2:0: 0, 1, 3 = 1, 2, 4)"),
            ("direction", "IN" if q >> 3 & 1 else "OUT", "bit 3"),
            ("string", bool(q >> 4 & 1), "string instruction (INS/OUTS)"),
            ("rep", bool(q >> 5 & 1), "REP prefixed"),
            ("operand", "immediate" if q >> 6 & 1 else "DX", "port operand encoding (bit 6)"),
            ("port", "0x%x" % _bits(q, 16, 31), "port number (bits 31:16)")]


_EPT_BITS = (
    (0, "read", "the access was a data read"),
    (1, "write", "the access was a data write"),
    (2, "fetch", "the access was an instruction fetch"),
    (3, "readable", "the guest-physical address was readable"),
    (4, "writable", "the guest-physical address was writable"),
    (5, "executable", "the guest-physical address was executable (supervisor, with mode-based control)"),
    (6, "user_executable", "user-mode executable (mode-based execute control)"),
    (7, "linear_valid", "GUEST_LINEAR_ADDRESS is valid"),
    (8, "translated_access", "access to the translated address (0: to a paging-structure entry)"),
    (9, "user_linear", "user-mode linear address (advanced VM-exit information)"),
    (10, "rw_page", "paging allowed writes (advanced VM-exit information)"),
    (11, "xd_page", "paging forbade execution (advanced VM-exit information)"),
    (12, "nmi_unblocking", "NMI unblocking due to IRET"),
    (13, "shadow_stack", "shadow-stack access"),
    (14, "supervisor_shadow_stack", "EPT supervisor shadow-stack page"),
    (15, "guest_paging_verification", "guest-paging verification failed"),
    (16, "asynchronous", "access was asynchronous to instruction execution"),
)


def _ept_violation(q: int) -> Qual:  # Table 28-7
    return [(name, bool(q >> bit & 1), meaning) for bit, name, meaning in _EPT_BITS]


def _task_switch(q: int) -> Qual:  # Table 28-2
    sources = ("CALL instruction", "IRET instruction", "JMP instruction", "task gate in IDT")
    return [("selector", "0x%x" % _bits(q, 0, 15), "TSS selector of the new task"),
            ("source", sources[_bits(q, 30, 31)], "bits 31:30 = %d" % _bits(q, 30, 31))]


_ENTRY_FAIL = {0: "default (no further information)", 2: "failure loading the PDPTEs",
               3: "failure to inject an NMI blocked by STI/MOV SS", 4: "invalid VMCS link pointer"}


def _entry_failure(q: int) -> Qual:  # 27.8
    return [("failure_code", q, _ENTRY_FAIL.get(q, "reserved value"))]


def _msr_load_fail(q: int) -> Qual:  # 27.4
    return [("msr_entry", q, "1-based index of the VM-entry MSR-load entry that failed")]


def _debug_or_pf(q: int) -> Qual:  # Table 28-1 (for #DB; for #PF it is the linear address)
    return [("b0_b3", "0x%x" % _bits(q, 0, 3), "#DB: breakpoint conditions met (B3:B0)"),
            ("bd", bool(q >> 13 & 1), "#DB: debug-register access detected"),
            ("bs", bool(q >> 14 & 1), "#DB: single step"),
            ("rtm", bool(q >> 16 & 1), "#DB: in an RTM region"),
            ("pf_linear_address", "0x%x" % q, "#PF: the faulting linear address (CR2)")]


def _apic_access(q: int) -> Qual:  # Table 28-6
    kinds = {0: "linear read", 1: "linear write", 2: "linear fetch", 3: "linear access during event delivery",
             10: "guest-physical access during event delivery", 15: "guest-physical instruction fetch/execution"}
    kind = _bits(q, 12, 15)
    return [("offset", "0x%x" % _bits(q, 0, 11), "offset within the APIC page"),
            ("access_type", kinds.get(kind, "reserved (%d)" % kind), "bits 15:12"),
            ("async", bool(q >> 16 & 1), "asynchronous to instruction execution")]


def _linear(q: int) -> Qual:
    return [("linear_address", "0x%x" % q, "linear address operand")]


def _instruction_timeout(q: int) -> Qual:
    return [("context_invalid", bool(q & 1), "VM context invalid: do not resume the guest"),
            ("nmi_unblocking", bool(q >> 12 & 1), "NMI unblocking due to IRET")]


QUALIFICATION_DECODERS: Dict[int, Callable[[int], Qual]] = {
    0: _debug_or_pf, 9: _task_switch, 14: _linear, 28: _cr_access, 29: _dr_access, 30: _io,
    33: _entry_failure, 34: _msr_load_fail, 44: _apic_access, 48: _ept_violation, 75: _instruction_timeout,
}


def decode_qualification(basic_reason: int, qual: int) -> Qual:
    """(name, value, meaning) rows for the exit qualification of a basic reason.
    Reasons with no structured qualification give one "qualification" row."""
    decoder = QUALIFICATION_DECODERS.get(basic_reason & 0xFFFF)
    if decoder is None:
        return [("qualification", "0x%x" % qual, "no structured qualification for this exit reason")]
    return decoder(qual)


# What an exit qualification can hold: the bits each table defines (the rest are not defined
# by the SDM and a processor writes 0 there) and the values a field can take.
QUALIFICATION_DEFINED_BITS: Dict[int, Tuple[int, str]] = {
    9: (0xC000FFFF, "Table 28-2"),     # task switch: 15:0 selector, 31:30 source
    28: (0xFFFF0F7F, "Table 28-3"),    # CR access: 3:0, 5:4, 6, 11:8, 31:16
    29: (0x00000F17, "Table 28-4"),    # DR access: 2:0, 4, 11:8
    30: (0xFFFF007F, "Table 28-5"),    # I/O: 2:0, 3, 4, 5, 6, 31:16
    44: (0x0001FFFF, "Table 28-6"),    # APIC access: 11:0, 15:12, 16
    48: (0x0001FFFF, "Table 28-7"),    # EPT violation: bits 16:0
}
MOV_CR_REGISTERS = (0, 3, 4, 8)        # Table 28-3: CR0, CR3, CR4, CR8 (CLTS and LMSW report 0)
IO_SIZE_ENCODINGS = {0: 1, 1: 2, 3: 4}  # Table 28-5 bits 2:0: 1, 2 or 4 bytes; other values are not used
APIC_ACCESS_TYPES = (0, 1, 2, 3, 10, 15)  # Table 28-6 bits 15:12


def _bit_list(mask: int) -> str:
    """0x1008 -> "bits 12, 3"."""
    bits = [str(b) for b in range(63, -1, -1) if mask >> b & 1]
    return "bit%s %s" % ("s" if len(bits) > 1 else "", ", ".join(bits))


def exit_reason_problems(value: int) -> List[str]:
    """What no processor reports in an exit-reason field (SDM 28.2.1), as sentences."""
    out = []
    basic = value & 0xFFFF
    reserved = decode_exit_reason(value)["reserved_bits"]
    if reserved:
        out.append("%s set: reserved in the exit-reason field, a processor writes 0 there (SDM 28.2.1)"
                   % _bit_list(reserved))
    if value >> ENTRY_FAILURE_BIT & 1 and basic not in ENTRY_FAILURE_REASONS:
        out.append("bit 31 (VM-entry failure) comes only with basic reasons 33, 34 and 41 (SDM 28.2.1), not %d"
                   % basic)
    return out


def qualification_problems(basic_reason: int, qual: int) -> List[str]:
    """Values a processor never writes into the exit qualification of this
    basic reason (SDM 28.2.1 tables), as sentences; [] when it is plausible."""
    basic = basic_reason & 0xFFFF
    out = []
    defined = QUALIFICATION_DEFINED_BITS.get(basic)
    undefined = qual & ~defined[0] & 0xFFFFFFFFFFFFFFFF if defined is not None else 0
    if undefined:
        out.append("%s set: the SDM defines no such bits for this exit (%s)" % (_bit_list(undefined), defined[1]))
    if basic == 28:
        cr, access = _bits(qual, 0, 3), _bits(qual, 4, 5)
        if access in (0, 1) and cr not in MOV_CR_REGISTERS:
            out.append("CR%d: MOV-CR exits report only CR0, CR3, CR4 or CR8 (Table 28-3)" % cr)
        if access in (2, 3) and cr != 0:
            out.append("CLTS and LMSW exits report CR0, not CR%d (Table 28-3)" % cr)
    if basic == 30 and _bits(qual, 0, 2) not in IO_SIZE_ENCODINGS:
        out.append("size encoding %d in bits 2:0: only 0, 1 and 3 (1, 2, 4 bytes) are used (Table 28-5)"
                   % _bits(qual, 0, 2))
    if basic == 44 and _bits(qual, 12, 15) not in APIC_ACCESS_TYPES:
        out.append("access type %d in bits 15:12 is not defined (Table 28-6)" % _bits(qual, 12, 15))
    if basic == 33 and qual not in _ENTRY_FAIL:
        out.append("exit qualification %d is not defined for a VM-entry failure (SDM 27.8)" % qual)
    return out


# -- interruption information (25.8.3 entry, 25.9.2 exit, 25.9.3 IDT vectoring)
INTERRUPTION_TYPES = ("external interrupt", "reserved", "NMI", "hardware exception", "software interrupt",
                      "privileged software exception", "software exception", "other event")

EXCEPTION_NAMES = {0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF",
                   10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC", 18: "#MC",
                   19: "#XM", 20: "#VE", 21: "#CP"}


def decode_interruption_info(value: int) -> Dict[str, Any]:
    value &= 0xFFFFFFFF
    vector = value & 0xFF
    itype = (value >> 8) & 7
    out = {"value": value, "valid": bool(value >> 31 & 1), "vector": vector,
           "type": INTERRUPTION_TYPES[itype], "type_number": itype,
           "error_code_valid": bool(value >> 11 & 1), "nmi_unblocking": bool(value >> 12 & 1),
           "reserved_bits": value & 0x7FFFE000}
    if itype in (2, 3, 5, 6):
        out["exception"] = EXCEPTION_NAMES.get(vector, "vector %d" % vector)
    return out


# -- VM-exit instruction information (28.2.5, Tables 28-9..28-17) ------------
SEGMENT_NAMES = ("ES", "CS", "SS", "DS", "FS", "GS")
ADDRESS_SIZES = {0: 16, 1: 32, 2: 64}


def _memory_operand(v: int) -> Qual:
    """The memory-operand parts shared by most formats."""
    seg = _bits(v, 15, 17)
    out: Qual = [("scaling", 1 << _bits(v, 0, 1), "index scale factor (bits 1:0)"),
                 ("address_size", ADDRESS_SIZES.get(_bits(v, 7, 9), "reserved"), "address size in bits (9:7)"),
                 ("segment", SEGMENT_NAMES[seg] if seg < 6 else "reserved", "segment register (17:15)")]
    out.append(("index", None if v >> 22 & 1 else GPR_NAMES[_bits(v, 18, 21)], "index register (21:18; none if bit 22)"))
    out.append(("base", None if v >> 27 & 1 else GPR_NAMES[_bits(v, 23, 26)], "base register (26:23; none if bit 27)"))
    return out


def _ins_outs(v: int) -> Qual:
    seg = _bits(v, 15, 17)
    return [("address_size", ADDRESS_SIZES.get(_bits(v, 7, 9), "reserved"), "address size in bits (9:7)"),
            ("segment", SEGMENT_NAMES[seg] if seg < 6 else "reserved", "segment register for OUTS (17:15)")]


def _inv(v: int) -> Qual:  # INVEPT, INVPCID, INVVPID
    return _memory_operand(v) + [("reg2", GPR_NAMES[_bits(v, 28, 31)], "register holding the type (31:28)")]


def _descriptor_table(v: int) -> Qual:  # LGDT/LIDT/SGDT/SIDT
    ident = ("SGDT", "SIDT", "LGDT", "LIDT")[_bits(v, 28, 29)]
    return [("instruction", ident, "instruction identity (29:28)"),
            ("operand_size", 32 if v >> 11 & 1 else 16, "operand size (bit 11)")] + _memory_operand(v)


def _ldtr_tr(v: int) -> Qual:  # LLDT/LTR/SLDT/STR
    ident = ("SLDT", "STR", "LLDT", "LTR")[_bits(v, 28, 29)]
    out: Qual = [("instruction", ident, "instruction identity (29:28)")]
    if v >> 10 & 1:
        return out + [("operand", "register " + GPR_NAMES[_bits(v, 3, 6)], "register operand (6:3, bit 10 = 1)")]
    return out + [("operand", "memory", "bit 10 = 0")] + _memory_operand(v)


def _rdrand_rdseed(v: int) -> Qual:
    return [("destination", GPR_NAMES[_bits(v, 3, 6)], "destination register (6:3)"),
            ("operand_size", {0: 16, 1: 32, 2: 64}.get(_bits(v, 11, 12), "reserved"), "operand size (12:11)")]


def _vmread_vmwrite(v: int) -> Qual:
    out: Qual = [("reg2", GPR_NAMES[_bits(v, 28, 31)], "register holding the field encoding (31:28)")]
    if v >> 10 & 1:
        return out + [("reg1", GPR_NAMES[_bits(v, 3, 6)], "register operand (6:3, bit 10 = 1)")]
    return out + [("operand", "memory", "bit 10 = 0")] + _memory_operand(v)


def _one_register(v: int) -> Qual:  # TPAUSE, UMWAIT
    return [("reg", GPR_NAMES[_bits(v, 3, 6)], "register operand (6:3)")]


def _loadiwkey(v: int) -> Qual:
    return [("reg1", "XMM%d" % _bits(v, 3, 6), "first operand (6:3)"),
            ("reg2", "XMM%d" % _bits(v, 28, 31), "second operand (31:28)")]


INSTRUCTION_INFO_DECODERS: Dict[int, Callable[[int], Qual]] = {
    30: _ins_outs, 50: _inv, 53: _inv, 58: _inv, 46: _descriptor_table, 47: _ldtr_tr, 57: _rdrand_rdseed,
    61: _rdrand_rdseed, 23: _vmread_vmwrite, 25: _vmread_vmwrite, 67: _one_register, 68: _one_register,
    69: _loadiwkey, 19: _memory_operand, 21: _memory_operand, 22: _memory_operand, 27: _memory_operand,
    63: _memory_operand, 64: _memory_operand,
}


def decode_instruction_info(basic_reason: int, value: int) -> Qual:
    """(name, value, meaning) rows of the VMX_INSTRUCTION_INFO field for the
    exits that define it (28.2.5); one "instruction_info" row otherwise."""
    decoder = INSTRUCTION_INFO_DECODERS.get(basic_reason & 0xFFFF)
    if decoder is None:
        return [("instruction_info", "0x%x" % value, "not defined for this exit reason")]
    return decoder(value & 0xFFFFFFFF)


def _displacement(q: int) -> Qual:  # 28.2.1: memory-operand instructions report the displacement
    signed = q - (1 << 64) if q >> 63 else q
    return [("displacement", "%d (0x%x)" % (signed, q), "displacement of the memory operand (sign-extended); "
             "see VMX_INSTRUCTION_INFO for base/index/scale")]


for _reason in (19, 21, 22, 23, 25, 27, 46, 47, 50, 53, 58, 63, 64):
    QUALIFICATION_DECODERS[_reason] = _displacement
