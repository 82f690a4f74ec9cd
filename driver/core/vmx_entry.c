/*
 * Entering and leaving VMX operation on the current processor (Days 2-3),
 * and the Actaeon layout discovery done once in between.
 */
#include "hv_core.h"
#include "hv_arch.h"
#include "hv_vmcs.h"
#include "hv_intrin.h"
#include "hv_fault.h"

int HvCoreVmxSupported(void)
{
    uint32_t regs[4];
    CPUID_FEATURE_ECX ecx;
    hv_cpuid(1, 0, regs);
    ecx.Value = regs[2];
    return ecx.Bits.Vmx; /* CPUID.01H:ECX.VMX[bit 5] (SDM Vol. 3 24.6) */
}

void HvCoreReadCapabilities(HV_VMM_CONTEXT *vmm)
{
    uint64_t basic = hv_rdmsr(IA32_VMX_BASIC);
    IA32_VMX_CONTROLS_CAPABILITY primary;

    vmm->CapBasic = basic;
    vmm->CapPinbased = hv_rdmsr(HvControlCapabilityMsr(basic, IA32_VMX_PINBASED_CTLS));
    vmm->CapProcbased = hv_rdmsr(HvControlCapabilityMsr(basic, IA32_VMX_PROCBASED_CTLS));
    vmm->CapExit = hv_rdmsr(HvControlCapabilityMsr(basic, IA32_VMX_EXIT_CTLS));
    vmm->CapEntry = hv_rdmsr(HvControlCapabilityMsr(basic, IA32_VMX_ENTRY_CTLS));
    vmm->CapMisc = hv_rdmsr(IA32_VMX_MISC);
    vmm->CapCr0Fixed0 = hv_rdmsr(IA32_VMX_CR0_FIXED0);
    vmm->CapCr0Fixed1 = hv_rdmsr(IA32_VMX_CR0_FIXED1);
    vmm->CapCr4Fixed0 = hv_rdmsr(IA32_VMX_CR4_FIXED0);
    vmm->CapCr4Fixed1 = hv_rdmsr(IA32_VMX_CR4_FIXED1);
    vmm->CapVmcsEnum = hv_rdmsr(IA32_VMX_VMCS_ENUM);
    /* App. A.3.3: IA32_VMX_PROCBASED_CTLS2 exists only if the primary
     * controls allow "activate secondary controls" (bit 63 of 0x482). */
    primary.Value = hv_rdmsr(IA32_VMX_PROCBASED_CTLS);
    vmm->CapProcbased2 = (primary.Parts.Allowed1 & CPU_ACTIVATE_SECONDARY_CONTROLS) ? hv_rdmsr(IA32_VMX_PROCBASED_CTLS2) : 0;
}

static uint32_t HvRevisionId(const HV_VMM_CONTEXT *vmm)
{
    IA32_VMX_BASIC_REGISTER basic;
    basic.Value = vmm->CapBasic;
    return (uint32_t)basic.Bits.RevisionId;
}

static HV_STATUS HvFailStep(HV_VCPU *vcpu, uint32_t step, HV_STATUS status, uint32_t vm_error)
{
    HvCoreRecordFailure(vcpu, step, status, vm_error);
    return status;
}

static void HvRestoreControlRegisters(HV_VCPU *vcpu)
{
    hv_write_cr4(vcpu->OriginalCr4);
    hv_write_cr0(vcpu->OriginalCr0);
}

HV_STATUS HvCoreEnterVmxRoot(HV_VMM_CONTEXT *vmm, HV_VCPU *vcpu, uint32_t *scratch, uint64_t scratch_pa)
{
    uint64_t fc_old, fc_new;
    uint32_t action;
    unsigned char rc;

    if (!HvCoreVmxSupported())
        return HvFailStep(vcpu, HV_STEP_VMX_UNSUPPORTED, HV_STATUS_NOT_SUPPORTED, 0);

    /* 24.7: VMXON outside SMX needs IA32_FEATURE_CONTROL bits 0 and 2. */
    fc_old = hv_rdmsr(IA32_FEATURE_CONTROL);
    if (vcpu->ProcessorIndex == 0)
        vmm->FeatureControlAtLoad = fc_old;
    action = HvFeatureControlAction(fc_old, &fc_new);
    if (action == HV_FC_REFUSED)
        return HvFailStep(vcpu, HV_STEP_FEATURE_CONTROL, HV_STATUS_HV_FEATURE_UNAVAILABLE, 0);
    if (action == HV_FC_WRITE)
        hv_wrmsr(IA32_FEATURE_CONTROL, fc_new); /* firmware left it unlocked: lock it ourselves */
    vmm->FeatureControl = hv_rdmsr(IA32_FEATURE_CONTROL);

    /* 24.8: CR0/CR4 fixed bits, CR4.VMXE = 1 before VMXON. Bits a fixed
     * register forces on are set; a bit the OS set that VMX operation forbids
     * is refused rather than cleared behind its back. */
    vcpu->OriginalCr0 = hv_read_cr0();
    vcpu->OriginalCr4 = hv_read_cr4();
#if HV_FAULT == HV_FAULT_CR4_FIXED1_IGNORED
    vmm->CapCr4Fixed1 |= vcpu->OriginalCr4; /* exercise: "what Windows runs with is surely allowed" */
#endif
    if (HvCrAdjustClears(vcpu->OriginalCr0, vmm->CapCr0Fixed0, vmm->CapCr0Fixed1) ||
        HvCrAdjustClears(vcpu->OriginalCr4 | CR4_VMXE, vmm->CapCr4Fixed0, vmm->CapCr4Fixed1))
        return HvFailStep(vcpu, HV_STEP_FIXED_BITS, HV_STATUS_NOT_SUPPORTED, 0);
    hv_write_cr0(HvAdjustCr(vcpu->OriginalCr0, vmm->CapCr0Fixed0, vmm->CapCr0Fixed1));
    hv_write_cr4(HvAdjustCr(vcpu->OriginalCr4 | CR4_VMXE, vmm->CapCr4Fixed0, vmm->CapCr4Fixed1));
#if HV_FAULT == HV_FAULT_CR_FIXED_BIT
    if (vcpu->ProcessorIndex == HV_FAULT_CPU) /* exercise: one bit VMX operation needs is left clear */
#if HV_FAULT_ARG < 32
        hv_write_cr0(hv_read_cr0() & ~(1ull << HV_FAULT_ARG));
#else
        hv_write_cr4(hv_read_cr4() & ~(1ull << (HV_FAULT_ARG % 32)));
#endif
#endif

    /* 25.11.5: revision identifier in the first dword of both regions. */
    *(volatile uint32_t *)vcpu->VmxonRegion = HvRevisionId(vmm);
    *(volatile uint32_t *)vcpu->VmcsRegion = HvRevisionId(vmm);
#if HV_FAULT == HV_FAULT_VMXON_REVISION
    if (vcpu->ProcessorIndex == HV_FAULT_CPU) /* exercise: the author's laptop's revision id, hard-coded */
        *(volatile uint32_t *)vcpu->VmxonRegion = HV_FAULT_ARG;
#endif
#if HV_FAULT == HV_FAULT_VMCS_REVISION
    if (vcpu->ProcessorIndex == HV_FAULT_CPU) /* exercise: the VMCS revision id is never written */
        *(volatile uint32_t *)vcpu->VmcsRegion = 0;
#endif

#if HV_FAULT == HV_FAULT_VMXON_UNALIGNED
    { /* exercise: the VMXON operand points ARG bytes into the region */
        uint64_t pa = vcpu->VmxonRegionPa + (vcpu->ProcessorIndex == HV_FAULT_CPU ? HV_FAULT_ARG : 0);
        rc = __vmx_on(&pa);
    }
#else
    rc = __vmx_on(&vcpu->VmxonRegionPa);
#endif
    if (rc != HV_VMX_OK) {
        /* VMXON reports VMfailInvalid (CF) for a bad region; VMfailValid
         * only when already in VMX root (31.3 VMXON). */
        HvRestoreControlRegisters(vcpu);
        return HvFailStep(vcpu, HV_STEP_VMXON, HV_STATUS_UNSUCCESSFUL,
                          rc == HV_VMX_FAIL_VALID ? (uint32_t)hv_vmread(VMCS_VM_INSTRUCTION_ERROR) : 0);
    }
    vcpu->State = HV_VCPU_STATE_VMX_ROOT;

    if (scratch != 0)
        HvCoreDiscoverVmcsLayout(scratch, scratch_pa, HvRevisionId(vmm));

    rc = __vmx_vmclear(&vcpu->VmcsRegionPa);
    if (rc == HV_VMX_OK) {
        rc = __vmx_vmptrld(&vcpu->VmcsRegionPa);
        if (rc == HV_VMX_OK)
            return HV_STATUS_SUCCESS;
        HvCoreRecordFailure(vcpu, HV_STEP_VMPTRLD, HV_STATUS_UNSUCCESSFUL, 0);
    } else {
        HvCoreRecordFailure(vcpu, HV_STEP_VMCLEAR, HV_STATUS_UNSUCCESSFUL, 0);
    }
    __vmx_off();
    HvRestoreControlRegisters(vcpu);
    vcpu->State = HV_VCPU_STATE_FAILED;
    return HV_STATUS_UNSUCCESSFUL;
}

void HvCoreLeaveVmxRoot(HV_VCPU *vcpu)
{
    (void)__vmx_vmclear(&vcpu->VmcsRegionPa);
    __vmx_off();
    HvRestoreControlRegisters(vcpu);
    if (vcpu->State != HV_VCPU_STATE_FAILED)
        vcpu->State = HV_VCPU_STATE_OFF;
}

void HvCoreDiscoverVmcsLayout(uint32_t *scratch, uint64_t scratch_pa, uint32_t revision_id)
{
    /* Actaeon method: fill the scratch region with dword indices, make it
     * current, VMREAD every field: the value read names the dword it lives in
     * (docs/debug-descriptor.md). The real VMCS is loaded afterwards. */
    HV_DEBUG_DESCRIPTOR *d = &HvDebugDescriptor;
    uint32_t i, count = 0;
    size_t value;

    scratch[0] = revision_id;
    for (i = 1; i < 1024u; i++)
        ((volatile uint32_t *)scratch)[i] = i;
    d->LayoutRevisionId = revision_id;
    if (__vmx_vmptrld(&scratch_pa) != HV_VMX_OK) {
        d->LayoutStatus = HV_LAYOUT_STATUS_FAILED;
        return;
    }
    for (i = 0; i < (uint32_t)HV_VMCS_FIELD_COUNT && count < HV_VMCS_LAYOUT_CAPACITY; i++) {
        HV_VMCS_LAYOUT_ENTRY *e = &d->Layout[count++];
        uint32_t enc = HvVmcsFieldCatalogue[i].Encoding;
        e->Encoding = enc;
        e->Width = (uint8_t)HvVmcsFieldBytes(enc);
        e->Offset = 0;
        if (__vmx_vmread(enc, &value) != HV_VMX_OK)
            e->Flags = HV_LAYOUT_FLAG_UNSUPPORTED;
        else
            e->Flags = HvLayoutClassify(enc, (uint64_t)value, &e->Offset);
    }
    (void)__vmx_vmclear(&scratch_pa); /* no longer current, flushed to memory */
    d->LayoutCount = count;
    d->LayoutStatus = HV_LAYOUT_STATUS_DISCOVERED;
}

void HvCorePrepareHostStack(HV_VCPU *vcpu)
{
    volatile uint64_t *q = (volatile uint64_t *)vcpu->HostStack;
    uint32_t n = vcpu->HostStackSize / 8u, i;
    for (i = 0; i < n; i++)
        q[i] = HV_HOST_STACK_PATTERN;
    /* The top 16 bytes: the vCPU pointer HvAsmVmExit reads at HOST_RSP. */
    q[n - 2] = (uint64_t)(uintptr_t)vcpu;
    q[n - 1] = 0;
}

uint64_t HvCoreHostStackPointer(const HV_VCPU *vcpu)
{
    return (uint64_t)(uintptr_t)vcpu->HostStack + vcpu->HostStackSize - 16u; /* 16-byte aligned */
}
