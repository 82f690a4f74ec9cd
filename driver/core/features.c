/*
 * What this processor tells a guest it has (CPUID): the features of
 * HvGuestFeatures (core/vmx_logic.c) it advertises, a parent hypervisor under
 * this one (Hyper-V TLFS "Hypervisor Discovery"), and whether hvlab's VMM
 * answers on it. CPUID only: no OS calls.
 */
#include "hv_core.h"
#include "hv_arch.h"
#include "hv_intrin.h"
#include "hv_hypercall.h"

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
