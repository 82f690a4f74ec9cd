/*
 * hv_state_writer: lays out hv.sys's debug descriptor, VMM context and vCPU
 * array exactly as the driver's compiler does (host gcc against the driver's
 * own headers and its own descriptor initializer, debug_descriptor.c), fills
 * them from a small text script, and writes the bytes.
 *
 *   hv_state_writer SCRIPT OUT.bin  > facts.json
 *
 * OUT.bin = descriptor bytes, then the VMM context, then the vCPU array.
 * facts.json = sizeof/offsetof as this compiler sees them, so the Python
 * parser can be checked against the compiler, not against itself.
 *
 * Script lines (numbers in decimal):
 *   desc <Field> <value>           e.g. desc SelfVa 0xfffff80000100000
 *   vmm <Field> <value>
 *   vcpu <i> <Field> <value>       e.g. vcpu 1 VmcsRegionPa 0x5000
 *   exitcount <i> <reason> <n>
 *   snapentry <i> <encoding> <value>
 *   snap <i> <Field> <value>       (VmInstructionError, Reason, ExitReason, Sequence)
 *   layout <encoding> <offset> <width> <flags>
 *   failure <Field> <value>        HV_FAILURE_RECORD (Valid, ProcessorIndex, FailedStep, ...)
 *   failsnap <Field> <value> / failentry <encoding> <value>   its snapshot
 * Fields are assigned by C member access (not by table offsets), so a member
 * table that lied would be caught by the test reading the values back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv_context.h"
#include "../../../driver/core/debug_descriptor.c"

#define MAX_VCPUS 256

static HV_VMM_CONTEXT g_vmm;
static HV_VCPU g_vcpus[MAX_VCPUS];

#define SET(obj, m) if (!strcmp(field, #m)) { (obj)->m = (__typeof__((obj)->m))(uintptr_t)value; return 1; }
#define SETP(obj, m) if (!strcmp(field, #m)) { (obj)->m = (__typeof__((obj)->m))(uintptr_t)value; return 1; }

static int set_desc(const char *field, uint64_t value) {
    HV_DEBUG_DESCRIPTOR *d = &HvDebugDescriptor;
    SET(d, Magic) SET(d, Version) SET(d, DescriptorSize) SET(d, HeaderSize) SET(d, PointerSize)
    SET(d, VmmContextSize) SET(d, VcpuSize) SET(d, SelfVa) SET(d, VmmContextVa) SET(d, VcpuArrayVa)
    SET(d, VcpuCount) SET(d, SnapshotOnEveryExit) SET(d, SnapshotCapacity) SET(d, SnapshotEntrySize)
    SET(d, HostStackSize) SET(d, DriverState) SET(d, HostStackPattern) SET(d, MemberCount)
    SET(d, MemberEntrySize) SET(d, MembersOffset) SET(d, LayoutStatus) SET(d, LayoutCount)
    SET(d, LayoutEntrySize) SET(d, LayoutOffset) SET(d, LayoutRevisionId) SET(d, LoadStatus)
    return 0;
}

static int set_vmm(const char *field, uint64_t value) {
    HV_VMM_CONTEXT *v = &g_vmm;
    SET(v, ProcessorCount) SET(v, VirtualizedCount) SET(v, State) SET(v, Status) SETP(v, Vcpus)
    SET(v, FeatureControl) SET(v, CapBasic) SET(v, CapPinbased) SET(v, CapProcbased) SET(v, CapExit)
    SET(v, CapEntry) SET(v, CapMisc) SET(v, CapCr0Fixed0) SET(v, CapCr0Fixed1) SET(v, CapCr4Fixed0)
    SET(v, CapCr4Fixed1) SET(v, CapVmcsEnum) SET(v, CapProcbased2) SET(v, PinbasedControls)
    SET(v, ProcbasedControls) SET(v, Procbased2Controls) SET(v, ExitControls) SET(v, EntryControls)
    return 0;
}

static int set_vcpu(HV_VCPU *c, const char *field, uint64_t value) {
    SET(c, ProcessorIndex) SET(c, State) SET(c, FailedStep) SET(c, VmInstructionError) SET(c, Status)
    SET(c, HostStackSize) SETP(c, VmxonRegion) SET(c, VmxonRegionPa) SETP(c, VmcsRegion) SET(c, VmcsRegionPa)
    SETP(c, MsrBitmap) SET(c, MsrBitmapPa) SETP(c, HostStack) SET(c, OriginalCr0) SET(c, OriginalCr4)
    SET(c, ExitCount) SET(c, LastExitReason) SET(c, LastExitInstructionLength) SET(c, LastExitQualification)
    SET(c, LastGuestRip) SET(c, UnexpectedExitCount) SET(c, LastUnexpectedExitReason) SET(c, TripleFault)
    SET(c, HypercallCount) SETP(c, Vmm)
    return 0;
}

static int set_snap(HV_VMCS_SNAPSHOT *s, const char *field, uint64_t value) {
    SET(s, VmInstructionError) SET(s, Reason) SET(s, ExitReason) SET(s, Sequence) SET(s, Count)
    return 0;
}

static int set_failure(const char *field, uint64_t value) {
    HV_FAILURE_RECORD *f = &HvDebugDescriptor.LastFailure;
    SET(f, Valid) SET(f, ProcessorIndex) SET(f, FailedStep) SET(f, VmInstructionError) SET(f, Status)
    return 0;
}

static void fail(int line, const char *why) {
    fprintf(stderr, "hv_state_writer: script line %d: %s\n", line, why);
    exit(2);
}

#define FACT_MEMBER(prefix, type, member) \
    printf("%s\"%s.%s\": [%u, %u]", first ? "" : ", ", #prefix, #member, \
           (unsigned)offsetof(type, member), (unsigned)sizeof(((type *)0)->member)); first = 0;

#define FACT_HEADER(f) \
    printf("%s\"%s\": [%u, %u]", first ? "" : ", ", #f, (unsigned)offsetof(HV_DEBUG_DESCRIPTOR, f), \
           (unsigned)sizeof(HvDebugDescriptor.f)); first = 0;
#define HEADER_FIELDS(X) X(Magic) X(Version) X(DescriptorSize) X(HeaderSize) X(PointerSize) X(VmmContextSize) \
    X(VcpuSize) X(SelfVa) X(VmmContextVa) X(VcpuArrayVa) X(VcpuCount) X(SnapshotOnEveryExit) X(SnapshotCapacity) \
    X(SnapshotEntrySize) X(HostStackSize) X(DriverState) X(HostStackPattern) X(MemberCount) X(MemberEntrySize) \
    X(MembersOffset) X(LayoutStatus) X(LayoutCount) X(LayoutEntrySize) X(LayoutOffset) X(LayoutRevisionId) \
    X(LoadStatus) X(FailureOffset) X(Producer) X(Members) X(Layout)

int main(int argc, char **argv) {
    char line[512], kind[32], field[64];
    unsigned long long a, b, c, d;
    int n = 0, first = 1;
    unsigned vcpus_used = 0;   /* vCPUs the script touched: written whatever VcpuCount says */
    FILE *in, *out;
    if (argc != 3) {
        fprintf(stderr, "usage: hv_state_writer SCRIPT OUT.bin\n");
        return 2;
    }
    in = fopen(argv[1], "r");
    if (!in) { perror(argv[1]); return 2; }
    while (fgets(line, sizeof line, in)) {
        n++;
        if (sscanf(line, "%31s", kind) != 1 || kind[0] == '#') continue;
        if (!strcmp(kind, "desc") || !strcmp(kind, "vmm")) {
            if (sscanf(line, "%*s %63s %llu", field, (unsigned long long *)&a) != 2) fail(n, "expected: desc|vmm FIELD VALUE");
            if (!(kind[0] == 'd' ? set_desc(field, a) : set_vmm(field, a))) fail(n, "unknown field");
        } else if (!strcmp(kind, "vcpu") || !strcmp(kind, "snap")) {
            if (sscanf(line, "%*s %llu %63s %llu", (unsigned long long *)&a, field, (unsigned long long *)&b) != 3 || a >= MAX_VCPUS)
                fail(n, "expected: vcpu|snap INDEX FIELD VALUE");
            if (a + 1 > vcpus_used) vcpus_used = (unsigned)a + 1;
            if (!(kind[0] == 'v' ? set_vcpu(&g_vcpus[a], field, b) : set_snap(&g_vcpus[a].Snapshot, field, b)))
                fail(n, "unknown field");
        } else if (!strcmp(kind, "failure") || !strcmp(kind, "failsnap")) {
            if (sscanf(line, "%*s %63s %llu", field, (unsigned long long *)&a) != 2)
                fail(n, "expected: failure|failsnap FIELD VALUE");
            if (!(kind[4] == 'u' ? set_failure(field, a) : set_snap(&HvDebugDescriptor.LastFailure.Snapshot, field, a)))
                fail(n, "unknown field");
        } else if (!strcmp(kind, "failentry")) {
            HV_VMCS_SNAPSHOT *s = &HvDebugDescriptor.LastFailure.Snapshot;
            if (sscanf(line, "%*s %llu %llu", (unsigned long long *)&b, (unsigned long long *)&c) != 2)
                fail(n, "expected: failentry ENCODING VALUE");
            if (s->Count >= HV_VMCS_SNAPSHOT_CAPACITY) fail(n, "snapshot full");
            s->Entries[s->Count].Encoding = (uint32_t)b;
            s->Entries[s->Count].Value = c;
            s->Count++;
        } else if (!strcmp(kind, "exitcount")) {
            if (sscanf(line, "%*s %llu %llu %llu", (unsigned long long *)&a, (unsigned long long *)&b, (unsigned long long *)&c) != 3 ||
                a >= MAX_VCPUS || b >= HV_EXIT_REASON_SLOTS) fail(n, "expected: exitcount INDEX REASON COUNT");
            g_vcpus[a].ExitCountsByReason[b] = (uint32_t)c;
        } else if (!strcmp(kind, "snapentry")) {
            HV_VMCS_SNAPSHOT *s;
            if (sscanf(line, "%*s %llu %llu %llu", (unsigned long long *)&a, (unsigned long long *)&b, (unsigned long long *)&c) != 3 ||
                a >= MAX_VCPUS) fail(n, "expected: snapentry INDEX ENCODING VALUE");
            s = &g_vcpus[a].Snapshot;
            if (s->Count >= HV_VMCS_SNAPSHOT_CAPACITY) fail(n, "snapshot full");
            s->Entries[s->Count].Encoding = (uint32_t)b;
            s->Entries[s->Count].Value = c;
            s->Count++;
        } else if (!strcmp(kind, "layout")) {
            HV_DEBUG_DESCRIPTOR *dd = &HvDebugDescriptor;
            if (sscanf(line, "%*s %llu %llu %llu %llu", (unsigned long long *)&a, (unsigned long long *)&b, (unsigned long long *)&c,
                       (unsigned long long *)&d) != 4) fail(n, "expected: layout ENCODING OFFSET WIDTH FLAGS");
            if (dd->LayoutCount >= HV_VMCS_LAYOUT_CAPACITY) fail(n, "layout map full");
            dd->Layout[dd->LayoutCount].Encoding = (uint32_t)a;
            dd->Layout[dd->LayoutCount].Offset = (uint16_t)b;
            dd->Layout[dd->LayoutCount].Width = (uint8_t)c;
            dd->Layout[dd->LayoutCount].Flags = (uint8_t)d;
            dd->LayoutCount++;
        } else {
            fail(n, "unknown line kind");
        }
    }
    fclose(in);
    out = fopen(argv[2], "wb");
    if (!out) { perror(argv[2]); return 2; }
    fwrite(&HvDebugDescriptor, sizeof HvDebugDescriptor, 1, out);
    fwrite(&g_vmm, sizeof g_vmm, 1, out);
    fwrite(g_vcpus, sizeof g_vcpus[0], vcpus_used, out);
    if (fclose(out)) { perror(argv[2]); return 2; }
    printf("{\"sizeof\": {\"HV_DEBUG_DESCRIPTOR\": %u, \"HV_VMM_CONTEXT\": %u, \"HV_VCPU\": %u, "
           "\"HV_VMCS_SNAPSHOT\": %u, \"HV_DEBUG_MEMBER\": %u, \"HV_VMCS_LAYOUT_ENTRY\": %u},\n",
           (unsigned)sizeof(HV_DEBUG_DESCRIPTOR), (unsigned)sizeof(HV_VMM_CONTEXT), (unsigned)sizeof(HV_VCPU),
           (unsigned)sizeof(HV_VMCS_SNAPSHOT), (unsigned)sizeof(HV_DEBUG_MEMBER),
           (unsigned)sizeof(HV_VMCS_LAYOUT_ENTRY));
    printf(" \"offsetof\": {");
    HV_DEBUG_MEMBERS(FACT_MEMBER)
    printf("},\n \"header\": {");
    first = 1;
    HEADER_FIELDS(FACT_HEADER)
    printf("}}\n");
    return 0;
}
