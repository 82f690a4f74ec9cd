/*
 * hv_status.h -- the driver's platform-neutral status codes.
 *
 * core/ returns HV_STATUS; the platform layer turns it into the OS's own code
 * (HvPlatformStatusCode: an NTSTATUS on Windows). The descriptor and the vCPU
 * record the OS's code, because that is what a debugger user looks up
 * (docs/debug-descriptor.md).
 *
 * The one table: name, the NTSTATUS it maps to (only platform/windows expands
 * that column), what it means.
 */
#ifndef HV_STATUS_H
#define HV_STATUS_H

#define HV_STATUS_TABLE(X)                                                                                  \
    X(HV_STATUS_SUCCESS, STATUS_SUCCESS, "success")                                                         \
    X(HV_STATUS_UNSUCCESSFUL, STATUS_UNSUCCESSFUL,                                                          \
      "a VMX step failed on a processor (its failure record says which)")                                   \
    X(HV_STATUS_INSUFFICIENT_RESOURCES, STATUS_INSUFFICIENT_RESOURCES,                                      \
      "out of non-paged or physically contiguous memory")                                                   \
    X(HV_STATUS_NOT_SUPPORTED, STATUS_NOT_SUPPORTED,                                                        \
      "the processor lacks VMX or a VMX capability the driver needs")                                      \
    X(HV_STATUS_HV_FEATURE_UNAVAILABLE, STATUS_HV_FEATURE_UNAVAILABLE,                                      \
      "VMX is disabled in the firmware, or a feature the OS uses cannot be enabled in a guest")             \
    X(HV_STATUS_INVALID_PROCESSOR, STATUS_INVALID_PARAMETER,                                                \
      "the OS has no processor with that index")

#define HV_STATUS_ENUM_ENTRY(name, os_code, message) name,
typedef enum HV_STATUS {
    HV_STATUS_TABLE(HV_STATUS_ENUM_ENTRY)
    HV_STATUS_COUNT
} HV_STATUS;
#undef HV_STATUS_ENUM_ENTRY

#define HV_SUCCESS(status) ((status) == HV_STATUS_SUCCESS)

/* What a status means, in words (core/hv_status.c). */
const char *HvStatusMessage(HV_STATUS status);

#endif
