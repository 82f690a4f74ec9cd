/*
 * VM-exit handling (Day 5) and leaving VMX operation from an exit
 * (devirtualization). Runs in VMX root on the host stack with interrupts
 * off: no OS calls, no logging; everything worth knowing is recorded in the
 * vCPU (and the snapshot) for the debugger.
 */
#include "hv_core.h"
#include "hv_arch.h"
#include "hv_vmcs.h"
#include "hv_intrin.h"
#include "hv_fault.h"
#include "hv_asm.h"
#include "hv_hypercall.h"
#include "hv_platform.h"

#define HV_RESUME 1u
#define HV_LEAVE_VMX 0u

static void HvAdvanceGuestRip(const HV_VCPU *vcpu)
{
    /* Guest RIP and instruction length as HvCoreHandleExit read them. */
    uint64_t rip = vcpu->LastGuestRip + vcpu->LastExitInstructionLength;
    uint64_t intr = hv_vmread_current(VMCS_GUEST_INTERRUPTIBILITY_STATE);
#if HV_FAULT == HV_FAULT_RIP_NOT_ADVANCED
    if ((hv_vmread(VMCS_EXIT_REASON) & 0xFFFFu) == HV_FAULT_ARG)
        return; /* exercise: this exit's handler forgets the instruction length */
#endif
    hv_vmwrite_current(VMCS_GUEST_RIP, rip);
    /* The emulated instruction retired: blocking by STI / MOV SS ends (25.4.2). */
    if (intr & 3u)
        hv_vmwrite_current(VMCS_GUEST_INTERRUPTIBILITY_STATE, intr & ~3ull);
    /* With RFLAGS.TF set the instruction owes the guest a single-step #DB
     * right after it: pend it (BS, 25.4.2 Table 25-4); VM entry delivers it
     * before the next guest instruction (27.7.3). */
    if (hv_vmread_current(VMCS_GUEST_RFLAGS) & RFLAGS_TF)
        (void)hv_vmwrite(VMCS_GUEST_PENDING_DEBUG_EXCEPTIONS,
                         hv_vmread(VMCS_GUEST_PENDING_DEBUG_EXCEPTIONS) | PENDING_DEBUG_BS);
}

static void HvInjectException(uint32_t vector, int has_error_code)
{
    /* 25.8.3: valid, type 3 (hardware exception), vector; faults leave RIP. */
    uint32_t info = INTR_INFO_VALID | INTR_TYPE_HARDWARE_EXCEPTION | vector;
    if (has_error_code) {
        info |= INTR_INFO_DELIVER_ERROR_CODE;
        (void)hv_vmwrite(VMCS_VMENTRY_EXCEPTION_ERROR_CODE, 0);
    }
    (void)hv_vmwrite(VMCS_VMENTRY_INTERRUPTION_INFORMATION, info);
}

static uint64_t *HvGpr(HV_GUEST_REGISTERS *regs, uint32_t index)
{
    /* Index order of the exit qualification (Table 28-3) = struct order. */
    return &regs->Rax + index;
}

static uint32_t HvGuestCpl(void)
{
    VMX_ACCESS_RIGHTS ss;
    ss.Value = (uint32_t)hv_vmread_current(VMCS_GUEST_SS_ACCESS_RIGHTS);
    return ss.Bits.Dpl; /* CPL = SS.DPL */
}

static void HvHandleCpuid(const HV_VCPU *vcpu, HV_GUEST_REGISTERS *regs)
{
    const HV_VMM_CONTEXT *vmm = vcpu->Vmm;
    uint32_t leaf = (uint32_t)regs->Rax, subleaf = (uint32_t)regs->Rcx;
    uint32_t r[4] = { 0, 0, 0, 0 };

    if ((leaf & CPUID_HV_RANGE_MASK) == CPUID_HV_RANGE_BASE && vmm->Parent != HV_PARENT_NONE &&
        !(leaf == HV_CPUID_LEAF_VENDOR && subleaf == HV_CPUID_PROBE_SUBLEAF)) {
        /* The parent's leaves: the OS discovered its enlightenments there. */
        hv_cpuid(leaf, subleaf, r);
    } else if (leaf == HV_CPUID_LEAF_VENDOR) {
        r[0] = HV_CPUID_MAX_LEAF;
        r[1] = HV_CPUID_VENDOR_EBX;
        r[2] = HV_CPUID_VENDOR_ECX;
        r[3] = HV_CPUID_VENDOR_EDX;
    } else if (leaf == HV_CPUID_LEAF_INTERFACE) {
        r[0] = HV_CPUID_INTERFACE;
    } else if ((leaf & 0xF0000000u) == 0x40000000u) {
        /* rest of the software range: zeros */
    } else {
        hv_cpuid(leaf, subleaf, r);
        if (leaf == 1) {
            r[2] |= CPUID_ECX_HYPERVISOR; /* a VMM is present */
            r[2] &= ~CPUID_ECX_VMX;       /* and VMX is in use by it */
        }
    }
    regs->Rax = r[0];
    regs->Rbx = r[1];
    regs->Rcx = r[2];
    regs->Rdx = r[3];
    HvAdvanceGuestRip(vcpu);
}

/* MSRs whose guest value lives in the VMCS (25.4.1/25.4.2). */
static uint32_t HvMsrGuestField(uint32_t msr)
{
    switch (msr) {
    case IA32_FS_BASE: return VMCS_GUEST_FS_BASE;
    case IA32_GS_BASE: return VMCS_GUEST_GS_BASE;
    case IA32_SYSENTER_CS: return VMCS_GUEST_IA32_SYSENTER_CS;
    case IA32_SYSENTER_ESP: return VMCS_GUEST_IA32_SYSENTER_ESP;
    case IA32_SYSENTER_EIP: return VMCS_GUEST_IA32_SYSENTER_EIP;
    case IA32_DEBUGCTL: return VMCS_GUEST_IA32_DEBUGCTL;
    default: return 0;
    }
}

static void HvHandleMsr(const HV_VCPU *vcpu, HV_GUEST_REGISTERS *regs, int is_write)
{
    const HV_VMM_CONTEXT *vmm = vcpu->Vmm;
    uint32_t msr = (uint32_t)regs->Rcx;
    uint32_t field = HvMsrGuestField(msr);
    uint64_t value;
    int synthetic = vmm->Parent == HV_PARENT_HYPERV && msr >= HYPERV_SYNTHETIC_MSR_FIRST &&
                    msr <= HYPERV_SYNTHETIC_MSR_LAST;

    /* With the MSR bitmap on, only MSRs outside both bitmap ranges exit
     * (25.6.9, 26.1.3): the parent's synthetic MSRs go to the parent (RDMSR/
     * WRMSR here exit to it); others do not exist on this CPU -> #GP(0). */
    if (!synthetic && !(msr <= 0x1FFFu || (msr >= 0xC0000000u && msr <= 0xC0001FFFu))) {
        HvInjectException(VECTOR_GENERAL_PROTECTION, 1);
        return;
    }
    if (is_write) {
        value = ((regs->Rdx & 0xFFFFFFFFull) << 32) | (regs->Rax & 0xFFFFFFFFull);
        if (field)
            (void)hv_vmwrite(field, value);
        else
            hv_wrmsr(msr, value);
    } else {
        value = field ? hv_vmread(field) : hv_rdmsr(msr);
        regs->Rax = value & 0xFFFFFFFFull;
        regs->Rdx = value >> 32;
    }
    HvAdvanceGuestRip(vcpu);
}

static void HvHandleCrAccess(const HV_VCPU *vcpu, HV_GUEST_REGISTERS *regs, uint64_t qualification)
{
    const HV_VMM_CONTEXT *vmm = vcpu->Vmm;
    CR_ACCESS_QUALIFICATION q;
    uint64_t *gpr, value;

    q.Value = qualification;
    gpr = HvGpr(regs, (uint32_t)q.Bits.GeneralRegister);
    value = q.Bits.GeneralRegister == 4 ? hv_vmread(VMCS_GUEST_RSP) : *gpr;

    switch (q.Bits.AccessType) {
    case CR_ACCESS_MOV_TO_CR:
        if (q.Bits.ControlRegister == 0) {
            (void)hv_vmwrite(VMCS_CR0_READ_SHADOW, value);
            (void)hv_vmwrite(VMCS_GUEST_CR0, HvAdjustCr(value, vmm->CapCr0Fixed0, vmm->CapCr0Fixed1));
        } else if (q.Bits.ControlRegister == 3) {
            CR3_REGISTER cr3;
            cr3.Value = value;
            cr3.Bits.NoFlush = 0; /* bit 63 is an instruction hint, not CR3 state */
            (void)hv_vmwrite(VMCS_GUEST_CR3, cr3.Value);
        } else if (q.Bits.ControlRegister == 4) {
            (void)hv_vmwrite(VMCS_CR4_READ_SHADOW, value);
            (void)hv_vmwrite(VMCS_GUEST_CR4, HvAdjustCr(value | CR4_VMXE, vmm->CapCr4Fixed0, vmm->CapCr4Fixed1));
        }
        break;
    case CR_ACCESS_MOV_FROM_CR:
        if (q.Bits.ControlRegister == 3) {
            if (q.Bits.GeneralRegister == 4)
                (void)hv_vmwrite(VMCS_GUEST_RSP, hv_vmread(VMCS_GUEST_CR3));
            else
                *gpr = hv_vmread(VMCS_GUEST_CR3);
        }
        break;
    case CR_ACCESS_CLTS:
        (void)hv_vmwrite(VMCS_GUEST_CR0, hv_vmread(VMCS_GUEST_CR0) & ~8ull);
        (void)hv_vmwrite(VMCS_CR0_READ_SHADOW, hv_vmread(VMCS_CR0_READ_SHADOW) & ~8ull);
        break;
    default: /* LMSW: only CR0[3:0]; PE cannot be cleared by LMSW */
    {
        uint64_t cr0 = hv_vmread(VMCS_GUEST_CR0);
        uint64_t src = q.Bits.LmswSourceData & 0xFu;
        cr0 = (cr0 & ~0xEull) | (src & 0xEu) | ((cr0 | src) & 1u);
        (void)hv_vmwrite(VMCS_GUEST_CR0, cr0);
        (void)hv_vmwrite(VMCS_CR0_READ_SHADOW, cr0);
        break;
    }
    }
    HvAdvanceGuestRip(vcpu);
}

static void HvHandleXsetbv(const HV_VCPU *vcpu, HV_GUEST_REGISTERS *regs)
{
    uint32_t r[4];
    uint64_t value = ((regs->Rdx & 0xFFFFFFFFull) << 32) | (regs->Rax & 0xFFFFFFFFull);

    hv_cpuid(0xD, 0, r); /* CPUID.(EAX=0DH,ECX=0): supported XCR0 bits in EDX:EAX */
    if ((uint32_t)regs->Rcx != 0 || !HvXcr0Valid(value, ((uint64_t)r[3] << 32) | r[0])) {
        HvInjectException(VECTOR_GENERAL_PROTECTION, 1);
        return;
    }
    hv_xsetbv(0, value);
    HvAdvanceGuestRip(vcpu);
}

/* Leave VMX operation on this processor and let the asm stub continue the
 * guest as a plain processor: GUEST_RIP/RSP/RFLAGS, CR0/3/4, GDTR/IDTR
 * (VM exits set their limits to 0xFFFF, 28.5.2), the DS/ES/FS/GS selectors
 * (VM exits load the host's, whose RPL must be 0, 27.2.3), FS/GS base, DR7,
 * DEBUGCTL (cleared by VM exits, 28.5.1) all go back to the guest's values. */
static void HvDevirtualize(HV_VCPU *vcpu, HV_GUEST_REGISTERS *regs)
{
    DESCRIPTOR_TABLE_REGISTER gdtr, idtr;
    uint64_t rsp = hv_vmread(VMCS_GUEST_RSP);
    uint64_t *frame = (uint64_t *)(uintptr_t)(rsp - 16u);
    uint64_t cr0 = hv_vmread(VMCS_GUEST_CR0);
    uint64_t cr3 = hv_vmread(VMCS_GUEST_CR3);
    uint64_t cr4 = (hv_vmread(VMCS_GUEST_CR4) & ~CR4_VMXE) | (vcpu->OriginalCr4 & CR4_VMXE);
    uint64_t fs_base = hv_vmread(VMCS_GUEST_FS_BASE);
    uint64_t gs_base = hv_vmread(VMCS_GUEST_GS_BASE);
    uint64_t dr7 = hv_vmread(VMCS_GUEST_DR7);
    uint64_t debugctl = hv_vmread(VMCS_GUEST_IA32_DEBUGCTL);
    uint16_t ds = (uint16_t)hv_vmread(VMCS_GUEST_DS_SELECTOR), es = (uint16_t)hv_vmread(VMCS_GUEST_ES_SELECTOR);
    uint16_t fs = (uint16_t)hv_vmread(VMCS_GUEST_FS_SELECTOR), gs = (uint16_t)hv_vmread(VMCS_GUEST_GS_SELECTOR);

    gdtr.Base = hv_vmread(VMCS_GUEST_GDTR_BASE);
    gdtr.Limit = (uint16_t)hv_vmread(VMCS_GUEST_GDTR_LIMIT);
    idtr.Base = hv_vmread(VMCS_GUEST_IDTR_BASE);
    idtr.Limit = (uint16_t)hv_vmread(VMCS_GUEST_IDTR_LIMIT);
    frame[0] = hv_vmread(VMCS_GUEST_RFLAGS);
    frame[1] = hv_vmread(VMCS_GUEST_RIP);
    regs->Rsp = rsp - 16u; /* the stub: mov rsp, regs->Rsp; popfq; ret */

    (void)__vmx_vmclear(&vcpu->VmcsRegionPa);
    __vmx_off();
    hv_write_cr0(cr0);
    hv_write_cr4(cr4);
    hv_write_cr3(cr3);
    HvAsmLgdt(&gdtr);
    HvAsmLidt(&idtr);
    HvAsmLoadDataSelectors(ds, es, fs, gs); /* before the base MSRs: loading FS/GS resets the bases */
    hv_wrmsr(IA32_FS_BASE, fs_base);
    hv_wrmsr(IA32_GS_BASE, gs_base);
    hv_wrmsr(IA32_DEBUGCTL, debugctl);
    hv_write_dr7(dr7);
    if (vcpu->State == HV_VCPU_STATE_LAUNCHED && vcpu->Vmm->VirtualizedCount != 0)
        vcpu->Vmm->VirtualizedCount--;
}

static uint32_t HvHandleVmcall(HV_VCPU *vcpu, HV_GUEST_REGISTERS *regs)
{
    if (HvGuestCpl() != 0) {
        HvInjectException(VECTOR_INVALID_OPCODE, 0); /* bare metal and Hyper-V: #UD (TLFS 3.2) */
        return HV_RESUME;
    }
    if (regs->Rax != HV_HYPERCALL_SIGNATURE) {
        if (vcpu->Vmm->Parent == HV_PARENT_HYPERV) {
            /* The OS's hypercall to the parent: input value in RCX, input and
             * output GPAs (or fast-call data) in RDX, R8 and XMM0-5, status in
             * RAX (TLFS 3.7). Our VMCALL exits to the parent the same way. */
            HvAsmParentHypercall(regs);
            vcpu->ParentHypercallCount++;
            HvAdvanceGuestRip(vcpu);
            return HV_RESUME;
        }
        HvInjectException(VECTOR_INVALID_OPCODE, 0); /* bare metal: VMCALL outside VMX -> #UD */
        return HV_RESUME;
    }
    vcpu->HypercallCount++;
    HvAdvanceGuestRip(vcpu);
    switch (regs->Rcx) {
    case HV_HYPERCALL_PING:
        regs->Rax = HV_HCSTATUS_OK;
        regs->Rcx = HV_PING_REPLY;
        regs->Rdx = vcpu->ProcessorIndex;
        return HV_RESUME;
    case HV_HYPERCALL_SNAPSHOT:
        HvCoreTakeSnapshot(vcpu, HV_SNAPSHOT_REASON_HYPERCALL, (uint32_t)hv_vmread(VMCS_EXIT_REASON), 0);
        regs->Rax = HV_HCSTATUS_OK;
        regs->Rcx = vcpu->Snapshot.Count;
        return HV_RESUME;
    case HV_HYPERCALL_DEVIRTUALIZE:
        regs->Rax = HV_HCSTATUS_OK;
        HvDevirtualize(vcpu, regs);
        vcpu->State = HV_VCPU_STATE_DEVIRTUALIZED;
        return HV_LEAVE_VMX;
    default:
        regs->Rax = HV_HCSTATUS_UNKNOWN_FUNCTION;
        return HV_RESUME;
    }
}

static HV_NORETURN void HvFatalExit(HV_VCPU *vcpu, uint32_t reason, uint32_t snapshot_reason, uint32_t bugcheck)
{
    HvCoreTakeSnapshot(vcpu, snapshot_reason, reason, 0);
    HvPlatformBugCheck(bugcheck, reason, (uint64_t)(uintptr_t)vcpu, vcpu->LastGuestRip);
}

uint8_t HvCoreHandleExit(HV_GUEST_REGISTERS *regs, HV_VCPU *vcpu)
{
    uint32_t reason = (uint32_t)hv_vmread_current(VMCS_EXIT_REASON);
    uint32_t basic = reason & 0xFFFFu;
    uint64_t qualification = hv_vmread_current(VMCS_EXIT_QUALIFICATION);

    vcpu->ExitCount++;
    vcpu->LastExitReason = reason;
    vcpu->LastExitQualification = qualification;
    vcpu->LastExitInstructionLength = (uint32_t)hv_vmread_current(VMCS_VMEXIT_INSTRUCTION_LENGTH);
    vcpu->LastGuestRip = hv_vmread_current(VMCS_GUEST_RIP);
    if (basic < HV_EXIT_REASON_SLOTS)
        vcpu->ExitCountsByReason[basic]++;
    if (HvDebugDescriptor.SnapshotOnEveryExit)
        HvCoreTakeSnapshot(vcpu, HV_SNAPSHOT_REASON_EVERY_EXIT, reason, 0);

    if (reason & EXIT_REASON_ENTRY_FAILURE_BIT) {
        /* 27.8: VM entry failed while loading guest state or MSRs. */
        HvCoreTakeSnapshot(vcpu, HV_SNAPSHOT_REASON_ENTRY_FAILURE, reason, 0);
        if (vcpu->State != HV_VCPU_STATE_LAUNCHED) {
            /* The first VMLAUNCH: undo and let HvAsmLaunch report failure. */
            HvCoreRecordFailure(vcpu, HV_STEP_VMLAUNCH, HV_STATUS_UNSUCCESSFUL, 0);
            HvDevirtualize(vcpu, regs);
            return HV_LEAVE_VMX;
        }
        HvPlatformBugCheck(HV_BUGCHECK_ENTRY_FAILURE, reason, (uint64_t)(uintptr_t)vcpu, vcpu->LastGuestRip);
    }

    switch (basic) {
    case EXIT_REASON_CPUID:
        HvHandleCpuid(vcpu, regs);
        return HV_RESUME;
    case EXIT_REASON_RDMSR:
    case EXIT_REASON_WRMSR:
        HvHandleMsr(vcpu, regs, basic == EXIT_REASON_WRMSR);
        return HV_RESUME;
    case EXIT_REASON_GETSEC:
        /* GETSEC exits unconditionally (26.1.2); with SMX not enabled bare metal raises #UD. */
        HvInjectException(VECTOR_INVALID_OPCODE, 0);
        return HV_RESUME;
    case EXIT_REASON_INVD:
        hv_wbinvd(); /* INVD would drop dirty lines the OS still needs */
        HvAdvanceGuestRip(vcpu);
        return HV_RESUME;
    case EXIT_REASON_XSETBV:
        HvHandleXsetbv(vcpu, regs);
        return HV_RESUME;
    case EXIT_REASON_CR_ACCESS:
        HvHandleCrAccess(vcpu, regs, qualification);
        return HV_RESUME;
    case EXIT_REASON_VMCALL:
        return (uint8_t)HvHandleVmcall(vcpu, regs);
    case EXIT_REASON_VMCLEAR:
    case EXIT_REASON_VMLAUNCH:
    case EXIT_REASON_VMPTRLD:
    case EXIT_REASON_VMPTRST:
    case EXIT_REASON_VMREAD:
    case EXIT_REASON_VMRESUME:
    case EXIT_REASON_VMWRITE:
    case EXIT_REASON_VMXOFF:
    case EXIT_REASON_VMXON:
    case EXIT_REASON_INVEPT:
    case EXIT_REASON_INVVPID:
    case EXIT_REASON_VMFUNC:
        /* No nested VMX: the guest sees what a CPU without VMX would do. */
        HvInjectException(VECTOR_INVALID_OPCODE, 0);
        return HV_RESUME;
    case EXIT_REASON_TRIPLE_FAULT:
        vcpu->TripleFault = 1;
        HvFatalExit(vcpu, reason, HV_SNAPSHOT_REASON_TRIPLE_FAULT, HV_BUGCHECK_TRIPLE_FAULT);
#ifndef HV_REVERT_INIT_BUGCHECK
    case EXIT_REASON_INIT:
    case EXIT_REASON_SIPI:
        /* INIT always exits in VMX non-root (26.2; blocked in root, 25.2) and SIPI
         * exits in wait-for-SIPI. Emulating the reset needs unrestricted guest and
         * EPT (the guest restarts in real mode at F000:FFF0, 10.4.3 / 9.1.4), which
         * this driver does not use: stop the machine, saying which signal it was. */
        HvFatalExit(vcpu, reason, HV_SNAPSHOT_REASON_UNEXPECTED_EXIT,
                    basic == EXIT_REASON_INIT ? HV_BUGCHECK_INIT_SIGNAL : HV_BUGCHECK_SIPI);
#endif
    default:
        vcpu->UnexpectedExitCount++;
        vcpu->LastUnexpectedExitReason = reason;
        HvFatalExit(vcpu, reason, HV_SNAPSHOT_REASON_UNEXPECTED_EXIT, HV_BUGCHECK_UNEXPECTED_EXIT);
    }
}

void HvCoreHandleResumeFailure(HV_GUEST_REGISTERS *regs, HV_VCPU *vcpu)
{
    /* VMRESUME failed (VMfailValid: 31.4 error first). The guest cannot be
     * entered again, and continuing it without VMX is not safe (after an exit
     * from CPL 3 it would run user code at ring 0 on the host CR3): record,
     * snapshot, and stop the machine with the error as a parameter. */
    uint32_t error = (uint32_t)hv_vmread(VMCS_VM_INSTRUCTION_ERROR);
    (void)regs;
    HvCoreTakeSnapshot(vcpu, HV_SNAPSHOT_REASON_VMRESUME_FAILED, ~0u, error);
    HvCoreRecordFailure(vcpu, HV_STEP_VMRESUME, HV_STATUS_UNSUCCESSFUL, error);
    HvPlatformBugCheck(HV_BUGCHECK_VMRESUME_FAILED, error, (uint64_t)(uintptr_t)vcpu, vcpu->LastGuestRip);
}
