"""The driver's structures as Python objects: VMM context, vCPU, VMCS snapshot.

Pure: built from bytes already read and the descriptor's member table, so
every offset comes from the driver's own offsetof. Values are decoded only
when asked for (a command that shows five members pays for five).
"""
from __future__ import annotations

import struct
from typing import Dict, List, Optional, Tuple

from windbg_ext.arch import capabilities as C
from windbg_ext.arch.controls import capability_msr_for
from windbg_ext.hv.descriptor import SNAP_ENTRY, Descriptor, DescriptorError, StructLayout

# hv_debug.h: HV_VCPU_STATE_*, HV_STEP_*, HV_SNAPSHOT_REASON_*
VCPU_STATES = {0: "off", 1: "VMX root", 2: "launched", 3: "failed", 4: "devirtualized"}
FAILED_STEPS = {0: "none", 1: "VMX unsupported", 2: "IA32_FEATURE_CONTROL", 3: "allocation", 4: "VMXON",
                5: "VMCLEAR", 6: "VMPTRLD", 7: "VMWRITE", 8: "VMLAUNCH", 9: "capability", 10: "segment",
                11: "VMRESUME"}
SNAPSHOT_REASONS = {0: "none", 1: "VMLAUNCH failed", 2: "VMRESUME failed", 3: "every exit", 4: "hypercall",
                    5: "VM-entry failure", 6: "triple fault", 7: "unexpected exit"}
NO_EXIT = 0xFFFFFFFF  # HV_VMCS_SNAPSHOT.ExitReason when the snapshot is not from an exit

# hv_context.h: the HV_VMM_CONTEXT members that hold the capability MSRs read at load
CAPABILITY_MEMBERS = {C.IA32_VMX_BASIC: "CapBasic", C.IA32_VMX_MISC: "CapMisc",
                      C.IA32_VMX_CR0_FIXED0: "CapCr0Fixed0", C.IA32_VMX_CR0_FIXED1: "CapCr0Fixed1",
                      C.IA32_VMX_CR4_FIXED0: "CapCr4Fixed0", C.IA32_VMX_CR4_FIXED1: "CapCr4Fixed1",
                      C.IA32_VMX_VMCS_ENUM: "CapVmcsEnum", C.IA32_VMX_PROCBASED_CTLS2: "CapProcbased2"}
# ... and, by control kind (arch.controls), the ones whose MSR depends on IA32_VMX_BASIC bit 55
CONTROL_CAPABILITY_MEMBERS = {"pin": "CapPinbased", "proc": "CapProcbased", "exit": "CapExit", "entry": "CapEntry"}


class Record:
    """A driver structure read from the target: members by name, at their table offsets."""

    def __init__(self, layout: StructLayout, data: bytes, address: int) -> None:
        self.layout = layout
        self.data = data
        self.address = address

    def has(self, name: str) -> bool:
        return name in self.layout

    def raw(self, name: str) -> bytes:
        m = self.layout.member(name)
        if m.offset + m.size > len(self.data):
            raise DescriptorError("%s.%s at 0x%x lies past the %d bytes read"
                                  % (self.layout.prefix, name, self.address, len(self.data)))
        return self.data[m.offset:m.offset + m.size]

    def u(self, name: str) -> int:
        return int.from_bytes(self.raw(name), "little")

    def s(self, name: str) -> int:
        return int.from_bytes(self.raw(name), "little", signed=True)

    def get(self, name: str, default: Optional[int] = None) -> Optional[int]:
        return self.u(name) if self.has(name) else default

    def u32_array(self, name: str) -> List[int]:
        raw = self.raw(name)
        return list(struct.unpack("<%dI" % (len(raw) // 4), raw[:len(raw) // 4 * 4]))


class Snapshot:
    """HV_VMCS_SNAPSHOT: the VMREAD values the driver stored (architectural values)."""

    def __init__(self, record: Record, entry_size: int, capacity: int) -> None:
        self.record = record
        self.count = record.u("Count")
        self.vm_instruction_error = record.u("VmInstructionError")
        self.reason_code = record.u("Reason")
        self.exit_reason = record.u("ExitReason")
        self.sequence = record.u("Sequence")
        entries = record.raw("Entries")
        if self.count > capacity or self.count * entry_size > len(entries):
            raise DescriptorError("VMCS snapshot at 0x%x is corrupt: Count %d exceeds its capacity %d"
                                  % (record.address, self.count, min(capacity, len(entries) // entry_size)))
        self.values: Dict[int, int] = {}
        for i in range(self.count):
            encoding, _, value = SNAP_ENTRY.unpack_from(entries, i * entry_size)
            self.values[encoding] = value

    @property
    def reason(self) -> str:
        return SNAPSHOT_REASONS.get(self.reason_code, "unknown (%d)" % self.reason_code)

    @property
    def torn(self) -> bool:
        """Odd sequence: the driver was writing it when the target stopped."""
        return bool(self.sequence & 1)


class _Structure:
    """A driver structure whose members read as attributes: vcpu.VmcsRegionPa -> the
    member's value (names are the driver's own)."""

    def __init__(self, record: Record) -> None:
        self.record = record

    def __getattr__(self, name: str) -> int:
        rec = self.__dict__.get("record")
        if rec is not None and name[:1].isupper():
            return rec.u(name)  # a member the table lacks: DescriptorError naming it
        raise AttributeError(name)

    @property
    def status(self) -> int:
        return self.record.s("Status") & 0xFFFFFFFF


class Vcpu(_Structure):
    def __init__(self, index: int, record: Record, desc: Descriptor) -> None:
        super().__init__(record)
        self.index = index
        self.desc = desc

    @property
    def address(self) -> int:
        return self.record.address

    @property
    def state(self) -> str:
        s = self.record.u("State")
        return VCPU_STATES.get(s, "unknown (%d)" % s)

    @property
    def failed_step(self) -> str:
        s = self.record.get("FailedStep", 0) or 0
        return FAILED_STEPS.get(s, "unknown (%d)" % s)

    def host_stack(self) -> Tuple[int, int]:
        """(lowest address, size)."""
        size = self.record.get("HostStackSize") or self.desc.HostStackSize
        return self.record.u("HostStack"), size

    def snapshot(self) -> Snapshot:
        snap_member = self.record.layout.member("Snapshot")
        layout = self.desc.structs.get("SNAP")
        if layout is None:
            raise DescriptorError("the driver's member table describes no SNAP.* members")
        return Snapshot(Record(layout, self.record.raw("Snapshot"), self.address + snap_member.offset),
                        self.desc.SnapshotEntrySize, self.desc.SnapshotCapacity)

    def exit_counts(self) -> Dict[int, int]:
        if not self.record.has("ExitCountsByReason"):
            return {}
        return {i: n for i, n in enumerate(self.record.u32_array("ExitCountsByReason")) if n}


class Vmm(_Structure):
    """HV_VMM_CONTEXT."""

    @property
    def vmx_basic(self) -> int:
        """IA32_VMX_BASIC as the driver read it at load (0 when not recorded)."""
        return self.record.get(CAPABILITY_MEMBERS[C.IA32_VMX_BASIC], 0) or 0

    def capability_members(self, basic: int) -> Dict[int, str]:
        """{MSR: member} for the capability MSRs the driver recorded at load. A
        control member holds the MSR the driver used: TRUE_* when `basic`
        (IA32_VMX_BASIC) says they exist (SDM A.2)."""
        members = list(CAPABILITY_MEMBERS.items())
        members += [(capability_msr_for(kind, basic), m) for kind, m in CONTROL_CAPABILITY_MEMBERS.items()]
        return {msr: m for msr, m in members if self.record.has(m)}


def failure_snapshot(desc: Descriptor) -> Optional[Snapshot]:
    """The snapshot in the descriptor's last-failure record, or None when there is none."""
    f = desc.failure
    layout = desc.structs.get("SNAP")
    if f is None or not f.valid or layout is None:
        return None
    return Snapshot(Record(layout, f.snapshot_bytes, f.address), desc.SnapshotEntrySize, desc.SnapshotCapacity)


def vcpus_from_array(desc: Descriptor, data: bytes, base: int, first: int = 0) -> List[Vcpu]:
    layout = desc.structs.get("VCPU")
    if layout is None:
        raise DescriptorError("the driver's member table describes no VCPU.* members")
    stride = desc.VcpuSize
    return [Vcpu(first + i, Record(layout, data[i * stride:(i + 1) * stride], base + i * stride), desc)
            for i in range(len(data) // stride)]
