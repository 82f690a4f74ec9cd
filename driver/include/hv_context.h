/*
 * hv_context.h -- the VMM context and the per-processor (vCPU) context.
 *
 * The suite never hard-codes these offsets: it reads them from the debug
 * descriptor's member table, which is generated from HV_DEBUG_MEMBERS below
 * with offsetof. Fixed-width types and pointers only (x64: pointers are 8
 * bytes on Windows and on the Linux host, so the host test sees the same
 * layout as the driver).
 */
#ifndef HV_CONTEXT_H
#define HV_CONTEXT_H

#include "hv_types_base.h"
#include "hv_debug.h"

struct HV_VMM_CONTEXT;

typedef struct HV_VCPU {
    uint32_t ProcessorIndex;      /* 0-based, as KeQueryActiveProcessorCountEx enumerates */
    uint32_t State;               /* HV_VCPU_STATE_* */
    uint32_t FailedStep;          /* HV_STEP_* of the last failure, 0 if none */
    uint32_t VmInstructionError;  /* SDM 31.4, VMREAD first after a VMfailValid */
    int32_t Status;               /* NTSTATUS of this processor's virtualization */
    uint32_t HostStackSize;
    void *VmxonRegion;            /* 4 KiB, 4 KiB-aligned, revision id in dword 0 (SDM 25.11.5) */
    uint64_t VmxonRegionPa;
    void *VmcsRegion;             /* 4 KiB, 4 KiB-aligned (SDM 25.2) */
    uint64_t VmcsRegionPa;
    void *MsrBitmap;              /* 4 KiB of zeroes: no MSR exits (SDM 25.6.9) */
    uint64_t MsrBitmapPa;
    void *HostStack;              /* lowest address; filled with HV_HOST_STACK_PATTERN */
    uint64_t OriginalCr0;         /* restored at devirtualization / undo */
    uint64_t OriginalCr4;
    uint64_t ExitCount;
    uint32_t LastExitReason;      /* full 32-bit exit-reason field (SDM 25.9.1) */
    uint32_t LastExitInstructionLength;
    uint64_t LastExitQualification;
    uint64_t LastGuestRip;
    uint32_t UnexpectedExitCount;
    uint32_t LastUnexpectedExitReason;
    uint32_t TripleFault;         /* 1 once a triple-fault exit was seen */
    uint32_t HypercallCount;
    uint32_t ParentHypercallCount; /* hypercalls passed to a parent hypervisor */
    uint32_t VmxLost;             /* 1: found out of VMX operation without leaving it (power) */
    uint32_t ExitCountsByReason[HV_EXIT_REASON_SLOTS]; /* index = basic exit reason (bits 15:0) */
    struct HV_VMM_CONTEXT *Vmm;
    HV_VMCS_SNAPSHOT Snapshot;
} HV_VCPU;

typedef struct HV_VMM_CONTEXT {
    uint32_t ProcessorCount;
    uint32_t VirtualizedCount;    /* processors currently in HV_VCPU_STATE_LAUNCHED */
    uint32_t State;               /* HV_DRIVER_STATE_* */
    int32_t Status;               /* NTSTATUS of the load */
    HV_VCPU *Vcpus;               /* ProcessorCount entries */
    /* Capability MSRs as read at load (SDM Vol. 3 App. A). */
    uint64_t FeatureControl;      /* IA32_FEATURE_CONTROL after the driver locked it */
    uint64_t CapBasic;            /* IA32_VMX_BASIC 0x480 */
    uint64_t CapPinbased;         /* 0x481 or IA32_VMX_TRUE_PINBASED_CTLS 0x48D */
    uint64_t CapProcbased;        /* 0x482 or 0x48E */
    uint64_t CapExit;             /* 0x483 or 0x48F */
    uint64_t CapEntry;            /* 0x484 or 0x490 */
    uint64_t CapMisc;             /* 0x485 */
    uint64_t CapCr0Fixed0;        /* 0x486 */
    uint64_t CapCr0Fixed1;        /* 0x487 */
    uint64_t CapCr4Fixed0;        /* 0x488 */
    uint64_t CapCr4Fixed1;        /* 0x489 */
    uint64_t CapVmcsEnum;         /* 0x48A */
    uint64_t CapProcbased2;       /* 0x48B (0 when primary bit 31 is never allowed) */
    /* The control values the driver wrote, after adjustment (SDM App. A.3-A.5). */
    uint32_t PinbasedControls;
    uint32_t ProcbasedControls;
    uint32_t Procbased2Controls;
    uint32_t ExitControls;
    uint32_t EntryControls;
    uint32_t Reserved0;
    uint64_t FeatureControlAtLoad; /* IA32_FEATURE_CONTROL as the firmware left it (processor 0) */
    uint32_t Parent;              /* HV_PARENT_*: a hypervisor under this one */
    uint32_t ParentVendor[3];     /* its CPUID 0x40000000 EBX, ECX, EDX */
    uint32_t AdvertisedFeatures;  /* bit i = HvGuestFeatures[i] in CPUID */
    uint32_t Procbased2Wanted;    /* secondary controls those features need */
    uint32_t MissingFeature;      /* 1 + index of the feature the CPU cannot enable; 0 = none */
    uint32_t PowerTransitions;    /* sleep/resume cycles survived (\Callback\PowerState) */
} HV_VMM_CONTEXT;

/*
 * The member table: X(struct-prefix, C type, member). The prefix is what the
 * descriptor names carry ("VMM.", "VCPU.", "SNAP."). Add members at the end
 * of a group or anywhere: parsers look them up by name.
 */
#define HV_DEBUG_MEMBERS(X)                                   \
    X(VMM, HV_VMM_CONTEXT, ProcessorCount)                    \
    X(VMM, HV_VMM_CONTEXT, VirtualizedCount)                  \
    X(VMM, HV_VMM_CONTEXT, State)                             \
    X(VMM, HV_VMM_CONTEXT, Status)                            \
    X(VMM, HV_VMM_CONTEXT, Vcpus)                             \
    X(VMM, HV_VMM_CONTEXT, FeatureControl)                    \
    X(VMM, HV_VMM_CONTEXT, CapBasic)                          \
    X(VMM, HV_VMM_CONTEXT, CapPinbased)                       \
    X(VMM, HV_VMM_CONTEXT, CapProcbased)                      \
    X(VMM, HV_VMM_CONTEXT, CapExit)                           \
    X(VMM, HV_VMM_CONTEXT, CapEntry)                          \
    X(VMM, HV_VMM_CONTEXT, CapMisc)                           \
    X(VMM, HV_VMM_CONTEXT, CapCr0Fixed0)                      \
    X(VMM, HV_VMM_CONTEXT, CapCr0Fixed1)                      \
    X(VMM, HV_VMM_CONTEXT, CapCr4Fixed0)                      \
    X(VMM, HV_VMM_CONTEXT, CapCr4Fixed1)                      \
    X(VMM, HV_VMM_CONTEXT, CapVmcsEnum)                       \
    X(VMM, HV_VMM_CONTEXT, CapProcbased2)                     \
    X(VMM, HV_VMM_CONTEXT, PinbasedControls)                  \
    X(VMM, HV_VMM_CONTEXT, ProcbasedControls)                 \
    X(VMM, HV_VMM_CONTEXT, Procbased2Controls)                \
    X(VMM, HV_VMM_CONTEXT, ExitControls)                      \
    X(VMM, HV_VMM_CONTEXT, EntryControls)                     \
    X(VMM, HV_VMM_CONTEXT, FeatureControlAtLoad)              \
    X(VMM, HV_VMM_CONTEXT, Parent)                            \
    X(VMM, HV_VMM_CONTEXT, Procbased2Wanted)                  \
    X(VMM, HV_VMM_CONTEXT, MissingFeature)                    \
    X(VMM, HV_VMM_CONTEXT, PowerTransitions)                  \
    X(VCPU, HV_VCPU, ProcessorIndex)                          \
    X(VCPU, HV_VCPU, State)                                   \
    X(VCPU, HV_VCPU, FailedStep)                              \
    X(VCPU, HV_VCPU, VmInstructionError)                      \
    X(VCPU, HV_VCPU, Status)                                  \
    X(VCPU, HV_VCPU, HostStackSize)                           \
    X(VCPU, HV_VCPU, VmxonRegion)                             \
    X(VCPU, HV_VCPU, VmxonRegionPa)                           \
    X(VCPU, HV_VCPU, VmcsRegion)                              \
    X(VCPU, HV_VCPU, VmcsRegionPa)                            \
    X(VCPU, HV_VCPU, MsrBitmap)                               \
    X(VCPU, HV_VCPU, MsrBitmapPa)                             \
    X(VCPU, HV_VCPU, HostStack)                               \
    X(VCPU, HV_VCPU, OriginalCr0)                             \
    X(VCPU, HV_VCPU, OriginalCr4)                             \
    X(VCPU, HV_VCPU, ExitCount)                               \
    X(VCPU, HV_VCPU, LastExitReason)                          \
    X(VCPU, HV_VCPU, LastExitInstructionLength)               \
    X(VCPU, HV_VCPU, LastExitQualification)                   \
    X(VCPU, HV_VCPU, LastGuestRip)                            \
    X(VCPU, HV_VCPU, UnexpectedExitCount)                     \
    X(VCPU, HV_VCPU, LastUnexpectedExitReason)                \
    X(VCPU, HV_VCPU, TripleFault)                             \
    X(VCPU, HV_VCPU, HypercallCount)                          \
    X(VCPU, HV_VCPU, ParentHypercallCount)                    \
    X(VCPU, HV_VCPU, VmxLost)                                 \
    X(VCPU, HV_VCPU, ExitCountsByReason)                      \
    X(VCPU, HV_VCPU, Vmm)                                     \
    X(VCPU, HV_VCPU, Snapshot)                                \
    X(SNAP, HV_VMCS_SNAPSHOT, Count)                          \
    X(SNAP, HV_VMCS_SNAPSHOT, VmInstructionError)             \
    X(SNAP, HV_VMCS_SNAPSHOT, Reason)                         \
    X(SNAP, HV_VMCS_SNAPSHOT, ExitReason)                     \
    X(SNAP, HV_VMCS_SNAPSHOT, Sequence)                       \
    X(SNAP, HV_VMCS_SNAPSHOT, Entries)

#endif
