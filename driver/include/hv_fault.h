/*
 * hv_fault.h -- the lab exercises' compile-time faults (docs/exercises.md).
 *
 * A normal build defines none of this: HV_FAULT is HV_FAULT_NONE and every
 * `#if HV_FAULT == HV_FAULT_<NAME>` block in the driver compiles away. An
 * exercise build (driver/Makefile `exercise` target) passes
 *   -DHV_FAULT=HV_FAULT_<NAME> -DHV_FAULT_CPU=<processor> -DHV_FAULT_ARG=<detail>
 * and exactly one block -- written at the spot where a beginner makes that
 * mistake -- breaks the driver the way the exercise's story says. The student
 * then finds the cause with the suite, on what the emulated CPU did.
 *
 * The same switches work in driver/examples/sevendays (its faults are named
 * SEVENDAYS_*). The names are read by emulated_lab/exercises (one id per line, below);
 * adding a fault = one line here + one #if block at its spot + one exercise.
 */
#ifndef HV_FAULT_H
#define HV_FAULT_H

#define HV_FAULT_NONE 0
#define HV_FAULT_VMXON_REVISION 1        /* VMXON region: a hard-coded revision id (ARG) on processor CPU */
#define HV_FAULT_VMXON_UNALIGNED 2       /* VMXON operand: region PA + ARG bytes on processor CPU */
#define HV_FAULT_VMCS_REVISION 3         /* VMCS region: revision id never written on processor CPU */
#define HV_FAULT_MSR_BITMAP_DIRTY 4      /* MSR bitmap of processor CPU holds stale bytes ARG, not zeros */
#define HV_FAULT_SKIP_PROCESSOR 5        /* per-processor routine skips processor 0 (ARG 0) or the last (ARG 1) */
#define HV_FAULT_CONTROL_RAW 6           /* control ARG (0 pin, 1 proc, 2 exit, 3 entry) written unadjusted */
#define HV_FAULT_CONTROL_AFTER_MASK 7    /* control ARG / 32 gets bit ARG % 32 after the capability mask */
#define HV_FAULT_HOST_CR4_NO_VMXE 8      /* host CR4 = CR4 as it was before VMXE, on processor CPU */
#define HV_FAULT_HOST_TR_ZERO 9          /* host TR selector 0 on processor CPU */
#define HV_FAULT_HOST_RIP_NONCANONICAL 10 /* host RIP with bit ARG flipped on processor CPU */
#define HV_FAULT_GUEST_TR_AVAILABLE 11   /* guest TR access rights typed in as 0x89 on processor CPU */
#define HV_FAULT_GUEST_CR0_BIT 12        /* guest CR0 with bit ARG cleared on processor CPU */
#define HV_FAULT_GUEST_SEGMENT_NOT_PRESENT 13 /* guest segment ARG (0 ES .. 5 GS) access rights without P */
#define HV_FAULT_GUEST_LINK_POINTER 14   /* VMCS link pointer written as ARG instead of ~0 on processor CPU */
#define HV_FAULT_RIP_NOT_ADVANCED 15     /* the handler of exit reason ARG returns without advancing guest RIP */
#define HV_FAULT_NO_SECONDARY_CONTROLS 16 /* ARG 0: "activate secondary controls" never set; 1: no "enable RDTSCP" */
#define HV_FAULT_SEVENDAYS_MSR_BITMAP_DIRTY 17 /* examples/sevendays: processor CPU's MSR bitmap holds bytes ARG */
#define HV_FAULT_CR_FIXED_BIT 18         /* before VMXON on processor CPU: bit ARG % 32 of CR0 (ARG < 32) or CR4 cleared */
#define HV_FAULT_GUEST_ACTIVITY_UNWRITTEN 19 /* GUEST_ACTIVITY_STATE never VMWRITten on processor CPU */
#define HV_FAULT_DEBUG_CONTROLS_DROPPED 20 /* processor CPU: ARG 1 no "save debug controls", 2 no "load", 3 neither */
#define HV_FAULT_CR4_FIXED1_IGNORED 21  /* every processor: the CR4 bits the OS set count as allowed by CR4_FIXED1 */

#ifndef HV_FAULT
#define HV_FAULT HV_FAULT_NONE
#endif
#ifndef HV_FAULT_CPU
#define HV_FAULT_CPU 0
#endif
#ifndef HV_FAULT_ARG
#define HV_FAULT_ARG 0
#endif

#endif /* HV_FAULT_H */
