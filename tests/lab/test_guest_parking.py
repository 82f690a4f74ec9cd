"""Processors in VMX non-root survive the lab's processor switches: a small
VMM (tests/lab/minivmm.py) virtualizes every processor; code then runs as a
guest on each one in turn, and its CPUID/VMCALL exits reach the right VMM."""
import pytest

from emulated_lab.asm import assemble
from emulated_lab.machine import Machine
from emulated_lab.nt.kernel import NtKernel

from tests.lab import minivmm


@pytest.fixture
def virtualized():
    m = Machine(cpus=3)
    for k in range(3):
        r = minivmm.launch(m, k)
        assert r.stop == "return" and r.regs["rax"] == 0, "VMLAUNCH failed: 0x%x" % r.regs["rax"]
        assert m.processors[k].vmx == "off" or m.current == k
    yield m
    m.close()


def test_guest_state_survives_switches(virtualized):
    m = virtualized
    cpuid = m.place_code(assemble("cpuid\nret"))
    for k in (0, 1, 2, 1, 0):
        r = m.run(k, cpuid, regs={"rax": 0x40000000, "rcx": 0})
        assert r.stop == "return"
        assert r.regs["rbx"] & 0xFFFFFFFF == minivmm.MINI_VENDOR_EBX
        assert [(e.cpu, e.reason) for e in r.exits if not e.lab_induced] == [(k, 10)]
        assert m.vmx_state(k) == "guest"
    vmcall = m.place_code(assemble("vmcall\nret"))
    r = m.run(2, vmcall)
    assert r.regs["rax"] == minivmm.VMCALL_REPLY and [e.reason for e in r.exits if not e.lab_induced] == [18]


def test_vmread_from_a_parked_processor(virtualized):
    m = virtualized
    vals = m.vmread_all(1, [0x6802, 0x6C16, 0x4402], resume=True)   # GUEST_CR3, HOST_RIP, exit reason
    assert vals[0x6802] == m.pml4
    assert vals[0x6C16] == m.place_code(minivmm.HOST)
    assert vals[0x4402] == 10                               # the lab's parking exit was a CPUID
    r = m.run(1, m.place_code(assemble("cpuid\nret")), regs={"rax": 0x40000000})
    assert r.regs["rbx"] & 0xFFFFFFFF == minivmm.MINI_VENDOR_EBX


def test_thread_moves_between_virtualized_processors(virtualized):
    m = virtualized
    kern = NtKernel(m)
    aff = kern.stub("KeSetSystemAffinityThreadEx")
    cur = kern.stub("KeGetCurrentProcessorNumberEx")
    code = m.place_code(assemble("""
        push rbx
        sub rsp, 0x20
        mov rcx, 4
        mov rax, %d
        call rax
        xor ecx, ecx
        mov rax, %d
        call rax
        mov r10, rax
        mov eax, 0x40000000
        cpuid
        mov rax, r10
        add rsp, 0x20
        pop rbx
        ret
    """ % (aff, cur)))
    r = kern.call_on_thread(code, ())
    assert r.stop == "return" and r.cpu == 2 and r.regs["rax"] == 2
    assert [(e.cpu, e.reason) for e in r.exits if not e.lab_induced] == [(2, 10)]


def test_tail_call_into_a_processor_switch_returns_cleanly(virtualized):
    # a driver whose last statement is an affinity call compiles to `jmp stub`:
    # the stub returns straight to the caller's caller while the thread moves
    m = virtualized
    kern = NtKernel(m)
    aff = kern.stub("KeSetSystemAffinityThreadEx")
    code = m.place_code(assemble("mov rcx, 2\nmov rax, %d\njmp rax" % aff))
    r = kern.call_on_thread(code, ())
    assert r.stop == "return" and r.cpu == 1
    # processor 1 is still a healthy guest: the next CPUID exits to its VMM and comes back
    r = m.run(1, m.place_code(assemble("cpuid\nret")), regs={"rax": 0x40000000})
    assert r.stop == "return" and r.regs["rbx"] & 0xFFFFFFFF == minivmm.MINI_VENDOR_EBX
