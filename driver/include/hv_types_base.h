/*
 * Fixed-width integer types for every header shared between the driver, the
 * host-side tests and the Python suite. `unsigned long` is 32-bit on Windows
 * (LLP64) and 64-bit on Linux (LP64): shared structures never use it.
 *
 * The WDK's kernel-mode include path has no <stdint.h>; everywhere else
 * (mingw-w64, clang, the host compiler) the freestanding header exists.
 */
#ifndef HV_TYPES_BASE_H
#define HV_TYPES_BASE_H

#if defined(_MSC_VER) && defined(_KERNEL_MODE)
typedef unsigned __int8 uint8_t;
typedef unsigned __int16 uint16_t;
typedef unsigned __int32 uint32_t;
typedef unsigned __int64 uint64_t;
typedef __int32 int32_t;
typedef __int64 int64_t;
#ifndef _UINTPTR_T_DEFINED
#define _UINTPTR_T_DEFINED
typedef unsigned __int64 uintptr_t;
#endif
#else
#include <stdint.h>
#endif
#include <stddef.h>

/* A compile-time check that also works in C99 (no _Static_assert needed). */
#define HV_STATIC_ASSERT(name, cond) typedef char hv_static_assert_##name[(cond) ? 1 : -1]

#endif
