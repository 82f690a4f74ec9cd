/*
 * hv_log.h -- logging of the Windows platform layer: DbgPrintEx under
 * DPFLTR_IHVDRIVER_ID, so the Debug Print Filter (Kd_IHVDRIVER_Mask)
 * decides what the debugger shows. Formats: "%llx" for 64-bit values (LLP64
 * makes %lx 32-bit). Never from the VM-exit handlers (host context,
 * interrupts off): core/ records state there instead.
 */
#ifndef HV_LOG_H
#define HV_LOG_H

#include <ntddk.h>
#include "hv_fault.h"

#if HV_FAULT == HV_FAULT_NONE
#define HV_LOG_ERROR DPFLTR_ERROR_LEVEL     /* 0 */
#else
/* A lab exercise's build (docs/exercises.md) is a student's driver that logs its
 * failures at TRACE level, which a stock Debug Print Filter drops: the student
 * finds the cause with the suite, not in a log line that names it. */
#define HV_LOG_ERROR DPFLTR_TRACE_LEVEL
#endif
#define HV_LOG_WARNING DPFLTR_WARNING_LEVEL /* 1 */
#define HV_LOG_TRACE DPFLTR_TRACE_LEVEL     /* 2 */
#define HV_LOG_INFO DPFLTR_INFO_LEVEL       /* 3 */

#define HV_LOG(level, ...) ((void)DbgPrintEx(DPFLTR_IHVDRIVER_ID, (level), __VA_ARGS__))

#endif
