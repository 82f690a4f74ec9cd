"""Deferred procedure calls: KeInitializeDpc, KeSetTargetProcessorDpcEx,
KeSetImportanceDpc, KeInsertQueueDpc, KeRemoveQueueDpc, KeFlushQueuedDpcs.

HyperPlatform and Hypervisor From Scratch queue a DPC to a chosen processor.
On Windows it runs there at DISPATCH_LEVEL as soon as that processor can,
possibly while the caller goes on. The lab has no interrupts and runs one
processor at a time, so it takes the earliest such moment: the routine runs
on its target processor (the caller's when none was set) before
KeInsertQueueDpc returns TRUE; a DPC is therefore never found still queued
(KeRemoveQueueDpc returns FALSE, KeFlushQueuedDpcs has nothing to wait for).
KDPC (x64): Type +0, Importance +1, Number +2, DeferredRoutine +0x18,
DeferredContext +0x20, SystemArgument1/2 +0x28/+0x30, DpcData +0x38.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from emulated_lab.nt.services import STATUS_INVALID_PARAMETER, STATUS_SUCCESS, service

if TYPE_CHECKING:
    from emulated_lab.nt.kernel import Call, NtKernel

DPC_OBJECT = 0x13                 # KOBJECTS DpcObject
MEDIUM_IMPORTANCE = 1


@service("KeInitializeDpc")
def _init(self: "NtKernel", c: "Call") -> int:
    dpc = c.arg(0)
    self.m.write_virt(dpc, struct.pack("<BBH4x16xQQQQQ", DPC_OBJECT, MEDIUM_IMPORTANCE, 0, c.arg(1), c.arg(2),
                                       0, 0, 0))
    self.dpc_targets.pop(dpc, None)
    return 0


@service("KeSetTargetProcessorDpcEx")
def _target(self: "NtKernel", c: "Call") -> int:
    group, number = struct.unpack("<HB", self.m.read_virt(c.arg(1), 3))
    if group != 0 or number >= len(self.m.processors):
        return STATUS_INVALID_PARAMETER
    self.dpc_targets[c.arg(0)] = number
    self.m.write_virt(c.arg(0) + 2, struct.pack("<H", number))
    return STATUS_SUCCESS


@service("KeSetImportanceDpc")
def _importance(self: "NtKernel", c: "Call") -> int:
    self.m.write_virt(c.arg(0) + 1, bytes([c.arg(1) & 0xFF]))
    return 0


@service("KeInsertQueueDpc")
def _insert(self: "NtKernel", c: "Call") -> int:
    dpc, arg1, arg2 = c.arg(0), c.arg(1), c.arg(2)
    routine, context = struct.unpack("<QQ", self.m.read_virt(dpc + 0x18, 16))
    self.m.write_virt(dpc + 0x28, struct.pack("<QQ", arg1, arg2))
    target = self.dpc_targets.get(dpc, self.m.current)
    self._broadcast(c, routine, lambda k: (dpc, context, arg1, arg2), False, only=[target])
    return 1


@service("KeRemoveQueueDpc")
def _remove(self: "NtKernel", c: "Call") -> int:
    return 0


@service("KeFlushQueuedDpcs")
def _flush(self: "NtKernel", c: "Call") -> int:
    return 0
