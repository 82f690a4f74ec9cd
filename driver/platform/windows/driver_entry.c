/*
 * Windows platform layer: DriverEntry/DriverUnload, the \Callback\PowerState
 * registration, and the platform interface (include/hv_platform.h) with
 * ntoskrnl: memory, running on one processor (thread affinity, no IPIs or DPC
 * barriers), IRQL, DbgPrintEx logging, status codes, the bugcheck. What to do,
 * in which order, is core/hv_load.c's. Imports: see docs/driver.md.
 */
#include <ntddk.h>
#include <stdarg.h>
#include "hv_load.h"
#include "hv_platform.h"
#include "hv_status.h"

#define HV_POOL_TAG 0x62614C48u /* 'HLab' */
#define HV_PAGE 4096u

#ifndef STATUS_HV_FEATURE_UNAVAILABLE
#define STATUS_HV_FEATURE_UNAVAILABLE ((NTSTATUS)0xC035001EL) /* ntstatus.h; older headers lack it */
#endif

DRIVER_INITIALIZE DriverEntry;
static DRIVER_UNLOAD HvDriverUnload;
static CALLBACK_FUNCTION HvPowerCallback;

static HV_VMM_CONTEXT *g_Vmm;
static PCALLBACK_OBJECT g_PowerState;      /* \Callback\PowerState, referenced */
static PVOID g_PowerRegistration;

/* ---- the platform interface ------------------------------------------------ */
/* include/hv_status.h: each HV_STATUS's NTSTATUS column. */
#define HV_STATUS_NT_ENTRY(name, os_code, message) os_code,
static const NTSTATUS HvNtStatus[HV_STATUS_COUNT] = { HV_STATUS_TABLE(HV_STATUS_NT_ENTRY) };

int32_t HvPlatformStatusCode(HV_STATUS status)
{
    if ((uint32_t)status >= (uint32_t)HV_STATUS_COUNT)
        return STATUS_UNSUCCESSFUL;
    return HvNtStatus[status];
}

HV_NORETURN void HvPlatformBugCheck(uint32_t subcode, uint64_t p2, uint64_t p3, uint64_t p4)
{
    KeBugCheckEx(HV_BUGCHECK_CODE, subcode, (ULONG_PTR)p2, (ULONG_PTR)p3, (ULONG_PTR)p4);
}

/* DbgPrintEx under DPFLTR_IHVDRIVER_ID: the Debug Print Filter
 * (Kd_IHVDRIVER_Mask) decides what the debugger shows. HV_LOG_* are the
 * DPFLTR_*_LEVEL values. */
void HvPlatformLog(uint32_t level, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    (void)vDbgPrintEx(DPFLTR_IHVDRIVER_ID, level, format, args);
    va_end(args);
}

void *HvPlatformAllocPage(uint64_t *pa)
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

void HvPlatformFreePage(void *va)
{
    MmFreeContiguousMemory(va);
}

void *HvPlatformAlloc(size_t bytes)
{
    void *va = ExAllocatePoolWithTag(NonPagedPoolNx, bytes, HV_POOL_TAG);
    if (va != NULL)
        RtlZeroMemory(va, bytes);
    return va;
}

void HvPlatformFree(void *va)
{
    ExFreePoolWithTag(va, HV_POOL_TAG);
}

uint32_t HvPlatformProcessorCount(void)
{
    return KeQueryActiveProcessorCountEx(ALL_PROCESSOR_GROUPS);
}

HV_STATUS HvPlatformRunOn(uint32_t index, HV_PLATFORM_PER_CPU fn, void *context)
{
    PROCESSOR_NUMBER pn;
    GROUP_AFFINITY affinity, previous;
    HV_STATUS status;
    if (!NT_SUCCESS(KeGetProcessorNumberFromIndex(index, &pn)))
        return HV_STATUS_INVALID_PROCESSOR;
    RtlZeroMemory(&affinity, sizeof(affinity));
    affinity.Group = pn.Group;
    affinity.Mask = (KAFFINITY)1 << pn.Number;
    /* The thread now runs only on that processor; back to normal after. */
    KeSetSystemGroupAffinityThread(&affinity, &previous);
    status = fn(context);
    KeRevertToUserGroupAffinityThread(&previous);
    return status;
}

uint32_t HvPlatformDisablePreemption(void)
{
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    return old;
}

void HvPlatformRestorePreemption(uint32_t previous)
{
    KeLowerIrql((KIRQL)previous);
}

/* ---- power transitions ------------------------------------------------------ */
/* \Callback\PowerState (PO_CB_SYSTEM_STATE_LOCK): Argument2 = 0 before a
 * sleep state, 1 after resume. The processors come back from firmware with
 * VMX off (SDM Vol. 3 25.11.1), so leave before and enter again after, the
 * way SimpleVisor and HyperPlatform do. Called at PASSIVE_LEVEL. */
static VOID HvPowerCallback(PVOID context, PVOID argument1, PVOID argument2)
{
    HV_VMM_CONTEXT *vmm = (HV_VMM_CONTEXT *)context;
    if ((ULONG_PTR)argument1 != PO_CB_SYSTEM_STATE_LOCK || vmm == NULL)
        return;
    if (argument2 == NULL)
        HvBeforeSleep(vmm);
    else
        HvAfterResume(vmm);
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

/* ---- entry points --------------------------------------------------------------- */
static VOID HvDriverUnload(PDRIVER_OBJECT driver)
{
    UNREFERENCED_PARAMETER(driver);
    HvUnregisterPowerCallback();
    HvUnload(g_Vmm);
    g_Vmm = NULL;
}

NTSTATUS DriverEntry(PDRIVER_OBJECT driver, PUNICODE_STRING registry_path)
{
    HV_STATUS status;
    UNREFERENCED_PARAMETER(registry_path);

    status = HvLoad(&g_Vmm);
    if (!HV_SUCCESS(status))
        return HvPlatformStatusCode(status);
    driver->DriverUnload = HvDriverUnload;
    if (!NT_SUCCESS(HvRegisterPowerCallback(g_Vmm)))
        HV_LOG(HV_LOG_WARNING, "hv: no \\Callback\\PowerState: sleep states will end VMX operation unnoticed "
               "(unload stays safe)\n");
    return STATUS_SUCCESS;
}
