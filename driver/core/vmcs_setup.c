/*
 * VMCS setup and launch (Day 4): controls adjusted against the capability
 * MSRs, guest state = this processor as it is now, host state with the
 * driver's own stack. The guest continues where the driver left off
 * (HvAsmLaunch supplies the resume RIP/RSP).
 */
#include "hv_core.h"
#include "hv_arch.h"
#include "hv_vmcs.h"
#include "hv_intrin.h"
#include "hv_asm.h"
#include "hv_fault.h"

/* Writes stop at the first failure; the failing encoding is remembered. */
typedef struct HV_VMCS_WRITER {
    uint32_t FailedField;
    unsigned char Failed;
} HV_VMCS_WRITER;

static void HvWrite(HV_VMCS_WRITER *w, uint32_t field, uint64_t value)
{
    if (w->Failed)
        return;
    if (hv_vmwrite(field, value) != HV_VMX_OK) {
        w->Failed = 1;
        w->FailedField = field;
    }
}

/* One guest segment: selector, base, limit, access rights (25.4.1). The
 * encodings of the four fields of segment n are n steps apart. */
static int HvWriteGuestSegment(HV_VMCS_WRITER *w, const DESCRIPTOR_TABLE_REGISTER *gdtr, uint32_t n,
                               uint16_t selector, HV_SEGMENT *seg)
{
    if (HvSegmentFromGdt((const uint8_t *)(uintptr_t)gdtr->Base, gdtr->Limit, selector, seg) != 0)
        return -1;
    HvWrite(w, VMCS_GUEST_ES_SELECTOR + 2u * n, selector);
    HvWrite(w, VMCS_GUEST_ES_BASE + 2u * n, seg->Base);
    HvWrite(w, VMCS_GUEST_ES_LIMIT + 2u * n, seg->Limit);
    HvWrite(w, VMCS_GUEST_ES_ACCESS_RIGHTS + 2u * n, seg->AccessRights);
    return 0;
}

HV_STATUS HvCoreSetupVmcs(HV_VMM_CONTEXT *vmm, HV_VCPU *vcpu)
{
    HV_VMCS_WRITER w = { 0, 0 };
    DESCRIPTOR_TABLE_REGISTER gdtr, idtr;
    HV_SEGMENT seg, tr;
    IA32_VMX_CONTROLS_CAPABILITY proc;
    uint16_t sel[8];
    uint32_t n, pin, cpu, cpu2, exitc, entry;
    uint64_t cr4 = hv_read_cr4();

    /* ---- controls (25.6-25.8), each adjusted against its capability MSR */
    proc.Value = vmm->CapProcbased;
    pin = HvAdjustControls(vmm->CapPinbased, 0);
    cpu = HvAdjustControls(vmm->CapProcbased, CPU_USE_MSR_BITMAPS | CPU_ACTIVATE_SECONDARY_CONTROLS);
    /* Exactly the secondary controls the features CPUID advertises need
     * (core/features.c): without them RDTSCP, RDPID, INVPCID, XSAVES or
     * TPAUSE raise #UD in the guest (26.3). DriverEntry refused to load if
     * one is not allowed; a value that still lacks one is refused here. */
    cpu2 = (cpu & CPU_ACTIVATE_SECONDARY_CONTROLS) ? HvAdjustControls(vmm->CapProcbased2, vmm->Procbased2Wanted) : 0;
    /* Debug controls both ways: the guest's DR7 and IA32_DEBUGCTL are saved at
     * exit and loaded at entry; without them every exit leaves DR7 = 0x400 and
     * DEBUGCTL = 0 in the guest (28.3.1, 28.5.1, 27.3.2.1). */
    exitc = HvAdjustControls(vmm->CapExit, EXIT_HOST_ADDRESS_SPACE_SIZE | EXIT_SAVE_DEBUG_CONTROLS);
    entry = HvAdjustControls(vmm->CapEntry, ENTRY_IA32E_MODE_GUEST | ENTRY_LOAD_DEBUG_CONTROLS);
    (void)proc;
    if (!(exitc & EXIT_HOST_ADDRESS_SPACE_SIZE) || !(entry & ENTRY_IA32E_MODE_GUEST) ||
        (pin & PIN_ACTIVATE_PREEMPTION_TIMER) || (cpu2 & vmm->Procbased2Wanted) != vmm->Procbased2Wanted ||
        !(exitc & EXIT_SAVE_DEBUG_CONTROLS) || !(entry & ENTRY_LOAD_DEBUG_CONTROLS)) {
        HvCoreRecordFailure(vcpu, HV_STEP_CAPABILITY, HV_STATUS_NOT_SUPPORTED, 0);
        return HV_STATUS_NOT_SUPPORTED;
    }
#ifdef HV_REVERT_DEBUG_CONTROLS
    /* the driver before issue #10, for the lab to catch (make -C driver revert REVERT=DEBUG_CONTROLS) */
    exitc &= ~EXIT_SAVE_DEBUG_CONTROLS;
    entry &= ~ENTRY_LOAD_DEBUG_CONTROLS;
#endif
    /* (the exercises' control faults come after the driver's own refusal checks) */
#if HV_FAULT == HV_FAULT_CONTROL_RAW
    /* exercise: one control written as desired, without the capability MSR's must-be-1 bits */
#if HV_FAULT_ARG == 0
    pin = 0;
#elif HV_FAULT_ARG == 1
    cpu = CPU_USE_MSR_BITMAPS | CPU_ACTIVATE_SECONDARY_CONTROLS;
#elif HV_FAULT_ARG == 2
    exitc = EXIT_HOST_ADDRESS_SPACE_SIZE;
#else
    entry = ENTRY_IA32E_MODE_GUEST;
#endif
#endif
#if HV_FAULT == HV_FAULT_CONTROL_AFTER_MASK
    { /* exercise: a bit or-ed in after the capability mask was applied */
        uint32_t *ctl[4] = { &pin, &cpu, &exitc, &entry };
        *ctl[(HV_FAULT_ARG / 32) & 3] |= 1u << (HV_FAULT_ARG % 32);
    }
#endif
#if HV_FAULT == HV_FAULT_NO_SECONDARY_CONTROLS
    /* exercise: ARG 0 -- "activate secondary controls" never set; ARG 1 -- "enable RDTSCP" left out */
#if HV_FAULT_ARG == 0
    cpu &= ~CPU_ACTIVATE_SECONDARY_CONTROLS;
    cpu2 = 0;
#else
    cpu2 &= ~CPU2_ENABLE_RDTSCP;
#endif
#endif
    vmm->PinbasedControls = pin;
    vmm->ProcbasedControls = cpu;
    vmm->Procbased2Controls = cpu2;
    vmm->ExitControls = exitc;
    vmm->EntryControls = entry;
#if HV_FAULT == HV_FAULT_DEBUG_CONTROLS_DROPPED
    if (vcpu->ProcessorIndex == HV_FAULT_CPU) { /* exercise: the debug controls "not needed" on one processor */
#if HV_FAULT_ARG & 1
        exitc &= ~EXIT_SAVE_DEBUG_CONTROLS;
#endif
#if HV_FAULT_ARG & 2
        entry &= ~ENTRY_LOAD_DEBUG_CONTROLS;
#endif
    }
#endif

    HvWrite(&w, VMCS_PIN_BASED_VM_EXECUTION_CONTROLS, pin);
    HvWrite(&w, VMCS_PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, cpu);
    if (cpu & CPU_ACTIVATE_SECONDARY_CONTROLS)
        HvWrite(&w, VMCS_SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, cpu2);
    HvWrite(&w, VMCS_PRIMARY_VMEXIT_CONTROLS, exitc);
    HvWrite(&w, VMCS_VMENTRY_CONTROLS, entry);
    HvWrite(&w, VMCS_EXCEPTION_BITMAP, 0);
    /* Every field the processor consults is written: after VMCLEAR the SDM
     * promises nothing about the others (25.11.3). #PF exits iff PFEC & mask
     * != match when bit 14 of the bitmap is 0 (26.2): 0/0 = never. */
    HvWrite(&w, VMCS_PAGE_FAULT_ERROR_CODE_MASK, 0);
    HvWrite(&w, VMCS_PAGE_FAULT_ERROR_CODE_MATCH, 0);
    HvWrite(&w, VMCS_TSC_OFFSET, 0);
    HvWrite(&w, VMCS_VMENTRY_EXCEPTION_ERROR_CODE, 0);
    HvWrite(&w, VMCS_VMENTRY_INSTRUCTION_LENGTH, 0);
    HvWrite(&w, VMCS_VMEXIT_MSR_STORE_ADDRESS, 0);
    HvWrite(&w, VMCS_VMEXIT_MSR_LOAD_ADDRESS, 0);
    HvWrite(&w, VMCS_VMENTRY_MSR_LOAD_ADDRESS, 0);
    if (cpu2 & CPU2_ENABLE_XSAVES_XRSTORS)
        HvWrite(&w, VMCS_XSS_EXITING_BITMAP, 0); /* XSAVES/XRSTORS never exit (25.6.20) */
    HvWrite(&w, VMCS_CR3_TARGET_COUNT, 0);
    HvWrite(&w, VMCS_VMEXIT_MSR_STORE_COUNT, 0);
    HvWrite(&w, VMCS_VMEXIT_MSR_LOAD_COUNT, 0);
    HvWrite(&w, VMCS_VMENTRY_MSR_LOAD_COUNT, 0);
    HvWrite(&w, VMCS_VMENTRY_INTERRUPTION_INFORMATION, 0);
    if (cpu & CPU_USE_MSR_BITMAPS)
        HvWrite(&w, VMCS_MSR_BITMAP_ADDRESS, vcpu->MsrBitmapPa); /* all zero: no MSR exits (25.6.9) */
    HvWrite(&w, VMCS_VMCS_LINK_POINTER, ~0ull);                    /* no shadow VMCS (25.4.2) */
#if HV_FAULT == HV_FAULT_GUEST_LINK_POINTER
    if (vcpu->ProcessorIndex == HV_FAULT_CPU) /* exercise: "no link" written as ARG, not ~0 */
        HvWrite(&w, VMCS_VMCS_LINK_POINTER, HV_FAULT_ARG);
#endif
    /* CR4.VMXE is owned by the VMM: the guest reads it as it was before the
     * driver loaded; writes that change it exit (26.3, 25.6.6). CR0: no mask. */
    HvWrite(&w, VMCS_CR0_GUEST_HOST_MASK, 0);
    HvWrite(&w, VMCS_CR0_READ_SHADOW, hv_read_cr0());
    HvWrite(&w, VMCS_CR4_GUEST_HOST_MASK, CR4_VMXE);
    HvWrite(&w, VMCS_CR4_READ_SHADOW, (cr4 & ~CR4_VMXE) | (vcpu->OriginalCr4 & CR4_VMXE));

    /* ---- guest state (25.4) = this processor now */
    HvAsmSgdt(&gdtr);
    HvAsmSidt(&idtr);
    sel[0] = HvAsmReadEs();
    sel[1] = HvAsmReadCs();
    sel[2] = HvAsmReadSs();
    sel[3] = HvAsmReadDs();
    sel[4] = HvAsmReadFs();
    sel[5] = HvAsmReadGs();
    sel[6] = HvAsmReadLdtr();
    sel[7] = HvAsmReadTr();
    for (n = 0; n < 8; n++) {
        if (HvWriteGuestSegment(&w, &gdtr, n, sel[n], n == 7 ? &tr : &seg) != 0) {
            HvCoreRecordFailure(vcpu, HV_STEP_SEGMENT, HV_STATUS_UNSUCCESSFUL, 0);
            return HV_STATUS_UNSUCCESSFUL;
        }
#if HV_FAULT == HV_FAULT_GUEST_SEGMENT_NOT_PRESENT
        if (n == HV_FAULT_ARG && vcpu->ProcessorIndex == HV_FAULT_CPU) /* exercise: P bit dropped */
            HvWrite(&w, VMCS_GUEST_ES_ACCESS_RIGHTS + 2u * n, seg.AccessRights & ~0x80u);
#endif
    }
    /* In 64-bit mode FS/GS bases live in MSRs, not in the descriptors. */
    HvWrite(&w, VMCS_GUEST_FS_BASE, hv_rdmsr(IA32_FS_BASE));
    HvWrite(&w, VMCS_GUEST_GS_BASE, hv_rdmsr(IA32_GS_BASE));
    HvWrite(&w, VMCS_GUEST_GDTR_BASE, gdtr.Base);
    HvWrite(&w, VMCS_GUEST_GDTR_LIMIT, gdtr.Limit);
    HvWrite(&w, VMCS_GUEST_IDTR_BASE, idtr.Base);
    HvWrite(&w, VMCS_GUEST_IDTR_LIMIT, idtr.Limit);
    HvWrite(&w, VMCS_GUEST_CR0, hv_read_cr0());
#if HV_FAULT == HV_FAULT_GUEST_CR0_BIT
    if (vcpu->ProcessorIndex == HV_FAULT_CPU) /* exercise: guest CR0 with bit ARG cleared */
        HvWrite(&w, VMCS_GUEST_CR0, hv_read_cr0() & ~(1ull << HV_FAULT_ARG));
#endif
#if HV_FAULT == HV_FAULT_GUEST_TR_AVAILABLE
    if (vcpu->ProcessorIndex == HV_FAULT_CPU) /* exercise: TR access rights typed in from a tutorial */
        HvWrite(&w, VMCS_GUEST_TR_ACCESS_RIGHTS, 0x89);
#endif
    HvWrite(&w, VMCS_GUEST_CR3, hv_read_cr3());
    HvWrite(&w, VMCS_GUEST_CR4, cr4);
    HvWrite(&w, VMCS_GUEST_DR7, hv_read_dr7());
    HvWrite(&w, VMCS_GUEST_IA32_DEBUGCTL, hv_rdmsr(IA32_DEBUGCTL));
    HvWrite(&w, VMCS_GUEST_IA32_SYSENTER_CS, hv_rdmsr(IA32_SYSENTER_CS));
    HvWrite(&w, VMCS_GUEST_IA32_SYSENTER_ESP, hv_rdmsr(IA32_SYSENTER_ESP));
    HvWrite(&w, VMCS_GUEST_IA32_SYSENTER_EIP, hv_rdmsr(IA32_SYSENTER_EIP));
    HvWrite(&w, VMCS_GUEST_INTERRUPTIBILITY_STATE, 0);
#if HV_FAULT == HV_FAULT_GUEST_ACTIVITY_UNWRITTEN
    if (vcpu->ProcessorIndex != HV_FAULT_CPU) /* exercise: the field left as VMCLEAR left it */
#endif
    HvWrite(&w, VMCS_GUEST_ACTIVITY_STATE, 0); /* active */
    HvWrite(&w, VMCS_GUEST_PENDING_DEBUG_EXCEPTIONS, 0);
    /* GUEST_RSP, GUEST_RIP, GUEST_RFLAGS: HvCoreLaunchFromStub. */

    /* ---- host state (25.5): same processor state, RPL/TI cleared (27.2.3) */
    HvWrite(&w, VMCS_HOST_ES_SELECTOR, sel[0] & ~SELECTOR_RPL_TI_MASK);
    HvWrite(&w, VMCS_HOST_CS_SELECTOR, sel[1] & ~SELECTOR_RPL_TI_MASK);
    HvWrite(&w, VMCS_HOST_SS_SELECTOR, sel[2] & ~SELECTOR_RPL_TI_MASK);
    HvWrite(&w, VMCS_HOST_DS_SELECTOR, sel[3] & ~SELECTOR_RPL_TI_MASK);
    HvWrite(&w, VMCS_HOST_FS_SELECTOR, sel[4] & ~SELECTOR_RPL_TI_MASK);
    HvWrite(&w, VMCS_HOST_GS_SELECTOR, sel[5] & ~SELECTOR_RPL_TI_MASK);
    HvWrite(&w, VMCS_HOST_TR_SELECTOR, sel[7] & ~SELECTOR_RPL_TI_MASK);
    HvWrite(&w, VMCS_HOST_CR0, hv_read_cr0());
    HvWrite(&w, VMCS_HOST_CR3, hv_read_cr3());
    HvWrite(&w, VMCS_HOST_CR4, cr4);
    HvWrite(&w, VMCS_HOST_FS_BASE, hv_rdmsr(IA32_FS_BASE));
    HvWrite(&w, VMCS_HOST_GS_BASE, hv_rdmsr(IA32_GS_BASE));
    HvWrite(&w, VMCS_HOST_TR_BASE, tr.Base);
    HvWrite(&w, VMCS_HOST_GDTR_BASE, gdtr.Base);
    HvWrite(&w, VMCS_HOST_IDTR_BASE, idtr.Base);
    HvWrite(&w, VMCS_HOST_IA32_SYSENTER_CS, hv_rdmsr(IA32_SYSENTER_CS));
    HvWrite(&w, VMCS_HOST_IA32_SYSENTER_ESP, hv_rdmsr(IA32_SYSENTER_ESP));
    HvWrite(&w, VMCS_HOST_IA32_SYSENTER_EIP, hv_rdmsr(IA32_SYSENTER_EIP));
    HvWrite(&w, VMCS_HOST_RSP, HvCoreHostStackPointer(vcpu));
    HvWrite(&w, VMCS_HOST_RIP, (uint64_t)(uintptr_t)&HvAsmVmExit);
#if HV_FAULT == HV_FAULT_HOST_CR4_NO_VMXE
    if (vcpu->ProcessorIndex == HV_FAULT_CPU) /* exercise: host CR4 as read before VMXE was set */
        HvWrite(&w, VMCS_HOST_CR4, vcpu->OriginalCr4);
#endif
#if HV_FAULT == HV_FAULT_HOST_TR_ZERO
    if (vcpu->ProcessorIndex == HV_FAULT_CPU) /* exercise: host TR "not needed" */
        HvWrite(&w, VMCS_HOST_TR_SELECTOR, 0);
#endif
#if HV_FAULT == HV_FAULT_HOST_RIP_NONCANONICAL
    if (vcpu->ProcessorIndex == HV_FAULT_CPU) /* exercise: a bit of the handler's address lost */
        HvWrite(&w, VMCS_HOST_RIP, (uint64_t)(uintptr_t)&HvAsmVmExit ^ (1ull << HV_FAULT_ARG));
#endif

    if (w.Failed) {
        /* VMfailValid on VMWRITE: error 12 = unsupported field, 13 = read-only (31.4). */
        HvCoreRecordFailure(vcpu, HV_STEP_VMWRITE, HV_STATUS_UNSUCCESSFUL,
                            (uint32_t)hv_vmread(VMCS_VM_INSTRUCTION_ERROR));
        return HV_STATUS_UNSUCCESSFUL;
    }
    return HV_STATUS_SUCCESS;
}

void HvCoreLaunchFromStub(HV_VCPU *vcpu, uint64_t guest_rsp, uint64_t guest_rip)
{
    unsigned char rc;
    uint32_t error = 0;

    (void)hv_vmwrite(VMCS_GUEST_RSP, guest_rsp);
    (void)hv_vmwrite(VMCS_GUEST_RIP, guest_rip);
    (void)hv_vmwrite(VMCS_GUEST_RFLAGS, hv_read_rflags());
    rc = __vmx_vmlaunch();
    /* Only reached when VMLAUNCH failed. The VM-instruction error first,
     * before anything else can disturb it (31.4); then the snapshot. */
    if (rc == HV_VMX_FAIL_VALID)
        error = (uint32_t)hv_vmread(VMCS_VM_INSTRUCTION_ERROR);
    HvCoreTakeSnapshot(vcpu, HV_SNAPSHOT_REASON_VMLAUNCH_FAILED, ~0u, error);
    HvCoreRecordFailure(vcpu, HV_STEP_VMLAUNCH, HV_STATUS_UNSUCCESSFUL, error);
}
