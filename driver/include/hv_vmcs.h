/*
 * hv_vmcs.h -- VMCS component encodings (Day 3), built by ONE macro from the
 * four parts of an encoding (SDM Vol. 3 25.11.2, Table 25-21):
 *   bit 0      access type (0 full, 1 high 32 bits of a 64-bit field)
 *   bits 9:1   index
 *   bits 11:10 type  (0 control, 1 VM-exit information, 2 guest state, 3 host state)
 *   bits 14:13 width (0 16-bit, 1 64-bit, 2 32-bit, 3 natural width)
 * The field list (App. B) is an X-macro: X(name, width, type, index). It yields
 * the VMCS_<name> constants and the catalogue that layout discovery and the
 * snapshot walk (core/vmcs_fields.c).
 */
#ifndef HV_VMCS_H
#define HV_VMCS_H

#include "hv_types_base.h"

#define VMCS_ACCESS_FULL 0u
#define VMCS_ACCESS_HIGH 1u

#define VMCS_TYPE_CONTROL 0u
#define VMCS_TYPE_EXIT_INFO 1u
#define VMCS_TYPE_GUEST 2u
#define VMCS_TYPE_HOST 3u

#define VMCS_WIDTH_16 0u
#define VMCS_WIDTH_64 1u
#define VMCS_WIDTH_32 2u
#define VMCS_WIDTH_NATURAL 3u

#define VMCS_ENCODE(access, index, type, width) \
    ((uint32_t)(access) | ((uint32_t)(index) << 1) | ((uint32_t)(type) << 10) | ((uint32_t)(width) << 13))

/* Decoding, for the catalogue and the host tests. */
#define VMCS_ENCODING_ACCESS(e) ((e) & 1u)
#define VMCS_ENCODING_INDEX(e) (((e) >> 1) & 0x1FFu)
#define VMCS_ENCODING_TYPE(e) (((e) >> 10) & 3u)
#define VMCS_ENCODING_WIDTH(e) (((e) >> 13) & 3u)

#define W16 VMCS_WIDTH_16
#define W64 VMCS_WIDTH_64
#define W32 VMCS_WIDTH_32
#define WNAT VMCS_WIDTH_NATURAL
#define TCTL VMCS_TYPE_CONTROL
#define TEXIT VMCS_TYPE_EXIT_INFO
#define TGUEST VMCS_TYPE_GUEST
#define THOST VMCS_TYPE_HOST

/* App. B.1-B.4, in encoding order. */
#define HV_VMCS_FIELDS(X)                                        \
    /* B.1.1 16-bit control fields */                            \
    X(VIRTUAL_PROCESSOR_ID, W16, TCTL, 0)                        \
    X(POSTED_INTERRUPT_NOTIFICATION_VECTOR, W16, TCTL, 1)        \
    X(EPTP_INDEX, W16, TCTL, 2)                                  \
    /* B.1.2 16-bit guest-state fields */                        \
    X(GUEST_ES_SELECTOR, W16, TGUEST, 0)                         \
    X(GUEST_CS_SELECTOR, W16, TGUEST, 1)                         \
    X(GUEST_SS_SELECTOR, W16, TGUEST, 2)                         \
    X(GUEST_DS_SELECTOR, W16, TGUEST, 3)                         \
    X(GUEST_FS_SELECTOR, W16, TGUEST, 4)                         \
    X(GUEST_GS_SELECTOR, W16, TGUEST, 5)                         \
    X(GUEST_LDTR_SELECTOR, W16, TGUEST, 6)                       \
    X(GUEST_TR_SELECTOR, W16, TGUEST, 7)                         \
    X(GUEST_INTERRUPT_STATUS, W16, TGUEST, 8)                    \
    X(GUEST_PML_INDEX, W16, TGUEST, 9)                           \
    /* B.1.3 16-bit host-state fields */                         \
    X(HOST_ES_SELECTOR, W16, THOST, 0)                           \
    X(HOST_CS_SELECTOR, W16, THOST, 1)                           \
    X(HOST_SS_SELECTOR, W16, THOST, 2)                           \
    X(HOST_DS_SELECTOR, W16, THOST, 3)                           \
    X(HOST_FS_SELECTOR, W16, THOST, 4)                           \
    X(HOST_GS_SELECTOR, W16, THOST, 5)                           \
    X(HOST_TR_SELECTOR, W16, THOST, 6)                           \
    /* B.2.1 64-bit control fields */                            \
    X(IO_BITMAP_A_ADDRESS, W64, TCTL, 0)                         \
    X(IO_BITMAP_B_ADDRESS, W64, TCTL, 1)                         \
    X(MSR_BITMAP_ADDRESS, W64, TCTL, 2)                          \
    X(VMEXIT_MSR_STORE_ADDRESS, W64, TCTL, 3)                    \
    X(VMEXIT_MSR_LOAD_ADDRESS, W64, TCTL, 4)                     \
    X(VMENTRY_MSR_LOAD_ADDRESS, W64, TCTL, 5)                    \
    X(EXECUTIVE_VMCS_POINTER, W64, TCTL, 6)                      \
    X(PML_ADDRESS, W64, TCTL, 7)                                 \
    X(TSC_OFFSET, W64, TCTL, 8)                                  \
    X(VIRTUAL_APIC_ADDRESS, W64, TCTL, 9)                        \
    X(APIC_ACCESS_ADDRESS, W64, TCTL, 10)                        \
    X(POSTED_INTERRUPT_DESCRIPTOR_ADDRESS, W64, TCTL, 11)        \
    X(VM_FUNCTION_CONTROLS, W64, TCTL, 12)                       \
    X(EPT_POINTER, W64, TCTL, 13)                                \
    X(EOI_EXIT_BITMAP_0, W64, TCTL, 14)                          \
    X(EOI_EXIT_BITMAP_1, W64, TCTL, 15)                          \
    X(EOI_EXIT_BITMAP_2, W64, TCTL, 16)                          \
    X(EOI_EXIT_BITMAP_3, W64, TCTL, 17)                          \
    X(EPTP_LIST_ADDRESS, W64, TCTL, 18)                          \
    X(VMREAD_BITMAP_ADDRESS, W64, TCTL, 19)                      \
    X(VMWRITE_BITMAP_ADDRESS, W64, TCTL, 20)                     \
    X(VIRTUALIZATION_EXCEPTION_INFO_ADDRESS, W64, TCTL, 21)      \
    X(XSS_EXITING_BITMAP, W64, TCTL, 22)                         \
    X(ENCLS_EXITING_BITMAP, W64, TCTL, 23)                       \
    X(SPP_TABLE_POINTER, W64, TCTL, 24)                          \
    X(TSC_MULTIPLIER, W64, TCTL, 25)                             \
    X(TERTIARY_PROCESSOR_CONTROLS, W64, TCTL, 26)                \
    X(ENCLV_EXITING_BITMAP, W64, TCTL, 27)                       \
    /* B.2.2 64-bit read-only data fields */                     \
    X(GUEST_PHYSICAL_ADDRESS, W64, TEXIT, 0)                     \
    /* B.2.3 64-bit guest-state fields */                        \
    X(VMCS_LINK_POINTER, W64, TGUEST, 0)                         \
    X(GUEST_IA32_DEBUGCTL, W64, TGUEST, 1)                       \
    X(GUEST_IA32_PAT, W64, TGUEST, 2)                            \
    X(GUEST_IA32_EFER, W64, TGUEST, 3)                           \
    X(GUEST_IA32_PERF_GLOBAL_CTRL, W64, TGUEST, 4)               \
    X(GUEST_PDPTE0, W64, TGUEST, 5)                              \
    X(GUEST_PDPTE1, W64, TGUEST, 6)                              \
    X(GUEST_PDPTE2, W64, TGUEST, 7)                              \
    X(GUEST_PDPTE3, W64, TGUEST, 8)                              \
    X(GUEST_IA32_BNDCFGS, W64, TGUEST, 9)                        \
    X(GUEST_IA32_RTIT_CTL, W64, TGUEST, 10)                      \
    X(GUEST_IA32_LBR_CTL, W64, TGUEST, 11)                       \
    X(GUEST_IA32_PKRS, W64, TGUEST, 12)                          \
    /* B.2.4 64-bit host-state fields */                         \
    X(HOST_IA32_PAT, W64, THOST, 0)                              \
    X(HOST_IA32_EFER, W64, THOST, 1)                             \
    X(HOST_IA32_PERF_GLOBAL_CTRL, W64, THOST, 2)                 \
    X(HOST_IA32_PKRS, W64, THOST, 3)                             \
    /* B.3.1 32-bit control fields */                            \
    X(PIN_BASED_VM_EXECUTION_CONTROLS, W32, TCTL, 0)             \
    X(PRIMARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, W32, TCTL, 1) \
    X(EXCEPTION_BITMAP, W32, TCTL, 2)                            \
    X(PAGE_FAULT_ERROR_CODE_MASK, W32, TCTL, 3)                  \
    X(PAGE_FAULT_ERROR_CODE_MATCH, W32, TCTL, 4)                 \
    X(CR3_TARGET_COUNT, W32, TCTL, 5)                            \
    X(PRIMARY_VMEXIT_CONTROLS, W32, TCTL, 6)                     \
    X(VMEXIT_MSR_STORE_COUNT, W32, TCTL, 7)                      \
    X(VMEXIT_MSR_LOAD_COUNT, W32, TCTL, 8)                       \
    X(VMENTRY_CONTROLS, W32, TCTL, 9)                            \
    X(VMENTRY_MSR_LOAD_COUNT, W32, TCTL, 10)                     \
    X(VMENTRY_INTERRUPTION_INFORMATION, W32, TCTL, 11)           \
    X(VMENTRY_EXCEPTION_ERROR_CODE, W32, TCTL, 12)               \
    X(VMENTRY_INSTRUCTION_LENGTH, W32, TCTL, 13)                 \
    X(TPR_THRESHOLD, W32, TCTL, 14)                              \
    X(SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS, W32, TCTL, 15) \
    X(PLE_GAP, W32, TCTL, 16)                                    \
    X(PLE_WINDOW, W32, TCTL, 17)                                 \
    /* B.3.2 32-bit read-only data fields */                     \
    X(VM_INSTRUCTION_ERROR, W32, TEXIT, 0)                       \
    X(EXIT_REASON, W32, TEXIT, 1)                                \
    X(VMEXIT_INTERRUPTION_INFORMATION, W32, TEXIT, 2)            \
    X(VMEXIT_INTERRUPTION_ERROR_CODE, W32, TEXIT, 3)             \
    X(IDT_VECTORING_INFORMATION, W32, TEXIT, 4)                  \
    X(IDT_VECTORING_ERROR_CODE, W32, TEXIT, 5)                   \
    X(VMEXIT_INSTRUCTION_LENGTH, W32, TEXIT, 6)                  \
    X(VMEXIT_INSTRUCTION_INFO, W32, TEXIT, 7)                    \
    /* B.3.3 32-bit guest-state fields */                        \
    X(GUEST_ES_LIMIT, W32, TGUEST, 0)                            \
    X(GUEST_CS_LIMIT, W32, TGUEST, 1)                            \
    X(GUEST_SS_LIMIT, W32, TGUEST, 2)                            \
    X(GUEST_DS_LIMIT, W32, TGUEST, 3)                            \
    X(GUEST_FS_LIMIT, W32, TGUEST, 4)                            \
    X(GUEST_GS_LIMIT, W32, TGUEST, 5)                            \
    X(GUEST_LDTR_LIMIT, W32, TGUEST, 6)                          \
    X(GUEST_TR_LIMIT, W32, TGUEST, 7)                            \
    X(GUEST_GDTR_LIMIT, W32, TGUEST, 8)                          \
    X(GUEST_IDTR_LIMIT, W32, TGUEST, 9)                          \
    X(GUEST_ES_ACCESS_RIGHTS, W32, TGUEST, 10)                   \
    X(GUEST_CS_ACCESS_RIGHTS, W32, TGUEST, 11)                   \
    X(GUEST_SS_ACCESS_RIGHTS, W32, TGUEST, 12)                   \
    X(GUEST_DS_ACCESS_RIGHTS, W32, TGUEST, 13)                   \
    X(GUEST_FS_ACCESS_RIGHTS, W32, TGUEST, 14)                   \
    X(GUEST_GS_ACCESS_RIGHTS, W32, TGUEST, 15)                   \
    X(GUEST_LDTR_ACCESS_RIGHTS, W32, TGUEST, 16)                 \
    X(GUEST_TR_ACCESS_RIGHTS, W32, TGUEST, 17)                   \
    X(GUEST_INTERRUPTIBILITY_STATE, W32, TGUEST, 18)             \
    X(GUEST_ACTIVITY_STATE, W32, TGUEST, 19)                     \
    X(GUEST_SMBASE, W32, TGUEST, 20)                             \
    X(GUEST_IA32_SYSENTER_CS, W32, TGUEST, 21)                   \
    X(VMX_PREEMPTION_TIMER_VALUE, W32, TGUEST, 23)               \
    /* B.3.4 32-bit host-state field */                          \
    X(HOST_IA32_SYSENTER_CS, W32, THOST, 0)                      \
    /* B.4.1 natural-width control fields */                     \
    X(CR0_GUEST_HOST_MASK, WNAT, TCTL, 0)                        \
    X(CR4_GUEST_HOST_MASK, WNAT, TCTL, 1)                        \
    X(CR0_READ_SHADOW, WNAT, TCTL, 2)                            \
    X(CR4_READ_SHADOW, WNAT, TCTL, 3)                            \
    X(CR3_TARGET_VALUE_0, WNAT, TCTL, 4)                         \
    X(CR3_TARGET_VALUE_1, WNAT, TCTL, 5)                         \
    X(CR3_TARGET_VALUE_2, WNAT, TCTL, 6)                         \
    X(CR3_TARGET_VALUE_3, WNAT, TCTL, 7)                         \
    /* B.4.2 natural-width read-only data fields */              \
    X(EXIT_QUALIFICATION, WNAT, TEXIT, 0)                        \
    X(IO_RCX, WNAT, TEXIT, 1)                                    \
    X(IO_RSI, WNAT, TEXIT, 2)                                    \
    X(IO_RDI, WNAT, TEXIT, 3)                                    \
    X(IO_RIP, WNAT, TEXIT, 4)                                    \
    X(GUEST_LINEAR_ADDRESS, WNAT, TEXIT, 5)                      \
    /* B.4.3 natural-width guest-state fields */                 \
    X(GUEST_CR0, WNAT, TGUEST, 0)                                \
    X(GUEST_CR3, WNAT, TGUEST, 1)                                \
    X(GUEST_CR4, WNAT, TGUEST, 2)                                \
    X(GUEST_ES_BASE, WNAT, TGUEST, 3)                            \
    X(GUEST_CS_BASE, WNAT, TGUEST, 4)                            \
    X(GUEST_SS_BASE, WNAT, TGUEST, 5)                            \
    X(GUEST_DS_BASE, WNAT, TGUEST, 6)                            \
    X(GUEST_FS_BASE, WNAT, TGUEST, 7)                            \
    X(GUEST_GS_BASE, WNAT, TGUEST, 8)                            \
    X(GUEST_LDTR_BASE, WNAT, TGUEST, 9)                          \
    X(GUEST_TR_BASE, WNAT, TGUEST, 10)                           \
    X(GUEST_GDTR_BASE, WNAT, TGUEST, 11)                         \
    X(GUEST_IDTR_BASE, WNAT, TGUEST, 12)                         \
    X(GUEST_DR7, WNAT, TGUEST, 13)                               \
    X(GUEST_RSP, WNAT, TGUEST, 14)                               \
    X(GUEST_RIP, WNAT, TGUEST, 15)                               \
    X(GUEST_RFLAGS, WNAT, TGUEST, 16)                            \
    X(GUEST_PENDING_DEBUG_EXCEPTIONS, WNAT, TGUEST, 17)          \
    X(GUEST_IA32_SYSENTER_ESP, WNAT, TGUEST, 18)                 \
    X(GUEST_IA32_SYSENTER_EIP, WNAT, TGUEST, 19)                 \
    X(GUEST_IA32_S_CET, WNAT, TGUEST, 20)                        \
    X(GUEST_SSP, WNAT, TGUEST, 21)                               \
    X(GUEST_IA32_INTERRUPT_SSP_TABLE_ADDR, WNAT, TGUEST, 22)     \
    /* B.4.4 natural-width host-state fields */                  \
    X(HOST_CR0, WNAT, THOST, 0)                                  \
    X(HOST_CR3, WNAT, THOST, 1)                                  \
    X(HOST_CR4, WNAT, THOST, 2)                                  \
    X(HOST_FS_BASE, WNAT, THOST, 3)                              \
    X(HOST_GS_BASE, WNAT, THOST, 4)                              \
    X(HOST_TR_BASE, WNAT, THOST, 5)                              \
    X(HOST_GDTR_BASE, WNAT, THOST, 6)                            \
    X(HOST_IDTR_BASE, WNAT, THOST, 7)                            \
    X(HOST_IA32_SYSENTER_ESP, WNAT, THOST, 8)                    \
    X(HOST_IA32_SYSENTER_EIP, WNAT, THOST, 9)                    \
    X(HOST_RSP, WNAT, THOST, 10)                                 \
    X(HOST_RIP, WNAT, THOST, 11)                                 \
    X(HOST_IA32_S_CET, WNAT, THOST, 12)                          \
    X(HOST_SSP, WNAT, THOST, 13)                                 \
    X(HOST_IA32_INTERRUPT_SSP_TABLE_ADDR, WNAT, THOST, 14)

#define HV_VMCS_ENUM_ENTRY(name, width, type, index) \
    VMCS_##name = VMCS_ENCODE(VMCS_ACCESS_FULL, index, type, width),
enum HV_VMCS_FIELD { HV_VMCS_FIELDS(HV_VMCS_ENUM_ENTRY) };
#undef HV_VMCS_ENUM_ENTRY

#define HV_VMCS_COUNT_ONE(name, width, type, index) +1
enum { HV_VMCS_FIELD_COUNT = 0 HV_VMCS_FIELDS(HV_VMCS_COUNT_ONE) };
#undef HV_VMCS_COUNT_ONE

/* One catalogue entry: what layout discovery and the snapshot iterate. */
typedef struct HV_VMCS_FIELD_INFO {
    uint32_t Encoding;
    const char *Name;
} HV_VMCS_FIELD_INFO;

extern const HV_VMCS_FIELD_INFO HvVmcsFieldCatalogue[HV_VMCS_FIELD_COUNT];

/* Bytes a field holds on x64 (natural width = 8). */
static __inline uint32_t HvVmcsFieldBytes(uint32_t encoding)
{
    static const uint8_t bytes_by_width[4] = { 2, 8, 4, 8 };
    return bytes_by_width[VMCS_ENCODING_WIDTH(encoding)];
}

#endif
