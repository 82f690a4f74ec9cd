/*
 * hv_platform.h -- everything core/ takes from the operating system.
 *
 * core/ (the VMX code and the load/teardown orchestration in core/hv_load.c)
 * makes no OS call of its own: it asks for memory, processors, logging and
 * the bugcheck through these functions. platform/windows/driver_entry.c
 * implements them with ntoskrnl; a port to another OS implements this file
 * and nothing else (the SimpleVisor "ShvOs*" / MiniVisor Platform.h shape).
 */
#ifndef HV_PLATFORM_H
#define HV_PLATFORM_H

#include "hv_types_base.h"
#include "hv_status.h"
#include "hv_fault.h"

/* ---- memory: every allocation is zeroed and non-executable ---------------- */
/* One 4 KiB page, physically contiguous and write-back (the VMXON region,
 * VMCS and MSR bitmap: SDM Vol. 3 App. A.1 memory type, 25.6.9); *pa = its
 * physical address. NULL when out of memory. */
void *HvPlatformAllocPage(uint64_t *pa);
void HvPlatformFreePage(void *va);
/* Non-paged memory (the VMM context, the vCPU array, host stacks). */
void *HvPlatformAlloc(size_t bytes);
void HvPlatformFree(void *va);

/* ---- processors ---------------------------------------------------------- */
/* Active logical processors; indexes 0 .. count-1. */
uint32_t HvPlatformProcessorCount(void);
/* Runs fn(context) on processor index (the calling thread moves there and
 * back: one processor at a time, no IPIs). Returns fn's status. */
typedef HV_STATUS (*HV_PLATFORM_PER_CPU)(void *context);
HV_STATUS HvPlatformRunOn(uint32_t index, HV_PLATFORM_PER_CPU fn, void *context);
/* No preemption or thread switch on this processor until the restore (Windows:
 * DISPATCH_LEVEL): nothing may run between VMXON and VMLAUNCH. */
uint32_t HvPlatformDisablePreemption(void);
void HvPlatformRestorePreemption(uint32_t previous);

/* ---- status, logging, the last resort ------------------------------------ */
/* The OS's own code for a status (NTSTATUS on Windows): what the descriptor,
 * the vCPU and the loader see. A table lookup, safe in VM-exit context. */
int32_t HvPlatformStatusCode(HV_STATUS status);

/* Log levels (the Windows layer passes them as DbgPrintEx levels, same values). */
#if HV_FAULT == HV_FAULT_NONE
#define HV_LOG_ERROR 0u
#else
/* A lab exercise's build (docs/exercises.md) is a student's driver that logs its
 * failures at TRACE level, which a stock Debug Print Filter drops: the student
 * finds the cause with the suite, not in a log line that names it. */
#define HV_LOG_ERROR 2u
#endif
#define HV_LOG_WARNING 1u
#define HV_LOG_TRACE 2u
#define HV_LOG_INFO 3u
/* printf-style, the kernel's dialect: "%llx" for 64-bit values (LLP64 makes
 * %lx 32-bit). Never from VM-exit handlers (host context, interrupts off):
 * core/ records state there instead. */
void HvPlatformLog(uint32_t level, const char *format, ...);
#define HV_LOG(level, ...) HvPlatformLog((level), __VA_ARGS__)

/* Stops the machine with a crash dump (the exit handler's last resort after
 * it recorded the state and took the snapshot). Does not return. */
#define HV_BUGCHECK_CODE 0x48564C42u /* "HVLB" */
#define HV_BUGCHECK_TRIPLE_FAULT 1u
#define HV_BUGCHECK_UNEXPECTED_EXIT 2u
#define HV_BUGCHECK_ENTRY_FAILURE 3u
#define HV_BUGCHECK_VMRESUME_FAILED 4u /* P2 = VM-instruction error (SDM 31.4) */
#define HV_BUGCHECK_INIT_SIGNAL 5u     /* INIT arrived in VMX non-root (exit reason 3, SDM 26.2) */
#define HV_BUGCHECK_SIPI 6u            /* start-up IPI in wait-for-SIPI (exit reason 4, SDM 26.2) */
#if defined(_MSC_VER)
#define HV_NORETURN __declspec(noreturn)
#else
#define HV_NORETURN __attribute__((noreturn))
#endif
HV_NORETURN void HvPlatformBugCheck(uint32_t subcode, uint64_t p2, uint64_t p3, uint64_t p4);

#endif
