/*
 * Load, unload and power transitions, the same on every OS: the VMX support
 * checks in order, each processor virtualized ONE AFTER ANOTHER (the platform
 * moves the thread there: no IPIs, no DPC barriers), and "CPU redemption":
 * any failure on any processor undoes every processor already virtualized and
 * frees everything. The OS is reached only through include/hv_platform.h.
 */
#include "hv_load.h"
#include "hv_core.h"
#include "hv_arch.h"
#include "hv_asm.h"
#include "hv_debug.h"
#include "hv_hypercall.h"
#include "hv_platform.h"
#include "hv_fault.h"

#define HV_PAGE 4096u

/* ---- memory ------------------------------------------------------------ */
static void HvFreePage(void **va, uint64_t *pa)
{
    if (*va != NULL)
        HvPlatformFreePage(*va);
    *va = NULL;
    *pa = 0;
}

static void HvFreeVcpuResources(HV_VCPU *vcpu)
{
    HvFreePage(&vcpu->VmxonRegion, &vcpu->VmxonRegionPa);
    HvFreePage(&vcpu->VmcsRegion, &vcpu->VmcsRegionPa);
    HvFreePage(&vcpu->MsrBitmap, &vcpu->MsrBitmapPa);
    if (vcpu->HostStack != NULL)
        HvPlatformFree(vcpu->HostStack);
    vcpu->HostStack = NULL;
}

static HV_STATUS HvAllocVcpuResources(HV_VCPU *vcpu)
{
    vcpu->VmxonRegion = HvPlatformAllocPage(&vcpu->VmxonRegionPa);
    vcpu->VmcsRegion = HvPlatformAllocPage(&vcpu->VmcsRegionPa);
    vcpu->MsrBitmap = HvPlatformAllocPage(&vcpu->MsrBitmapPa);
    vcpu->HostStackSize = HV_HOST_STACK_SIZE;
    vcpu->HostStack = HvPlatformAlloc(HV_HOST_STACK_SIZE);
    if (!vcpu->VmxonRegion || !vcpu->VmcsRegion || !vcpu->MsrBitmap || !vcpu->HostStack) {
        HvCoreRecordFailure(vcpu, HV_STEP_ALLOCATION, HV_STATUS_INSUFFICIENT_RESOURCES, 0);
        return HV_STATUS_INSUFFICIENT_RESOURCES;
    }
#if HV_FAULT == HV_FAULT_MSR_BITMAP_DIRTY
    if (vcpu->ProcessorIndex == HV_FAULT_CPU) { /* exercise: never zeroed: stale bytes */
        uint32_t i;
        for (i = 0; i < HV_PAGE; i++)
            ((volatile uint8_t *)vcpu->MsrBitmap)[i] = (uint8_t)HV_FAULT_ARG;
    }
#endif
    return HV_STATUS_SUCCESS;
}

static void HvPublish(HV_VMM_CONTEXT *vmm)
{
    HvDebugDescriptor.VmmContextVa = (uint64_t)(uintptr_t)vmm;
    HvDebugDescriptor.VcpuArrayVa = vmm ? (uint64_t)(uintptr_t)vmm->Vcpus : 0;
    HvDebugDescriptor.VcpuCount = vmm ? vmm->ProcessorCount : 0;
}

static void HvFreeVmm(HV_VMM_CONTEXT *vmm)
{
    HvPublish(NULL);
    if (vmm == NULL)
        return;
    if (vmm->Vcpus != NULL) {
        for (uint32_t i = 0; i < vmm->ProcessorCount; i++)
            HvFreeVcpuResources(&vmm->Vcpus[i]);
        HvPlatformFree(vmm->Vcpus);
    }
    HvPlatformFree(vmm);
}

/* ---- one processor at a time --------------------------------------------- */
typedef struct HV_ON_CPU {
    HV_VMM_CONTEXT *Vmm;
    HV_VCPU *Vcpu;
    uint32_t *ScratchVa;          /* processor 0 at load: the layout-discovery region */
    uint64_t ScratchPa;
} HV_ON_CPU;

/* What the core recorded for this processor, in words. */
static void HvLogProcessorResult(const HV_VMM_CONTEXT *vmm, const HV_VCPU *vcpu, HV_STATUS status)
{
    if (!HV_SUCCESS(status)) {
        if (vcpu->FailedStep == HV_STEP_FEATURE_CONTROL)
            HV_LOG(HV_LOG_ERROR, "hv: processor %u: IA32_FEATURE_CONTROL is locked with VMX disabled: "
                   "enable VT-x in the firmware setup\n", vcpu->ProcessorIndex);
        if (vcpu->FailedStep == HV_STEP_FIXED_BITS)
            HV_LOG(HV_LOG_ERROR, "hv: processor %u: VMX operation would clear a CR0/CR4 bit the OS set "
                   "(IA32_VMX_CR0/CR4_FIXED1): refusing instead\n", vcpu->ProcessorIndex);
        HV_LOG(HV_LOG_ERROR, "hv: processor %u failed: step %u, VM-instruction error %u, status 0x%08x\n",
               vcpu->ProcessorIndex, vcpu->FailedStep, vcpu->VmInstructionError,
               (unsigned)HvPlatformStatusCode(status));
        return;
    }
    if (vcpu->ProcessorIndex == 0) {
        if (!(vmm->FeatureControlAtLoad & 1u))
            HV_LOG(HV_LOG_WARNING, "hv: IA32_FEATURE_CONTROL was unlocked (0x%llx): locked it with VMXON outside SMX\n",
                   (unsigned long long)vmm->FeatureControlAtLoad);
    }
    HV_LOG(HV_LOG_TRACE, "hv: processor %u virtualized\n", vcpu->ProcessorIndex);
}

static HV_STATUS HvVirtualizeOne(void *context)
{
    HV_ON_CPU *on = (HV_ON_CPU *)context;
    HV_VMM_CONTEXT *vmm = on->Vmm;
    HV_VCPU *vcpu = on->Vcpu;
    uint32_t previous;
    HV_STATUS status;

#if HV_FAULT == HV_FAULT_SKIP_PROCESSOR
    /* exercise: ARG 0 -- processor 0 left out ("DriverEntry runs there, it is ours already");
     * ARG 1 -- the last one (an off-by-one against the processor count) */
    if (vcpu->ProcessorIndex == (HV_FAULT_ARG == 0 ? 0u : vmm->ProcessorCount - 1u))
        return HV_STATUS_SUCCESS;
#endif
    previous = HvPlatformDisablePreemption(); /* no preemption between VMXON and VMLAUNCH */
    status = HvCoreEnterVmxRoot(vmm, vcpu, on->ScratchVa, on->ScratchPa);
    if (HV_SUCCESS(status)) {
        HvCorePrepareHostStack(vcpu);
        status = HvCoreSetupVmcs(vmm, vcpu);
        if (!HV_SUCCESS(status)) {
            HvCoreLeaveVmxRoot(vcpu);
        } else if (HvAsmLaunch(vcpu) == 0) {
            /* VMLAUNCH VMfail: error and snapshot recorded; undo here. */
            HvCoreLeaveVmxRoot(vcpu);
            status = HV_STATUS_UNSUCCESSFUL;
        } else if (vcpu->State == HV_VCPU_STATE_FAILED) {
            /* VM-entry failure exit: the exit handler already left VMX. */
            status = HV_STATUS_UNSUCCESSFUL;
        } else {
            vcpu->State = HV_VCPU_STATE_LAUNCHED;
            vmm->VirtualizedCount++;
        }
    }
    HvPlatformRestorePreemption(previous);
    vcpu->Status = HvPlatformStatusCode(status);
    HvLogProcessorResult(vmm, vcpu, status);
    return status;
}

static HV_STATUS HvDevirtualizeOne(void *context)
{
    HV_ON_CPU *on = (HV_ON_CPU *)context;
    HV_VMM_CONTEXT *vmm = on->Vmm;
    HV_VCPU *vcpu = on->Vcpu;
    uint64_t rc;
    if (vcpu->State != HV_VCPU_STATE_LAUNCHED)
        return HV_STATUS_SUCCESS;
    if (!HvCoreVmmPresent()) {
        /* VMX operation was lost without us (a sleep state we were not told
         * about): VMCALL would raise #UD here. Nothing runs on our VMCS. */
        vcpu->VmxLost = 1;
        vcpu->State = HV_VCPU_STATE_OFF;
        if (vmm->VirtualizedCount != 0)
            vmm->VirtualizedCount--;
        HV_LOG(HV_LOG_WARNING, "hv: processor %u had left VMX operation without the driver (power transition?)\n",
               vcpu->ProcessorIndex);
        return HV_STATUS_SUCCESS;
    }
    rc = HvAsmHypercall(HV_HYPERCALL_DEVIRTUALIZE, 0);
    if (rc != HV_HCSTATUS_OK || vcpu->State != HV_VCPU_STATE_DEVIRTUALIZED) {
        HV_LOG(HV_LOG_ERROR, "hv: processor %u did not leave VMX (hypercall status %llu)\n",
               vcpu->ProcessorIndex, (unsigned long long)rc);
        return HV_STATUS_UNSUCCESSFUL;
    }
    HV_LOG(HV_LOG_TRACE, "hv: processor %u devirtualized\n", vcpu->ProcessorIndex);
    return HV_STATUS_SUCCESS;
}

static HV_STATUS HvRunOn(HV_VMM_CONTEXT *vmm, uint32_t index, HV_PLATFORM_PER_CPU fn, HV_ON_CPU *on)
{
    on->Vmm = vmm;
    on->Vcpu = &vmm->Vcpus[index];
    return HvPlatformRunOn(index, fn, on);
}

/* Devirtualizes every processor that runs as a guest; returns how many
 * could not leave (their VMCS, host stack and vCPU stay in use). */
static uint32_t HvDevirtualizeAll(HV_VMM_CONTEXT *vmm)
{
    HV_ON_CPU on = { NULL, NULL, NULL, 0 };
    uint32_t i, stuck = 0;
    for (i = 0; i < vmm->ProcessorCount; i++)
        if (!HV_SUCCESS(HvRunOn(vmm, i, HvDevirtualizeOne, &on)))
            stuck++;
    return stuck;
}

/* Virtualizes every processor, one after another (processor 0 first also
 * discovers the VMCS layout when a scratch region is given); stops at the
 * first failure. */
static HV_STATUS HvVirtualizeAll(HV_VMM_CONTEXT *vmm, uint32_t *scratch_va, uint64_t scratch_pa)
{
    HV_STATUS status = HV_STATUS_SUCCESS;
    uint32_t i;
    for (i = 0; i < vmm->ProcessorCount && HV_SUCCESS(status); i++) {
        HV_ON_CPU on = { NULL, NULL, NULL, 0 }; /* constant: MSVC C warns (C4204) on others at /W4 */
        if (i == 0) {
            on.ScratchVa = scratch_va;
            on.ScratchPa = scratch_pa;
        }
        status = HvRunOn(vmm, i, HvVirtualizeOne, &on);
    }
    return status;
}

/* Devirtualizes every processor that runs as a guest, then frees all -- but
 * never what a processor that could not leave VMX still uses (its VMXON
 * region, VMCS, MSR bitmap, host stack, and the vCPU array and VMM context
 * its exit handler reads): its next VM exit would run on freed memory. That
 * is leaked on purpose, and said. */
static void HvTeardown(HV_VMM_CONTEXT *vmm)
{
    uint32_t i, stuck = HvDevirtualizeAll(vmm);
    if (stuck == 0) {
        HvFreeVmm(vmm);
        return;
    }
    for (i = 0; i < vmm->ProcessorCount; i++)
        if (vmm->Vcpus[i].State != HV_VCPU_STATE_LAUNCHED)
            HvFreeVcpuResources(&vmm->Vcpus[i]);
    HV_LOG(HV_LOG_ERROR, "hv: %u processor(s) could not leave VMX: keeping their VMCS, host stack and the "
           "VMM context (reboot to recover)\n", stuck);
    HvPublish(vmm);
}

/* ---- power transitions ---------------------------------------------------- */
void HvBeforeSleep(HV_VMM_CONTEXT *vmm)
{
    if (vmm == NULL)
        return;
    HV_LOG(HV_LOG_INFO, "hv: sleep: leaving VMX on %u processors\n", vmm->VirtualizedCount);
    (void)HvDevirtualizeAll(vmm);
    vmm->State = HV_DRIVER_STATE_LOADING;
}

void HvAfterResume(HV_VMM_CONTEXT *vmm)
{
    HV_STATUS status;
    if (vmm == NULL)
        return;
    status = HvVirtualizeAll(vmm, NULL, 0);
    vmm->PowerTransitions++;
    if (!HV_SUCCESS(status)) {
        HV_LOG(HV_LOG_ERROR, "hv: resume: virtualization failed (0x%08x); staying out of VMX\n",
               (unsigned)HvPlatformStatusCode(status));
        (void)HvDevirtualizeAll(vmm);
        return;
    }
    vmm->State = HV_DRIVER_STATE_RUNNING;
    HV_LOG(HV_LOG_INFO, "hv: resume: running again on %u processors\n", vmm->VirtualizedCount);
}

/* ---- load and unload ------------------------------------------------------ */
/* CPUID features the guest OS uses need secondary controls (HvGuestFeatures):
 * refuse to load, naming the feature, when the CPU cannot enable one. */
static HV_STATUS HvCheckGuestFeatures(HV_VMM_CONTEXT *vmm)
{
    const HV_GUEST_FEATURE *f;
    static const char regs[4][4] = { "EAX", "EBX", "ECX", "EDX" };
    vmm->AdvertisedFeatures = HvCoreAdvertisedFeatures();
    vmm->MissingFeature = HvFeatureControlsCheck(vmm->AdvertisedFeatures, vmm->CapProcbased, vmm->CapProcbased2,
                                                 &vmm->Procbased2Wanted);
    if (vmm->MissingFeature == 0)
        return HV_STATUS_SUCCESS;
    f = &HvGuestFeatures[vmm->MissingFeature - 1];
    HV_LOG(HV_LOG_ERROR, "hv: not loading: the CPU reports %s (CPUID.%XH.%u:%s[%u]) but does not allow the "
           "VM-execution control 0x%x it needs in a guest (IA32_VMX_PROCBASED_CTLS2); Windows would take #UD\n",
           f->Name, f->Leaf, f->Subleaf, regs[f->Register], f->Bit, f->Control);
    return HV_STATUS_HV_FEATURE_UNAVAILABLE;
}

static void HvLogNoVmx(void)
{
    uint32_t vendor[3], i;
    char text[13];
    if (HvCoreDetectParent(vendor) == HV_PARENT_NONE) {
        HV_LOG(HV_LOG_ERROR, "hv: this processor has no VMX (CPUID.1:ECX.VMX = 0)\n");
        return;
    }
    for (i = 0; i < 12; i++)
        text[i] = (char)(vendor[i / 4] >> (8 * (i % 4)));
    text[12] = 0;
    HV_LOG(HV_LOG_ERROR, "hv: no VMX: this system already runs under the hypervisor \"%s\" (CPUID.1:ECX[31]), "
           "which does not expose VMX to it: turn off VBS/memory integrity or enable nested virtualization\n", text);
}

/* The VMM context and its vCPU array, or NULL. */
static HV_VMM_CONTEXT *HvAllocVmm(uint32_t count)
{
    HV_VMM_CONTEXT *vmm = (HV_VMM_CONTEXT *)HvPlatformAlloc(sizeof(*vmm));
    uint32_t i;
    if (vmm == NULL)
        return NULL;
    vmm->State = HV_DRIVER_STATE_LOADING;
    vmm->Vcpus = (HV_VCPU *)HvPlatformAlloc((size_t)count * sizeof(HV_VCPU));
    if (vmm->Vcpus == NULL) {
        HvPlatformFree(vmm);
        return NULL;
    }
    vmm->ProcessorCount = count;
    for (i = 0; i < count; i++) {
        vmm->Vcpus[i].ProcessorIndex = i;
        vmm->Vcpus[i].Vmm = vmm;
        vmm->Vcpus[i].Snapshot.ExitReason = ~0u;
    }
    return vmm;
}

/* The checks before anything is entered (SDM Vol. 3 24.7, App. A.1, 26.3):
 * on failure the VMM is freed. */
static HV_STATUS HvCheckProcessor(HV_VMM_CONTEXT *vmm)
{
    HV_STATUS status;
    HvCoreReadCapabilities(vmm);
    HvPublish(vmm);
    HV_LOG(HV_LOG_INFO, "hv: %u processors, IA32_VMX_BASIC 0x%llx\n", vmm->ProcessorCount,
           (unsigned long long)vmm->CapBasic);
    if (HvVmxBasicProblem(vmm->CapBasic) != HV_BASIC_OK) {
        HV_LOG(HV_LOG_ERROR, "hv: not loading: IA32_VMX_BASIC 0x%llx asks for VMXON/VMCS regions this driver "
               "does not allocate (problem %u: 1 size > 4 KiB, 2 not write-back, 3 below 4 GiB only)\n",
               (unsigned long long)vmm->CapBasic, HvVmxBasicProblem(vmm->CapBasic));
        HvFreeVmm(vmm);
        return HV_STATUS_NOT_SUPPORTED;
    }
    vmm->Parent = HvCoreDetectParent(vmm->ParentVendor);
    if (vmm->Parent != HV_PARENT_NONE)
        HV_LOG(HV_LOG_INFO, "hv: running under a parent hypervisor (%s): its CPUID leaves%s pass through\n",
               vmm->Parent == HV_PARENT_HYPERV ? "Hyper-V interface" : "unknown interface",
               vmm->Parent == HV_PARENT_HYPERV ? ", synthetic MSRs and hypercalls" : "");
    status = HvCheckGuestFeatures(vmm);
    if (!HV_SUCCESS(status))
        HvFreeVmm(vmm);
    return status;
}

/* Allocation and virtualization of every processor; on failure everything
 * is undone and freed. */
static HV_STATUS HvStart(HV_VMM_CONTEXT *vmm)
{
    HV_STATUS status = HV_STATUS_SUCCESS;
    uint32_t *scratch = NULL;
    uint64_t scratch_pa = 0;
    uint32_t i;

    for (i = 0; i < vmm->ProcessorCount && HV_SUCCESS(status); i++)
        status = HvAllocVcpuResources(&vmm->Vcpus[i]);
    if (HV_SUCCESS(status)) {
        scratch = (uint32_t *)HvPlatformAllocPage(&scratch_pa);
        if (scratch == NULL)
            status = HV_STATUS_INSUFFICIENT_RESOURCES;
    }
    /* Processor 0 also discovers the VMCS layout on the scratch region. */
    if (HV_SUCCESS(status))
        status = HvVirtualizeAll(vmm, scratch, scratch_pa);
    if (scratch != NULL)
        HvPlatformFreePage(scratch);

    if (!HV_SUCCESS(status)) {
        HV_LOG(HV_LOG_ERROR, "hv: load failed (0x%08x): undoing %u virtualized processors\n",
               (unsigned)HvPlatformStatusCode(status), vmm->VirtualizedCount);
        HvTeardown(vmm);
    }
    return status;
}

static HV_STATUS HvLoadVmm(HV_VMM_CONTEXT **out)
{
    HV_VMM_CONTEXT *vmm;
    HV_STATUS status;

    if (!HvCoreVmxSupported()) {
        HvLogNoVmx();
        return HV_STATUS_NOT_SUPPORTED;
    }
    vmm = HvAllocVmm(HvPlatformProcessorCount());
    if (vmm == NULL)
        return HV_STATUS_INSUFFICIENT_RESOURCES;
    status = HvCheckProcessor(vmm);
    if (HV_SUCCESS(status))
        status = HvStart(vmm);
    if (!HV_SUCCESS(status))
        return status;
    vmm->State = HV_DRIVER_STATE_RUNNING;
    *out = vmm;
    return HV_STATUS_SUCCESS;
}

HV_STATUS HvLoad(HV_VMM_CONTEXT **out)
{
    HV_STATUS status;

    *out = NULL;
    HvDebugDescriptor.SelfVa = (uint64_t)(uintptr_t)&HvDebugDescriptor;
    HvDebugDescriptor.DriverState = HV_DRIVER_STATE_LOADING;
    HV_LOG(HV_LOG_INFO, "hv: loading, debug descriptor at %p\n", (void *)&HvDebugDescriptor);

    status = HvLoadVmm(out);
    HvDebugDescriptor.LoadStatus = HvPlatformStatusCode(status);
    if (!HV_SUCCESS(status)) {
        HvDebugDescriptor.DriverState = HV_DRIVER_STATE_FAILED;
        HV_LOG(HV_LOG_ERROR, "hv: not loaded (0x%08x: %s)\n", (unsigned)HvPlatformStatusCode(status),
               HvStatusMessage(status));
        return status;
    }
    HvDebugDescriptor.DriverState = HV_DRIVER_STATE_RUNNING;
    HV_LOG(HV_LOG_INFO, "hv: running on %u processors\n", (*out)->VirtualizedCount);
    return HV_STATUS_SUCCESS;
}

void HvUnload(HV_VMM_CONTEXT *vmm)
{
    HV_LOG(HV_LOG_INFO, "hv: unloading\n");
    if (vmm != NULL)
        HvTeardown(vmm);
    HvDebugDescriptor.DriverState = HV_DRIVER_STATE_UNLOADED;
    HV_LOG(HV_LOG_INFO, "hv: unloaded\n");
}
