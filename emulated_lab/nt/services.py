"""The ntoskrnl services the emulated kernel implements, by export name.

Each service gets the kernel and the call (MS x64 ABI arguments) and returns
RAX. `SERVICES` is the whole list: importing anything else fails at load.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Callable, Dict

from emulated_lab.memory import DIRECT_MAP
from emulated_lab.nt.print_filter import DEFAULT_ID, INFO_LEVEL

if TYPE_CHECKING:
    from emulated_lab.nt.kernel import Call, NtKernel

STATUS_SUCCESS = 0
STATUS_INVALID_PARAMETER = 0xC000000D
POOL_FLAG_UNINITIALIZED = 0x2    # ExAllocatePool2 flags

SERVICES: Dict[str, Callable[["NtKernel", "Call"], int]] = {}


def service(*names: str):
    def deco(fn):
        for name in names:
            SERVICES[name] = fn
        return fn
    return deco


def _processors(self: "NtKernel") -> int:
    return len(self.m.processors)


def _lowest(self: "NtKernel", mask: int) -> int:
    """The first processor of an affinity mask (the thread runs there)."""
    mask &= (1 << _processors(self)) - 1
    if not mask:
        raise self._bugcheck(0x5, [0, 0, 0, 0], "affinity mask selects no processor")
    return (mask & -mask).bit_length() - 1


@service("DbgPrintEx")
def _dbgprintex(self: "NtKernel", c: Call) -> int:
    i = [3]

    def nxt() -> int:
        v = c.arg(i[0])
        i[0] += 1
        return v
    return self._print(c.arg(0) & 0xFFFFFFFF, c.arg(1) & 0xFFFFFFFF, c.arg(2), nxt)


@service("DbgPrint")
def _dbgprint(self: "NtKernel", c: Call) -> int:
    i = [1]

    def nxt() -> int:
        v = c.arg(i[0])
        i[0] += 1
        return v
    return self._print(DEFAULT_ID, INFO_LEVEL, c.arg(0), nxt)  # Vista and later: DEFAULT, INFO


@service("vDbgPrintEx")
def _vdbgprintex(self: "NtKernel", c: Call) -> int:
    ap = [c.arg(3)]

    def nxt() -> int:
        v = self.m.read_u64(ap[0])
        ap[0] += 8
        return v
    return self._print(c.arg(0) & 0xFFFFFFFF, c.arg(1) & 0xFFFFFFFF, c.arg(2), nxt)


@service("KeBugCheckEx")
def _bug(self: "NtKernel", c: Call) -> int:
    raise self._bugcheck(c.arg(0) & 0xFFFFFFFF, [c.arg(i) for i in range(1, 5)])


@service("KeBugCheck")
def _bug1(self: "NtKernel", c: Call) -> int:
    raise self._bugcheck(c.arg(0) & 0xFFFFFFFF, [0, 0, 0, 0])

# pool
@service("ExAllocatePoolWithTag")
def _pool_tag(self: "NtKernel", c: Call) -> int:
    return self._allocate(c.arg(1), "pool", c.arg(2) & 0xFFFFFFFF, zero=False)


@service("ExAllocatePool")
def _pool(self: "NtKernel", c: Call) -> int:
    return self._allocate(c.arg(1), "pool", 0, zero=False)


@service("ExAllocatePoolZero")
def _pool_zero(self: "NtKernel", c: Call) -> int:
    return self._allocate(c.arg(1), "pool", c.arg(2) & 0xFFFFFFFF)


@service("ExAllocatePool2")
def _pool2(self: "NtKernel", c: Call) -> int:
    return self._allocate(c.arg(1), "pool", c.arg(2) & 0xFFFFFFFF,
                          zero=not (c.arg(0) & POOL_FLAG_UNINITIALIZED))


@service("ExFreePoolWithTag", "ExFreePool", "ExFreePool2")
def _free_pool(self: "NtKernel", c: Call) -> int:
    return self._free(c.arg(0), "pool", "ExFreePool")

# contiguous memory (MmAllocateContiguousNodeMemory: emulated_lab/nt/numa.py)
@service("MmAllocateContiguousMemory")
def _contig(self: "NtKernel", c: Call) -> int:
    # (NumberOfBytes, HighestAcceptableAddress)
    return self._allocate(c.arg(0), "contiguous", zero=False, highest=c.arg(1))


@service("MmAllocateContiguousMemorySpecifyCache")
def _contig2(self: "NtKernel", c: Call) -> int:
    # (NumberOfBytes, Lowest, Highest, BoundaryAddressMultiple, CacheType)
    return self._allocate(c.arg(0), "contiguous", zero=False, lowest=c.arg(1), highest=c.arg(2),
                          boundary=c.arg(3))


@service("MmFreeContiguousMemory", "MmFreeContiguousMemorySpecifyCache")
def _free_contig(self: "NtKernel", c: Call) -> int:
    return self._free(c.arg(0), "contiguous", "MmFreeContiguousMemory")


@service("MmAllocateNonCachedMemory")
def _noncached(self: "NtKernel", c: Call) -> int:
    return self._allocate(c.arg(0), "noncached")


@service("MmFreeNonCachedMemory")
def _free_noncached(self: "NtKernel", c: Call) -> int:
    return self._free(c.arg(0), "noncached", "MmFreeNonCachedMemory")


@service("MmGetPhysicalAddress")
def _getpa(self: "NtKernel", c: Call) -> int:
    pa = self.m.translate(c.arg(0))   # a page-table walk, as the kernel does
    return pa if pa is not None else 0


@service("MmGetVirtualForPhysical")
def _getva(self: "NtKernel", c: Call) -> int:
    pa = c.arg(0)
    return DIRECT_MAP + pa if self.m.is_backed(pa) else 0


@service("MmIsAddressValid")
def _valid(self: "NtKernel", c: Call) -> int:
    return 1 if self.m.translate(c.arg(0)) is not None else 0


@service("MmGetSystemRoutineAddress")
def _routine(self: "NtKernel", c: Call) -> int:
    name = self.read_unicode_string(c.arg(0))
    return self.stub(name) if name in SERVICES else 0

# processors
@service("KeQueryActiveProcessorCount")
def _count(self: "NtKernel", c: Call) -> int:
    if c.arg(0):
        self.m.write_u64(c.arg(0), (1 << _processors(self)) - 1)
    return _processors(self)


@service("KeQueryMaximumProcessorCount")
def _count_max(self: "NtKernel", c: Call) -> int:
    return _processors(self)


ALL_PROCESSOR_GROUPS = 0xFFFF


@service("KeQueryActiveProcessorCountEx", "KeQueryMaximumProcessorCountEx")
def _count_ex(self: "NtKernel", c: Call) -> int:
    # (GroupNumber): every processor is in group 0 (the lab has at most 64)
    return _processors(self) if c.arg(0) & 0xFFFF in (0, ALL_PROCESSOR_GROUPS) else 0


@service("KeQueryGroupAffinity")
def _group_affinity(self: "NtKernel", c: Call) -> int:
    return (1 << _processors(self)) - 1 if c.arg(0) & 0xFFFF == 0 else 0


@service("KeGetCurrentProcessorIndex")
def _cur_index(self: "NtKernel", c: Call) -> int:
    return self.m.current


@service("KeQueryActiveProcessors")
def _active(self: "NtKernel", c: Call) -> int:
    return (1 << _processors(self)) - 1


@service("KeQueryActiveGroupCount", "KeQueryMaximumGroupCount")
def _groups(self: "NtKernel", c: Call) -> int:
    return 1


@service("KeGetCurrentProcessorNumberEx")
def _cur(self: "NtKernel", c: Call) -> int:
    self._processor_number(c.arg(0), self.m.current)
    return self.m.current


@service("KeGetCurrentProcessorNumber")
def _cur0(self: "NtKernel", c: Call) -> int:
    return self.m.current


@service("KeGetProcessorNumberFromIndex")
def _num_from_index(self: "NtKernel", c: Call) -> int:
    if c.arg(0) & 0xFFFFFFFF >= _processors(self):
        return STATUS_INVALID_PARAMETER
    self._processor_number(c.arg(1), c.arg(0) & 0xFFFFFFFF)
    return STATUS_SUCCESS


@service("KeGetProcessorIndexFromNumber")
def _index_from_num(self: "NtKernel", c: Call) -> int:
    group, number = struct.unpack("<HB", self.m.read_virt(c.arg(0), 3))
    return number if group == 0 and number < _processors(self) else 0xFFFFFFFF


@service("KeSetSystemAffinityThreadEx")
def _aff_ex(self: "NtKernel", c: Call) -> int:
    prev = self.affinity
    self.affinity = c.arg(0)
    self._move_thread(c, _lowest(self, c.arg(0)))
    return prev


@service("KeSetSystemAffinityThread")
def _aff(self: "NtKernel", c: Call) -> int:
    self.affinity = c.arg(0)
    self._move_thread(c, _lowest(self, c.arg(0)))
    return 0


@service("KeRevertToUserAffinityThreadEx")
def _revert_ex(self: "NtKernel", c: Call) -> int:
    self.affinity = c.arg(0) or ((1 << _processors(self)) - 1)
    if c.arg(0):
        self._move_thread(c, _lowest(self, c.arg(0)))
    return 0


@service("KeRevertToUserAffinityThread")
def _revert(self: "NtKernel", c: Call) -> int:
    self.affinity = (1 << _processors(self)) - 1
    return 0


@service("KeSetSystemGroupAffinityThread")
def _group_aff(self: "NtKernel", c: Call) -> int:
    mask = self.m.read_u64(c.arg(0))
    if c.arg(1):
        self.m.write_virt(c.arg(1), struct.pack("<QHHHH", self.affinity, 0, 0, 0, 0))
    self.affinity = mask
    self._move_thread(c, _lowest(self, mask))
    return 0


@service("KeRevertToUserGroupAffinityThread")
def _group_revert(self: "NtKernel", c: Call) -> int:
    mask = self.m.read_u64(c.arg(0))
    self.affinity = mask or ((1 << _processors(self)) - 1)
    if mask:
        self._move_thread(c, _lowest(self, mask))
    return 0


@service("KeIpiGenericCall")
def _ipi(self: "NtKernel", c: Call) -> int:
    # Windows interrupts every other processor, then runs the routine on the
    # calling one too and returns its result once all have finished. One after
    # another here: the others in index order, the caller's processor last, so
    # the calling thread continues right after its own processor's call.
    ctx = c.arg(1)
    self._broadcast(c, c.arg(0), lambda k: (ctx,), True, caller_last=True)
    return 0


@service("KeGenericCallDpc")
def _gdpc(self: "NtKernel", c: Call) -> int:
    routine, ctx = c.arg(0), c.arg(1)
    kdpc, _ = self.m.alloc_page()
    self.dpc_done = 0
    # SystemArgument1/2 carry the processor index so the barrier calls know who they are
    self._broadcast(c, routine, lambda k: (kdpc, ctx, 0x1000 + k, 0x2000 + k), False)
    return 0


@service("KeSignalCallDpcDone")
def _dpc_done(self: "NtKernel", c: Call) -> int:
    self.dpc_done += 1
    return 0


@service("KeSignalCallDpcSynchronize")
def _dpc_sync(self: "NtKernel", c: Call) -> int:
    # sequential processors cannot meet at a barrier; the last one "arrives last"
    return 1 if self.m.current == _processors(self) - 1 else 0


@service("KeRaiseIrqlToDpcLevel", "KfRaiseIrql", "KeRaiseIrqlToSynchLevel")
def _raise(self: "NtKernel", c: Call) -> int:
    return 0


@service("KfLowerIrql", "KeLowerIrql", "KeStallExecutionProcessor", "KeFlushCurrentTbImmediately",
     "KeEnterCriticalRegion", "KeLeaveCriticalRegion")
def _nop(self: "NtKernel", c: Call) -> int:
    return 0


@service("KeGetCurrentIrql")
def _irql(self: "NtKernel", c: Call) -> int:
    return 0


@service("KeDelayExecutionThread")
def _delay(self: "NtKernel", c: Call) -> int:
    return STATUS_SUCCESS

# run-time library
@service("RtlInitUnicodeString")
def _init_us(self: "NtKernel", c: Call) -> int:
    dst, src = c.arg(0), c.arg(1)
    n_ = len(self.read_wstring(src)) * 2 if src else 0
    self.m.write_virt(dst, struct.pack("<HHxxxxQ", n_, n_ + 2 if src else 0, src))
    return 0


@service("memset")
def _memset(self: "NtKernel", c: Call) -> int:
    if c.arg(2):
        self.m.write_virt(c.arg(0), bytes([c.arg(1) & 0xFF]) * c.arg(2))
    return c.arg(0)


@service("memcpy", "memmove", "RtlCopyMemory", "RtlMoveMemory")
def _memcpy(self: "NtKernel", c: Call) -> int:
    if c.arg(2):
        self.m.write_virt(c.arg(0), self.m.read_virt(c.arg(1), c.arg(2)))
    return c.arg(0)


@service("RtlZeroMemory")
def _zero(self: "NtKernel", c: Call) -> int:
    if c.arg(1):
        self.m.write_virt(c.arg(0), bytes(c.arg(1)))
    return 0


@service("memcmp")
def _memcmp(self: "NtKernel", c: Call) -> int:
    a, b = self.m.read_virt(c.arg(0), c.arg(2)), self.m.read_virt(c.arg(1), c.arg(2))
    return 0 if a == b else (1 if a > b else 0xFFFFFFFF)


@service("RtlCompareMemory")
def _rtlcmp(self: "NtKernel", c: Call) -> int:
    a, b = self.m.read_virt(c.arg(0), c.arg(2)), self.m.read_virt(c.arg(1), c.arg(2))
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return i


@service("strlen")
def _strlen(self: "NtKernel", c: Call) -> int:
    return len(self.read_cstring(c.arg(0), 1 << 20))


@service("wcslen")
def _wcslen(self: "NtKernel", c: Call) -> int:
    return len(self.read_wstring(c.arg(0), 1 << 20))


# more services, each module registering its own in SERVICES
from emulated_lab.nt import context, dpc, mappings, numa, system  # noqa: E402,F401
