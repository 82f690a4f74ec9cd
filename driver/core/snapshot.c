/*
 * The per-vCPU VMCS snapshot (docs/debug-descriptor.md): every field VMREAD
 * accepts, with a sequence number a debugger uses to detect a torn read.
 */
#include "hv_core.h"
#include "hv_vmcs.h"
#include "hv_intrin.h"
#include "hv_platform.h"

#if defined(_MSC_VER)
#define HV_COMPILER_BARRIER() _ReadWriteBarrier()
#else
#define HV_COMPILER_BARRIER() __asm__ __volatile__("" ::: "memory")
#endif

static void HvFillSnapshot(HV_VMCS_SNAPSHOT *snap, uint32_t reason, uint32_t exit_reason, uint32_t vm_error)
{
    uint32_t i, count = 0;
    size_t value;

    snap->Sequence++; /* odd: being written */
    HV_COMPILER_BARRIER();
    for (i = 0; i < (uint32_t)HV_VMCS_FIELD_COUNT && count < HV_VMCS_SNAPSHOT_CAPACITY; i++) {
        uint32_t enc = HvVmcsFieldCatalogue[i].Encoding;
        if (__vmx_vmread(enc, &value) != HV_VMX_OK)
            continue;
        snap->Entries[count].Encoding = enc;
        snap->Entries[count].Pad = 0;
        snap->Entries[count].Value = (uint64_t)value;
        count++;
    }
    snap->Count = count;
    snap->VmInstructionError = vm_error;
    snap->Reason = reason;
    snap->ExitReason = exit_reason;
    HV_COMPILER_BARRIER();
    snap->Sequence++; /* even: complete */
}

void HvCoreTakeSnapshot(HV_VCPU *vcpu, uint32_t reason, uint32_t exit_reason, uint32_t vm_error)
{
    HvFillSnapshot(&vcpu->Snapshot, reason, exit_reason, vm_error);
}

void HvCoreRecordFailure(HV_VCPU *vcpu, uint32_t step, HV_STATUS status, uint32_t vm_error)
{
    HV_FAILURE_RECORD *f = &HvDebugDescriptor.LastFailure;
    int32_t code = HvPlatformStatusCode(status); /* what the debugger user looks up */

    vcpu->State = HV_VCPU_STATE_FAILED;
    vcpu->FailedStep = step;
    vcpu->Status = code;
    vcpu->VmInstructionError = vm_error;

    f->Valid = 1;
    f->ProcessorIndex = vcpu->ProcessorIndex;
    f->FailedStep = step;
    f->VmInstructionError = vm_error;
    f->Status = code;
    /* The vCPU's snapshot, if one was taken for this failure, else empty. */
    if (vcpu->Snapshot.Count != 0 && vcpu->Snapshot.Reason != HV_SNAPSHOT_REASON_NONE) {
        f->Snapshot.Sequence++;
        HV_COMPILER_BARRIER();
        for (uint32_t i = 0; i < vcpu->Snapshot.Count; i++)
            f->Snapshot.Entries[i] = vcpu->Snapshot.Entries[i];
        f->Snapshot.Count = vcpu->Snapshot.Count;
        f->Snapshot.VmInstructionError = vcpu->Snapshot.VmInstructionError;
        f->Snapshot.Reason = vcpu->Snapshot.Reason;
        f->Snapshot.ExitReason = vcpu->Snapshot.ExitReason;
        HV_COMPILER_BARRIER();
        f->Snapshot.Sequence++;
    } else {
        f->Snapshot.Count = 0;
        f->Snapshot.Reason = HV_SNAPSHOT_REASON_NONE;
        f->Snapshot.ExitReason = ~0u;
        f->Snapshot.VmInstructionError = vm_error;
    }
}
