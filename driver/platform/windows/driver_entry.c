/*
 * Windows platform layer: DriverEntry/DriverUnload, memory, running the core
 * on each logical processor ONE AFTER ANOTHER (affinity, no IPIs/DPC
 * barriers), logging with DbgPrintEx, and "CPU redemption": any failure on
 * any processor undoes every processor already virtualized and frees
 * everything. Imports: see docs/driver.md.
 */
#include <ntddk.h>
#include "hv_core.h"
#include "hv_arch.h"
#include "hv_asm.h"
#include "hv_hypercall.h"
#include "hv_platform.h"
#include "hv_log.h"
#include "hv_fault.h"

#define HV_POOL_TAG 0x62614C48u /* 'HLab' */
#define HV_PAGE 4096u

DRIVER_INITIALIZE DriverEntry;
static DRIVER_UNLOAD HvDriverUnload;

static HV_VMM_CONTEXT *g_Vmm;

HV_NORETURN void HvPlatformBugCheck(uint32_t subcode, uint64_t p2, uint64_t p3, uint64_t p4)
{
    KeBugCheckEx(HV_BUGCHECK_CODE, subcode, (ULONG_PTR)p2, (ULONG_PTR)p3, (ULONG_PTR)p4);
}

/* ---- memory ------------------------------------------------------------ */
static void *HvAllocPage(uint64_t *pa)
{
    PHYSICAL_ADDRESS low, high, boundary;
    void *va;
    low.QuadPart = 0;
    high.QuadPart = -1;
    boundary.QuadPart = 0;
    /* Physically contiguous, 4 KiB aligned, write-back (App. A.1 memory type). */
    va = MmAllocateContiguousMemorySpecifyCache(HV_PAGE, low, high, boundary, MmCached);
    if (va == NULL)
        return NULL;
    RtlZeroMemory(va, HV_PAGE);
    *pa = (uint64_t)MmGetPhysicalAddress(va).QuadPart;
    return va;
}

static void HvFreePage(void **va, uint64_t *pa)
{
    if (*va != NULL)
        MmFreeContiguousMemory(*va);
    *va = NULL;
    *pa = 0;
}

static void HvFreeVcpuResources(HV_VCPU *vcpu)
{
    HvFreePage(&vcpu->VmxonRegion, &vcpu->VmxonRegionPa);
    HvFreePage(&vcpu->VmcsRegion, &vcpu->VmcsRegionPa);
    HvFreePage(&vcpu->MsrBitmap, &vcpu->MsrBitmapPa);
    if (vcpu->HostStack != NULL)
        ExFreePoolWithTag(vcpu->HostStack, HV_POOL_TAG);
    vcpu->HostStack = NULL;
}

static NTSTATUS HvAllocVcpuResources(HV_VCPU *vcpu)
{
    vcpu->VmxonRegion = HvAllocPage(&vcpu->VmxonRegionPa);
    vcpu->VmcsRegion = HvAllocPage(&vcpu->VmcsRegionPa);
    vcpu->MsrBitmap = HvAllocPage(&vcpu->MsrBitmapPa);
    vcpu->HostStackSize = HV_HOST_STACK_SIZE;
    vcpu->HostStack = ExAllocatePoolWithTag(NonPagedPool, HV_HOST_STACK_SIZE, HV_POOL_TAG);
    if (!vcpu->VmxonRegion || !vcpu->VmcsRegion || !vcpu->MsrBitmap || !vcpu->HostStack) {
        HvCoreRecordFailure(vcpu, HV_STEP_ALLOCATION, HV_STATUS_INSUFFICIENT_RESOURCES, 0);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
#if HV_FAULT == HV_FAULT_MSR_BITMAP_DIRTY
    if (vcpu->ProcessorIndex == HV_FAULT_CPU) /* exercise: never zeroed: stale bytes */
        RtlFillMemory(vcpu->MsrBitmap, HV_PAGE, HV_FAULT_ARG);
#endif
    return STATUS_SUCCESS;
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
        ExFreePoolWithTag(vmm->Vcpus, HV_POOL_TAG);
    }
    ExFreePoolWithTag(vmm, HV_POOL_TAG);
}

/* ---- one processor at a time --------------------------------------------- */
typedef NTSTATUS (*HV_PER_CPU)(HV_VMM_CONTEXT *vmm, HV_VCPU *vcpu, void *context);

static NTSTATUS HvRunOn(uint32_t index, HV_PER_CPU fn, HV_VMM_CONTEXT *vmm, void *context)
{
    PROCESSOR_NUMBER pn;
    GROUP_AFFINITY affinity, previous;
    NTSTATUS status = KeGetProcessorNumberFromIndex(index, &pn);
    if (!NT_SUCCESS(status))
        return status;
    RtlZeroMemory(&affinity, sizeof(affinity));
    affinity.Group = pn.Group;
    affinity.Mask = (KAFFINITY)1 << pn.Number;
    /* The thread now runs only on that processor; back to normal after. */
    KeSetSystemGroupAffinityThread(&affinity, &previous);
    status = fn(vmm, &vmm->Vcpus[index], context);
    KeRevertToUserGroupAffinityThread(&previous);
    return status;
}

typedef struct HV_SCRATCH {
    uint32_t *Va;
    uint64_t Pa;
} HV_SCRATCH;

/* What the core recorded for this processor, in words. */
static void HvLogProcessorResult(const HV_VMM_CONTEXT *vmm, const HV_VCPU *vcpu, NTSTATUS status)
{
    const uint32_t wanted2 = CPU2_ENABLE_RDTSCP | CPU2_ENABLE_INVPCID | CPU2_ENABLE_XSAVES_XRSTORS;
    if (!NT_SUCCESS(status)) {
        if (vcpu->FailedStep == HV_STEP_FEATURE_CONTROL)
            HV_LOG(HV_LOG_ERROR, "hv: processor %u: IA32_FEATURE_CONTROL is locked with VMX disabled: "
                   "enable VT-x in the firmware setup\n", vcpu->ProcessorIndex);
        HV_LOG(HV_LOG_ERROR, "hv: processor %u failed: step %u, VM-instruction error %u, status 0x%08x\n",
               vcpu->ProcessorIndex, vcpu->FailedStep, vcpu->VmInstructionError, (unsigned)status);
        return;
    }
    if (vcpu->ProcessorIndex == 0) {
        if (!(vmm->FeatureControlAtLoad & 1u))
            HV_LOG(HV_LOG_WARNING, "hv: IA32_FEATURE_CONTROL was unlocked (0x%llx): locked it with VMXON outside SMX\n",
                   (unsigned long long)vmm->FeatureControlAtLoad);
        if ((vmm->Procbased2Controls & wanted2) != wanted2)
            HV_LOG(HV_LOG_WARNING, "hv: secondary controls 0x%x: RDTSCP/INVPCID/XSAVES not all enabled; "
                   "the guest gets #UD if it uses one the CPU reports\n", vmm->Procbased2Controls);
    }
    HV_LOG(HV_LOG_TRACE, "hv: processor %u virtualized\n", vcpu->ProcessorIndex);
}

static NTSTATUS HvVirtualizeOne(HV_VMM_CONTEXT *vmm, HV_VCPU *vcpu, void *context)
{
    HV_SCRATCH *scratch = (HV_SCRATCH *)context;
    KIRQL old;
    NTSTATUS status;

#if HV_FAULT == HV_FAULT_SKIP_PROCESSOR
    /* exercise: ARG 0 -- processor 0 left out ("DriverEntry runs there, it is ours already");
     * ARG 1 -- the last one (an off-by-one against the processor count) */
    if (vcpu->ProcessorIndex == (HV_FAULT_ARG == 0 ? 0u : vmm->ProcessorCount - 1u))
        return STATUS_SUCCESS;
#endif
    KeRaiseIrql(DISPATCH_LEVEL, &old); /* no preemption between VMXON and VMLAUNCH */
    status = HvCoreEnterVmxRoot(vmm, vcpu, scratch ? scratch->Va : NULL, scratch ? scratch->Pa : 0);
    if (NT_SUCCESS(status)) {
        HvCorePrepareHostStack(vcpu);
        status = HvCoreSetupVmcs(vmm, vcpu);
        if (!NT_SUCCESS(status)) {
            HvCoreLeaveVmxRoot(vcpu);
        } else if (HvAsmLaunch(vcpu) == 0) {
            /* VMLAUNCH VMfail: error and snapshot recorded; undo here. */
            HvCoreLeaveVmxRoot(vcpu);
            status = STATUS_UNSUCCESSFUL;
        } else if (vcpu->State == HV_VCPU_STATE_FAILED) {
            /* VM-entry failure exit: the exit handler already left VMX. */
            status = STATUS_UNSUCCESSFUL;
        } else {
            vcpu->State = HV_VCPU_STATE_LAUNCHED;
            vmm->VirtualizedCount++;
        }
    }
    KeLowerIrql(old);
    vcpu->Status = status;
    HvLogProcessorResult(vmm, vcpu, status);
    return status;
}

static NTSTATUS HvDevirtualizeOne(HV_VMM_CONTEXT *vmm, HV_VCPU *vcpu, void *context)
{
    uint64_t rc;
    UNREFERENCED_PARAMETER(vmm);
    UNREFERENCED_PARAMETER(context);
    if (vcpu->State != HV_VCPU_STATE_LAUNCHED)
        return STATUS_SUCCESS;
    rc = HvAsmHypercall(HV_HYPERCALL_DEVIRTUALIZE, 0);
    if (rc != HV_HCSTATUS_OK || vcpu->State != HV_VCPU_STATE_DEVIRTUALIZED) {
        HV_LOG(HV_LOG_ERROR, "hv: processor %u did not leave VMX (hypercall status %llu)\n",
               vcpu->ProcessorIndex, (unsigned long long)rc);
        return STATUS_UNSUCCESSFUL;
    }
    HV_LOG(HV_LOG_TRACE, "hv: processor %u devirtualized\n", vcpu->ProcessorIndex);
    return STATUS_SUCCESS;
}

/* Devirtualizes every processor that runs as a guest, then frees all. */
static void HvTeardown(HV_VMM_CONTEXT *vmm)
{
    uint32_t i;
    for (i = 0; i < vmm->ProcessorCount; i++)
        (void)HvRunOn(i, HvDevirtualizeOne, vmm, NULL);
    HvFreeVmm(vmm);
}

static VOID HvDriverUnload(PDRIVER_OBJECT driver)
{
    UNREFERENCED_PARAMETER(driver);
    HV_LOG(HV_LOG_INFO, "hv: unloading\n");
    if (g_Vmm != NULL)
        HvTeardown(g_Vmm);
    g_Vmm = NULL;
    HvDebugDescriptor.DriverState = HV_DRIVER_STATE_UNLOADED;
    HV_LOG(HV_LOG_INFO, "hv: unloaded\n");
}

static NTSTATUS HvLoad(HV_VMM_CONTEXT **out)
{
    HV_VMM_CONTEXT *vmm;
    HV_SCRATCH scratch = { NULL, 0 };
    NTSTATUS status = STATUS_SUCCESS;
    uint32_t i, count;

    if (!HvCoreVmxSupported()) {
        HV_LOG(HV_LOG_ERROR, "hv: this processor has no VMX (CPUID.1:ECX.VMX = 0)\n");
        return STATUS_NOT_SUPPORTED;
    }
    count = KeQueryActiveProcessorCountEx(ALL_PROCESSOR_GROUPS);
    vmm = (HV_VMM_CONTEXT *)ExAllocatePoolWithTag(NonPagedPool, sizeof(*vmm), HV_POOL_TAG);
    if (vmm == NULL)
        return STATUS_INSUFFICIENT_RESOURCES;
    RtlZeroMemory(vmm, sizeof(*vmm));
    vmm->State = HV_DRIVER_STATE_LOADING;
    vmm->Vcpus = (HV_VCPU *)ExAllocatePoolWithTag(NonPagedPool, (SIZE_T)count * sizeof(HV_VCPU), HV_POOL_TAG);
    if (vmm->Vcpus == NULL) {
        ExFreePoolWithTag(vmm, HV_POOL_TAG);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    RtlZeroMemory(vmm->Vcpus, (SIZE_T)count * sizeof(HV_VCPU));
    vmm->ProcessorCount = count;
    for (i = 0; i < count; i++) {
        vmm->Vcpus[i].ProcessorIndex = i;
        vmm->Vcpus[i].Vmm = vmm;
        vmm->Vcpus[i].Snapshot.ExitReason = ~0u;
    }
    HvCoreReadCapabilities(vmm);
    HvPublish(vmm);
    HV_LOG(HV_LOG_INFO, "hv: %u processors, IA32_VMX_BASIC 0x%llx\n", count, (unsigned long long)vmm->CapBasic);

    for (i = 0; i < count && NT_SUCCESS(status); i++)
        status = HvAllocVcpuResources(&vmm->Vcpus[i]);
    if (NT_SUCCESS(status)) {
        scratch.Va = (uint32_t *)HvAllocPage(&scratch.Pa);
        if (scratch.Va == NULL)
            status = STATUS_INSUFFICIENT_RESOURCES;
    }
    /* Processor 0 also discovers the VMCS layout on the scratch region. */
    for (i = 0; i < count && NT_SUCCESS(status); i++)
        status = HvRunOn(i, HvVirtualizeOne, vmm, i == 0 ? &scratch : NULL);
    if (scratch.Va != NULL)
        HvFreePage((void **)&scratch.Va, &scratch.Pa);

    if (!NT_SUCCESS(status)) {
        HV_LOG(HV_LOG_ERROR, "hv: load failed (0x%08x): undoing %u virtualized processors\n",
               (unsigned)status, vmm->VirtualizedCount);
        HvTeardown(vmm);
        return status;
    }
    vmm->State = HV_DRIVER_STATE_RUNNING;
    *out = vmm;
    return STATUS_SUCCESS;
}

NTSTATUS DriverEntry(PDRIVER_OBJECT driver, PUNICODE_STRING registry_path)
{
    NTSTATUS status;
    UNREFERENCED_PARAMETER(registry_path);

    HvDebugDescriptor.SelfVa = (uint64_t)(uintptr_t)&HvDebugDescriptor;
    HvDebugDescriptor.DriverState = HV_DRIVER_STATE_LOADING;
    HV_LOG(HV_LOG_INFO, "hv: loading, debug descriptor at %p\n", (void *)&HvDebugDescriptor);

    status = HvLoad(&g_Vmm);
    HvDebugDescriptor.LoadStatus = status;
    if (!NT_SUCCESS(status)) {
        HvDebugDescriptor.DriverState = HV_DRIVER_STATE_FAILED;
        HV_LOG(HV_LOG_ERROR, "hv: not loaded (0x%08x)\n", (unsigned)status);
        return status;
    }
    driver->DriverUnload = HvDriverUnload;
    HvDebugDescriptor.DriverState = HV_DRIVER_STATE_RUNNING;
    HV_LOG(HV_LOG_INFO, "hv: running on %u processors\n", g_Vmm->VirtualizedCount);
    return STATUS_SUCCESS;
}
