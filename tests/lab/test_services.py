"""The ntoskrnl services, each called the way a driver calls it (MS x64 ABI
through its stub) from code running on the emulated CPU."""
import struct

import pytest

from emulated_lab.asm import assemble
from emulated_lab.machine import DIRECT_MAP, Machine
from emulated_lab.nt.kernel import BugCheck, NtKernel


@pytest.fixture
def kern():
    m = Machine(cpus=2)
    k = NtKernel(m)
    yield k
    m.close()


def call(k, name, *args):
    """Calls service `name` from emulated code; returns RAX."""
    stack_args = "".join("    mov rax, 0x%x\n    mov [rsp + 0x%x], rax\n" % (a, 0x20 + 8 * i)
                         for i, a in enumerate(args[4:]))
    regs = "".join("    mov %s, 0x%x\n" % (r, a) for r, a in zip(("rcx", "rdx", "r8", "r9"), args))
    code = assemble("    sub rsp, 0x48\n%s%s    mov rax, 0x%x\n    call rax\n    add rsp, 0x48\n    ret"
                    % (stack_args, regs, k.stub(name)))
    r = k.call_on_thread(k.m.place_code(code), ())
    assert r.stop == "return", r.fault
    return r.regs["rax"]


def test_memory_services(kern):
    m = kern.m
    va = call(kern, "ExAllocatePool2", 0x40, 100, 0x6C616268)      # POOL_FLAG_NON_PAGED: zeroed
    assert m.read_virt(va, 100) == bytes(100)
    raw = call(kern, "ExAllocatePoolWithTag", 0, 100, 0x6C616268)   # not zeroed, like Windows
    assert m.read_virt(raw, 100) != bytes(100)
    assert call(kern, "MmGetPhysicalAddress", va + 0x10) == m.translate(va) + 0x10
    assert call(kern, "MmGetVirtualForPhysical", m.translate(va)) == va
    assert call(kern, "MmIsAddressValid", va) == 1 and call(kern, "MmIsAddressValid", 0x1234000) == 0
    call(kern, "memset", va, 0xAB, 16)
    call(kern, "memcpy", raw, va, 16)
    assert m.read_virt(raw, 16) == b"\xAB" * 16
    assert call(kern, "RtlCompareMemory", raw, va, 16) == 16
    call(kern, "ExFreePoolWithTag", va, 0x6C616268)
    assert call(kern, "MmIsAddressValid", va) == 0                  # freed memory is unmapped
    assert [a.va for a in kern.leaks()] == [raw]
    with pytest.raises(BugCheck, match="0xc2"):
        call(kern, "ExFreePoolWithTag", va, 0)                     # double free: BAD_POOL_CALLER


def test_strings_context_and_routines(kern):
    m = kern.m
    buf, _ = m.alloc_page()
    m.write_virt(buf + 0x100, "KeBugCheckEx".encode("utf-16-le") + b"\0\0")
    call(kern, "RtlInitUnicodeString", buf, buf + 0x100)
    length, maximum, ptr = struct.unpack("<HHxxxxQ", m.read_virt(buf, 16))
    assert (length, maximum, ptr) == (24, 26, buf + 0x100)
    assert call(kern, "MmGetSystemRoutineAddress", buf) == kern.stub("KeBugCheckEx")
    ctx = buf + 0x400
    call(kern, "RtlCaptureContext", ctx)
    rsp, rip = struct.unpack_from("<Q", m.read_virt(ctx + 0x98, 8))[0], m.read_u64(ctx + 0xF8)
    assert rip != 0 and rsp > DIRECT_MAP
    assert struct.unpack("<H", m.read_virt(ctx + 0x38, 2))[0] == 0x10              # SegCs
    number = buf + 0x800
    assert call(kern, "KeGetProcessorNumberFromIndex", 1, number) == 0
    assert m.read_virt(number, 4) == b"\0\0\x01\0"
    assert call(kern, "KeGetProcessorNumberFromIndex", 5, number) == 0xC000000D
    assert call(kern, "KeQueryActiveProcessorCountEx", 0xFFFF) == 2


def test_bugcheck_stops_the_machine(kern):
    with pytest.raises(BugCheck) as e:
        call(kern, "KeBugCheckEx", 0x48564C42, 1, 2, 3, 4)
    assert e.value.code == 0x48564C42 and e.value.params == [1, 2, 3, 4]


def test_contiguous_allocations_honour_address_constraints(kern):
    from emulated_lab.memory import PAGE
    m = kern.m
    # (NumberOfBytes, Lowest, Highest, BoundaryAddressMultiple, CacheType)
    va = call(kern, "MmAllocateContiguousMemorySpecifyCache", 2 * PAGE, 0x4000000, (1 << 64) - 1, 0, 1)
    assert m.translate(va) >= 0x4000000
    assert call(kern, "MmAllocateContiguousMemorySpecifyCache", PAGE, 0, 0xFFFFF, 0, 1) == 0   # nothing below 1 MiB
    assert call(kern, "MmAllocateContiguousMemory", PAGE, 0xFFFFF) == 0
    for _ in range(3):
        pa = m.translate(call(kern, "MmAllocateContiguousMemorySpecifyCache", 3 * PAGE, 0, (1 << 64) - 1, 0x4000, 1))
        assert pa // 0x4000 == (pa + 3 * PAGE - 1) // 0x4000
    assert call(kern, "MmAllocateContiguousMemorySpecifyCache", 8 * PAGE, 0, (1 << 64) - 1, 0x4000, 1) == 0


def test_restore_context_without_control_or_with_an_exception_record_is_one_error(kern):
    from emulated_lab.machine import MachineError
    m = kern.m
    ctx, _ = m.alloc_page()
    with pytest.raises(MachineError, match="exception record"):
        call(kern, "RtlRestoreContext", ctx, ctx)
    with pytest.raises(MachineError, match="without CONTEXT_CONTROL"):
        call(kern, "RtlRestoreContext", ctx, 0)


def _object_attributes(kern, name):
    """OBJECT_ATTRIBUTES naming `name` (x64: Length, RootDirectory, ObjectName +0x10, Attributes)."""
    m = kern.m
    va, _ = m.alloc_page()
    text = name.encode("utf-16-le")
    m.write_virt(va + 0x100, text + b"\0\0")
    m.write_virt(va + 0x80, struct.pack("<HHxxxxQ", len(text), len(text) + 2, va + 0x100))
    m.write_virt(va, struct.pack("<IxxxxQQI", 0x30, 0, va + 0x80, 0x40))
    return va


def test_power_state_callback_registration_notification_and_release(kern):
    m = kern.m
    out, _ = m.alloc_page()
    attrs = _object_attributes(kern, "\\Callback\\PowerState")
    assert call(kern, "ExCreateCallback", out, attrs, 0, 1) == 0
    obj = m.read_u64(out)
    # a callback routine that records (Context, Argument1, Argument2) at Context
    routine = m.place_code(assemble("mov [rcx], rcx\nmov [rcx + 8], rdx\nmov [rcx + 16], r8\nret"))
    ctx, _ = m.alloc_page()
    handle = call(kern, "ExRegisterCallback", obj, routine, ctx)
    assert handle and kern.held_objects()
    assert kern.notify_callback("\\Callback\\PowerState", 3, 0) == [routine]
    assert struct.unpack("<3Q", m.read_virt(ctx, 24)) == (ctx, 3, 0)
    call(kern, "ExNotifyCallback", obj, 3, 1)                         # a driver may notify too
    assert struct.unpack("<3Q", m.read_virt(ctx, 24)) == (ctx, 3, 1)
    call(kern, "ExUnregisterCallback", handle)
    assert kern.held_objects() == ["1 reference(s) to \\Callback\\PowerState"]
    call(kern, "ObfDereferenceObject", obj)
    assert kern.held_objects() == []
    assert kern.notify_callback("\\Callback\\PowerState", 3, 1) == []


def test_open_of_a_missing_callback_object_fails_and_create_makes_it(kern):
    m = kern.m
    out, _ = m.alloc_page()
    attrs = _object_attributes(kern, "\\Callback\\HvLabTest")
    assert call(kern, "ExCreateCallback", out, attrs, 0, 1) == 0xC0000034     # STATUS_OBJECT_NAME_NOT_FOUND
    assert call(kern, "ExCreateCallback", out, attrs, 1, 1) == 0
    assert call(kern, "ObfDereferenceObject", m.read_u64(out)) == 0


def test_unregistering_twice_is_a_bugcheck(kern):
    m = kern.m
    out, _ = m.alloc_page()
    call(kern, "ExCreateCallback", out, _object_attributes(kern, "\\Callback\\PowerState"), 0, 1)
    handle = call(kern, "ExRegisterCallback", m.read_u64(out), m.place_code(assemble("ret")), 0)
    call(kern, "ExUnregisterCallback", handle)
    with pytest.raises(BugCheck):
        call(kern, "ExUnregisterCallback", handle)
