/*
 * hv_platform.h -- the one service core/ takes from the platform layer.
 * core/ makes no OS calls and does not log (it records state in the vCPU and
 * the descriptor; platform/windows/ logs). Its only way out is the bugcheck
 * after an exit it cannot handle: KeBugCheckEx on Windows.
 */
#ifndef HV_PLATFORM_H
#define HV_PLATFORM_H

#include "hv_types_base.h"

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
