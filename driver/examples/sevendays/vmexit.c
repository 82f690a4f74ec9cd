/*
 * Day 5: the VM-exit handler. asm_vmexit saved the guest's registers and
 * calls vmexit_handler(regs, vcpu); returning 1 resumes the guest
 * (VMRESUME), 0 means "we left VMX operation: continue the guest natively".
 */
#include "vmm.h"
#include "hv_arch.h"
#include "hv_intrin.h"
#include "hv_vmcs.h"

static void skip_instruction(void)
{
    hv_vmwrite(VMCS_GUEST_RIP, hv_vmread(VMCS_GUEST_RIP) + hv_vmread(VMCS_VMEXIT_INSTRUCTION_LENGTH));
}

/* Event injection (SDM 26.6): vector, type 3 = hardware exception, valid. */
static void inject_exception(uint32_t vector, int error_code)
{
    uint32_t info = INTR_INFO_VALID | INTR_TYPE_HARDWARE_EXCEPTION | vector;
    if (error_code) {
        info |= INTR_INFO_DELIVER_ERROR_CODE;
        hv_vmwrite(VMCS_VMENTRY_EXCEPTION_ERROR_CODE, 0);
    }
    hv_vmwrite(VMCS_VMENTRY_INTERRUPTION_INFORMATION, info);
}

/* MSRs the MSR bitmap can cover (SDM 25.6.9); anything else gets #GP. */
static int msr_is_valid(uint32_t msr)
{
    return msr <= 0x1FFFu || (msr >= 0xC0000000u && msr <= 0xC0001FFFu);
}

static void handle_cpuid(struct __vmexit_guest_registers_t *regs)
{
    uint32_t r[4];
    hv_cpuid((uint32_t)regs->rax, (uint32_t)regs->rcx, r);
    if ((uint32_t)regs->rax == 1)
        r[2] |= CPUID_ECX_HYPERVISOR;     /* "a hypervisor is present" */
    if ((uint32_t)regs->rax == 0x40000000u) {
        r[0] = 0x40000000u;
        r[1] = 0x65766553u;               /* "SevenDaysVMM" */
        r[2] = 0x7961446Eu;
        r[3] = 0x4D4D5673u;
    }
    regs->rax = r[0];
    regs->rbx = r[1];
    regs->rcx = r[2];
    regs->rdx = r[3];
}

/* Leave VMX operation on this processor: the guest continues at the next
 * instruction with its own RSP and RFLAGS (asm_vmexit pops them). */
static void devirtualize(struct __vmexit_guest_registers_t *regs)
{
    uint64_t rip = hv_vmread(VMCS_GUEST_RIP) + hv_vmread(VMCS_VMEXIT_INSTRUCTION_LENGTH);
    uint64_t rsp = hv_vmread(VMCS_GUEST_RSP);
    uint64_t rflags = hv_vmread(VMCS_GUEST_RFLAGS);
    uint64_t *frame = (uint64_t *)(uintptr_t)(rsp - 16u);
    frame[0] = rflags;
    frame[1] = rip;
    regs->rsp = rsp - 16u;
    regs->rax = 0;                         /* the hypercall's result: success */
    vmx_leave_root();
}

int vmexit_handler(struct __vmexit_guest_registers_t *regs, struct __vcpu_t *vcpu)
{
    uint32_t full = (uint32_t)hv_vmread(VMCS_EXIT_REASON);
    uint32_t reason = full & 0xFFFFu;
    uint32_t msr = (uint32_t)regs->rcx;
    uint64_t v;

    vcpu->exit_count++;
    vcpu->last_exit_reason = reason;
    if (full & EXIT_REASON_ENTRY_FAILURE_BIT) {
        /* VMLAUNCH passed the control/host checks but the guest state failed (SDM 27.8):
         * nothing to resume. Say which reason, then stop (windbg_ext verify / vmcs help). */
        vmm_log(VMM_LOG_ERROR, "[sevendays] cpu %u: VM entry failed, exit reason 0x%x, qualification 0x%llx\n",
                vcpu->processor_number, full, (unsigned long long)hv_vmread(VMCS_EXIT_QUALIFICATION));
        vmm_crash(0x7D000000u | reason, (uint64_t)(uintptr_t)vcpu, full, hv_vmread(VMCS_EXIT_QUALIFICATION));
    }
    switch (reason) {
    case EXIT_REASON_CPUID:
        handle_cpuid(regs);
        break;
    case EXIT_REASON_RDMSR:
        if (!msr_is_valid(msr)) {
            inject_exception(VECTOR_GENERAL_PROTECTION, 1);
            return 1;
        }
        v = hv_rdmsr(msr);
        regs->rax = (uint32_t)v;
        regs->rdx = v >> 32;
        break;
    case EXIT_REASON_WRMSR:
        if (!msr_is_valid(msr)) {
            inject_exception(VECTOR_GENERAL_PROTECTION, 1);
            return 1;
        }
        hv_wrmsr(msr, ((regs->rdx & 0xFFFFFFFFu) << 32) | (regs->rax & 0xFFFFFFFFu));
        break;
    case EXIT_REASON_XSETBV:
        hv_xsetbv((uint32_t)regs->rcx, ((regs->rdx & 0xFFFFFFFFu) << 32) | (regs->rax & 0xFFFFFFFFu));
        break;
    case EXIT_REASON_INVD:
        hv_wbinvd();
        break;
    case EXIT_REASON_VMCALL:
        if (regs->rcx == VMM_HYPERCALL_DEVIRTUALIZE && (hv_vmread(VMCS_GUEST_CS_SELECTOR) & 3u) == 0) {
            devirtualize(regs);
            return 0;
        }
        regs->rax = ~0ull;                 /* unknown hypercall */
        break;
    case EXIT_REASON_VMCLEAR: case EXIT_REASON_VMLAUNCH: case EXIT_REASON_VMPTRLD:
    case EXIT_REASON_VMPTRST: case EXIT_REASON_VMREAD: case EXIT_REASON_VMRESUME:
    case EXIT_REASON_VMWRITE: case EXIT_REASON_VMXOFF: case EXIT_REASON_VMXON:
        inject_exception(VECTOR_INVALID_OPCODE, 0);  /* no nested VMX here */
        return 1;
    default:
        vmm_log(VMM_LOG_ERROR, "[sevendays] cpu %u: unexpected exit %u at 0x%llx\n", vcpu->processor_number,
                reason, (unsigned long long)hv_vmread(VMCS_GUEST_RIP));
        vmm_crash(0x7D000000u | reason, (uint64_t)(uintptr_t)vcpu, hv_vmread(VMCS_GUEST_RIP),
                  hv_vmread(VMCS_EXIT_QUALIFICATION));
    }
    skip_instruction();
    return 1;
}
