/*
 * Pure VMX rules: fixed bits, control adjustment, feature control, layout
 * classification, XCR0 validity. No I/O, no intrinsics: the host-side unit
 * tests (tests/driver/) compile this file with the host compiler.
 */
#include "hv_core.h"
#include "hv_arch.h"
#include "hv_vmcs.h"

uint64_t HvAdjustCr(uint64_t value, uint64_t fixed0, uint64_t fixed1)
{
    /* SDM 24.8 / A.7-A.8: 1 in FIXED0 -> must be 1; 0 in FIXED1 -> must be 0. */
    return (value | fixed0) & fixed1;
}

uint32_t HvAdjustControls(uint64_t capability, uint32_t desired)
{
    IA32_VMX_CONTROLS_CAPABILITY cap;
    cap.Value = capability;
    return (desired | cap.Parts.Allowed0) & cap.Parts.Allowed1;
}

int HvControlsValid(uint64_t capability, uint32_t value)
{
    IA32_VMX_CONTROLS_CAPABILITY cap;
    cap.Value = capability;
    return (value & cap.Parts.Allowed0) == cap.Parts.Allowed0 && (value & ~cap.Parts.Allowed1) == 0;
}

uint32_t HvControlCapabilityMsr(uint64_t vmx_basic, uint32_t plain_msr)
{
    IA32_VMX_BASIC_REGISTER basic;
    basic.Value = vmx_basic;
    if (!basic.Bits.TrueControls)
        return plain_msr;
    /* App. A.2: TRUE_PINBASED..TRUE_ENTRY (0x48D-0x490) mirror 0x481-0x484. */
    switch (plain_msr) {
    case IA32_VMX_PINBASED_CTLS: return IA32_VMX_TRUE_PINBASED_CTLS;
    case IA32_VMX_PROCBASED_CTLS: return IA32_VMX_TRUE_PROCBASED_CTLS;
    case IA32_VMX_EXIT_CTLS: return IA32_VMX_TRUE_EXIT_CTLS;
    case IA32_VMX_ENTRY_CTLS: return IA32_VMX_TRUE_ENTRY_CTLS;
    default: return plain_msr;
    }
}

uint32_t HvFeatureControlAction(uint64_t value, uint64_t *new_value)
{
    IA32_FEATURE_CONTROL_REGISTER fc;
    fc.Value = value;
    *new_value = value;
    if (fc.Bits.Lock)
        return fc.Bits.EnableVmxOutsideSmx ? HV_FC_READY : HV_FC_REFUSED;
    fc.Bits.EnableVmxOutsideSmx = 1;
    fc.Bits.Lock = 1;
    *new_value = fc.Value;
    return HV_FC_WRITE;
}

/* A scratch VMCS holds its own dword index in every dword i >= 1 (dword 0 is
 * the revision id), so 1 <= index < 1024 identifies a byte offset 4 * index. */
#define HV_SCRATCH_DWORDS 1024u

static int HvIsDwordIndex(uint64_t v)
{
    return v >= 1 && v < HV_SCRATCH_DWORDS;
}

uint8_t HvLayoutClassify(uint32_t encoding, uint64_t value, uint16_t *offset)
{
    uint32_t bytes = HvVmcsFieldBytes(encoding);
    uint64_t low = bytes == 2 ? (value & 0xFFFFu) : (value & 0xFFFFFFFFu);
    uint32_t low32 = (uint32_t)(value & 0xFFFFFFFFu);

    if (HvIsDwordIndex(low)) {
        /* 8-byte fields span two dwords: the high half must be the next index. */
        if (bytes == 8 && (value >> 32) != low + 1)
            return HV_LAYOUT_FLAG_UNMATCHED;
        *offset = (uint16_t)(low * 4u);
        return HV_LAYOUT_FLAG_FOUND;
    }
    if (bytes == 4) {
        /* Some implementations (Bochs: access rights) store a 32-bit field
         * rotated left by 8; VMREAD rotates it back, so undo that here. */
        uint32_t rotated = (low32 << 8) | (low32 >> 24);
        if (HvIsDwordIndex(rotated)) {
            *offset = (uint16_t)(rotated * 4u);
            return HV_LAYOUT_FLAG_FOUND | HV_LAYOUT_FLAG_ROTATED8;
        }
    }
    return HV_LAYOUT_FLAG_UNMATCHED;
}

int HvXcr0Valid(uint64_t value, uint64_t supported_mask)
{
    /* SDM Vol. 1 13.3 and XSETBV (Vol. 2D): x87 state always on; only
     * supported components; AVX needs SSE; AVX-512 (bits 7:5) all or none and
     * only with AVX. */
    const uint64_t x87 = 1u, sse = 2u, avx = 4u, avx512 = 0xE0u;
    if (!(value & x87))
        return 0;
    if (value & ~supported_mask)
        return 0;
    if ((value & avx) && !(value & sse))
        return 0;
    if ((value & avx512) && ((value & avx512) != avx512 || !(value & avx)))
        return 0;
    return 1;
}

/* CPUID features that raise #UD in VMX non-root unless a secondary control is
 * set (SDM Vol. 3 26.3, Table 25-7): the one list. Windows uses each of them
 * once CPUID reports it, so each refuses the load when it cannot be enabled. */
const HV_GUEST_FEATURE HvGuestFeatures[HV_GUEST_FEATURE_COUNT] = {
    /* name, leaf, subleaf, register, bit, secondary control, when the control is forbidden */
    { "RDTSCP", 0x80000001u, 0, CPUID_REG_EDX, 27, CPU2_ENABLE_RDTSCP, HV_FEATURE_REFUSE_LOAD },
    /* RDPID needs "enable RDTSCP" too */
    { "RDPID", 7, 0, CPUID_REG_ECX, 22, CPU2_ENABLE_RDTSCP, HV_FEATURE_REFUSE_LOAD },
    { "INVPCID", 7, 0, CPUID_REG_EBX, 10, CPU2_ENABLE_INVPCID, HV_FEATURE_REFUSE_LOAD },
    { "XSAVES/XRSTORS", 0xD, 1, CPUID_REG_EAX, 3, CPU2_ENABLE_XSAVES_XRSTORS, HV_FEATURE_REFUSE_LOAD },
    { "WAITPKG (TPAUSE/UMONITOR/UMWAIT)", 7, 0, CPUID_REG_ECX, 5, CPU2_ENABLE_USER_WAIT_PAUSE,
      HV_FEATURE_REFUSE_LOAD },
};

uint32_t HvChooseFeatureControls(const HV_GUEST_FEATURE *table, uint32_t count, uint32_t advertised,
                                 uint64_t cap_procbased, uint64_t cap_procbased2, uint32_t *wanted)
{
    /* Allowed-1 settings are bits 63:32 of each capability MSR (App. A.3.2, A.3.3);
     * no secondary control at all unless "activate secondary controls" may be 1. */
    uint32_t primary_allowed1 = (uint32_t)(cap_procbased >> 32);
    uint32_t secondary_allowed1 =
        (primary_allowed1 & CPU_ACTIVATE_SECONDARY_CONTROLS) ? (uint32_t)(cap_procbased2 >> 32) : 0;
    uint32_t i, need = 0;
    for (i = 0; i < count && i < 32u; i++) {
        if (!(advertised & (1u << i)))
            continue;
        if ((secondary_allowed1 & table[i].Control) == table[i].Control) {
            need |= table[i].Control;
        } else if (table[i].Unavailable == HV_FEATURE_REFUSE_LOAD) {
            *wanted = need | table[i].Control;
            return i + 1;
        }
    }
    *wanted = need;
    return 0;
}

uint32_t HvFeatureControlsCheck(uint32_t advertised, uint64_t cap_procbased, uint64_t cap_procbased2,
                                uint32_t *wanted)
{
    return HvChooseFeatureControls(HvGuestFeatures, HV_GUEST_FEATURE_COUNT, advertised, cap_procbased,
                                   cap_procbased2, wanted);
}

uint32_t HvVmxBasicProblem(uint64_t vmx_basic)
{
    IA32_VMX_BASIC_REGISTER b;
    b.Value = vmx_basic;
    if (b.Bits.RegionSize == 0 || b.Bits.RegionSize > 4096u)
        return HV_BASIC_REGION_SIZE;        /* we allocate one 4 KiB page per region */
    if (b.Bits.MemoryType != 6u)
        return HV_BASIC_MEMORY_TYPE;        /* our regions are write-back (MmCached) */
    if (b.Bits.PhysicalAddressWidth32)
        return HV_BASIC_BELOW_4G;           /* regions anywhere in physical memory */
    return HV_BASIC_OK;
}

int HvCrAdjustClears(uint64_t value, uint64_t fixed0, uint64_t fixed1)
{
    return (value & ~HvAdjustCr(value, fixed0, fixed1)) != 0;
}
