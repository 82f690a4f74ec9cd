/*
 * Days 1-2: can this processor do VMX, and entering VMX root operation.
 */
#include "vmm.h"
#include "hv_arch.h"
#include "hv_intrin.h"

/* CPUID.1:ECX.VMX[bit 5] (SDM Vol. 3 24.6) */
int vmx_support_detection(void)
{
    uint32_t regs[4];
    hv_cpuid(1, 0, regs);
    return (regs[2] & CPUID_ECX_VMX) != 0;
}

/* IA32_FEATURE_CONTROL: bit 0 lock, bit 2 VMXON outside SMX (SDM 24.7).
 * Firmware normally locks it; if it did not, we enable VMX and lock it. */
static int vmx_feature_control_ok(void)
{
    uint64_t fc = hv_rdmsr(IA32_FEATURE_CONTROL);
    if (!(fc & 1u)) {
        hv_wrmsr(IA32_FEATURE_CONTROL, fc | 1u | 4u);
        return 1;
    }
    return (fc & 4u) != 0;
}

/* CR0 and CR4 must respect the VMX fixed bits (SDM 24.8, App. A.7/A.8). */
static void vmx_adjust_cr0_cr4(void)
{
    uint64_t cr0 = hv_read_cr0(), cr4 = hv_read_cr4();
    cr0 |= hv_rdmsr(IA32_VMX_CR0_FIXED0);
    cr0 &= hv_rdmsr(IA32_VMX_CR0_FIXED1);
    cr4 |= hv_rdmsr(IA32_VMX_CR4_FIXED0);
    cr4 &= hv_rdmsr(IA32_VMX_CR4_FIXED1);
    hv_write_cr0(cr0);
    hv_write_cr4(cr4);
}

int vmx_enter_root(struct __vcpu_t *vcpu)
{
    uint32_t revision = (uint32_t)(vcpu->vmm_context->vmx_basic & 0x7FFFFFFFu);

    if (!vmx_feature_control_ok()) {
        vmm_log(VMM_LOG_ERROR, "[sevendays] cpu %u: VMX is disabled in IA32_FEATURE_CONTROL\n",
                vcpu->processor_number);
        return 0;
    }
    vmx_adjust_cr0_cr4();
    /* Both regions start with the VMCS revision identifier (SDM 25.2, 25.11.5). */
    *(uint32_t *)vcpu->vmxon = revision;
    *(uint32_t *)vcpu->vmcs = revision;
    if (__vmx_on(&vcpu->vmxon_physical) != HV_VMX_OK) {
        vmm_log(VMM_LOG_ERROR, "[sevendays] cpu %u: VMXON failed\n", vcpu->processor_number);
        hv_write_cr4(hv_read_cr4() & ~CR4_VMXE);
        return 0;
    }
    if (__vmx_vmclear(&vcpu->vmcs_physical) != HV_VMX_OK || __vmx_vmptrld(&vcpu->vmcs_physical) != HV_VMX_OK) {
        vmm_log(VMM_LOG_ERROR, "[sevendays] cpu %u: VMCLEAR/VMPTRLD failed\n", vcpu->processor_number);
        __vmx_off();
        return 0;
    }
    vmm_log(VMM_LOG_INFO, "[sevendays] cpu %u: VMXON at 0x%llx, VMCS at 0x%llx\n", vcpu->processor_number,
            (unsigned long long)vcpu->vmxon_physical, (unsigned long long)vcpu->vmcs_physical);
    return 1;
}

void vmx_leave_root(void)
{
    __vmx_off();
    hv_write_cr4(hv_read_cr4() & ~CR4_VMXE);
}
