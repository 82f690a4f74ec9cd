/*
 * intrin.h for `make -C driver msvc-check` only: the MSVC x64 intrinsics
 * include/hv_intrin.h uses, with the signatures of Microsoft's "Compiler
 * intrinsics" reference (x64). Declarations only; it stands in for MSVC's
 * <intrin.h> (clang's own pulls in the CRT's <stdlib.h>, which is not here).
 */
#ifndef HV_MSVC_CHECK_INTRIN_H
#define HV_MSVC_CHECK_INTRIN_H

#include <stddef.h>

void __cpuidex(int cpuInfo[4], int function_id, int subfunction_id);
unsigned __int64 __readmsr(unsigned long reg);
void __writemsr(unsigned long reg, unsigned __int64 value);
unsigned __int64 __readcr0(void);
unsigned __int64 __readcr3(void);
unsigned __int64 __readcr4(void);
void __writecr0(unsigned __int64 data);
void __writecr3(unsigned __int64 data);
void __writecr4(unsigned __int64 data);
unsigned __int64 __readdr(unsigned int reg);
void __writedr(unsigned int reg, unsigned __int64 value);
unsigned __int64 __readeflags(void);
void __wbinvd(void);
void _xsetbv(unsigned int xcr, unsigned __int64 value);
void _ReadWriteBarrier(void);

unsigned char __vmx_on(unsigned __int64 *VmsSupportPhysicalAddress);
void __vmx_off(void);
unsigned char __vmx_vmclear(unsigned __int64 *VmcsPhysicalAddress);
unsigned char __vmx_vmptrld(unsigned __int64 *VmcsPhysicalAddress);
unsigned char __vmx_vmlaunch(void);
unsigned char __vmx_vmread(size_t Field, size_t *FieldValue);
unsigned char __vmx_vmwrite(size_t Field, size_t FieldValue);

#endif
