/*
 * vmm.h -- the sevendays hypervisor's data, named the way the
 * "7 Days to Virtualization" series names it.
 *
 *   g_vmm_context -> struct __vmm_context_t
 *                      processor_count
 *                      vcpu_table -> struct __vcpu_t *[processor_count]
 *                                      vmxon / vmxon_physical       (Day 2)
 *                                      vmcs / vmcs_physical         (Day 3)
 *                                      msr_bitmap / msr_bitmap_physical
 *                                      stack                        (host stack, Day 5)
 *
 * No debug descriptor, no VMCS snapshot: the debugger suite finds all of
 * this from the PDB (windbg_ext --symbols) or by scanning memory.
 */
#ifndef SEVENDAYS_VMM_H
#define SEVENDAYS_VMM_H

#include "hv_types_base.h"

#define VMM_TAG 0x53595644u       /* 'DVYS' */
#define VMM_STACK_SIZE 0x6000u    /* host stack per processor */
#define VMM_HYPERCALL_DEVIRTUALIZE 0x7D415953ull  /* RCX of the VMCALL that ends it */

struct __vmm_context_t;

struct __vcpu_t {
    struct __vmm_context_t *vmm_context;
    uint32_t processor_number;
    uint32_t launched;

    void *vmxon;                       /* Day 2: the VMXON region (4 KiB) */
    uint64_t vmxon_physical;
    void *vmcs;                        /* Day 3: the VMCS region (4 KiB) */
    uint64_t vmcs_physical;
    void *msr_bitmap;                  /* all zero: no MSR exits in its ranges */
    uint64_t msr_bitmap_physical;
    void *stack;                       /* Day 5: host stack, VMM_STACK_SIZE bytes */

    uint64_t exit_count;
    uint32_t last_exit_reason;
    uint32_t vm_instruction_error;
};

struct __vmm_context_t {
    uint32_t processor_count;
    struct __vcpu_t **vcpu_table;
    uint64_t vmx_basic;                /* IA32_VMX_BASIC, read once */
};

/* What the exit stub saves (asm.asm pushes them in this order). */
struct __vmexit_guest_registers_t {
    uint64_t rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
};

extern struct __vmm_context_t *g_vmm_context;

/* vmxon.c (Days 1-2) */
int vmx_support_detection(void);
int vmx_enter_root(struct __vcpu_t *vcpu);
void vmx_leave_root(void);

/* vmcs.c (Days 3-4) */
int init_vmcs(struct __vcpu_t *vcpu);
int vmx_launch(struct __vcpu_t *vcpu, uint64_t guest_rsp, uint64_t guest_rip);
uint64_t vmx_adjust_controls(uint32_t msr, uint32_t wanted);

/* vmexit.c (Day 5) */
int vmexit_handler(struct __vmexit_guest_registers_t *regs, struct __vcpu_t *vcpu);

/* asm.asm */
int asm_launch(struct __vcpu_t *vcpu);     /* 1: now a guest, 0: VMLAUNCH failed */
void asm_vmexit(void);                     /* HOST_RIP */
uint64_t asm_hypercall(uint64_t code);
uint16_t asm_read_cs(void);
uint16_t asm_read_ss(void);
uint16_t asm_read_ds(void);
uint16_t asm_read_es(void);
uint16_t asm_read_fs(void);
uint16_t asm_read_gs(void);
uint16_t asm_read_tr(void);
uint16_t asm_read_ldtr(void);
uint32_t asm_load_ar(uint16_t selector);   /* LAR */
uint32_t asm_segment_limit(uint16_t selector); /* LSL */
void asm_sgdt(void *gdtr);
void asm_sidt(void *idtr);

/* driver.c: the only file that includes <ntddk.h> (mingw's ntddk.h defines
 * non-static helpers: two files including it do not link with lld).
 * Messages go to DbgPrintEx(DPFLTR_IHVDRIVER_ID, level, ...) and start with
 * "[sevendays] " (see: windbg_ext dbgfilter if you do not see them). */
#define VMM_LOG_ERROR 0u   /* DPFLTR_ERROR_LEVEL */
#define VMM_LOG_INFO 3u    /* DPFLTR_INFO_LEVEL */
void vmm_log(uint32_t level, const char *format, ...);
void vmm_crash(uint32_t code, uint64_t p1, uint64_t p2, uint64_t p3);  /* KeBugCheckEx */

#endif
