"""The emulated machine itself: code runs per processor, processors keep their
own state across Session switches, VMX operation survives parking."""
import pytest

from emulated_lab.asm import assemble
from emulated_lab.machine import (FC_LOCKED_VMXON_DISABLED, GuestFault, Machine, MachineError, RFLAGS_CF,
                                  RFLAGS_ZF)

VMXON = """
    mov rax, cr4
    bts rax, 13
    mov cr4, rax
    push rdi
    vmxon [rsp]
    pop rdi
    pushfq
    pop rax
    ret
"""


def _vmxon_region(m):
    va, pa = m.alloc_page()
    m.write_phys(pa, (m.read_msrs(0, [0x480])[0x480] & 0x7FFFFFFF).to_bytes(4, "little"))
    return pa


@pytest.fixture
def machine():
    m = Machine(cpus=3)
    yield m
    m.close()


def test_code_runs_on_each_processor_with_its_own_state(machine):
    code = machine.place_code(assemble("mov eax, gs:[0x184]\nmov rbx, 0x1234\nret"))
    for k in range(3):
        r = machine.run(k, code)
        assert r.stop == "return"
        assert r.regs["rax"] & 0xFFFFFFFF == k          # KPCR Prcb.Number
        assert r.regs["rbx"] == 0x1234
        assert r.regs["gdtr_base"] == machine.processors[k].gdt
    assert len({machine.processors[k].gdt for k in range(3)}) == 3


def test_firmware_locks_feature_control_every_session(machine):
    for k in (0, 1, 0, 2):
        assert machine.read_msrs(k, [0x3A])[0x3A] == 0x5


def test_vmx_root_survives_a_processor_switch(machine):
    pa = _vmxon_region(machine)
    r = machine.run(1, machine.place_code(assemble(VMXON)), regs={"rdi": pa})
    assert r.stop == "return" and r.vmx_status == "success"
    machine.run(0, machine.place_code(assemble("ret")))     # switch away: processor 1 parked
    assert machine.vmx_state(1) == "root"
    # back on processor 1: VMXON again must VMfail (already in VMX root; with no current
    # VMCS that is VMfailInvalid, SDM Vol.3 31.3 "VMXON" and 31.2)
    again = machine.run(1, machine.place_code(assemble(VMXON)), regs={"rdi": pa})
    assert again.regs["rflags"] & RFLAGS_CF and not again.regs["rflags"] & RFLAGS_ZF
    off = machine.run(1, machine.place_code(assemble("vmxoff\npushfq\npop rax\nret")))
    assert off.vmx_status == "success"
    machine.park()
    assert machine.vmx_state(1) == "off"


def test_vmxon_faults_when_firmware_disabled_it():
    m = Machine(cpus=1, feature_control=FC_LOCKED_VMXON_DISABLED)
    try:
        r = m.run(0, m.place_code(assemble(VMXON)), regs={"rdi": _vmxon_region(m)})
        assert r.stop == "fault" and isinstance(r.fault, GuestFault) and r.fault.vector == 13
    finally:
        m.close()


def test_hide_vmx_clears_cpuid_vmx_bit():
    m = Machine(cpus=1)
    try:
        assert m.cpuid(0, 1)[2] & (1 << 5)
    finally:
        m.close()
    m = Machine(cpus=1)
    m.hide_vmx()
    try:
        assert not m.cpuid(0, 1)[2] & (1 << 5)
    finally:
        m.close()


def test_page_walk_and_bad_processor(machine):
    va, pa = machine.alloc_page()
    assert machine.translate(va + 0x123) == pa + 0x123
    assert machine.translate(0x7FFF_0000_0000) is None
    with pytest.raises(MachineError, match="processor 7 does not exist"):
        machine.run(7, machine.place_code(assemble("ret")))


def test_interposer_is_built_from_source_and_cached():
    from emulated_lab import native
    path = native.library_path()
    assert native.source_hash() in path.name
    assert path.exists()                          # built by the first Machine (or earlier)
    assert native.build() == path                 # cached: no rebuild
    # the interposed get_enable_a20 is what lets VMXON run (the stub asserts)
    import ctypes
    lib = ctypes.CDLL(str(path))
    assert lib._ZN14bx_pc_system_c14get_enable_a20Ev(None) & 0xFF == 1


def test_an_endless_run_is_stopped_with_one_line():
    m = Machine(cpus=1, run_timeout=0.5)
    try:
        with pytest.raises(MachineError, match="ran for 0.5 s without finishing"):
            m.run(0, m.place_code(assemble("1: pause\n jmp 1b")))
        r = m.run(0, m.place_code(assemble("mov eax, 7\nret")))    # the machine is still usable
        assert r.stop == "return" and r.regs["rax"] == 7
    finally:
        m.close()


def test_watchdog_works_after_hundreds_of_sessions():
    # Session ids keep growing; the watchdog must not depend on them
    m = Machine(cpus=2, run_timeout=0.5)
    try:
        ret = m.place_code(assemble("ret"))
        for i in range(300):
            m.run(i % 2, ret)
        with pytest.raises(MachineError, match="without finishing"):
            m.run(0, m.place_code(assemble("mov rax, -1\n1: dec rax\n jnz 1b\n ret")))
    finally:
        m.close()
