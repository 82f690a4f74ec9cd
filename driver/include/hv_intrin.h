/*
 * hv_intrin.h -- processor instructions the core needs.
 *
 * MSVC: its real intrinsics (<intrin.h>: __vmx_*, __readmsr, __cpuidex, ...).
 * gcc/clang (mingw-w64 has no __vmx_* intrinsics): inline-asm replacements
 * under the MSVC names and signatures for __vmx_*, and hv_* wrappers for the
 * rest (mingw's intrin.h already defines __readmsr & co. with slightly
 * different types, so the wrappers avoid clashing with it).
 *
 * __vmx_* return 0 on success, 1 on VMfailValid (ZF, error number in the
 * VM-instruction error field), 2 on VMfailInvalid (CF) -- SDM Vol. 3 31.2.
 * Instructions that MSVC has no intrinsic for (segment selectors, SGDT/LGDT,
 * the launch/exit stubs) live in platform/windows/hv_asm.asm (hv_asm.h).
 */
#ifndef HV_INTRIN_H
#define HV_INTRIN_H

#include "hv_types_base.h"

#define HV_VMX_OK 0u
#define HV_VMX_FAIL_VALID 1u
#define HV_VMX_FAIL_INVALID 2u

#if defined(_MSC_VER)
#include <intrin.h>
#define hv_rdmsr(msr) __readmsr(msr)
#define hv_wrmsr(msr, v) __writemsr((msr), (v))
#define hv_read_cr0() __readcr0()
#define hv_read_cr3() __readcr3()
#define hv_read_cr4() __readcr4()
#define hv_write_cr0(v) __writecr0(v)
#define hv_write_cr3(v) __writecr3(v)
#define hv_write_cr4(v) __writecr4(v)
#define hv_read_dr7() __readdr(7)
#define hv_write_dr7(v) __writedr(7, (v))
#define hv_read_rflags() __readeflags()
#define hv_wbinvd() __wbinvd()
#define hv_xsetbv(xcr, v) _xsetbv((xcr), (v))
static __inline void hv_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t regs[4])
{
    __cpuidex((int *)regs, (int)leaf, (int)subleaf);
}
#else

static inline uint64_t hv_rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ __volatile__("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}
static inline void hv_wrmsr(uint32_t msr, uint64_t value)
{
    __asm__ __volatile__("wrmsr" ::"c"(msr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32)) : "memory");
}
#define HV_READ_CR(n)                                                        \
    static inline uint64_t hv_read_cr##n(void)                               \
    {                                                                        \
        uint64_t v;                                                          \
        __asm__ __volatile__("mov %%cr" #n ", %0" : "=r"(v));                \
        return v;                                                            \
    }                                                                        \
    static inline void hv_write_cr##n(uint64_t v)                            \
    {                                                                        \
        __asm__ __volatile__("mov %0, %%cr" #n ::"r"(v) : "memory");         \
    }
HV_READ_CR(0)
HV_READ_CR(3)
HV_READ_CR(4)
#undef HV_READ_CR
static inline uint64_t hv_read_dr7(void)
{
    uint64_t v;
    __asm__ __volatile__("mov %%dr7, %0" : "=r"(v));
    return v;
}
static inline void hv_write_dr7(uint64_t v)
{
    __asm__ __volatile__("mov %0, %%dr7" ::"r"(v));
}
static inline uint64_t hv_read_rflags(void)
{
    uint64_t v;
    __asm__ __volatile__("pushfq; popq %0" : "=r"(v));
    return v;
}
static inline void hv_wbinvd(void)
{
    __asm__ __volatile__("wbinvd" ::: "memory");
}
static inline void hv_xsetbv(uint32_t xcr, uint64_t value)
{
    __asm__ __volatile__("xsetbv" ::"c"(xcr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32)));
}
static inline void hv_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t regs[4])
{
    __asm__ __volatile__("cpuid" : "=a"(regs[0]), "=b"(regs[1]), "=c"(regs[2]), "=d"(regs[3]) : "a"(leaf), "c"(subleaf));
}

/* VMX instructions (SDM Vol. 3 Ch. 31) under MSVC's intrinsic names. */
static inline unsigned char hv_vmx_status(unsigned char zf, unsigned char cf)
{
    return zf ? HV_VMX_FAIL_VALID : (cf ? HV_VMX_FAIL_INVALID : HV_VMX_OK);
}
static inline unsigned char __vmx_on(uint64_t *pa)
{
    unsigned char zf, cf;
    __asm__ __volatile__("vmxon %2; setz %0; setc %1" : "=qm"(zf), "=qm"(cf) : "m"(*pa) : "cc", "memory");
    return hv_vmx_status(zf, cf);
}
static inline void __vmx_off(void)
{
    __asm__ __volatile__("vmxoff" ::: "cc", "memory");
}
static inline unsigned char __vmx_vmclear(uint64_t *pa)
{
    unsigned char zf, cf;
    __asm__ __volatile__("vmclear %2; setz %0; setc %1" : "=qm"(zf), "=qm"(cf) : "m"(*pa) : "cc", "memory");
    return hv_vmx_status(zf, cf);
}
static inline unsigned char __vmx_vmptrld(uint64_t *pa)
{
    unsigned char zf, cf;
    __asm__ __volatile__("vmptrld %2; setz %0; setc %1" : "=qm"(zf), "=qm"(cf) : "m"(*pa) : "cc", "memory");
    return hv_vmx_status(zf, cf);
}
static inline unsigned char __vmx_vmread(size_t field, size_t *value)
{
    unsigned char zf, cf;
    size_t v = 0;
    __asm__ __volatile__("vmread %3, %0; setz %1; setc %2" : "=r"(v), "=qm"(zf), "=qm"(cf) : "r"(field) : "cc");
    *value = v;
    return hv_vmx_status(zf, cf);
}
static inline unsigned char __vmx_vmwrite(size_t field, size_t value)
{
    unsigned char zf, cf;
    __asm__ __volatile__("vmwrite %3, %2; setz %0; setc %1" : "=qm"(zf), "=qm"(cf) : "r"(field), "rm"(value) : "cc", "memory");
    return hv_vmx_status(zf, cf);
}
static inline unsigned char __vmx_vmlaunch(void)
{
    unsigned char zf, cf;
    __asm__ __volatile__("vmlaunch; setz %0; setc %1" : "=qm"(zf), "=qm"(cf)::"cc", "memory");
    return hv_vmx_status(zf, cf);
}
#endif

/* VMREAD/VMWRITE with the field catalogue's 32-bit encodings. */
static __inline uint64_t hv_vmread(uint32_t field)
{
    size_t value = 0;
    if (__vmx_vmread(field, &value) != HV_VMX_OK)
        return 0;
    return (uint64_t)value;
}
static __inline unsigned char hv_vmwrite(uint32_t field, uint64_t value)
{
    return __vmx_vmwrite(field, (size_t)value);
}

/* The VM-exit path's VMREAD/VMWRITE: a VMCS is current and the field is one
 * every VMX processor supports (and writable), so the instruction cannot fail
 * (SDM Vol. 3 31.3 VMREAD/VMWRITE: VMfail only without a current VMCS, for an
 * unsupported field, or a VMWRITE to a read-only one). No status is taken:
 * 4-5 instructions less per access on every exit (docs/lab.md "Benchmark"). */
static __inline uint64_t hv_vmread_current(uint32_t field)
{
#if defined(_MSC_VER)
    size_t value = 0;
    (void)__vmx_vmread(field, &value);
    return (uint64_t)value;
#else
    uint64_t value;
    __asm__ __volatile__("vmread %1, %0" : "=r"(value) : "r"((uint64_t)field) : "cc");
    return value;
#endif
}
static __inline void hv_vmwrite_current(uint32_t field, uint64_t value)
{
#if defined(_MSC_VER)
    (void)__vmx_vmwrite(field, (size_t)value);
#else
    __asm__ __volatile__("vmwrite %1, %0" : : "r"((uint64_t)field), "r"(value) : "cc", "memory");
#endif
}

#endif
