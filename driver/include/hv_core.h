/*
 * hv_core.h -- the portable VMX core (core/): no OS calls. core/hv_load.c
 * (include/hv_load.h) walks the processors one after another through the
 * platform interface (include/hv_platform.h) and calls these on each.
 */
#ifndef HV_CORE_H
#define HV_CORE_H

#include "hv_types_base.h"
#include "hv_context.h"

#include "hv_status.h"

/* ---- pure logic (core/vmx_logic.c, core/segment.c): unit-tested on the host */

/* CR0/CR4 in VMX operation: bits 1 in FIXED0 forced on, bits 0 in FIXED1
 * forced off (SDM Vol. 3 24.8, App. A.7/A.8). */
uint64_t HvAdjustCr(uint64_t value, uint64_t fixed0, uint64_t fixed1);

/* 1 when HvAdjustCr would clear a bit that is set in value (FIXED1 bit 0):
 * the OS relies on it, so VMX operation must not silently drop it. */
int HvCrAdjustClears(uint64_t value, uint64_t fixed0, uint64_t fixed1);

/* IA32_VMX_BASIC (App. A.1) against what this driver allocates: one 4 KiB
 * write-back page per VMXON/VMCS region, anywhere in physical memory. */
#define HV_BASIC_OK 0u
#define HV_BASIC_REGION_SIZE 1u   /* bits 44:32: 0 or more than 4096 bytes */
#define HV_BASIC_MEMORY_TYPE 2u   /* bits 53:50: not 6 (write-back) */
#define HV_BASIC_BELOW_4G 3u      /* bit 48: regions must lie below 4 GiB */
uint32_t HvVmxBasicProblem(uint64_t vmx_basic);

/* A VM-execution/exit/entry control value: desired bits, plus the bits the
 * capability MSR forces to 1 (allowed-0, bits 31:0), minus the bits it forbids
 * (allowed-1, bits 63:32) (App. A.3-A.5). */
uint32_t HvAdjustControls(uint64_t capability, uint32_t desired);
/* 1 when value obeys both halves of the capability MSR. */
int HvControlsValid(uint64_t capability, uint32_t value);
/* The MSR to consult for a control class: the TRUE_* one when
 * IA32_VMX_BASIC bit 55 is set (App. A.2), else the plain one. */
uint32_t HvControlCapabilityMsr(uint64_t vmx_basic, uint32_t plain_msr);

/* IA32_FEATURE_CONTROL (24.7): what to do before VMXON. */
#define HV_FC_READY 0u        /* locked with VMXON-outside-SMX: nothing to do */
#define HV_FC_WRITE 1u        /* unlocked: write *new_value (lock + outside SMX) */
#define HV_FC_REFUSED 2u      /* locked without VMXON outside SMX: BIOS disabled VMX */
uint32_t HvFeatureControlAction(uint64_t value, uint64_t *new_value);

/* Guest segment state from a GDT (SDM 3.4.5, 25.4.1 Table 25-2). */
typedef struct HV_SEGMENT {
    uint64_t Base;
    uint32_t Limit;               /* byte granular (G applied) */
    uint32_t AccessRights;        /* VMX format, bit 16 = unusable */
    uint16_t Selector;
} HV_SEGMENT;
/* Access rights in VMX format from an 8-byte descriptor: bits 47:40 -> 7:0,
 * bits 55:52 -> 15:12. */
uint32_t HvAccessRightsFromDescriptor(uint64_t descriptor);
/* 0 on success. A null selector yields an unusable segment (AR bit 16);
 * LDT selectors (TI = 1) and selectors beyond the GDT limit are refused (-1).
 * System descriptors (S = 0: TSS, LDT) are 16 bytes: base bits 63:32 come
 * from the second qword. */
int HvSegmentFromGdt(const uint8_t *gdt_base, uint32_t gdt_limit, uint16_t selector, HV_SEGMENT *out);

/* Layout discovery: classify a VMREAD value read from the index-filled
 * scratch VMCS (docs/debug-descriptor.md). Returns HV_LAYOUT_FLAG_* and sets
 * *offset when FOUND. */
uint8_t HvLayoutClassify(uint32_t encoding, uint64_t value, uint16_t *offset);

/* XSETBV value check (SDM Vol. 1 13.3): 1 when XCR0 may take this value. */
int HvXcr0Valid(uint64_t value, uint64_t supported_mask);

/* ---- what the guest is told it has (core/features.c, table in core/vmx_logic.c) */
/* What the driver does when a feature CPUID reports cannot get its control. */
#define HV_FEATURE_REFUSE_LOAD 0u     /* the OS uses it: it would take #UD in the guest, so do not load */
#define HV_FEATURE_GO_WITHOUT 1u      /* load with the control off (only the feature's users see #UD) */
typedef struct HV_GUEST_FEATURE {
    const char *Name;
    uint32_t Leaf, Subleaf;
    uint32_t Register;            /* CPUID_REG_* */
    uint32_t Bit;
    uint32_t Control;             /* secondary control it needs in VMX non-root */
    uint32_t Unavailable;         /* HV_FEATURE_*: when IA32_VMX_PROCBASED_CTLS2 forbids Control */
} HV_GUEST_FEATURE;
#define HV_GUEST_FEATURE_COUNT 5u
/* The one list: the secondary controls the driver sets come from it, and so
 * does the refuse-to-load message. */
extern const HV_GUEST_FEATURE HvGuestFeatures[HV_GUEST_FEATURE_COUNT];
/* The choice, pure: advertised bit i = table[i] reported by CPUID. *wanted =
 * the secondary controls to set: those of every advertised feature the
 * capability MSRs allow (App. A.3.2, A.3.3). Returns 0, or 1 + the index of
 * the first advertised HV_FEATURE_REFUSE_LOAD feature whose control is
 * forbidden (then *wanted also holds that control, the one missing). */
uint32_t HvChooseFeatureControls(const HV_GUEST_FEATURE *table, uint32_t count, uint32_t advertised,
                                 uint64_t cap_procbased, uint64_t cap_procbased2, uint32_t *wanted);
/* HvChooseFeatureControls over HvGuestFeatures. */
uint32_t HvFeatureControlsCheck(uint32_t advertised, uint64_t cap_procbased, uint64_t cap_procbased2,
                                uint32_t *wanted);
/* CPUID of this processor -> the advertised mask above. */
uint32_t HvCoreAdvertisedFeatures(void);
/* A hypervisor under this one: none, one that speaks the Hyper-V interface
 * ("Microsoft Hv": synthetic MSRs and hypercalls are passed to it), other. */
#define HV_PARENT_NONE 0u
#define HV_PARENT_HYPERV 1u
#define HV_PARENT_OTHER 2u
uint32_t HvCoreDetectParent(uint32_t vendor[3]);
/* 1 when hvlab's VMM answers on this processor (its CPUID probe leaf). */
int HvCoreVmmPresent(void);

/* ---- VMX operation (core/vmx_*.c): run on the processor concerned -------- */
int HvCoreVmxSupported(void);
void HvCoreReadCapabilities(HV_VMM_CONTEXT *vmm);
/* Feature control, CR0/CR4 fixed bits, CR4.VMXE, VMXON, [layout discovery
 * on scratch], VMCLEAR, VMPTRLD. On failure everything done is undone. */
HV_STATUS HvCoreEnterVmxRoot(HV_VMM_CONTEXT *vmm, HV_VCPU *vcpu, uint32_t *scratch, uint64_t scratch_pa);
/* VMCLEAR, VMXOFF, CR0/CR4 restored: undo for a processor not launched. */
void HvCoreLeaveVmxRoot(HV_VCPU *vcpu);
/* Controls, guest state = this processor now, host state. */
HV_STATUS HvCoreSetupVmcs(HV_VMM_CONTEXT *vmm, HV_VCPU *vcpu);
/* Pattern-fills the host stack, puts the vCPU pointer at its top. */
void HvCorePrepareHostStack(HV_VCPU *vcpu);
/* Returns the HOST_RSP value for this vCPU. */
uint64_t HvCoreHostStackPointer(const HV_VCPU *vcpu);

void HvCoreDiscoverVmcsLayout(uint32_t *scratch, uint64_t scratch_pa, uint32_t revision_id);
void HvCoreTakeSnapshot(HV_VCPU *vcpu, uint32_t reason, uint32_t exit_reason, uint32_t vm_error);
/* Marks the vCPU failed and copies the failure (status as the OS code) into the descriptor. */
void HvCoreRecordFailure(HV_VCPU *vcpu, uint32_t step, HV_STATUS status, uint32_t vm_error);

#endif
