/*
 * Guest segment state from the GDT (Day 4). Pure: reads only the table bytes
 * it is given, so the host tests feed it hand-built descriptors.
 */
#include "hv_core.h"
#include "hv_arch.h"

uint32_t HvAccessRightsFromDescriptor(uint64_t descriptor)
{
    /* SDM 25.4.1 Table 25-2: type, S, DPL, P = descriptor bits 47:40 -> AR 7:0;
     * AVL, L, D/B, G = bits 55:52 -> AR 15:12; AR 11:8 reserved (0). */
    return (uint32_t)((descriptor >> 40) & 0xFFu) | (uint32_t)(((descriptor >> 52) & 0xFu) << 12);
}

static uint64_t HvReadQword(const uint8_t *p)
{
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

int HvSegmentFromGdt(const uint8_t *gdt_base, uint32_t gdt_limit, uint16_t selector, HV_SEGMENT *out)
{
    SEGMENT_SELECTOR sel;
    SEGMENT_DESCRIPTOR desc;
    uint32_t offset;
    uint32_t limit;

    sel.Value = selector;
    out->Selector = selector;
    out->Base = 0;
    out->Limit = 0;
    out->AccessRights = VMX_AR_UNUSABLE;
    if (sel.Bits.Table == 0 && sel.Bits.Index == 0)
        return 0; /* null selector: unusable (25.4.1) */
    if (sel.Bits.Table != 0)
        return -1; /* the driver's guest state never uses the LDT */
    offset = (uint32_t)sel.Bits.Index * 8u;
    if (offset + 7u > gdt_limit)
        return -1;
    desc.Value = HvReadQword(gdt_base + offset);

    limit = (uint32_t)desc.Bits.LimitLow | ((uint32_t)desc.Bits.LimitHigh << 16);
    if (desc.Bits.Granularity)
        limit = (limit << 12) | 0xFFFu;
    out->Limit = limit;
    out->Base = (uint64_t)desc.Bits.BaseLow | ((uint64_t)desc.Bits.BaseMiddle << 16) |
                ((uint64_t)desc.Bits.BaseHigh << 24);
    if (!desc.Bits.DescriptorType) {
        /* 64-bit system descriptor (TSS/LDT, SDM 8.2.3): 16 bytes. */
        if (offset + 15u > gdt_limit)
            return -1;
        out->Base |= (HvReadQword(gdt_base + offset + 8) & 0xFFFFFFFFull) << 32;
    }
    out->AccessRights = HvAccessRightsFromDescriptor(desc.Value);
    if (!desc.Bits.Present)
        out->AccessRights |= VMX_AR_UNUSABLE;
    return 0;
}
