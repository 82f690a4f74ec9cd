/*
 * hv_asm.h -- routines in platform/windows/hv_asm.asm (MASM; llvm-ml here,
 * ml64 on Windows): what C cannot express portably (MSVC x64 has no inline asm).
 */
#ifndef HV_ASM_H
#define HV_ASM_H

#include "hv_types_base.h"
#include "hv_arch.h"

struct HV_VCPU;

/* Guest general-purpose registers as HvAsmVmExit saves them (order fixed by
 * the push sequence in hv_asm.asm; Rsp is a placeholder on exit: the guest
 * RSP lives in the VMCS). */
typedef struct HV_GUEST_REGISTERS {
    uint64_t Rax, Rcx, Rdx, Rbx, Rsp, Rbp, Rsi, Rdi;
    uint64_t R8, R9, R10, R11, R12, R13, R14, R15;
} HV_GUEST_REGISTERS;
HV_STATIC_ASSERT(guest_regs_size, sizeof(HV_GUEST_REGISTERS) == 0x80);

uint16_t HvAsmReadCs(void);
uint16_t HvAsmReadSs(void);
uint16_t HvAsmReadDs(void);
uint16_t HvAsmReadEs(void);
uint16_t HvAsmReadFs(void);
uint16_t HvAsmReadGs(void);
uint16_t HvAsmReadTr(void);
uint16_t HvAsmReadLdtr(void);
void HvAsmSgdt(DESCRIPTOR_TABLE_REGISTER *gdtr);
void HvAsmSidt(DESCRIPTOR_TABLE_REGISTER *idtr);
void HvAsmLgdt(const DESCRIPTOR_TABLE_REGISTER *gdtr);
void HvAsmLidt(const DESCRIPTOR_TABLE_REGISTER *idtr);
/* Loads DS, ES, FS, GS (FS/GS bases come from the GDT: write the base MSRs after). */
void HvAsmLoadDataSelectors(uint16_t ds, uint16_t es, uint16_t fs, uint16_t gs);

/* Saves the non-volatile state, calls HvCoreLaunchFromStub(vcpu, rsp, rip)
 * with the resume point; returns 1 when the processor now runs as a guest
 * (VMLAUNCH succeeded and the guest continued at the resume point), 0 when
 * HvCoreLaunchFromStub returned (VMLAUNCH failed). */
uint64_t HvAsmLaunch(struct HV_VCPU *vcpu);

/* HOST_RIP: saves guest GPRs and XMM0-5 (XMM6-15 are callee-saved), calls HvCoreHandleExit(regs, vcpu);
 * nonzero -> VMRESUME, zero -> leave VMX: load the GPRs, switch to regs->Rsp,
 * POPFQ, RET (the handler prepared RFLAGS and RIP on the guest stack). When
 * VMRESUME fails it continues in HvAsmVmResumeFailed (same frame), which
 * calls HvCoreHandleResumeFailure. Both have unwind data (PROC FRAME). */
void HvAsmVmExit(void);

/* Exported (hv.def), never called by the driver: VMCALL; INT3. A debugger runs
 * it on a virtualized processor with RAX = HV_HYPERCALL_SIGNATURE, RCX =
 * HV_HYPERCALL_SNAPSHOT to refresh that vCPU's VMCS snapshot (docs/windbg.md). */
void HvSnapshotGadget(void);

/* VMCALL with RAX = HV_HYPERCALL_SIGNATURE, RCX = function, RDX = argument. */
uint64_t HvAsmHypercall(uint64_t function, uint64_t argument);

/* The guest's hypercall, made by this processor to the parent hypervisor
 * (Hyper-V register convention, TLFS 3.7): RCX, RDX, R8 and XMM0-5 from the
 * saved guest state in; RAX, RDX, R8 and XMM0-5 back into it. regs must be
 * the block HvAsmVmExit saved (its XMM area lies just below it). */
void HvAsmParentHypercall(HV_GUEST_REGISTERS *regs);

/* Called from the stubs (defined in core/). */
void HvCoreLaunchFromStub(struct HV_VCPU *vcpu, uint64_t guest_rsp, uint64_t guest_rip);
uint8_t HvCoreHandleExit(HV_GUEST_REGISTERS *regs, struct HV_VCPU *vcpu);
/* Records the VM-instruction error and bugchecks: does not return. */
void HvCoreHandleResumeFailure(HV_GUEST_REGISTERS *regs, struct HV_VCPU *vcpu);

#endif
