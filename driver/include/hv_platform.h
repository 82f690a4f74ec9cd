/*
 * hv_platform.h -- the few services core/ takes from the platform layer.
 * core/ makes no OS calls of its own; on Windows these are DbgPrintEx and
 * KeBugCheckEx (platform/windows/). Host-side unit tests compile only the
 * pure parts of core/ and never reach these.
 */
#ifndef HV_PLATFORM_H
#define HV_PLATFORM_H

#include "hv_types_base.h"

/* DbgPrintEx levels (DPFLTR_ERROR_LEVEL .. DPFLTR_INFO_LEVEL) and the
 * component id the driver logs under (DPFLTR_IHVDRIVER_ID = 77), so the
 * Debug Print Filter (Kd_IHVDRIVER_Mask) decides what is shown. */
#define HV_LOG_ERROR 0u
#define HV_LOG_WARNING 1u
#define HV_LOG_TRACE 2u
#define HV_LOG_INFO 3u
#define HV_LOG_COMPONENT_IHVDRIVER 77u

/* HV_LOG(level, format, ...): printf-style ("%llx" for 64-bit values: LLP64
 * makes %lx 32-bit), straight to DbgPrintEx so the import list stays one
 * function. Never from the VM-exit handlers (host context, interrupts off):
 * record in the vCPU instead. */
#if defined(_WIN32)
#if !defined(_WDMDDK_)
/* The ntoskrnl export as wdm.h declares it (ULONG = 32-bit unsigned long). */
__declspec(dllimport) unsigned long __cdecl DbgPrintEx(unsigned long ComponentId, unsigned long Level,
                                                       const char *Format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
#endif
#define HV_LOG(level, ...) ((void)DbgPrintEx(HV_LOG_COMPONENT_IHVDRIVER, (level), __VA_ARGS__))
#else
#define HV_LOG(level, ...) ((void)0) /* host-side unit tests */
#endif

/* Stops the machine with a crash dump (the exit handler's last resort after
 * it recorded the state and took the snapshot). Does not return. */
#define HV_BUGCHECK_CODE 0x48564C42u /* "HVLB" */
#define HV_BUGCHECK_TRIPLE_FAULT 1u
#define HV_BUGCHECK_UNEXPECTED_EXIT 2u
#define HV_BUGCHECK_ENTRY_FAILURE 3u
#if defined(_MSC_VER)
#define HV_NORETURN __declspec(noreturn)
#else
#define HV_NORETURN __attribute__((noreturn))
#endif
HV_NORETURN void HvPlatformBugCheck(uint32_t subcode, uint64_t p2, uint64_t p3, uint64_t p4);

#endif
