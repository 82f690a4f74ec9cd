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
static PCALLBACK_OBJECT g_PowerState;      /* \Callback\PowerState, referenced */
static PVOID g_PowerRegistration;

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
    vcpu->HostStack = ExAllocatePoolWithTag(NonPagedPoolNx, HV_HOST_STACK_SIZE, HV_POOL_TAG);
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
    if (!NT_SUCCESS(status)) {
        if (vcpu->FailedStep == HV_STEP_FEATURE_CONTROL)
            HV_LOG(HV_LOG_ERROR, "hv: processor %u: IA32_FEATURE_CONTROL is locked with VMX disabled: "
                   "enable VT-x in the firmware setup\n", vcpu->ProcessorIndex);
        if (vcpu->FailedStep == HV_STEP_FIXED_BITS)
            HV_LOG(HV_LOG_ERROR, "hv: processor %u: VMX operation would clear a CR0/CR4 bit the OS set "
                   "(IA32_VMX_CR0/CR4_FIXED1): refusing instead\n", vcpu->ProcessorIndex);
        HV_LOG(HV_LOG_ERROR, "hv: processor %u failed: step %u, VM-instruction error %u, status 0x%08x\n",
               vcpu->ProcessorIndex, vcpu->FailedStep, vcpu->VmInstructionError, (unsigned)status);
        return;
    }
    if (vcpu->ProcessorIndex == 0) {
        if (!(vmm->FeatureControlAtLoad & 1u))
            HV_LOG(HV_LOG_WARNING, "hv: IA32_FEATURE_CONTROL was unlocked (0x%llx): locked it with VMXON outside SMX\n",
                   (unsigned long long)vmm->FeatureControlAtLoad);
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
    UNREFERENCED_PARAMETER(context);
    if (vcpu->State != HV_VCPU_STATE_LAUNCHED)
        return STATUS_SUCCESS;
    if (!HvCoreVmmPresent()) {
        /* VMX operation was lost without us (a sleep state we were not told
         * about): VMCALL would raise #UD here. Nothing runs on our VMCS. */
        vcpu->VmxLost = 1;
        vcpu->State = HV_VCPU_STATE_OFF;
        if (vmm->VirtualizedCount != 0)
            vmm->VirtualizedCount--;
        HV_LOG(HV_LOG_WARNING, "hv: processor %u had left VMX operation without the driver (power transition?)\n",
               vcpu->ProcessorIndex);
        return STATUS_SUCCESS;
    }
    rc = HvAsmHypercall(HV_HYPERCALL_DEVIRTUALIZE, 0);
    if (rc != HV_HCSTATUS_OK || vcpu->State != HV_VCPU_STATE_DEVIRTUALIZED) {
        HV_LOG(HV_LOG_ERROR, "hv: processor %u did not leave VMX (hypercall status %llu)\n",
               vcpu->ProcessorIndex, (unsigned long long)rc);
        return STATUS_UNSUCCESSFUL;
    }
    HV_LOG(HV_LOG_TRACE, "hv: processor %u devirtualized\n", vcpu->ProcessorIndex);
    return STATUS_SUCCESS;
}

/* Devirtualizes every processor that runs as a guest; returns how many
 * could not leave (their VMCS, host stack and vCPU stay in use). */
static uint32_t HvDevirtualizeAll(HV_VMM_CONTEXT *vmm)
{
    uint32_t i, stuck = 0;
    for (i = 0; i < vmm->ProcessorCount; i++)
        if (!NT_SUCCESS(HvRunOn(i, HvDevirtualizeOne, vmm, NULL)))
            stuck++;
    return stuck;
}

/* Virtualizes every processor, one after another (processor 0 first also
 * discovers the VMCS layout when scratch is given); stops at the first failure. */
static NTSTATUS HvVirtualizeAll(HV_VMM_CONTEXT *vmm, HV_SCRATCH *scratch)
{
    NTSTATUS status = STATUS_SUCCESS;
    uint32_t i;
    for (i = 0; i < vmm->ProcessorCount && NT_SUCCESS(status); i++)
        status = HvRunOn(i, HvVirtualizeOne, vmm, i == 0 ? scratch : NULL);
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

/* \Callback\PowerState (PO_CB_SYSTEM_STATE_LOCK): Argument2 = 0 before a
 * sleep state, 1 after resume. The processors come back from firmware with
 * VMX off (SDM Vol. 3 25.11.1), so leave before and enter again after, the
 * way SimpleVisor and HyperPlatform do. Called at PASSIVE_LEVEL. */
static VOID HvPowerCallback(PVOID context, PVOID argument1, PVOID argument2)
{
    HV_VMM_CONTEXT *vmm = (HV_VMM_CONTEXT *)context;
    NTSTATUS status;
    if ((ULONG_PTR)argument1 != PO_CB_SYSTEM_STATE_LOCK || vmm == NULL)
        return;
    if (argument2 == NULL) {
        HV_LOG(HV_LOG_INFO, "hv: sleep: leaving VMX on %u processors\n", vmm->VirtualizedCount);
        (void)HvDevirtualizeAll(vmm);
        vmm->State = HV_DRIVER_STATE_LOADING;
        return;
    }
    status = HvVirtualizeAll(vmm, NULL);
    vmm->PowerTransitions++;
    if (!NT_SUCCESS(status)) {
        HV_LOG(HV_LOG_ERROR, "hv: resume: virtualization failed (0x%08x); staying out of VMX\n", (unsigned)status);
        (void)HvDevirtualizeAll(vmm);
        return;
    }
    vmm->State = HV_DRIVER_STATE_RUNNING;
    HV_LOG(HV_LOG_INFO, "hv: resume: running again on %u processors\n", vmm->VirtualizedCount);
}

static NTSTATUS HvRegisterPowerCallback(HV_VMM_CONTEXT *vmm)
{
    static WCHAR text[] = L"\\Callback\\PowerState";
    OBJECT_ATTRIBUTES attributes;
    UNICODE_STRING name;
    NTSTATUS status;
    name.Buffer = text;
    name.Length = (USHORT)(sizeof(text) - sizeof(WCHAR));
    name.MaximumLength = (USHORT)sizeof(text);
    InitializeObjectAttributes(&attributes, &name, OBJ_CASE_INSENSITIVE, NULL, NULL);
    status = ExCreateCallback(&g_PowerState, &attributes, FALSE, TRUE);
    if (!NT_SUCCESS(status))
        return status;
    g_PowerRegistration = ExRegisterCallback(g_PowerState, HvPowerCallback, vmm);
    if (g_PowerRegistration == NULL) {
        ObDereferenceObject(g_PowerState);
        g_PowerState = NULL;
        return STATUS_UNSUCCESSFUL;
    }
    return STATUS_SUCCESS;
}

static void HvUnregisterPowerCallback(void)
{
    if (g_PowerRegistration != NULL)
        ExUnregisterCallback(g_PowerRegistration); /* waits for a callback in progress */
    g_PowerRegistration = NULL;
    if (g_PowerState != NULL)
        ObDereferenceObject(g_PowerState);
    g_PowerState = NULL;
}

static VOID HvDriverUnload(PDRIVER_OBJECT driver)
{
    UNREFERENCED_PARAMETER(driver);
    HV_LOG(HV_LOG_INFO, "hv: unloading\n");
    HvUnregisterPowerCallback();
    if (g_Vmm != NULL)
        HvTeardown(g_Vmm);
    g_Vmm = NULL;
    HvDebugDescriptor.DriverState = HV_DRIVER_STATE_UNLOADED;
    HV_LOG(HV_LOG_INFO, "hv: unloaded\n");
}

/* CPUID features the guest OS uses need secondary controls (core/features.c):
 * refuse to load, naming the feature, when the CPU cannot enable one. */
static NTSTATUS HvCheckGuestFeatures(HV_VMM_CONTEXT *vmm)
{
    const HV_GUEST_FEATURE *f;
    static const char regs[4][4] = { "EAX", "EBX", "ECX", "EDX" };
    vmm->AdvertisedFeatures = HvCoreAdvertisedFeatures();
    vmm->MissingFeature = HvFeatureControlsCheck(vmm->AdvertisedFeatures, vmm->CapProcbased, vmm->CapProcbased2,
                                                 &vmm->Procbased2Wanted);
    if (vmm->MissingFeature == 0)
        return STATUS_SUCCESS;
    f = &HvGuestFeatures[vmm->MissingFeature - 1];
    HV_LOG(HV_LOG_ERROR, "hv: not loading: the CPU reports %s (CPUID.%XH.%u:%s[%u]) but does not allow the "
           "VM-execution control 0x%x it needs in a guest (IA32_VMX_PROCBASED_CTLS2); Windows would take #UD\n",
           f->Name, f->Leaf, f->Subleaf, regs[f->Register], f->Bit, f->Control);
    return (NTSTATUS)HV_STATUS_HV_FEATURE_UNAVAILABLE;
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

static NTSTATUS HvLoad(HV_VMM_CONTEXT **out)
{
    HV_VMM_CONTEXT *vmm;
    HV_SCRATCH scratch = { NULL, 0 };
    NTSTATUS status = STATUS_SUCCESS;
    uint32_t i, count;

    if (!HvCoreVmxSupported()) {
        HvLogNoVmx();
        return STATUS_NOT_SUPPORTED;
    }
    count = KeQueryActiveProcessorCountEx(ALL_PROCESSOR_GROUPS);
    vmm = (HV_VMM_CONTEXT *)ExAllocatePoolWithTag(NonPagedPoolNx, sizeof(*vmm), HV_POOL_TAG);
    if (vmm == NULL)
        return STATUS_INSUFFICIENT_RESOURCES;
    RtlZeroMemory(vmm, sizeof(*vmm));
    vmm->State = HV_DRIVER_STATE_LOADING;
    vmm->Vcpus = (HV_VCPU *)ExAllocatePoolWithTag(NonPagedPoolNx, (SIZE_T)count * sizeof(HV_VCPU), HV_POOL_TAG);
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
    if (HvVmxBasicProblem(vmm->CapBasic) != HV_BASIC_OK) {
        HV_LOG(HV_LOG_ERROR, "hv: not loading: IA32_VMX_BASIC 0x%llx asks for VMXON/VMCS regions this driver "
               "does not allocate (problem %u: 1 size > 4 KiB, 2 not write-back, 3 below 4 GiB only)\n",
               (unsigned long long)vmm->CapBasic, HvVmxBasicProblem(vmm->CapBasic));
        HvFreeVmm(vmm);
        return STATUS_NOT_SUPPORTED;
    }
    vmm->Parent = HvCoreDetectParent(vmm->ParentVendor);
    if (vmm->Parent != HV_PARENT_NONE)
        HV_LOG(HV_LOG_INFO, "hv: running under a parent hypervisor (%s): its CPUID leaves%s pass through\n",
               vmm->Parent == HV_PARENT_HYPERV ? "Hyper-V interface" : "unknown interface",
               vmm->Parent == HV_PARENT_HYPERV ? ", synthetic MSRs and hypercalls" : "");
    status = HvCheckGuestFeatures(vmm);
    if (!NT_SUCCESS(status)) {
        HvFreeVmm(vmm);
        return status;
    }

    for (i = 0; i < count && NT_SUCCESS(status); i++)
        status = HvAllocVcpuResources(&vmm->Vcpus[i]);
    if (NT_SUCCESS(status)) {
        scratch.Va = (uint32_t *)HvAllocPage(&scratch.Pa);
        if (scratch.Va == NULL)
            status = STATUS_INSUFFICIENT_RESOURCES;
    }
    /* Processor 0 also discovers the VMCS layout on the scratch region. */
    if (NT_SUCCESS(status))
        status = HvVirtualizeAll(vmm, &scratch);
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
    if (!NT_SUCCESS(HvRegisterPowerCallback(g_Vmm)))
        HV_LOG(HV_LOG_WARNING, "hv: no \\Callback\\PowerState: sleep states will end VMX operation unnoticed "
               "(unload stays safe)\n");
    HvDebugDescriptor.DriverState = HV_DRIVER_STATE_RUNNING;
    HV_LOG(HV_LOG_INFO, "hv: running on %u processors\n", g_Vmm->VirtualizedCount);
    return STATUS_SUCCESS;
}
