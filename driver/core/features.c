/*
 * What the guest is told it has, and what the VMM must do about it:
 * - CPUID features that raise #UD in VMX non-root unless a secondary control
 *   is set (SDM Vol. 3 26.3, Table 25-7), listed once (HvGuestFeatures);
 * - a parent hypervisor under this one (Hyper-V TLFS "Hypervisor Discovery").
 * CPUID only: no OS calls.
 */
#include "hv_core.h"
#include "hv_arch.h"
#include "hv_intrin.h"
#include "hv_hypercall.h"

const HV_GUEST_FEATURE HvGuestFeatures[HV_GUEST_FEATURE_COUNT] = {
    /* name, leaf, subleaf, register, bit, secondary control */
    { "RDTSCP", 0x80000001u, 0, CPUID_REG_EDX, 27, CPU2_ENABLE_RDTSCP },
    { "RDPID", 7, 0, CPUID_REG_ECX, 22, CPU2_ENABLE_RDTSCP },           /* RDPID needs "enable RDTSCP" */
    { "INVPCID", 7, 0, CPUID_REG_EBX, 10, CPU2_ENABLE_INVPCID },
    { "XSAVES/XRSTORS", 0xD, 1, CPUID_REG_EAX, 3, CPU2_ENABLE_XSAVES_XRSTORS },
    { "WAITPKG (TPAUSE/UMONITOR/UMWAIT)", 7, 0, CPUID_REG_ECX, 5, CPU2_ENABLE_USER_WAIT_PAUSE },
};

uint32_t HvFeatureControlsCheck(uint32_t advertised, uint64_t cap_procbased, uint64_t cap_procbased2,
                                uint32_t *wanted)
{
    /* Allowed-1 settings are bits 63:32 of each capability MSR (App. A.3.2, A.3.3). */
    uint32_t primary_allowed1 = (uint32_t)(cap_procbased >> 32);
    uint32_t secondary_allowed1 = (primary_allowed1 & CPU_ACTIVATE_SECONDARY_CONTROLS) ? (uint32_t)(cap_procbased2 >> 32) : 0;
    uint32_t i, need = 0;
    for (i = 0; i < HV_GUEST_FEATURE_COUNT; i++) {
        if (!(advertised & (1u << i)))
            continue;
        need |= HvGuestFeatures[i].Control;
        if (!(secondary_allowed1 & HvGuestFeatures[i].Control)) {
            *wanted = need;
            return i + 1;
        }
    }
    *wanted = need;
    return 0;
}

uint32_t HvCoreAdvertisedFeatures(void)
{
    uint32_t r[4], max_basic, max_ext, i, mask = 0;
    hv_cpuid(0, 0, r);
    max_basic = r[0];
    hv_cpuid(0x80000000u, 0, r);
    max_ext = r[0];
    for (i = 0; i < HV_GUEST_FEATURE_COUNT; i++) {
        const HV_GUEST_FEATURE *f = &HvGuestFeatures[i];
        uint32_t top = (f->Leaf & 0x80000000u) ? max_ext : max_basic;
        if (f->Leaf > top)
            continue;
        hv_cpuid(f->Leaf, f->Subleaf, r);
        if (r[f->Register] & (1u << f->Bit))
            mask |= 1u << i;
    }
    return mask;
}

uint32_t HvCoreDetectParent(uint32_t vendor[3])
{
    uint32_t r[4];
    vendor[0] = vendor[1] = vendor[2] = 0;
    hv_cpuid(1, 0, r);
    if (!(r[2] & CPUID_ECX_HYPERVISOR))
        return HV_PARENT_NONE;
    hv_cpuid(CPUID_HV_RANGE_BASE, 0, r);
    vendor[0] = r[1];
    vendor[1] = r[2];
    vendor[2] = r[3];
    if (r[1] == HYPERV_VENDOR_EBX && r[2] == HYPERV_VENDOR_ECX && r[3] == HYPERV_VENDOR_EDX)
        return HV_PARENT_HYPERV;
    return HV_PARENT_OTHER;
}

int HvCoreVmmPresent(void)
{
    uint32_t r[4];
    hv_cpuid(HV_CPUID_LEAF_VENDOR, HV_CPUID_PROBE_SUBLEAF, r);
    return r[1] == HV_CPUID_VENDOR_EBX && r[2] == HV_CPUID_VENDOR_ECX && r[3] == HV_CPUID_VENDOR_EDX;
}
