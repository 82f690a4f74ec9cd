/*
 * The exported debug descriptor (include/hv_debug.h, docs/debug-descriptor.md).
 *
 * Everything the suite needs to know about the structures' layout is in this
 * static initializer, produced by offsetof/sizeof from HV_DEBUG_MEMBERS: it is
 * present in the hv.sys file itself, before the driver ever runs. Run-time
 * fields (pointers, layout map, states) are filled by the driver at load.
 */
#include "hv_context.h"
#include "hv_export.h"

#define HV_MEMBER_ENTRY(prefix, type, member) \
    { #prefix "." #member, (uint32_t)offsetof(type, member), (uint32_t)sizeof(((type *)0)->member) },
#define HV_MEMBER_COUNT_ONE(prefix, type, member) +1

enum { HV_MEMBER_COUNT = 0 HV_DEBUG_MEMBERS(HV_MEMBER_COUNT_ONE) };
HV_STATIC_ASSERT(member_table_fits, HV_MEMBER_COUNT <= HV_DEBUG_MEMBER_CAPACITY);

HV_EXPORT HV_DEBUG_DESCRIPTOR HvDebugDescriptor = {
    HV_DEBUG_MAGIC,
    HV_DEBUG_VERSION,
    (uint32_t)sizeof(HV_DEBUG_DESCRIPTOR),
    (uint32_t)offsetof(HV_DEBUG_DESCRIPTOR, Members),
    (uint32_t)sizeof(void *),
    (uint32_t)sizeof(HV_VMM_CONTEXT),
    (uint32_t)sizeof(HV_VCPU),
    0, /* SelfVa: set at load */
    0, /* VmmContextVa */
    0, /* VcpuArrayVa */
    0, /* VcpuCount */
    0, /* SnapshotOnEveryExit: off until a debugger writes 1 */
    HV_VMCS_SNAPSHOT_CAPACITY,
    (uint32_t)sizeof(HV_VMCS_SNAPSHOT_ENTRY),
    HV_HOST_STACK_SIZE,
    HV_DRIVER_STATE_NOT_LOADED,
    HV_HOST_STACK_PATTERN,
    HV_MEMBER_COUNT,
    (uint32_t)sizeof(HV_DEBUG_MEMBER),
    (uint32_t)offsetof(HV_DEBUG_DESCRIPTOR, Members),
    HV_LAYOUT_STATUS_NOT_DISCOVERED,
    0, /* LayoutCount */
    (uint32_t)sizeof(HV_VMCS_LAYOUT_ENTRY),
    (uint32_t)offsetof(HV_DEBUG_DESCRIPTOR, Layout),
    0, /* LayoutRevisionId */
    0, /* LoadStatus */
    (uint32_t)offsetof(HV_DEBUG_DESCRIPTOR, LastFailure),
    "hvlab hv.sys 0.1",
    { HV_DEBUG_MEMBERS(HV_MEMBER_ENTRY) },
    { { 0, 0, 0, 0 } },
    { 0, 0, 0, 0, 0, 0, { 0, 0, 0, 0, 0, { { 0, 0, 0 } } } },
};
