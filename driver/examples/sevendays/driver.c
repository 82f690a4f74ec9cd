/*
 * sevendays.sys -- DriverEntry / DriverUnload: allocate the VMM context and
 * one vCPU per processor (Day 2), then virtualize each processor in turn by
 * pinning this thread to it (Day 4). Unload asks each processor's VMM to
 * leave VMX operation (VMCALL), then frees everything.
 */
#include <ntddk.h>
#include <stdarg.h>
#include "vmm.h"
#include "hv_arch.h"
#include "hv_intrin.h"
#include "hv_fault.h"

DRIVER_INITIALIZE DriverEntry;
static DRIVER_UNLOAD driver_unload;

struct __vmm_context_t *g_vmm_context = NULL;

void vmm_log(uint32_t level, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vDbgPrintEx(DPFLTR_IHVDRIVER_ID, level, format, args);
    va_end(args);
}

void vmm_crash(uint32_t code, uint64_t p1, uint64_t p2, uint64_t p3)
{
    KeBugCheckEx(code, (ULONG_PTR)p1, (ULONG_PTR)p2, (ULONG_PTR)p3, 0);
}

/* 4 KiB, physically contiguous, zeroed (VMXON/VMCS/MSR bitmap: SDM 25.2, App. A.1). */
static void *alloc_page(uint64_t *physical)
{
    PHYSICAL_ADDRESS max;
    void *va;
    max.QuadPart = -1;
    va = MmAllocateContiguousMemory(PAGE_SIZE, max);
    if (va == NULL)
        return NULL;
    RtlZeroMemory(va, PAGE_SIZE);
    *physical = (uint64_t)MmGetPhysicalAddress(va).QuadPart;
    return va;
}

static struct __vcpu_t *init_vcpu(struct __vmm_context_t *vmm, uint32_t number)
{
    struct __vcpu_t *vcpu = ExAllocatePoolWithTag(NonPagedPool, sizeof(*vcpu), VMM_TAG);
    if (vcpu == NULL)
        return NULL;
    RtlZeroMemory(vcpu, sizeof(*vcpu));
    vcpu->vmm_context = vmm;
    vcpu->processor_number = number;
    vcpu->vmxon = alloc_page(&vcpu->vmxon_physical);
    vcpu->vmcs = alloc_page(&vcpu->vmcs_physical);
    vcpu->msr_bitmap = alloc_page(&vcpu->msr_bitmap_physical);
#if HV_FAULT == HV_FAULT_SEVENDAYS_MSR_BITMAP_DIRTY
    if (number == HV_FAULT_CPU && vcpu->msr_bitmap != NULL) /* exercise: the bitmap keeps stale bytes */
        RtlFillMemory(vcpu->msr_bitmap, PAGE_SIZE, HV_FAULT_ARG);
#endif
    vcpu->stack = ExAllocatePoolWithTag(NonPagedPool, VMM_STACK_SIZE, VMM_TAG);
    return vcpu;
}

static void free_vcpu(struct __vcpu_t *vcpu)
{
    if (vcpu == NULL)
        return;
    if (vcpu->vmxon)
        MmFreeContiguousMemory(vcpu->vmxon);
    if (vcpu->vmcs)
        MmFreeContiguousMemory(vcpu->vmcs);
    if (vcpu->msr_bitmap)
        MmFreeContiguousMemory(vcpu->msr_bitmap);
    if (vcpu->stack)
        ExFreePoolWithTag(vcpu->stack, VMM_TAG);
    ExFreePoolWithTag(vcpu, VMM_TAG);
}

static struct __vmm_context_t *allocate_vmm_context(void)
{
    struct __vmm_context_t *vmm = ExAllocatePoolWithTag(NonPagedPool, sizeof(*vmm), VMM_TAG);
    uint32_t i, count = KeQueryActiveProcessorCountEx(ALL_PROCESSOR_GROUPS);
    if (vmm == NULL)
        return NULL;
    RtlZeroMemory(vmm, sizeof(*vmm));
    vmm->vmx_basic = hv_rdmsr(IA32_VMX_BASIC);
    vmm->vcpu_table = ExAllocatePoolWithTag(NonPagedPool, count * sizeof(struct __vcpu_t *), VMM_TAG);
    if (vmm->vcpu_table == NULL) {
        ExFreePoolWithTag(vmm, VMM_TAG);
        return NULL;
    }
    vmm->processor_count = count;
    for (i = 0; i < count; i++)
        vmm->vcpu_table[i] = init_vcpu(vmm, i);
    return vmm;
}

static void free_vmm_context(struct __vmm_context_t *vmm)
{
    uint32_t i;
    for (i = 0; i < vmm->processor_count; i++)
        free_vcpu(vmm->vcpu_table[i]);
    ExFreePoolWithTag(vmm->vcpu_table, VMM_TAG);
    ExFreePoolWithTag(vmm, VMM_TAG);
}

/* Run on processor `number` only, for the duration of fn. */
static int run_on_processor(uint32_t number, int (*fn)(struct __vcpu_t *), struct __vcpu_t *vcpu)
{
    PROCESSOR_NUMBER pn;
    GROUP_AFFINITY affinity, previous;
    int ok;
    if (!NT_SUCCESS(KeGetProcessorNumberFromIndex(number, &pn)))
        return 0;
    RtlZeroMemory(&affinity, sizeof(affinity));
    affinity.Group = pn.Group;
    affinity.Mask = (KAFFINITY)1 << pn.Number;
    KeSetSystemGroupAffinityThread(&affinity, &previous);
    ok = fn(vcpu);
    KeRevertToUserGroupAffinityThread(&previous);
    return ok;
}

static int virtualize_processor(struct __vcpu_t *vcpu)
{
    KIRQL irql;
    int ok = 0;
    if (vcpu == NULL || !vcpu->vmxon || !vcpu->vmcs || !vcpu->msr_bitmap || !vcpu->stack)
        return 0;
    KeRaiseIrql(DISPATCH_LEVEL, &irql);
    if (vmx_enter_root(vcpu) && init_vmcs(vcpu)) {
        ok = asm_launch(vcpu);
        if (!ok) {
            vmm_log(VMM_LOG_ERROR, "[sevendays] cpu %u: VMLAUNCH failed, VM-instruction error %u\n",
                    vcpu->processor_number, vcpu->vm_instruction_error);
            vmx_leave_root();
        }
    }
    KeLowerIrql(irql);
    vcpu->launched = (uint32_t)ok;
    if (ok)
        vmm_log(VMM_LOG_INFO, "[sevendays] cpu %u: running as a guest\n", vcpu->processor_number);
    return ok;
}

static int devirtualize_processor(struct __vcpu_t *vcpu)
{
    if (vcpu != NULL && vcpu->launched) {
        asm_hypercall(VMM_HYPERCALL_DEVIRTUALIZE);
        vcpu->launched = 0;
    }
    return 1;
}

static void stop_vmm(struct __vmm_context_t *vmm)
{
    uint32_t i;
    for (i = 0; i < vmm->processor_count; i++)
        run_on_processor(i, devirtualize_processor, vmm->vcpu_table[i]);
    free_vmm_context(vmm);
}

static VOID driver_unload(PDRIVER_OBJECT driver)
{
    UNREFERENCED_PARAMETER(driver);
    if (g_vmm_context != NULL)
        stop_vmm(g_vmm_context);
    g_vmm_context = NULL;
    vmm_log(VMM_LOG_INFO, "[sevendays] unloaded\n");
}

NTSTATUS DriverEntry(PDRIVER_OBJECT driver, PUNICODE_STRING registry_path)
{
    struct __vmm_context_t *vmm;
    uint32_t i;
    UNREFERENCED_PARAMETER(registry_path);

    if (!vmx_support_detection()) {
        vmm_log(VMM_LOG_ERROR, "[sevendays] VMX is not supported on this processor\n");
        return STATUS_NOT_SUPPORTED;
    }
    vmm = allocate_vmm_context();
    if (vmm == NULL)
        return STATUS_INSUFFICIENT_RESOURCES;
    vmm_log(VMM_LOG_INFO, "[sevendays] %u processors, VMM context at %p\n", vmm->processor_count, (void *)vmm);
    g_vmm_context = vmm;   /* published first: a debugger finds it even if a processor fails */
    for (i = 0; i < vmm->processor_count; i++) {
        if (!run_on_processor(i, virtualize_processor, vmm->vcpu_table[i])) {
            vmm_log(VMM_LOG_ERROR, "[sevendays] cpu %u could not be virtualized: undoing\n", i);
            g_vmm_context = NULL;
            stop_vmm(vmm);
            return STATUS_UNSUCCESSFUL;
        }
    }
    driver->DriverUnload = driver_unload;
    return STATUS_SUCCESS;
}
