/*
 * Days 3-4: fill the VMCS and launch. The guest is this very processor: it
 * continues where the driver left off, now in VMX non-root operation.
 */
#include "vmm.h"
#include "hv_arch.h"
#include "hv_intrin.h"
#include "hv_vmcs.h"

/* A control is allowed-0 in the low dword, allowed-1 in the high dword of its
 * capability MSR (SDM App. A.3-A.5): set what must be 1, clear what must be 0. */
uint64_t vmx_adjust_controls(uint32_t msr, uint32_t wanted)
{
    uint64_t cap = hv_rdmsr(msr);
    wanted |= (uint32_t)cap;
    wanted &= (uint32_t)(cap >> 32);
    return wanted;
}

/* Bit 55 of IA32_VMX_BASIC: the TRUE_* capability MSRs exist (SDM A.1). */
static uint32_t control_msr(const struct __vcpu_t *vcpu, uint32_t plain, uint32_t true_msr)
{
    return (vcpu->vmm_context->vmx_basic >> 55) & 1u ? true_msr : plain;
}

/* One guest segment (SDM 25.4.1). LAR gives the access rights in bits 23:8;
 * a null selector is "unusable" (bit 16). */
static void write_guest_segment(uint32_t n, uint16_t selector, uint64_t base)
{
    uint32_t ar = 0x10000u, limit = 0;
    if (selector & ~7u) {
        ar = (asm_load_ar(selector) >> 8) & 0xF0FFu;
        limit = asm_segment_limit(selector);
    }
    hv_vmwrite(VMCS_GUEST_ES_SELECTOR + 2u * n, selector);
    hv_vmwrite(VMCS_GUEST_ES_LIMIT + 2u * n, limit);
    hv_vmwrite(VMCS_GUEST_ES_ACCESS_RIGHTS + 2u * n, ar);
    hv_vmwrite(VMCS_GUEST_ES_BASE + 2u * n, base);
}

/* The TSS base is spread over a 16-byte system descriptor (SDM 8.2.3). */
static uint64_t tss_base(uint64_t gdt_base, uint16_t tr)
{
    const uint8_t *d = (const uint8_t *)(uintptr_t)(gdt_base + (tr & ~7u));
    return (uint64_t)d[2] | ((uint64_t)d[3] << 8) | ((uint64_t)d[4] << 16) | ((uint64_t)d[7] << 24) |
           ((uint64_t)*(const uint32_t *)(d + 8) << 32);
}

int init_vmcs(struct __vcpu_t *vcpu)
{
    DESCRIPTOR_TABLE_REGISTER gdtr, idtr;
    uint16_t tr = asm_read_tr();
    uint64_t fs_base = hv_rdmsr(IA32_FS_BASE), gs_base = hv_rdmsr(IA32_GS_BASE);
    uint64_t host_rsp;
    uint32_t proc;

    asm_sgdt(&gdtr);
    asm_sidt(&idtr);

    /* ---- controls (SDM 25.6-25.8) */
    hv_vmwrite(VMCS_PIN_BASED_VM_EXECUTION_CONTROLS,
               vmx_adjust_controls(control_msr(vcpu, IA32_VMX_PINBASED_CTLS, IA32_VMX_TRUE_PINBASED_CTLS), 0));
    proc = (uint32_t)vmx_adjust_controls(control_msr(vcpu, IA32_VMX_PROCBASED_CTLS, IA32_VMX_TRUE_PROCBASED_CTLS),
                                         CPU_USE_MSR_BITMAPS | CPU_ACTIVATE_SECONDARY_CONTROLS);
    hv_vmwrite(VMCS_PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, proc);
    if (proc & CPU_ACTIVATE_SECONDARY_CONTROLS)  /* Windows uses RDTSCP, INVPCID, XSAVES */
        hv_vmwrite(VMCS_SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS,
                   vmx_adjust_controls(IA32_VMX_PROCBASED_CTLS2,
                                       CPU2_ENABLE_RDTSCP | CPU2_ENABLE_INVPCID | CPU2_ENABLE_XSAVES_XRSTORS));
    hv_vmwrite(VMCS_PRIMARY_VMEXIT_CONTROLS,
               vmx_adjust_controls(control_msr(vcpu, IA32_VMX_EXIT_CTLS, IA32_VMX_TRUE_EXIT_CTLS),
                                   EXIT_HOST_ADDRESS_SPACE_SIZE));
    hv_vmwrite(VMCS_VMENTRY_CONTROLS,
               vmx_adjust_controls(control_msr(vcpu, IA32_VMX_ENTRY_CTLS, IA32_VMX_TRUE_ENTRY_CTLS),
                                   ENTRY_IA32E_MODE_GUEST));
    hv_vmwrite(VMCS_MSR_BITMAP_ADDRESS, vcpu->msr_bitmap_physical);
    hv_vmwrite(VMCS_VMCS_LINK_POINTER, ~0ull);   /* no shadow VMCS (SDM 25.4.2) */
    hv_vmwrite(VMCS_CR0_READ_SHADOW, hv_read_cr0());
    hv_vmwrite(VMCS_CR4_READ_SHADOW, hv_read_cr4());

    /* ---- guest state (SDM 25.4): the processor as it is now */
    write_guest_segment(0, asm_read_es(), 0);
    write_guest_segment(1, asm_read_cs(), 0);
    write_guest_segment(2, asm_read_ss(), 0);
    write_guest_segment(3, asm_read_ds(), 0);
    write_guest_segment(4, asm_read_fs(), fs_base);
    write_guest_segment(5, asm_read_gs(), gs_base);
    write_guest_segment(6, asm_read_ldtr(), 0);
    write_guest_segment(7, tr, tss_base(gdtr.Base, tr));
    hv_vmwrite(VMCS_GUEST_GDTR_BASE, gdtr.Base);
    hv_vmwrite(VMCS_GUEST_GDTR_LIMIT, gdtr.Limit);
    hv_vmwrite(VMCS_GUEST_IDTR_BASE, idtr.Base);
    hv_vmwrite(VMCS_GUEST_IDTR_LIMIT, idtr.Limit);
    hv_vmwrite(VMCS_GUEST_CR0, hv_read_cr0());
    hv_vmwrite(VMCS_GUEST_CR3, hv_read_cr3());
    hv_vmwrite(VMCS_GUEST_CR4, hv_read_cr4());
    hv_vmwrite(VMCS_GUEST_DR7, hv_read_dr7());
    hv_vmwrite(VMCS_GUEST_IA32_DEBUGCTL, hv_rdmsr(IA32_DEBUGCTL));
    hv_vmwrite(VMCS_GUEST_IA32_SYSENTER_CS, hv_rdmsr(IA32_SYSENTER_CS));
    hv_vmwrite(VMCS_GUEST_IA32_SYSENTER_ESP, hv_rdmsr(IA32_SYSENTER_ESP));
    hv_vmwrite(VMCS_GUEST_IA32_SYSENTER_EIP, hv_rdmsr(IA32_SYSENTER_EIP));

    /* ---- host state (SDM 25.5): the same processor, our own stack and RIP.
     * The top of the host stack holds the vCPU pointer for the exit stub. */
    host_rsp = ((uint64_t)(uintptr_t)vcpu->stack + VMM_STACK_SIZE - 16u) & ~0xFull;
    *(struct __vcpu_t **)(uintptr_t)host_rsp = vcpu;
    hv_vmwrite(VMCS_HOST_ES_SELECTOR, asm_read_es() & ~7u);
    hv_vmwrite(VMCS_HOST_CS_SELECTOR, asm_read_cs() & ~7u);
    hv_vmwrite(VMCS_HOST_SS_SELECTOR, asm_read_ss() & ~7u);
    hv_vmwrite(VMCS_HOST_DS_SELECTOR, asm_read_ds() & ~7u);
    hv_vmwrite(VMCS_HOST_FS_SELECTOR, asm_read_fs() & ~7u);
    hv_vmwrite(VMCS_HOST_GS_SELECTOR, asm_read_gs() & ~7u);
    hv_vmwrite(VMCS_HOST_TR_SELECTOR, tr & ~7u);
    hv_vmwrite(VMCS_HOST_CR0, hv_read_cr0());
    hv_vmwrite(VMCS_HOST_CR3, hv_read_cr3());
    hv_vmwrite(VMCS_HOST_CR4, hv_read_cr4());
    hv_vmwrite(VMCS_HOST_FS_BASE, fs_base);
    hv_vmwrite(VMCS_HOST_GS_BASE, gs_base);
    hv_vmwrite(VMCS_HOST_TR_BASE, tss_base(gdtr.Base, tr));
    hv_vmwrite(VMCS_HOST_GDTR_BASE, gdtr.Base);
    hv_vmwrite(VMCS_HOST_IDTR_BASE, idtr.Base);
    hv_vmwrite(VMCS_HOST_IA32_SYSENTER_CS, hv_rdmsr(IA32_SYSENTER_CS));
    hv_vmwrite(VMCS_HOST_IA32_SYSENTER_ESP, hv_rdmsr(IA32_SYSENTER_ESP));
    hv_vmwrite(VMCS_HOST_IA32_SYSENTER_EIP, hv_rdmsr(IA32_SYSENTER_EIP));
    hv_vmwrite(VMCS_HOST_RSP, host_rsp);
    hv_vmwrite(VMCS_HOST_RIP, (uint64_t)(uintptr_t)&asm_vmexit);
    return 1;
}

/* Called by asm_launch with the RSP/RIP the guest resumes at. Returns only
 * when VMLAUNCH fails (SDM 31.4: the error number is in the VMCS). */
int vmx_launch(struct __vcpu_t *vcpu, uint64_t guest_rsp, uint64_t guest_rip)
{
    hv_vmwrite(VMCS_GUEST_RSP, guest_rsp);
    hv_vmwrite(VMCS_GUEST_RIP, guest_rip);
    hv_vmwrite(VMCS_GUEST_RFLAGS, hv_read_rflags());
    __vmx_vmlaunch();
    vcpu->vm_instruction_error = (uint32_t)hv_vmread(VMCS_VM_INSTRUCTION_ERROR);
    return 0;
}
