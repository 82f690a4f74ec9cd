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


def test_without_vmx_the_capability_msrs_raise_gp():
    """SDM Vol.3 App. A.1: the VMX capability MSRs exist only when CPUID.1:ECX.VMX = 1; RDMSR/WRMSR of
    an MSR that does not exist raise #GP(0) (Vol.2 RDMSR/WRMSR), through the IDT, at the instruction."""
    from windbg_ext.arch.capabilities import VMX_MSRS, VMX_MSRS_BEFORE_WIDE
    rdmsr = assemble("rdmsr\nshl rdx, 32\nor rax, rdx\nret")
    wrmsr = assemble("xor eax, eax\nxor edx, edx\nwrmsr\nret")
    m = Machine(cpus=2)
    try:   # the machine with VMX: 0x480-0x491 read (the control; this model has no 0x492/0x493)
        assert sorted(m.read_msrs(1, VMX_MSRS)) == sorted(VMX_MSRS_BEFORE_WIDE)
    finally:
        m.close()
    m = Machine(cpus=2)
    m.hide_vmx()
    try:
        assert m.read_msrs(1, list(VMX_MSRS) + [0x3A]) == {0x3A: FC_LOCKED_VMXON_DISABLED}   # lock, no VMXON
        for k in (0, 1):
            for msr, code in ((0x480, rdmsr), (0x491, rdmsr), (0x48B, wrmsr)):
                at = m.place_code(code)
                r = m.run(k, at, regs={"rcx": msr})
                assert r.stop == "fault" and (r.fault.vector, r.fault.error) == (13, 0), (k, hex(msr))
                assert r.fault.rip == at + (4 if code is wrmsr else 0), hex(msr)   # at RDMSR/WRMSR itself
            # the processor goes on: an MSR that exists still reads
            r = m.run(k, m.place_code(rdmsr), regs={"rcx": 0x3A})
            assert r.stop == "return" and r.regs["rax"] == FC_LOCKED_VMXON_DISABLED
    finally:
        m.close()


def test_without_vmx_setting_cr4_vmxe_raises_gp():
    """No VMX (CPUID.1:ECX.VMX = 0): CR4.VMXE is a reserved bit, and MOV to CR4 writing 1 to a reserved
    bit raises #GP(0) (SDM Vol.3 2.5, 24.7; Vol.2 MOV to/from control registers), at the MOV itself.
    The same CR4 write without VMXE goes through; with VMX the bit can be set."""
    head = "mov rax, cr4\nmov rbx, rax\n"
    set_vmxe = assemble(head + "bts rax, 13\nmov cr4, rax\nmov cr4, rbx\nret")
    same = assemble(head + "mov cr4, rax\nmov rax, cr4\nret")
    m = Machine(cpus=2)
    m.hide_vmx()
    try:
        for k in (0, 1):
            at = m.place_code(set_vmxe)
            r = m.run(k, at, regs={"r9": 0})
            assert r.stop == "fault" and (r.fault.vector, r.fault.error) == (13, 0), k
            assert r.fault.rip == at + len(assemble(head + "bts rax, 13"))
            r = m.run(k, m.place_code(same))
            assert r.stop == "return" and not r.regs["rax"] & (1 << 13)
    finally:
        m.close()
    m = Machine(cpus=1)
    try:
        r = m.run(0, m.place_code(assemble(head + "bts rax, 13\nmov cr4, rax\nmov rcx, cr4\nmov cr4, rbx\nret")))
        assert r.stop == "return" and r.regs["rcx"] & (1 << 13)
    finally:
        m.close()


def test_page_walk_and_bad_processor(machine):
    va, pa = machine.alloc_page()
    assert machine.translate(va + 0x123) == pa + 0x123
    assert machine.translate(0x7FFF_0000_0000) is None
    with pytest.raises(MachineError, match="processor 7 does not exist"):
        machine.run(7, machine.place_code(assemble("ret")))


def test_interposer_is_built_from_source_and_cached():
    from emulated_lab import bochs_loader
    path = bochs_loader.library_path()
    assert bochs_loader.source_hash() in path.name
    assert path.exists()                          # built by the first Machine (or earlier)
    assert bochs_loader.build() == path           # cached: no rebuild
    # the interposed get_enable_a20 is what lets VMXON run (the stub asserts)
    import ctypes
    lib = ctypes.CDLL(str(path))
    assert lib._ZN14bx_pc_system_c14get_enable_a20Ev(None) & 0xFF == 1


def test_an_endless_run_is_stopped_with_one_line():
    m = Machine(cpus=1)
    try:
        m.switch_to(0)
        m.run_timeout = 0.5       # only for the endless run (not the firmware start-up)
        with pytest.raises(MachineError, match="ran for 0.5 s without finishing"):
            m.run(0, m.place_code(assemble("1: pause\n jmp 1b")))
        r = m.run(0, m.place_code(assemble("mov eax, 7\nret")))    # the machine is still usable
        assert r.stop == "return" and r.regs["rax"] == 7
    finally:
        m.close()


def test_watchdog_works_after_hundreds_of_sessions():
    # Session ids keep growing; the watchdog must not depend on them
    m = Machine(cpus=2)
    try:
        ret = m.place_code(assemble("ret"))
        for i in range(300):
            m.run(i % 2, ret)
        m.switch_to(0)
        m.run_timeout = 0.5
        with pytest.raises(MachineError, match="without finishing"):
            m.run(0, m.place_code(assemble("mov rax, -1\n1: dec rax\n jnz 1b\n ret")))
    finally:
        m.close()


def test_every_endless_run_is_stopped_and_no_stop_leaks_into_the_next_run():
    # The watchdog's stop races the emulator's own updates of its event flag:
    # a single stop can be lost (a hang). Many short time limits, alternating
    # a branch-hooked loop and a tight conditional loop, each on a processor
    # switch (a new Session), then a normal run that must not be stopped.
    # (the short limit is set only for the endless runs: a busy host may pause
    # any run for milliseconds)
    m = Machine(cpus=2)
    try:
        loops = [m.place_code(assemble("mov rax, -1\n1: dec rax\n jnz 1b\n ret")),
                 m.place_code(assemble("1: pause\n jmp 1b"))]
        ret7 = m.place_code(assemble("mov eax, 7\nret"))
        for i in range(200):
            m.switch_to(i % 2)
            m.run_timeout = 0.01
            with pytest.raises(MachineError, match="ran for 0.01 s without finishing"):
                m.run(i % 2, loops[(i // 2) % 2])
            m.run_timeout = 60
            r = m.run((i + 1) % 2, ret7)
            assert r.stop == "return" and r.regs["rax"] == 7
    finally:
        m.close()


def test_runs_ending_as_the_time_runs_out_are_not_disturbed():
    # runs that take about as long as the limit: whether the watchdog or the
    # code ends them, the next run (same or new Session) runs to completion
    m = Machine(cpus=2)
    try:
        spin = m.place_code(assemble("1: dec rcx\n jnz 1b\n mov eax, 7\n ret"))
        ret7 = m.place_code(assemble("mov eax, 7\nret"))
        for i in range(150):
            m.switch_to(i % 2)
            m.run_timeout = 0.005
            try:
                m.run(i % 2, spin, regs={"rcx": 20000 + 3000 * (i % 40)})
            except MachineError as e:
                assert "without finishing" in str(e)
            m.run_timeout = 60
            r = m.run((i // 3) % 2, ret7)
            assert r.stop == "return" and r.regs["rax"] == 7
    finally:
        m.close()


def test_a_session_kept_alive_after_close_is_reported_not_duplicated():
    # a second live bochscpu Session aborts the process: a Session that
    # something still references after close() must stop the next Machine
    # with one line, and be released once the reference is gone
    m = Machine(cpus=1)
    m.run(0, m.place_code(assemble("ret")))
    kept = m.sess.cpu
    m.close()
    other = Machine(cpus=1)
    try:
        with pytest.raises(MachineError, match="still referenced"):
            other.run(0, other.place_code(assemble("ret")))
    finally:
        other.close()
    del kept
    m = Machine(cpus=1)
    try:
        r = m.run(0, m.place_code(assemble("mov eax, 7\nret")))
        assert r.stop == "return" and r.regs["rax"] == 7
    finally:
        m.close()


def test_a_failed_run_leaves_no_reference_to_its_session():
    # exceptions keep their frames; none of them may hold the Session or cpu
    m = Machine(cpus=2)
    try:
        m.switch_to(1)
        m.run_timeout = 0.05
        with pytest.raises(MachineError) as info:
            m.run(1, m.place_code(assemble("1: jmp 1b")))
    finally:
        m.close()
    assert info.value is not None
    m = Machine(cpus=1)          # would abort (two Sessions) or report a kept Session
    try:
        assert m.run(0, m.place_code(assemble("ret"))).stop == "return"
    finally:
        m.close()
