"""Checks on the VM-execution, VM-exit and VM-entry control fields
(SDM Vol. 3, 27.2.1). Any failure: VMfailValid with VM-instruction error 7
("VM entry with invalid control field(s)", SDM 31.4)."""
from __future__ import annotations

from windbg_ext.arch import capabilities as cm
from windbg_ext.arch.controls import CONTROL_FIELD
from windbg_ext.arch.entry_checks.model import NOT_APPLICABLE, NotChecked, Registry, bits_text, hexv
from windbg_ext.arch.msr_names import MSR_NAMES

R = Registry("control")
EXEC, EXIT, ENTRY = "27.2.1.1", "27.2.1.2", "27.2.1.3"


def _msr_name(msr: int) -> str:
    return MSR_NAMES.get(msr, "MSR 0x%x" % msr)


# -- allowed 0- and 1-settings of each control field (SDM A.3-A.5) -------------
def _allowed_rules(kind: str, field: str, sdm: str, what: str, gate=None) -> None:
    def must_be_one(s):
        if gate is not None and not gate(s):
            return NOT_APPLICABLE
        must1, _ = s.allowed(kind)
        v = s.f(field)
        if ~v & must1:
            return "%s: %s must be 1 (allowed 0-settings, low half of %s = 0x%08x)" % (
                hexv(s, field), bits_text(~v & must1), _msr_name(s.allowed_msr(kind)), must1)
        return None

    def may_be_one(s):
        if gate is not None and not gate(s):
            return NOT_APPLICABLE
        _, may1 = s.allowed(kind)
        v = s.f(field)
        if v & ~may1:
            return "%s: %s must be 0 (not allowed 1-settings per %s = 0x%x)" % (
                hexv(s, field), bits_text(v & ~may1), _msr_name(s.allowed_msr(kind)), may1)
        return None

    if kind not in ("proc3", "exit2"):  # these capability MSRs have no allowed-0 half
        R.add("control.%s.allowed0" % kind, sdm, [field],
              "Every bit that the capability MSR reports as allowed-0 = 1 must be 1 in the %s." % what, must_be_one)
    R.add("control.%s.allowed1" % kind, sdm, [field],
          "Every bit that the capability MSR reports as allowed-1 = 0 must be 0 in the %s." % what, may_be_one)


_allowed_rules("pin", "PIN_BASED_VM_EXEC_CONTROL", EXEC, "pin-based VM-execution controls")
_allowed_rules("proc", "CPU_BASED_VM_EXEC_CONTROL", EXEC, "primary processor-based VM-execution controls")
_allowed_rules("proc2", "SECONDARY_VM_EXEC_CONTROL", EXEC, "secondary processor-based VM-execution controls",
               gate=lambda s: s.ctl("proc", "ACTIVATE_SECONDARY_CONTROLS"))
_allowed_rules("proc3", "TERTIARY_VM_EXEC_CONTROL", EXEC, "tertiary processor-based VM-execution controls",
               gate=lambda s: s.ctl("proc", "ACTIVATE_TERTIARY_CONTROLS"))


@R.rule("control.cr3_target_count", EXEC, ["CR3_TARGET_COUNT"],
        "The CR3-target count must not exceed the number of CR3-target values the processor supports (IA32_VMX_MISC bits 24:16).")
def _cr3_count(s):
    n = (s.cap(cm.IA32_VMX_MISC) >> 16) & 0x1FF
    if s.f("CR3_TARGET_COUNT") > n:
        return "%s: must be at most %d (IA32_VMX_MISC bits 24:16)" % (hexv(s, "CR3_TARGET_COUNT"), n)
    return None


# -- physical addresses that the controls point at -----------------------------
def _address_rules(id: str, field: str, sdm: str, what: str, gate, align: int = 0x1000) -> None:
    align_text = "4-KByte aligned (bits 11:0 = 0)" if align == 0x1000 else "%d-byte aligned (bits %d:0 = 0)" % (
        align, align.bit_length() - 2)

    def aligned(s):
        if not gate(s):
            return NOT_APPLICABLE
        if s.f(field) & (align - 1):
            return "%s: the %s must be %s" % (hexv(s, field), what, align_text)
        return None

    def width(s):
        if not gate(s):
            return NOT_APPLICABLE
        if not s.phys_ok(s.f(field)):
            return "%s: the %s sets bits beyond the physical-address width (%d bits)" % (
                hexv(s, field), what, s.maxphyaddr)
        return None

    R.add(id + ".aligned", sdm, [field], "The %s must be %s." % (what, align_text), aligned)
    R.add(id + ".width", sdm, [field],
          "The %s must not set any bit beyond the processor's physical-address width." % what, width)


def _proc(name):
    return lambda s: s.ctl("proc", name)


def _proc2(name):
    return lambda s: s.ctl("proc2", name)


def _pin(name):
    return lambda s: s.ctl("pin", name)


_address_rules("control.io_bitmap_a", "IO_BITMAP_A", EXEC, "I/O bitmap A address", _proc("USE_IO_BITMAPS"))
_address_rules("control.io_bitmap_b", "IO_BITMAP_B", EXEC, "I/O bitmap B address", _proc("USE_IO_BITMAPS"))
_address_rules("control.msr_bitmap", "MSR_BITMAP", EXEC, "MSR-bitmap address", _proc("USE_MSR_BITMAPS"))
_address_rules("control.virtual_apic", "VIRTUAL_APIC_PAGE_ADDR", EXEC, "virtual-APIC address",
               _proc("USE_TPR_SHADOW"))


@R.rule("control.tpr_threshold.reserved", EXEC, ["TPR_THRESHOLD", "CPU_BASED_VM_EXEC_CONTROL", "SECONDARY_VM_EXEC_CONTROL"],
        "With 'use TPR shadow' = 1 and 'virtual-interrupt delivery' = 0, bits 31:4 of the TPR threshold must be 0.")
def _tpr_reserved(s):
    if not s.ctl("proc", "USE_TPR_SHADOW") or s.ctl("proc2", "VIRTUAL_INTERRUPT_DELIVERY"):
        return NOT_APPLICABLE
    v = s.f("TPR_THRESHOLD")
    if v & ~0xF:
        return "%s: bits 31:4 must be 0" % hexv(s, "TPR_THRESHOLD")
    return None


@R.rule("control.tpr_threshold.vtpr", EXEC, ["TPR_THRESHOLD", "VIRTUAL_APIC_PAGE_ADDR"],
        "With 'use TPR shadow' = 1 and 'virtual-interrupt delivery' and 'virtualize APIC accesses' = 0, "
        "TPR threshold bits 3:0 must not exceed VTPR bits 7:4 (virtual-APIC page offset 0x80).")
def _tpr_vtpr(s):
    if (not s.ctl("proc", "USE_TPR_SHADOW") or s.ctl("proc2", "VIRTUAL_INTERRUPT_DELIVERY")
            or s.ctl("proc2", "VIRTUALIZE_APIC_ACCESSES")):
        return NOT_APPLICABLE
    if s.read_physical is None:
        return NotChecked("needs the virtual-APIC page in memory")
    data = s.read(s.f("VIRTUAL_APIC_PAGE_ADDR") + 0x80, 1)
    if data is None:
        return NotChecked("the virtual-APIC page is not readable")
    vtpr = data[0]
    if (s.f("TPR_THRESHOLD") & 0xF) > (vtpr >> 4):
        return "%s: bits 3:0 (%d) exceed VTPR bits 7:4 (%d)" % (
            hexv(s, "TPR_THRESHOLD"), s.f("TPR_THRESHOLD") & 0xF, vtpr >> 4)
    return None


def _requires(id: str, sdm: str, fields, explain: str, cond_kind: str, cond: str, need_kind: str, need: str,
              need_value: bool = True) -> None:
    """'If <cond> is 1, <need> must be <need_value>'."""
    def test(s):
        if not s.ctl(cond_kind, cond):
            return NOT_APPLICABLE
        if s.ctl(need_kind, need) != need_value:
            where = hexv(s, _field_of(cond_kind))
            if need_kind != cond_kind:
                where += ", " + hexv(s, _field_of(need_kind))
            return "%s: %s = 1 requires %s = %d" % (where, cond, need, int(need_value))
        return None
    R.add(id, sdm, fields, explain, test)


def _field_of(kind: str) -> str:
    return CONTROL_FIELD[kind]


P, C, C2, X, N = ("PIN_BASED_VM_EXEC_CONTROL", "CPU_BASED_VM_EXEC_CONTROL", "SECONDARY_VM_EXEC_CONTROL",
                  "VM_EXIT_CONTROLS", "VM_ENTRY_CONTROLS")


def _no_tpr_shadow(id: str, need: str, what: str) -> None:
    def test(s):
        if s.ctl("proc", "USE_TPR_SHADOW"):
            return NOT_APPLICABLE
        if s.ctl("proc2", need):
            return "%s, %s: %s = 1 requires USE_TPR_SHADOW = 1" % (hexv(s, C2), hexv(s, C), need)
        return None
    R.add(id, EXEC, [C, C2], "If 'use TPR shadow' is 0, '%s' must be 0." % what, test)


_no_tpr_shadow("control.no_tpr_shadow.x2apic", "VIRTUALIZE_X2APIC_MODE", "virtualize x2APIC mode")
_no_tpr_shadow("control.no_tpr_shadow.apic_register", "APIC_REGISTER_VIRTUALIZATION", "APIC-register virtualization")
_no_tpr_shadow("control.no_tpr_shadow.vid", "VIRTUAL_INTERRUPT_DELIVERY", "virtual-interrupt delivery")

_requires("control.nmi.virtual_nmis", EXEC, [P], "If 'NMI exiting' is 0, 'virtual NMIs' must be 0.",
          "pin", "VIRTUAL_NMIS", "pin", "NMI_EXITING")
_requires("control.nmi.window", EXEC, [P, C], "If 'virtual NMIs' is 0, 'NMI-window exiting' must be 0.",
          "proc", "NMI_WINDOW_EXITING", "pin", "VIRTUAL_NMIS")
_address_rules("control.apic_access", "APIC_ACCESS_ADDR", EXEC, "APIC-access address",
               _proc2("VIRTUALIZE_APIC_ACCESSES"))
_requires("control.x2apic_vs_apic_access", EXEC, [C2],
          "If 'virtualize x2APIC mode' is 1, 'virtualize APIC accesses' must be 0.",
          "proc2", "VIRTUALIZE_X2APIC_MODE", "proc2", "VIRTUALIZE_APIC_ACCESSES", False)
_requires("control.vid.external_interrupt_exiting", EXEC, [P, C2],
          "If 'virtual-interrupt delivery' is 1, 'external-interrupt exiting' must be 1.",
          "proc2", "VIRTUAL_INTERRUPT_DELIVERY", "pin", "EXTERNAL_INTERRUPT_EXITING")
_requires("control.posted.vid", EXEC, [P, C2],
          "If 'process posted interrupts' is 1, 'virtual-interrupt delivery' must be 1.",
          "pin", "PROCESS_POSTED_INTERRUPTS", "proc2", "VIRTUAL_INTERRUPT_DELIVERY")
_requires("control.posted.ack_on_exit", EXEC, [P, X],
          "If 'process posted interrupts' is 1, the 'acknowledge interrupt on exit' VM-exit control must be 1.",
          "pin", "PROCESS_POSTED_INTERRUPTS", "exit", "ACKNOWLEDGE_INTERRUPT_ON_EXIT")


@R.rule("control.posted.vector", EXEC, [P, "POSTED_INTR_NV"],
        "If 'process posted interrupts' is 1, bits 15:8 of the posted-interrupt notification vector must be 0.")
def _posted_vector(s):
    if not s.ctl("pin", "PROCESS_POSTED_INTERRUPTS"):
        return NOT_APPLICABLE
    if s.f("POSTED_INTR_NV") & 0xFF00:
        return "%s: bits 15:8 must be 0 (a vector is 0-255)" % hexv(s, "POSTED_INTR_NV")
    return None


_address_rules("control.posted.descriptor", "POSTED_INTR_DESC_ADDR", EXEC, "posted-interrupt descriptor address",
               _pin("PROCESS_POSTED_INTERRUPTS"), align=64)


@R.rule("control.vpid.nonzero", EXEC, [C2, "VIRTUAL_PROCESSOR_ID"],
        "If 'enable VPID' is 1, the VPID must not be 0000H (VPID 0 belongs to the host).")
def _vpid(s):
    if not s.ctl("proc2", "ENABLE_VPID"):
        return NOT_APPLICABLE
    if s.f("VIRTUAL_PROCESSOR_ID") == 0:
        return "%s: must not be 0 when ENABLE_VPID = 1" % hexv(s, "VIRTUAL_PROCESSOR_ID")
    return None


# -- EPT pointer (SDM 27.2.1.1, 25.6.11) ------------------------------------------
def _eptp_rule(id: str, explain: str):
    def deco(fn):
        def test(s):
            if not s.ctl("proc2", "ENABLE_EPT"):
                return NOT_APPLICABLE
            return fn(s, s.f("EPT_POINTER"), s.cap(cm.IA32_VMX_EPT_VPID_CAP))
        R.add(id, EXEC, [C2, "EPT_POINTER"], explain, test)
        return fn
    return deco


@_eptp_rule("control.ept.memtype", "The EPT memory type (EPTP bits 2:0) must be one IA32_VMX_EPT_VPID_CAP allows (UC bit 8, WB bit 14).")
def _ept_memtype(s, eptp, cap):
    mt = eptp & 7
    ok = (mt == 0 and (cap >> 8) & 1) or (mt == 6 and (cap >> 14) & 1)
    if not ok:
        return "%s: memory type %d is not supported (UC=0 needs EPT_VPID_CAP bit 8, WB=6 bit 14; cap = 0x%x)" % (
            hexv(s, "EPT_POINTER"), mt, cap)
    return None


@_eptp_rule("control.ept.walk_length", "EPTP bits 5:3 (page-walk length - 1) must be 3, or 4 where IA32_VMX_EPT_VPID_CAP bit 7 allows 5-level EPT.")
def _ept_walk(s, eptp, cap):
    n = (eptp >> 3) & 7
    ok = (n == 3 and (cap >> 6) & 1) or (n == 4 and (cap >> 7) & 1)
    if not ok:
        return "%s: bits 5:3 = %d, must be 3 (4-level walk)%s" % (
            hexv(s, "EPT_POINTER"), n, " or 4 (5-level walk)" if (cap >> 7) & 1 else "")
    return None


@_eptp_rule("control.ept.accessed_dirty", "EPTP bit 6 (enable accessed/dirty flags) may be 1 only if IA32_VMX_EPT_VPID_CAP bit 21 is 1.")
def _ept_ad(s, eptp, cap):
    if (eptp >> 6) & 1 and not (cap >> 21) & 1:
        return "%s: bit 6 (A/D flags) is set but IA32_VMX_EPT_VPID_CAP bit 21 is 0" % hexv(s, "EPT_POINTER")
    return None


@_eptp_rule("control.ept.reserved", "EPTP bits 11:8 are reserved and must be 0.")
def _ept_reserved(s, eptp, cap):
    if eptp & 0xF00:
        return "%s: reserved %s must be 0" % (hexv(s, "EPT_POINTER"), bits_text(eptp & 0xF00))
    return None


@_eptp_rule("control.ept.width", "EPTP bits beyond the physical-address width must be 0.")
def _ept_width(s, eptp, cap):
    if not s.phys_ok(eptp):
        return "%s: sets bits beyond the physical-address width (%d bits)" % (hexv(s, "EPT_POINTER"), s.maxphyaddr)
    return None


_requires("control.unrestricted_guest.ept", EXEC, [C2], "If 'unrestricted guest' is 1, 'enable EPT' must be 1.",
          "proc2", "UNRESTRICTED_GUEST", "proc2", "ENABLE_EPT")
_requires("control.pml.ept", EXEC, [C2], "If 'enable PML' is 1, 'enable EPT' must be 1.",
          "proc2", "ENABLE_PML", "proc2", "ENABLE_EPT")
_address_rules("control.pml", "PML_ADDRESS", EXEC, "PML address", _proc2("ENABLE_PML"))
_requires("control.mode_based_execute.ept", EXEC, [C2], "If 'mode-based execute control for EPT' is 1, 'enable EPT' must be 1.",
          "proc2", "MODE_BASED_EXECUTE_CONTROL", "proc2", "ENABLE_EPT")
_requires("control.sub_page_write.ept", EXEC, [C2], "If 'sub-page write permissions for EPT' is 1, 'enable EPT' must be 1.",
          "proc2", "SUB_PAGE_WRITE_PERMISSIONS", "proc2", "ENABLE_EPT")
_requires("control.pt_guest_physical.ept", EXEC, [C2],
          "If 'Intel PT uses guest physical addresses' is 1, 'enable EPT' must be 1.",
          "proc2", "PT_USE_GUEST_PHYSICAL", "proc2", "ENABLE_EPT")


@R.rule("control.vmfunc.reserved", EXEC, [C2, "VM_FUNCTION_CONTROL"],
        "If 'enable VM functions' is 1, the VM-function controls may set only bits IA32_VMX_VMFUNC allows.")
def _vmfunc_reserved(s):
    if not s.ctl("proc2", "ENABLE_VM_FUNCTIONS"):
        return NOT_APPLICABLE
    v, allowed = s.f("VM_FUNCTION_CONTROL"), s.cap(cm.IA32_VMX_VMFUNC)
    if v & ~allowed:
        return "%s: %s not supported (IA32_VMX_VMFUNC = 0x%x)" % (hexv(s, "VM_FUNCTION_CONTROL"), bits_text(v & ~allowed), allowed)
    return None


def _eptp_switching(s):
    return s.ctl("proc2", "ENABLE_VM_FUNCTIONS") and s.f("VM_FUNCTION_CONTROL") & 1


@R.rule("control.vmfunc.eptp_switching.ept", EXEC, [C2, "VM_FUNCTION_CONTROL"],
        "If the 'EPTP switching' VM function (bit 0) is enabled, 'enable EPT' must be 1.")
def _eptp_sw_ept(s):
    if not _eptp_switching(s):
        return NOT_APPLICABLE
    if not s.ept:
        return "%s, %s: EPTP switching (bit 0) requires ENABLE_EPT = 1" % (hexv(s, "VM_FUNCTION_CONTROL"), hexv(s, C2))
    return None


_address_rules("control.vmfunc.eptp_list", "EPTP_LIST_ADDRESS", EXEC, "EPTP-list address", _eptp_switching)
_address_rules("control.shadowing.vmread_bitmap", "VMREAD_BITMAP", EXEC, "VMREAD-bitmap address",
               _proc2("VMCS_SHADOWING"))
_address_rules("control.shadowing.vmwrite_bitmap", "VMWRITE_BITMAP", EXEC, "VMWRITE-bitmap address",
               _proc2("VMCS_SHADOWING"))
_address_rules("control.ve_info", "VE_INFORMATION_ADDRESS", EXEC, "virtualization-exception information address",
               _proc2("EPT_VIOLATION_VE"))

# -- VM-exit control fields (27.2.1.2) -------------------------------------------
_allowed_rules("exit", X, EXIT, "VM-exit controls")
_allowed_rules("exit2", "SECONDARY_VM_EXIT_CONTROLS", EXIT, "secondary VM-exit controls",
               gate=lambda s: s.ctl("exit", "ACTIVATE_SECONDARY_CONTROLS"))
_requires("control.exit.save_preemption_timer", EXIT, [P, X],
          "If 'activate VMX-preemption timer' is 0, the 'save VMX-preemption-timer value' VM-exit control must be 0.",
          "exit", "SAVE_PREEMPTION_TIMER", "pin", "ACTIVATE_PREEMPTION_TIMER")


def _msr_area_rules(id: str, count: str, addr: str, sdm: str, what: str) -> None:
    def aligned(s):
        if s.f(count) == 0:
            return NOT_APPLICABLE
        if s.f(addr) & 0xF:
            return "%s: the %s address must be 16-byte aligned (bits 3:0 = 0) when %s is not 0" % (hexv(s, addr), what, count)
        return None

    def width(s):
        n = s.f(count)
        if n == 0:
            return NOT_APPLICABLE
        first, last = s.f(addr), s.f(addr) + n * 16 - 1
        if not s.phys_ok(first) or not s.phys_ok(last):
            return "%s, %s = %d: the %s (0x%x-0x%x) goes beyond the physical-address width (%d bits)" % (
                hexv(s, addr), count, n, what, first, last, s.maxphyaddr)
        return None

    R.add(id + ".aligned", sdm, [count, addr], "If the %s count is not 0, its address must be 16-byte aligned." % what, aligned)
    R.add(id + ".width", sdm, [count, addr],
          "If the %s count is not 0, the whole area (address + 16 * count - 1) must be within the physical-address width." % what,
          width)


_msr_area_rules("control.exit.msr_store", "VM_EXIT_MSR_STORE_COUNT", "VM_EXIT_MSR_STORE_ADDR", EXIT, "VM-exit MSR-store area")
_msr_area_rules("control.exit.msr_load", "VM_EXIT_MSR_LOAD_COUNT", "VM_EXIT_MSR_LOAD_ADDR", EXIT, "VM-exit MSR-load area")

# -- VM-entry control fields (27.2.1.3) ------------------------------------------
_allowed_rules("entry", N, ENTRY, "VM-entry controls")


@R.rule("control.entry.smm", ENTRY, [N], "Outside SMM, the 'entry to SMM' VM-entry control must be 0.")
def _entry_smm(s):
    if s.in_smm:
        return NOT_APPLICABLE
    if s.ctl("entry", "ENTRY_TO_SMM"):
        return "%s: ENTRY_TO_SMM must be 0 outside SMM" % hexv(s, N)
    return None


@R.rule("control.entry.dual_monitor", ENTRY, [N], "Outside SMM, the 'deactivate dual-monitor treatment' VM-entry control must be 0.")
def _entry_dual(s):
    if s.in_smm:
        return NOT_APPLICABLE
    if s.ctl("entry", "DEACTIVATE_DUAL_MONITOR"):
        return "%s: DEACTIVATE_DUAL_MONITOR must be 0 outside SMM" % hexv(s, N)
    return None


# Event injection: VM-entry interruption-information field (SDM 25.8.3, 27.2.1.3)
II, EC, IL = "VM_ENTRY_INTR_INFO_FIELD", "VM_ENTRY_EXCEPTION_ERROR_CODE", "VM_ENTRY_INSTRUCTION_LEN"
EXT_INT, NMI, HW_EXC, SW_INT, PRIV_SW_EXC, SW_EXC, OTHER = 0, 2, 3, 4, 5, 6, 7
ERROR_CODE_VECTORS = (8, 10, 11, 12, 13, 14, 17)  # #DF #TS #NP #SS #GP #PF #AC (SDM 27.2.1.3)


def _injection(fn):
    def test(s):
        info = s.f(II)
        if not info >> 31:
            return NOT_APPLICABLE
        return fn(s, info, info & 0xFF, (info >> 8) & 7)
    return test


def _inj(id: str, fields, explain: str):
    def deco(fn):
        R.add(id, ENTRY, [II] + list(fields), explain, _injection(fn))
        return fn
    return deco


@_inj("control.entry.inject.type", [C], "The interruption type must not be 1 (reserved), and may be 7 (other event) only if 'monitor trap flag' is supported.")
def _inj_type(s, info, vector, kind):
    mtf_supported = (s.allowed("proc")[1] >> 27) & 1  # MTF = primary bit 27 (SDM 25.6.2)
    if kind == 1 or (kind == OTHER and not mtf_supported):
        return "%s: interruption type %d is not allowed%s" % (
            hexv(s, II), kind, "" if kind == 1 else " (the processor does not support 'monitor trap flag')")
    return None


@_inj("control.entry.inject.nmi_vector", [], "An injected NMI (type 2) must have vector 2.")
def _inj_nmi(s, info, vector, kind):
    if kind == NMI and vector != 2:
        return "%s: an NMI (type 2) must have vector 2, not %d" % (hexv(s, II), vector)
    return None


@_inj("control.entry.inject.exception_vector", [], "An injected hardware exception (type 3) must have a vector of at most 31.")
def _inj_exc(s, info, vector, kind):
    if kind == HW_EXC and vector > 31:
        return "%s: a hardware exception (type 3) must have vector <= 31, not %d" % (hexv(s, II), vector)
    return None


@_inj("control.entry.inject.other_vector", [], "An injected 'other event' (type 7, pending MTF VM exit) must have vector 0.")
def _inj_other(s, info, vector, kind):
    if kind == OTHER and vector != 0:
        return "%s: type 7 (other event) must have vector 0, not %d" % (hexv(s, II), vector)
    return None


def _cr0_pe(s) -> bool:
    return bool(s.f("GUEST_CR0") & 1)


def _basic56(s) -> bool:
    return bool((s.cap(cm.IA32_VMX_BASIC) >> 56) & 1)


@_inj("control.entry.inject.error_code_needed", ["GUEST_CR0"],
      "The deliver-error-code bit must be 1 for a hardware exception #DF, #TS, #NP, #SS, #GP, #PF or #AC into a guest with CR0.PE = 1 (unless IA32_VMX_BASIC bit 56 is 1).")
def _inj_ec1(s, info, vector, kind):
    deliver = (info >> 11) & 1
    if kind == HW_EXC and _cr0_pe(s) and not _basic56(s) and vector in ERROR_CODE_VECTORS and not deliver:
        return "%s: vector %d (type 3) pushes an error code: bit 11 (deliver error code) must be 1" % (hexv(s, II), vector)
    return None


@_inj("control.entry.inject.error_code_forbidden", ["GUEST_CR0"],
      "The deliver-error-code bit must be 0 if the type is not hardware exception, if CR0.PE = 0, or (IA32_VMX_BASIC bit 56 = 0) if the vector takes no error code.")
def _inj_ec0(s, info, vector, kind):
    if not (info >> 11) & 1:
        return None
    if kind != HW_EXC:
        why = "the interruption type %d is not hardware exception" % kind
    elif not _cr0_pe(s):
        why = "guest CR0.PE = 0 (real mode pushes no error code)"
    elif not _basic56(s) and vector not in ERROR_CODE_VECTORS:
        why = "vector %d pushes no error code" % vector
    else:
        return None
    return "%s: bit 11 (deliver error code) must be 0: %s" % (hexv(s, II), why)


@_inj("control.entry.inject.reserved", [], "Bits 30:12 of the VM-entry interruption-information field are reserved and must be 0.")
def _inj_reserved(s, info, vector, kind):
    if info & 0x7FFFF000:
        return "%s: reserved %s must be 0" % (hexv(s, II), bits_text(info & 0x7FFFF000))
    return None


@_inj("control.entry.inject.error_code_high", [EC], "If the deliver-error-code bit is 1, bits 31:16 of the VM-entry exception error code must be 0.")
def _inj_ec_high(s, info, vector, kind):
    if (info >> 11) & 1 and s.f(EC) & 0xFFFF0000:
        return "%s: bits 31:16 must be 0" % hexv(s, EC)
    return None


@_inj("control.entry.inject.instruction_length", [IL],
      "For a software interrupt, privileged software exception or software exception (types 4-6), the VM-entry instruction length must be 1-15 (0 allowed if IA32_VMX_MISC bit 30 is 1).")
def _inj_len(s, info, vector, kind):
    if kind not in (SW_INT, PRIV_SW_EXC, SW_EXC):
        return None
    n = s.f(IL)
    zero_ok = (s.cap(cm.IA32_VMX_MISC) >> 30) & 1
    if n > 15 or (n == 0 and not zero_ok):
        return "%s: must be %s-15 for interruption type %d" % (hexv(s, IL), "0" if zero_ok else "1", kind)
    return None


_msr_area_rules("control.entry.msr_load", "VM_ENTRY_MSR_LOAD_COUNT", "VM_ENTRY_MSR_LOAD_ADDR", ENTRY, "VM-entry MSR-load area")

CHECKS = tuple(R.checks)
