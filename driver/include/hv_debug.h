/*
 * hv_debug.h -- the debug descriptor: the one contract between hv.sys and the
 * windbg_ext suite (and the emulated lab).
 *
 * Like Linux's vmcoreinfo, the driver publishes one versioned, self-describing
 * block so a debugger can read the driver's state without private symbols:
 *   - a 64-bit magic ("HVLABDBG" as 8 ASCII bytes in memory order),
 *   - version and sizes (descriptor, header, pointer, VMM context, vCPU),
 *   - a member table {name, offset, size} generated with offsetof in a static
 *     initializer (see core/debug_descriptor.c; never typed numbers),
 *   - pointers (VAs) to the VMM context and the vCPU array (physical addresses
 *     of each vCPU's regions live in the vCPU structures),
 *   - the VMCS layout map discovered at load (Actaeon method, see
 *     core/vmcs_layout.c) as {encoding, offset, width, flags},
 *   - a flag the debugger may flip to get a VMCS snapshot at every VM exit.
 *
 * The symbol is exported from the PE by name (HvDebugDescriptor), so the lab
 * finds it in the export table and pykd as hv!HvDebugDescriptor; in a dump
 * without symbols the suite scans for the magic and validates the header
 * (SelfVa, sizes, version). Layout and versioning rules: docs/debug-descriptor.md.
 *
 * Everything here uses fixed-width types only (LLP64 vs LP64) and compiles
 * with the host compiler, mingw-w64, clang and MSVC.
 */
#ifndef HV_DEBUG_H
#define HV_DEBUG_H

#include "hv_types_base.h"
#include "hv_export.h"

/* "HVLABDBG": bytes 48 56 4C 41 42 44 42 47 in memory (little-endian u64). */
#define HV_DEBUG_MAGIC 0x47424442414C5648ULL
/* Bump when a header field moves or changes meaning; adding members to the
 * member table or new snapshot reasons does NOT bump it (parsers look members
 * up by name and must ignore names they do not know). */
#define HV_DEBUG_VERSION 1u

#define HV_DEBUG_MEMBER_NAME_LEN 32u   /* NUL-padded ASCII, always NUL-terminated */
#define HV_DEBUG_MEMBER_CAPACITY 96u
#define HV_VMCS_LAYOUT_CAPACITY 256u
#define HV_VMCS_SNAPSHOT_CAPACITY 256u
#define HV_EXIT_REASON_SLOTS 80u       /* per-reason exit counters, SDM Vol. 3 App. C */
#define HV_HOST_STACK_SIZE 0x6000u     /* 24 KiB per processor */
/* Every unused host-stack qword holds this ("HVSTACK!"): the suite finds the
 * high-water mark by scanning up from the base for the first other value. */
#define HV_HOST_STACK_PATTERN 0x214B434154535648ULL

/* ---- vCPU state (HV_VCPU.State) ----------------------------------------- */
#define HV_VCPU_STATE_OFF 0u           /* not (yet) in VMX operation */
#define HV_VCPU_STATE_VMX_ROOT 1u      /* VMXON done, VMCS current, not launched */
#define HV_VCPU_STATE_LAUNCHED 2u      /* VMLAUNCH succeeded: OS runs as guest */
#define HV_VCPU_STATE_FAILED 3u        /* a step failed; see FailedStep / VmInstructionError */
#define HV_VCPU_STATE_DEVIRTUALIZED 4u /* VMXOFF done after running as guest */

/* ---- which step failed (HV_VCPU.FailedStep) ------------------------------ */
#define HV_STEP_NONE 0u
#define HV_STEP_VMX_UNSUPPORTED 1u     /* CPUID.1:ECX.VMX[bit 5] clear */
#define HV_STEP_FEATURE_CONTROL 2u     /* IA32_FEATURE_CONTROL locked without VMXON outside SMX */
#define HV_STEP_ALLOCATION 3u
#define HV_STEP_VMXON 4u
#define HV_STEP_VMCLEAR 5u
#define HV_STEP_VMPTRLD 6u
#define HV_STEP_VMWRITE 7u
#define HV_STEP_VMLAUNCH 8u
#define HV_STEP_CAPABILITY 9u          /* a required control is not allowed by the CPU */
#define HV_STEP_SEGMENT 10u            /* a GDT descriptor the guest state needs is unreadable */
#define HV_STEP_VMRESUME 11u           /* VMRESUME failed after an exit (the driver then bugchecks) */
#define HV_STEP_FIXED_BITS 12u         /* VMX operation would clear a CR0/CR4 bit the OS set (A.7, A.8) */
#define HV_STEP_VMX_REGIONS 13u        /* IA32_VMX_BASIC asks for regions this driver cannot give (A.1) */

/* ---- driver state (HV_VMM_CONTEXT.State, mirrored in the descriptor) ----- */
#define HV_DRIVER_STATE_NOT_LOADED 0u
#define HV_DRIVER_STATE_LOADING 1u
#define HV_DRIVER_STATE_RUNNING 2u     /* every processor virtualized */
#define HV_DRIVER_STATE_FAILED 3u      /* load failed and everything was undone */
#define HV_DRIVER_STATE_UNLOADED 4u

/* ---- the VMCS layout map (Actaeon method) -------------------------------- */
#define HV_LAYOUT_STATUS_NOT_DISCOVERED 0u
#define HV_LAYOUT_STATUS_DISCOVERED 1u
#define HV_LAYOUT_STATUS_FAILED 2u

#define HV_LAYOUT_FLAG_FOUND 0x01u        /* Offset is valid */
#define HV_LAYOUT_FLAG_ROTATED8 0x02u     /* memory holds the value rotated left by 8 bits
                                            (Bochs stores access rights this way) */
#define HV_LAYOUT_FLAG_UNSUPPORTED 0x04u  /* VMREAD failed: field not supported by this CPU */
#define HV_LAYOUT_FLAG_UNMATCHED 0x08u    /* VMREAD worked but the value was no dword index */

typedef struct HV_VMCS_LAYOUT_ENTRY {
    uint32_t Encoding;  /* SDM Vol. 3 App. B (full-access encoding) */
    uint16_t Offset;    /* byte offset inside the 4 KiB VMCS region (if FOUND) */
    uint8_t Width;      /* bytes: 2, 4 or 8 (natural width is 8 on x64) */
    uint8_t Flags;      /* HV_LAYOUT_FLAG_* */
} HV_VMCS_LAYOUT_ENTRY;

/* ---- the per-vCPU VMCS snapshot ----------------------------------------- */
#define HV_SNAPSHOT_REASON_NONE 0u
#define HV_SNAPSHOT_REASON_VMLAUNCH_FAILED 1u  /* VMLAUNCH VMfailValid/VMfailInvalid */
#define HV_SNAPSHOT_REASON_VMRESUME_FAILED 2u  /* VMRESUME failed after an exit */
#define HV_SNAPSHOT_REASON_EVERY_EXIT 3u       /* SnapshotOnEveryExit was set */
#define HV_SNAPSHOT_REASON_HYPERCALL 4u        /* HV_HYPERCALL_SNAPSHOT */
#define HV_SNAPSHOT_REASON_ENTRY_FAILURE 5u    /* exit reason bit 31: VM-entry failure (SDM 27.8) */
#define HV_SNAPSHOT_REASON_TRIPLE_FAULT 6u
#define HV_SNAPSHOT_REASON_UNEXPECTED_EXIT 7u

typedef struct HV_VMCS_SNAPSHOT_ENTRY {
    uint32_t Encoding;
    uint32_t Pad;
    uint64_t Value;     /* VMREAD result, zero-extended */
} HV_VMCS_SNAPSHOT_ENTRY;

typedef struct HV_VMCS_SNAPSHOT {
    uint32_t Count;               /* valid entries (only fields VMREAD accepted) */
    uint32_t VmInstructionError;  /* SDM 31.4; 0 when none */
    uint32_t Reason;              /* HV_SNAPSHOT_REASON_* */
    uint32_t ExitReason;          /* the full exit-reason field, ~0u when not from an exit */
    uint64_t Sequence;            /* odd while being written, even when complete */
    HV_VMCS_SNAPSHOT_ENTRY Entries[HV_VMCS_SNAPSHOT_CAPACITY];
} HV_VMCS_SNAPSHOT;

/* ---- the last failure, kept in the image itself ------------------------- */
/* A failed load undoes everything and frees every allocation, vCPU snapshots
 * included; this copy lives in hv.sys's .data (inside the descriptor), so a
 * debugger or the lab still sees why the last load attempt failed. */
typedef struct HV_FAILURE_RECORD {
    uint32_t Valid;               /* 1 once a failure was recorded */
    uint32_t ProcessorIndex;
    uint32_t FailedStep;          /* HV_STEP_* */
    uint32_t VmInstructionError;  /* SDM 31.4, 0 if none */
    int32_t Status;               /* NTSTATUS the step produced */
    uint32_t Pad;
    HV_VMCS_SNAPSHOT Snapshot;    /* Count = 0 when no VMCS was current */
} HV_FAILURE_RECORD;

/* ---- the descriptor itself ---------------------------------------------- */
typedef struct HV_DEBUG_MEMBER {
    char Name[HV_DEBUG_MEMBER_NAME_LEN];  /* "VMM.ProcessorCount", "VCPU.VmcsRegionPa", "SNAP.Count" */
    uint32_t Offset;                      /* offsetof in its structure */
    uint32_t Size;                        /* sizeof the member (arrays: the whole array) */
} HV_DEBUG_MEMBER;

typedef struct HV_DEBUG_DESCRIPTOR {
    uint64_t Magic;               /* 0x00 HV_DEBUG_MAGIC */
    uint32_t Version;             /* 0x08 HV_DEBUG_VERSION */
    uint32_t DescriptorSize;      /* 0x0C sizeof(HV_DEBUG_DESCRIPTOR) incl. tables */
    uint32_t HeaderSize;          /* 0x10 offset of Members[] (end of fixed header) */
    uint32_t PointerSize;         /* 0x14 8 on x64 */
    uint32_t VmmContextSize;      /* 0x18 sizeof(HV_VMM_CONTEXT) */
    uint32_t VcpuSize;            /* 0x1C sizeof(HV_VCPU): stride of the vCPU array */
    uint64_t SelfVa;              /* 0x20 VA of this descriptor (set at load; validates a scan hit) */
    uint64_t VmmContextVa;        /* 0x28 HV_VMM_CONTEXT*, 0 when not loaded */
    uint64_t VcpuArrayVa;         /* 0x30 HV_VCPU[VcpuCount], 0 when not loaded */
    uint32_t VcpuCount;           /* 0x38 */
    volatile uint32_t SnapshotOnEveryExit; /* 0x3C debugger writes 1: snapshot at every VM exit */
    uint32_t SnapshotCapacity;    /* 0x40 HV_VMCS_SNAPSHOT_CAPACITY */
    uint32_t SnapshotEntrySize;   /* 0x44 sizeof(HV_VMCS_SNAPSHOT_ENTRY) */
    uint32_t HostStackSize;       /* 0x48 bytes per vCPU (VCPU.HostStack is the base) */
    uint32_t DriverState;         /* 0x4C HV_DRIVER_STATE_* */
    uint64_t HostStackPattern;    /* 0x50 HV_HOST_STACK_PATTERN */
    uint32_t MemberCount;         /* 0x58 used entries of Members[] */
    uint32_t MemberEntrySize;     /* 0x5C sizeof(HV_DEBUG_MEMBER) */
    uint32_t MembersOffset;       /* 0x60 from the start of the descriptor */
    uint32_t LayoutStatus;        /* 0x64 HV_LAYOUT_STATUS_* */
    uint32_t LayoutCount;         /* 0x68 used entries of Layout[] */
    uint32_t LayoutEntrySize;     /* 0x6C sizeof(HV_VMCS_LAYOUT_ENTRY) */
    uint32_t LayoutOffset;        /* 0x70 from the start of the descriptor */
    uint32_t LayoutRevisionId;    /* 0x74 IA32_VMX_BASIC[30:0] the map belongs to */
    int32_t LoadStatus;           /* 0x78 NTSTATUS DriverEntry returned (0 until it returns) */
    uint32_t FailureOffset;       /* 0x7C offset of LastFailure from the start of the descriptor */
    char Producer[32];            /* 0x80 "hvlab hv.sys <version>", NUL-padded */
    HV_DEBUG_MEMBER Members[HV_DEBUG_MEMBER_CAPACITY];       /* 0xA0 */
    HV_VMCS_LAYOUT_ENTRY Layout[HV_VMCS_LAYOUT_CAPACITY];
    HV_FAILURE_RECORD LastFailure; /* at FailureOffset */
} HV_DEBUG_DESCRIPTOR;

/* The header offsets above are part of version 1: keep them true. */
HV_STATIC_ASSERT(desc_version_at_8, offsetof(HV_DEBUG_DESCRIPTOR, Version) == 0x08);
HV_STATIC_ASSERT(desc_self_at_20, offsetof(HV_DEBUG_DESCRIPTOR, SelfVa) == 0x20);
HV_STATIC_ASSERT(desc_flag_at_3c, offsetof(HV_DEBUG_DESCRIPTOR, SnapshotOnEveryExit) == 0x3C);
HV_STATIC_ASSERT(desc_pattern_at_50, offsetof(HV_DEBUG_DESCRIPTOR, HostStackPattern) == 0x50);
HV_STATIC_ASSERT(desc_loadstatus_at_78, offsetof(HV_DEBUG_DESCRIPTOR, LoadStatus) == 0x78);
HV_STATIC_ASSERT(desc_producer_at_80, offsetof(HV_DEBUG_DESCRIPTOR, Producer) == 0x80);
HV_STATIC_ASSERT(desc_members_at_a0, offsetof(HV_DEBUG_DESCRIPTOR, Members) == 0xA0);
HV_STATIC_ASSERT(member_entry_40, sizeof(HV_DEBUG_MEMBER) == 40);
HV_STATIC_ASSERT(layout_entry_8, sizeof(HV_VMCS_LAYOUT_ENTRY) == 8);
HV_STATIC_ASSERT(snapshot_entry_16, sizeof(HV_VMCS_SNAPSHOT_ENTRY) == 16);
HV_STATIC_ASSERT(snapshot_header_24, offsetof(HV_VMCS_SNAPSHOT, Entries) == 24);
HV_STATIC_ASSERT(failure_snapshot_at_24, offsetof(HV_FAILURE_RECORD, Snapshot) == 24);
HV_STATIC_ASSERT(desc_failure_offset_at_7c, offsetof(HV_DEBUG_DESCRIPTOR, FailureOffset) == 0x7C);

/* The exported instance (core/debug_descriptor.c). */
extern HV_EXPORT HV_DEBUG_DESCRIPTOR HvDebugDescriptor;

#endif
