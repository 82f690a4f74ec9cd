"""The VMCS field catalogue: every field of SDM Vol. 3 Appendix B, once.

Names follow Intel/KVM naming (GUEST_RIP, CPU_BASED_VM_EXEC_CONTROL,
GUEST_ES_AR_BYTES, ...). Each group below is one subsection of Appendix B and
declares its width and type; tests prove every encoding decodes (25.11.2) to
the width and type of its group. Encodings cross-checked against public
SDM-derived tables (KVM vmx.h, Bochs vmx.h).
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Tuple

from windbg_ext.arch.encoding import decode_encoding


class Field(NamedTuple):
    name: str
    encoding: int       # full-access encoding
    width: str          # "16" | "32" | "64" | "natural"
    type: str           # "control" | "exit" | "guest" | "host"
    readonly: bool      # read-only VM-exit information ("exit" type)
    meaning: str
    sdm: str            # Appendix B subsection


class FieldLookupError(LookupError):
    """A name or encoding that is not in the catalogue; str() is one line."""


# Appendix B subsection per (width, type).
_SECTION = {("16", "control"): "B.1.1", ("16", "guest"): "B.1.2", ("16", "host"): "B.1.3",
            ("64", "control"): "B.2.1", ("64", "exit"): "B.2.2", ("64", "guest"): "B.2.3",
            ("64", "host"): "B.2.4",
            ("32", "control"): "B.3.1", ("32", "exit"): "B.3.2", ("32", "guest"): "B.3.3",
            ("32", "host"): "B.3.4",
            ("natural", "control"): "B.4.1", ("natural", "exit"): "B.4.2",
            ("natural", "guest"): "B.4.3", ("natural", "host"): "B.4.4"}

_SEGS = ("ES", "CS", "SS", "DS", "FS", "GS", "LDTR", "TR")

_GROUPS: List[Tuple[str, str, List[Tuple[str, int, str]]]] = [
    ("16", "control", [
        ("VIRTUAL_PROCESSOR_ID", 0x0000, "VPID tagging this guest's TLB entries"),
        ("POSTED_INTR_NV", 0x0002, "posted-interrupt notification vector"),
        ("EPTP_INDEX", 0x0004, "index of the current EPTP in the EPTP list (#VE / VMFUNC)"),
        ("HLAT_PREFIX_SIZE", 0x0006, "HLAT prefix size (hypervisor-managed linear-address translation)"),
        ("LAST_PID_POINTER_INDEX", 0x0008, "last valid index of the PID-pointer table (IPI virtualization)"),
    ]),
    ("16", "guest", [("GUEST_%s_SELECTOR" % s, 0x0800 + 2 * i, "guest %s selector" % s)
                     for i, s in enumerate(_SEGS)] + [
        ("GUEST_INTR_STATUS", 0x0810, "guest interrupt status (RVI low byte, SVI high byte)"),
        ("GUEST_PML_INDEX", 0x0812, "next page-modification-log entry index"),
        ("GUEST_UINV", 0x0814, "guest user-interrupt notification vector"),
    ]),
    ("16", "host", [("HOST_%s_SELECTOR" % s, 0x0C00 + 2 * i, "host %s selector loaded at VM exit" % s)
                    for i, s in enumerate(("ES", "CS", "SS", "DS", "FS", "GS", "TR"))]),
    ("64", "control", [
        ("IO_BITMAP_A", 0x2000, "physical address of I/O bitmap A (ports 0x0000-0x7FFF)"),
        ("IO_BITMAP_B", 0x2002, "physical address of I/O bitmap B (ports 0x8000-0xFFFF)"),
        ("MSR_BITMAP", 0x2004, "physical address of the 4 KiB MSR bitmap"),
        ("VM_EXIT_MSR_STORE_ADDR", 0x2006, "VM-exit MSR-store area address"),
        ("VM_EXIT_MSR_LOAD_ADDR", 0x2008, "VM-exit MSR-load area address"),
        ("VM_ENTRY_MSR_LOAD_ADDR", 0x200A, "VM-entry MSR-load area address"),
        ("EXECUTIVE_VMCS_POINTER", 0x200C, "executive-VMCS pointer (dual-monitor treatment of SMM)"),
        ("PML_ADDRESS", 0x200E, "page-modification log address"),
        ("TSC_OFFSET", 0x2010, "TSC offset added to guest RDTSC"),
        ("VIRTUAL_APIC_PAGE_ADDR", 0x2012, "virtual-APIC page address (TPR shadow)"),
        ("APIC_ACCESS_ADDR", 0x2014, "APIC-access page address"),
        ("POSTED_INTR_DESC_ADDR", 0x2016, "posted-interrupt descriptor address"),
        ("VM_FUNCTION_CONTROL", 0x2018, "VM-function controls (bit 0: EPTP switching)"),
        ("EPT_POINTER", 0x201A, "EPT pointer (EPTP)"),
        ("EOI_EXIT_BITMAP0", 0x201C, "EOI-exit bitmap, vectors 0-63"),
        ("EOI_EXIT_BITMAP1", 0x201E, "EOI-exit bitmap, vectors 64-127"),
        ("EOI_EXIT_BITMAP2", 0x2020, "EOI-exit bitmap, vectors 128-191"),
        ("EOI_EXIT_BITMAP3", 0x2022, "EOI-exit bitmap, vectors 192-255"),
        ("EPTP_LIST_ADDRESS", 0x2024, "EPTP-list address (VMFUNC EPTP switching)"),
        ("VMREAD_BITMAP", 0x2026, "VMREAD-bitmap address (VMCS shadowing)"),
        ("VMWRITE_BITMAP", 0x2028, "VMWRITE-bitmap address (VMCS shadowing)"),
        ("VE_INFORMATION_ADDRESS", 0x202A, "virtualization-exception information address"),
        ("XSS_EXIT_BITMAP", 0x202C, "XSS-exiting bitmap (XSAVES/XRSTORS)"),
        ("ENCLS_EXITING_BITMAP", 0x202E, "ENCLS-exiting bitmap (SGX leaf functions)"),
        ("SPP_TABLE_POINTER", 0x2030, "sub-page-permission-table pointer"),
        ("TSC_MULTIPLIER", 0x2032, "TSC multiplier (TSC scaling)"),
        ("TERTIARY_VM_EXEC_CONTROL", 0x2034, "tertiary processor-based VM-execution controls"),
        ("ENCLV_EXITING_BITMAP", 0x2036, "ENCLV-exiting bitmap"),
        ("LOW_PASID_DIRECTORY", 0x2038, "low PASID directory address (ENQCMD PASID translation)"),
        ("HIGH_PASID_DIRECTORY", 0x203A, "high PASID directory address (ENQCMD PASID translation)"),
        ("SHARED_EPT_POINTER", 0x203C, "shared-EPT pointer"),
        ("PCONFIG_EXITING_BITMAP", 0x203E, "PCONFIG-exiting bitmap"),
        ("HLAT_POINTER", 0x2040, "hypervisor-managed linear-address translation pointer (HLATP)"),
        ("PID_POINTER_TABLE", 0x2042, "PID-pointer table address (IPI virtualization)"),
        ("SECONDARY_VM_EXIT_CONTROLS", 0x2044, "secondary VM-exit controls"),
        ("IA32_SPEC_CTRL_MASK", 0x204A, "IA32_SPEC_CTRL mask (bits the guest cannot change)"),
        ("IA32_SPEC_CTRL_SHADOW", 0x204C, "IA32_SPEC_CTRL shadow (value the guest reads)"),
        ("INJECTED_EVENT_DATA", 0x2052, "injected-event data (FRED event data on VM entry)"),
    ]),
    ("64", "exit", [
        ("GUEST_PHYSICAL_ADDRESS", 0x2400, "guest-physical address of an EPT violation/misconfiguration"),
        ("MSR_DATA", 0x2402, "MSR data of a WRMSRLIST VM exit"),
        ("ORIGINAL_EVENT_DATA", 0x2404, "original-event data (FRED event data at VM exit)"),
    ]),
    ("64", "guest", [
        ("VMCS_LINK_POINTER", 0x2800, "VMCS link pointer (all ones unless VMCS shadowing)"),
        ("GUEST_IA32_DEBUGCTL", 0x2802, "guest IA32_DEBUGCTL"),
        ("GUEST_IA32_PAT", 0x2804, "guest IA32_PAT"),
        ("GUEST_IA32_EFER", 0x2806, "guest IA32_EFER"),
        ("GUEST_IA32_PERF_GLOBAL_CTRL", 0x2808, "guest IA32_PERF_GLOBAL_CTRL"),
        ("GUEST_PDPTR0", 0x280A, "guest PDPTE0 (PAE paging with EPT)"),
        ("GUEST_PDPTR1", 0x280C, "guest PDPTE1"),
        ("GUEST_PDPTR2", 0x280E, "guest PDPTE2"),
        ("GUEST_PDPTR3", 0x2810, "guest PDPTE3"),
        ("GUEST_BNDCFGS", 0x2812, "guest IA32_BNDCFGS (MPX)"),
        ("GUEST_IA32_RTIT_CTL", 0x2814, "guest IA32_RTIT_CTL (Intel PT)"),
        ("GUEST_IA32_LBR_CTL", 0x2816, "guest IA32_LBR_CTL (architectural LBRs)"),
        ("GUEST_IA32_PKRS", 0x2818, "guest IA32_PKRS (supervisor protection keys)"),
        ("GUEST_IA32_FRED_CONFIG", 0x281A, "guest IA32_FRED_CONFIG"),
        ("GUEST_IA32_FRED_RSP1", 0x281C, "guest IA32_FRED_RSP1"),
        ("GUEST_IA32_FRED_RSP2", 0x281E, "guest IA32_FRED_RSP2"),
        ("GUEST_IA32_FRED_RSP3", 0x2820, "guest IA32_FRED_RSP3"),
        ("GUEST_IA32_FRED_STKLVLS", 0x2822, "guest IA32_FRED_STKLVLS"),
        ("GUEST_IA32_FRED_SSP1", 0x2824, "guest IA32_FRED_SSP1"),
        ("GUEST_IA32_FRED_SSP2", 0x2826, "guest IA32_FRED_SSP2"),
        ("GUEST_IA32_FRED_SSP3", 0x2828, "guest IA32_FRED_SSP3"),
        ("GUEST_IA32_SPEC_CTRL", 0x282E, "guest IA32_SPEC_CTRL"),
    ]),
    ("64", "host", [
        ("HOST_IA32_PAT", 0x2C00, "host IA32_PAT loaded at VM exit"),
        ("HOST_IA32_EFER", 0x2C02, "host IA32_EFER loaded at VM exit"),
        ("HOST_IA32_PERF_GLOBAL_CTRL", 0x2C04, "host IA32_PERF_GLOBAL_CTRL loaded at VM exit"),
        ("HOST_IA32_PKRS", 0x2C06, "host IA32_PKRS loaded at VM exit"),
        ("HOST_IA32_FRED_CONFIG", 0x2C08, "host IA32_FRED_CONFIG"),
        ("HOST_IA32_FRED_RSP1", 0x2C0A, "host IA32_FRED_RSP1"),
        ("HOST_IA32_FRED_RSP2", 0x2C0C, "host IA32_FRED_RSP2"),
        ("HOST_IA32_FRED_RSP3", 0x2C0E, "host IA32_FRED_RSP3"),
        ("HOST_IA32_FRED_STKLVLS", 0x2C10, "host IA32_FRED_STKLVLS"),
        ("HOST_IA32_FRED_SSP1", 0x2C12, "host IA32_FRED_SSP1"),
        ("HOST_IA32_FRED_SSP2", 0x2C14, "host IA32_FRED_SSP2"),
        ("HOST_IA32_FRED_SSP3", 0x2C16, "host IA32_FRED_SSP3"),
        ("HOST_IA32_SPEC_CTRL", 0x2C1A, "host IA32_SPEC_CTRL"),
    ]),
    ("32", "control", [
        ("PIN_BASED_VM_EXEC_CONTROL", 0x4000, "pin-based VM-execution controls"),
        ("CPU_BASED_VM_EXEC_CONTROL", 0x4002, "primary processor-based VM-execution controls"),
        ("EXCEPTION_BITMAP", 0x4004, "exception bitmap (bit n: vector n exits)"),
        ("PAGE_FAULT_ERROR_CODE_MASK", 0x4006, "page-fault error-code mask"),
        ("PAGE_FAULT_ERROR_CODE_MATCH", 0x4008, "page-fault error-code match"),
        ("CR3_TARGET_COUNT", 0x400A, "CR3-target count"),
        ("VM_EXIT_CONTROLS", 0x400C, "primary VM-exit controls"),
        ("VM_EXIT_MSR_STORE_COUNT", 0x400E, "VM-exit MSR-store count"),
        ("VM_EXIT_MSR_LOAD_COUNT", 0x4010, "VM-exit MSR-load count"),
        ("VM_ENTRY_CONTROLS", 0x4012, "VM-entry controls"),
        ("VM_ENTRY_MSR_LOAD_COUNT", 0x4014, "VM-entry MSR-load count"),
        ("VM_ENTRY_INTR_INFO_FIELD", 0x4016, "VM-entry interruption information (event injection)"),
        ("VM_ENTRY_EXCEPTION_ERROR_CODE", 0x4018, "VM-entry exception error code"),
        ("VM_ENTRY_INSTRUCTION_LEN", 0x401A, "VM-entry instruction length"),
        ("TPR_THRESHOLD", 0x401C, "TPR threshold"),
        ("SECONDARY_VM_EXEC_CONTROL", 0x401E, "secondary processor-based VM-execution controls"),
        ("PLE_GAP", 0x4020, "PAUSE-loop exiting gap"),
        ("PLE_WINDOW", 0x4022, "PAUSE-loop exiting window"),
        ("INSTRUCTION_TIMEOUT_CONTROL", 0x4024, "instruction-timeout control (formerly notify window)"),
    ]),
    ("32", "exit", [
        ("VM_INSTRUCTION_ERROR", 0x4400, "VM-instruction error number (SDM 31.4)"),
        ("VM_EXIT_REASON", 0x4402, "exit reason (basic reason in bits 15:0, entry failure in bit 31)"),
        ("VM_EXIT_INTR_INFO", 0x4404, "VM-exit interruption information"),
        ("VM_EXIT_INTR_ERROR_CODE", 0x4406, "VM-exit interruption error code"),
        ("IDT_VECTORING_INFO_FIELD", 0x4408, "IDT-vectoring information"),
        ("IDT_VECTORING_ERROR_CODE", 0x440A, "IDT-vectoring error code"),
        ("VM_EXIT_INSTRUCTION_LEN", 0x440C, "VM-exit instruction length"),
        ("VMX_INSTRUCTION_INFO", 0x440E, "VM-exit instruction information"),
    ]),
    ("32", "guest", [("GUEST_%s_LIMIT" % s, 0x4800 + 2 * i, "guest %s segment limit" % s)
                     for i, s in enumerate(_SEGS + ("GDTR", "IDTR"))]
     + [("GUEST_%s_AR_BYTES" % s, 0x4814 + 2 * i, "guest %s access rights (VMX layout, bit 16 unusable)" % s)
        for i, s in enumerate(_SEGS)] + [
        ("GUEST_INTERRUPTIBILITY_INFO", 0x4824, "guest interruptibility state (STI/MOV SS/SMI/NMI blocking)"),
        ("GUEST_ACTIVITY_STATE", 0x4826, "guest activity state (0 active, 1 HLT, 2 shutdown, 3 wait-for-SIPI)"),
        ("GUEST_SMBASE", 0x4828, "guest SMBASE"),
        ("GUEST_SYSENTER_CS", 0x482A, "guest IA32_SYSENTER_CS"),
        ("VMX_PREEMPTION_TIMER_VALUE", 0x482E, "VMX-preemption timer value"),
    ]),
    ("32", "host", [("HOST_IA32_SYSENTER_CS", 0x4C00, "host IA32_SYSENTER_CS")]),
    ("natural", "control", [
        ("CR0_GUEST_HOST_MASK", 0x6000, "CR0 guest/host mask (1 = bit owned by the host)"),
        ("CR4_GUEST_HOST_MASK", 0x6002, "CR4 guest/host mask (1 = bit owned by the host)"),
        ("CR0_READ_SHADOW", 0x6004, "CR0 read shadow (what the guest reads for host-owned bits)"),
        ("CR4_READ_SHADOW", 0x6006, "CR4 read shadow"),
        ("CR3_TARGET_VALUE0", 0x6008, "CR3-target value 0"),
        ("CR3_TARGET_VALUE1", 0x600A, "CR3-target value 1"),
        ("CR3_TARGET_VALUE2", 0x600C, "CR3-target value 2"),
        ("CR3_TARGET_VALUE3", 0x600E, "CR3-target value 3"),
    ]),
    ("natural", "exit", [
        ("EXIT_QUALIFICATION", 0x6400, "exit qualification"),
        ("IO_RCX", 0x6402, "I/O RCX (SMI during I/O)"),
        ("IO_RSI", 0x6404, "I/O RSI"),
        ("IO_RDI", 0x6406, "I/O RDI"),
        ("IO_RIP", 0x6408, "I/O RIP"),
        ("GUEST_LINEAR_ADDRESS", 0x640A, "guest-linear address"),
    ]),
    ("natural", "guest", [
        ("GUEST_CR0", 0x6800, "guest CR0"),
        ("GUEST_CR3", 0x6802, "guest CR3"),
        ("GUEST_CR4", 0x6804, "guest CR4")]
     + [("GUEST_%s_BASE" % s, 0x6806 + 2 * i, "guest %s base" % s)
        for i, s in enumerate(_SEGS + ("GDTR", "IDTR"))] + [
        ("GUEST_DR7", 0x681A, "guest DR7"),
        ("GUEST_RSP", 0x681C, "guest RSP"),
        ("GUEST_RIP", 0x681E, "guest RIP"),
        ("GUEST_RFLAGS", 0x6820, "guest RFLAGS"),
        ("GUEST_PENDING_DBG_EXCEPTIONS", 0x6822, "guest pending debug exceptions"),
        ("GUEST_SYSENTER_ESP", 0x6824, "guest IA32_SYSENTER_ESP"),
        ("GUEST_SYSENTER_EIP", 0x6826, "guest IA32_SYSENTER_EIP"),
        ("GUEST_S_CET", 0x6828, "guest IA32_S_CET (CET)"),
        ("GUEST_SSP", 0x682A, "guest shadow-stack pointer"),
        ("GUEST_INTR_SSP_TABLE", 0x682C, "guest IA32_INTERRUPT_SSP_TABLE_ADDR"),
    ]),
    ("natural", "host", [
        ("HOST_CR0", 0x6C00, "host CR0"),
        ("HOST_CR3", 0x6C02, "host CR3"),
        ("HOST_CR4", 0x6C04, "host CR4"),
        ("HOST_FS_BASE", 0x6C06, "host FS base"),
        ("HOST_GS_BASE", 0x6C08, "host GS base"),
        ("HOST_TR_BASE", 0x6C0A, "host TR base"),
        ("HOST_GDTR_BASE", 0x6C0C, "host GDTR base"),
        ("HOST_IDTR_BASE", 0x6C0E, "host IDTR base"),
        ("HOST_IA32_SYSENTER_ESP", 0x6C10, "host IA32_SYSENTER_ESP"),
        ("HOST_IA32_SYSENTER_EIP", 0x6C12, "host IA32_SYSENTER_EIP"),
        ("HOST_RSP", 0x6C14, "host RSP (the VM-exit handler's stack)"),
        ("HOST_RIP", 0x6C16, "host RIP (the VM-exit handler)"),
        ("HOST_S_CET", 0x6C18, "host IA32_S_CET"),
        ("HOST_SSP", 0x6C1A, "host shadow-stack pointer"),
        ("HOST_INTR_SSP_TABLE", 0x6C1C, "host IA32_INTERRUPT_SSP_TABLE_ADDR"),
    ]),
]

FIELDS: Tuple[Field, ...] = tuple(
    Field(name, enc, width, ftype, ftype == "exit", meaning, _SECTION[(width, ftype)])
    for width, ftype, rows in _GROUPS for name, enc, meaning in rows)

BY_ENCODING: Dict[int, Field] = {f.encoding: f for f in FIELDS}
BY_NAME: Dict[str, Field] = {f.name: f for f in FIELDS}

# Other spellings in common use (ia32-doc, Bochs, hypervisor sources) -> our name.
ALIASES: Dict[str, str] = {
    "VPID": "VIRTUAL_PROCESSOR_ID",
    "PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS": "CPU_BASED_VM_EXEC_CONTROL",
    "PROCESSOR_BASED_VM_EXECUTION_CONTROLS": "CPU_BASED_VM_EXEC_CONTROL",
    "PROC_BASED_VM_EXEC_CONTROL": "CPU_BASED_VM_EXEC_CONTROL",
    "PRIMARY_PROC_BASED_CONTROLS": "CPU_BASED_VM_EXEC_CONTROL",
    "SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS": "SECONDARY_VM_EXEC_CONTROL",
    "TERTIARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS": "TERTIARY_VM_EXEC_CONTROL",
    "PIN_BASED_VM_EXECUTION_CONTROLS": "PIN_BASED_VM_EXEC_CONTROL",
    "PRIMARY_VMEXIT_CONTROLS": "VM_EXIT_CONTROLS",
    "VMEXIT_CONTROLS": "VM_EXIT_CONTROLS",
    "VMENTRY_CONTROLS": "VM_ENTRY_CONTROLS",
    "SECONDARY_VMEXIT_CONTROLS": "SECONDARY_VM_EXIT_CONTROLS",
    "EXIT_REASON": "VM_EXIT_REASON",
    "INSTRUCTION_ERROR": "VM_INSTRUCTION_ERROR",
    "EPTP": "EPT_POINTER",
    "MSR_BITMAPS": "MSR_BITMAP",
    "MSR_BITMAP_ADDRESS": "MSR_BITMAP",
    "VMREAD_BITMAP_ADDRESS": "VMREAD_BITMAP",
    "VMWRITE_BITMAP_ADDRESS": "VMWRITE_BITMAP",
    "GUEST_INTERRUPTIBILITY_STATE": "GUEST_INTERRUPTIBILITY_INFO",
    "VM_EXIT_INTERRUPTION_INFORMATION": "VM_EXIT_INTR_INFO",
    "VM_ENTRY_INTERRUPTION_INFORMATION": "VM_ENTRY_INTR_INFO_FIELD",
    "IDT_VECTORING_INFORMATION": "IDT_VECTORING_INFO_FIELD",
    "VM_EXIT_INSTRUCTION_INFO": "VMX_INSTRUCTION_INFO",
    "VM_EXIT_INSTRUCTION_LENGTH": "VM_EXIT_INSTRUCTION_LEN",
    "NOTIFY_WINDOW": "INSTRUCTION_TIMEOUT_CONTROL",
    "HLATP": "HLAT_POINTER",
    "SPPTP": "SPP_TABLE_POINTER",
    "GUEST_IA32_SYSENTER_CS": "GUEST_SYSENTER_CS",
    "GUEST_IA32_SYSENTER_ESP": "GUEST_SYSENTER_ESP",
    "GUEST_IA32_SYSENTER_EIP": "GUEST_SYSENTER_EIP",
    "GUEST_IA32_BNDCFGS": "GUEST_BNDCFGS",
    "GUEST_IA32_S_CET": "GUEST_S_CET",
    "HOST_IA32_S_CET": "HOST_S_CET",
    "GUEST_INTERRUPT_SSP_TABLE_ADDR": "GUEST_INTR_SSP_TABLE",
    "HOST_INTERRUPT_SSP_TABLE_ADDR": "HOST_INTR_SSP_TABLE",
    "GUEST_INTERRUPT_STATUS": "GUEST_INTR_STATUS",
    "PREEMPTION_TIMER_VALUE": "VMX_PREEMPTION_TIMER_VALUE",
    "POSTED_INTERRUPT_NOTIFICATION_VECTOR": "POSTED_INTR_NV",
    "POSTED_INTERRUPT_DESCRIPTOR_ADDRESS": "POSTED_INTR_DESC_ADDR",
    "VIRTUAL_APIC_ADDRESS": "VIRTUAL_APIC_PAGE_ADDR",
    "APIC_ACCESS_ADDRESS": "APIC_ACCESS_ADDR",
}
for _seg in _SEGS:  # "GUEST_ES_ACCESS_RIGHTS" and KVM's "GUEST_ES_AR_BYTES" are the same field
    ALIASES["GUEST_%s_ACCESS_RIGHTS" % _seg] = "GUEST_%s_AR_BYTES" % _seg
    ALIASES["GUEST_%s_AR" % _seg] = "GUEST_%s_AR_BYTES" % _seg
for _i in range(4):
    ALIASES["GUEST_PDPTE%d" % _i] = "GUEST_PDPTR%d" % _i
    ALIASES["CR3_TARGET%d" % _i] = "CR3_TARGET_VALUE%d" % _i

ALIASES.update({
    "VIRTUALIZATION_EXCEPTION_INFO_ADDRESS": "VE_INFORMATION_ADDRESS",
    "TERTIARY_PROCESSOR_CONTROLS": "TERTIARY_VM_EXEC_CONTROL",
    "GUEST_IA32_INTERRUPT_SSP_TABLE_ADDR": "GUEST_INTR_SSP_TABLE",
    "HOST_IA32_INTERRUPT_SSP_TABLE_ADDR": "HOST_INTR_SSP_TABLE",
})

_PREFIXES = ("VMCS_", "VMX_VMCS_", "VMCS_CTRL_", "VMCS_RO_", "VMCS_CONTROL_")

# Loose matching for the many spellings of one field (SDM prose, ia32-doc,
# hv.sys's own names): VMEXIT = VM_EXIT, INFORMATION = INFO, _ADDRESS dropped,
# underscores ignored. Built lazily, on the first name no table knows.
_LOOSE_RULES = (("VMEXIT", "VM_EXIT"), ("VMENTRY", "VM_ENTRY"), ("INFORMATION", "INFO"),
                ("INTERRUPTION", "INTR"), ("LENGTH", "LEN"), ("DEBUG", "DBG"), ("EXITING", "EXIT"),
                ("CONTROLS", "CONTROL"))
_LOOSE_SUFFIXES = ("_ADDRESS", "_ADDR", "_FIELD")
_loose: Dict[str, Field] = {}


def loose_key(name: str) -> str:
    key = name.upper()
    for a, b in _LOOSE_RULES:
        key = key.replace(a, b)
    for suffix in _LOOSE_SUFFIXES:
        if key.endswith(suffix):
            key = key[:-len(suffix)]
    return key.replace("_", "")


def _loose_table() -> Dict[str, Field]:
    if not _loose:
        for alias, name in list(ALIASES.items()) + [(f.name, f.name) for f in FIELDS]:
            _loose.setdefault(loose_key(alias), BY_NAME[name])
    return _loose


def by_name(name: str) -> Field:
    """Exact canonical name -> Field (KeyError-free callers use lookup())."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise FieldLookupError(_unknown_name_message(name))


def _normalise(text: str) -> str:
    return text.strip().upper().replace("-", "_").replace(" ", "_")


def _resolve_name(norm: str):
    candidates = [norm] + [norm[len(p):] for p in _PREFIXES if norm.startswith(p)]
    for cand in candidates:
        if cand in BY_NAME:
            return BY_NAME[cand]
        if cand in ALIASES:
            return BY_NAME[ALIASES[cand]]
    table = _loose_table()
    for cand in candidates:
        if loose_key(cand) in table:
            return table[loose_key(cand)]
    return None


def _unknown_name_message(text: str) -> str:
    norm = _normalise(text)
    for p in _PREFIXES:
        if norm.startswith(p):
            norm = norm[len(p):]
            break
    import difflib  # only on the error path: keeps import fast

    pool = list(BY_NAME) + list(ALIASES)
    close = difflib.get_close_matches(norm, pool, n=3, cutoff=0.6)
    if len(norm) >= 2:  # substring hints help for partial names ("RIP", "EPT")
        close += [n for n in BY_NAME if norm in n and n not in close]
    names = []  # type: List[str]
    for c in close:
        c = ALIASES.get(c, c)
        if c not in names:
            names.append(c)
    names = names[:4]
    hint = (" (did you mean %s?)" % ", ".join(names)) if names else ""
    return "unknown VMCS field %r%s; list them with: field --all" % (text, hint)


def _parse_number(text: str):
    """An encoding in WinDbg syntax (bare numbers are hex, as WinDbg shows
    encodings: 681e; 0n26654 is decimal), or None if `text` is not a number."""
    from windbg_ext.number_syntax import NumberError, parse_number
    try:
        return parse_number(text, "hex", "encoding")
    except NumberError:
        return None


def lookup(text) -> Tuple[Field, str]:
    """A name (any case, with/without VMCS_ prefixes, *_HIGH suffix) or an
    encoding (int, or WinDbg syntax: 681e, 0x681e, 0n26654) -> (Field, access "full"|"high").
    Raises FieldLookupError with a one-line message."""
    if isinstance(text, int):
        value = text
    else:
        value = _parse_number(str(text))
    if value is not None:
        if value in BY_ENCODING:
            return BY_ENCODING[value], "full"
        if value & 1 and (value & ~1) in BY_ENCODING and BY_ENCODING[value & ~1].width == "64":
            return BY_ENCODING[value & ~1], "high"
        parts = decode_encoding(value)
        if not parts.valid:
            raise FieldLookupError("0x%x is not a valid VMCS field encoding: %s" % (value, "; ".join(parts.problems)))
        raise FieldLookupError("0x%x is a well-formed encoding (%s %s-bit, index %d, %s access) but no SDM "
                               "Appendix B field has it" % (value, parts.type, parts.width, parts.index, parts.access))
    norm = _normalise(str(text))
    field = _resolve_name(norm)
    if field is not None:
        return field, "full"
    if norm.endswith("_HIGH") or norm.endswith("_HI"):
        base = _resolve_name(norm.rsplit("_", 1)[0])
        if base is not None and base.width == "64":
            return base, "high"
    raise FieldLookupError(_unknown_name_message(str(text)))


def high_encoding(field: Field) -> int:
    """The high-access encoding of a 64-bit field (25.11.2: bit 0 = 1)."""
    if field.width != "64":
        raise ValueError("%s is not a 64-bit field: it has no high access" % field.name)
    return field.encoding | 1
