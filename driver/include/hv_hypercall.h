/*
 * hv_hypercall.h -- the VMCALL interface of hv.sys, and its CPUID leaves.
 *
 * Register convention (guest executes VMCALL, SDM Vol. 3 31.3 "VMCALL"):
 *   in : RAX = HV_HYPERCALL_SIGNATURE, RCX = function (HV_HYPERCALL_*),
 *        RDX = argument (unused by the current functions)
 *   out: RAX = HV_HCSTATUS_*; RCX/RDX as documented per function;
 *        other registers preserved; RIP advances past VMCALL.
 * Accepted only from CPL 0 (guest SS.DPL, SDM 25.4.1) with the signature in
 * RAX; anything else gets #UD injected, exactly as if no VMM were present
 * (SDM 27.6 event injection), so user mode cannot reach the VMM.
 */
#ifndef HV_HYPERCALL_H
#define HV_HYPERCALL_H

#include "hv_types_base.h"

#define HV_HYPERCALL_SIGNATURE 0x4D4D5662616C7668ULL /* "hvlabVMM" */

#define HV_HYPERCALL_PING 1u          /* out: RAX = OK, RCX = HV_PING_REPLY, RDX = processor index */
#define HV_HYPERCALL_SNAPSHOT 2u      /* VMREAD every field into this vCPU's snapshot; RCX = count */
#define HV_HYPERCALL_DEVIRTUALIZE 3u  /* leave VMX on this processor; the caller continues
                                         after VMCALL as a plain (non-VMX) processor, RAX = OK */

#define HV_HCSTATUS_OK 0u
#define HV_HCSTATUS_UNKNOWN_FUNCTION 1u

#define HV_PING_REPLY 0x474E4F5042414C48ULL /* "HLABPONG" */

/* CPUID leaves answered by the VMM (SDM Vol. 2A CPUID: 0x40000000-0x4FFFFFFF
 * are reserved for software use; CPUID.1:ECX[31] is set to say a VMM is present). */
#define HV_CPUID_LEAF_VENDOR 0x40000000u     /* EAX = max leaf, EBX:ECX:EDX = "hvlabhvlabhv" */
#define HV_CPUID_LEAF_INTERFACE 0x40000001u  /* EAX = HV_CPUID_INTERFACE ("hvl0"; never "Hv#1") */
#define HV_CPUID_MAX_LEAF HV_CPUID_LEAF_INTERFACE
#define HV_CPUID_VENDOR_EBX 0x616C7668u      /* "hvla" */
#define HV_CPUID_VENDOR_ECX 0x6C766862u      /* "bhvl" */
#define HV_CPUID_VENDOR_EDX 0x76686261u      /* "abhv" */
#define HV_CPUID_INTERFACE 0x306C7668u       /* "hvl0" */
/* CPUID 0x40000000 with ECX = this subleaf always answers with hvlab's vendor,
 * parent hypervisor or not: how the driver (and a debugger) tells that its VMM
 * still runs on a processor without risking VMCALL's #UD when it does not. */
#define HV_CPUID_PROBE_SUBLEAF 0x626C7668u   /* "hvlb" */

#endif
