"""IA32_DEBUGCTL as the lab keeps it (emulated_lab/debugctl.py): Bochs drops the
MSR's writes, so the machine models it per processor, with what VM exits and
entries do to it (SDM Vol.3 28.3.1, 28.5.1, 27.3.2.1)."""
import pytest

from emulated_lab.asm import assemble
from emulated_lab.debugctl import BOCHS_VMCS_OFFSETS
from emulated_lab.machine import Machine

from tests.lab import minivmm

WRITE_READ = assemble("mov ecx, 0x1d9\nwrmsr\nrdmsr\nshl rdx, 32\nor rax, rdx\nret")
READ = assemble("mov ecx, 0x1d9\nrdmsr\nshl rdx, 32\nor rax, rdx\nret")


def test_debugctl_is_kept_per_processor():
    m = Machine(cpus=2)
    try:
        for k, v in ((0, 0x2), (1, 0x1)):      # BTF, LBR (SDM Vol.3 18.4.1)
            r = m.run(k, m.place_code(WRITE_READ), regs={"rax": v, "rdx": 0})
            assert r.stop == "return" and r.regs["rax"] == v
        assert [m.run(k, m.place_code(READ)).regs["rax"] for k in (0, 1)] == [0x2, 0x1]
        m.lose_vmx_state()                     # a sleep state: power-on value
        assert m.run(0, m.place_code(READ)).regs["rax"] == 0
    finally:
        m.close()


def test_the_vmcs_offsets_the_model_reads_are_where_the_cpu_model_keeps_the_fields():
    """The lab reads and writes the debug-control fields in the VMCS region (a hook cannot VMREAD):
    VMWRITE each one and find it at its offset."""
    m = Machine(cpus=1)
    try:
        rev = m.read_msrs(0, [0x480])[0x480] & 0x7FFFFFFF
        _, vmxon = m.alloc_page()
        _, vmcs = m.alloc_page()
        for pa in (vmxon, vmcs):
            m.write_phys(pa, rev.to_bytes(4, "little"))
        writes = "".join("mov rcx, 0x%x\nmov rdx, 0x%x\nvmwrite rcx, rdx\n" % (enc, 0x5A00 + i)
                         for i, enc in enumerate(BOCHS_VMCS_OFFSETS))
        code = assemble("mov rax, cr4\nbts rax, 13\nmov cr4, rax\npush rdi\nvmxon [rsp]\npop rdi\npush rsi\n"
                        "vmclear [rsp]\nvmptrld [rsp]\npop rsi\n" + writes + "vmxoff\nret")
        r = m.run(0, m.place_code(code), regs={"rdi": vmxon, "rsi": vmcs})
        assert r.stop == "return"
        for i, (enc, off) in enumerate(BOCHS_VMCS_OFFSETS.items()):
            assert int.from_bytes(m.read_phys(vmcs + off, 4), "little") == 0x5A00 + i, hex(enc)
    finally:
        m.close()


SET_EXIT_READ = assemble("mov ecx, 0x1d9\nmov eax, 2\nxor edx, edx\nwrmsr\nxor eax, eax\nxor ecx, ecx\ncpuid\n"
                         "mov ecx, 0x1d9\nrdmsr\nret")
SAVE = LOAD = 1 << 2     # "save debug controls" (exit, Table 25-13), "load debug controls" (entry, Table 25-15)


@pytest.mark.parametrize("save, load, after", [
    (0, 0, 0),        # cleared at the exit (28.5.1), nothing loaded at entry
    (SAVE, LOAD, 2),  # saved into the guest field (28.3.1), loaded back (27.3.2.1)
    (SAVE, 0, 0),     # saved, but the entry does not load it
    (0, LOAD, 1),     # the entry loads the field the VMM wrote (1), which the exit did not overwrite
])
def test_vm_exits_and_entries_do_to_debugctl_what_the_sdm_says(save, load, after):
    """A minimal VMM (tests/lab/minivmm.py, MSR bitmap all clear: the guest's RDMSR/WRMSR do not exit)
    with or without the debug controls; the guest sets BTF (2), CPUID exits, the guest reads it back."""
    m = Machine(cpus=1)
    try:
        r = minivmm.launch(m, 0, exit_controls=save, entry_controls=load, extra=[("GUEST_IA32_DEBUGCTL", 1)])
        assert r.stop == "return" and r.regs["rax"] == 0
        r = m.run(0, m.place_code(SET_EXIT_READ))
        assert r.stop == "return" and [e.reason for e in r.exits if not e.lab_induced] == [10]
        assert r.regs["rax"] & 0xFFFFFFFF == after
    finally:
        m.close()


def test_the_labs_own_parking_exits_leave_debugctl_alone():
    """Parking a processor (a lab-induced VM exit, invisible on a real machine) must not clear it."""
    m = Machine(cpus=2)
    try:
        for k in (0, 1):
            assert minivmm.launch(m, k).regs["rax"] == 0          # no debug controls: a real exit clears it
        m.run(1, m.place_code(assemble("mov ecx, 0x1d9\nmov eax, 2\nxor edx, edx\nwrmsr\nret")))
        m.run(0, m.place_code(assemble("ret")))                    # processor 1 parked and back later
        r = m.run(1, m.place_code(READ))
        assert r.regs["rax"] == 2 and not [e for e in r.exits if not e.lab_induced]
    finally:
        m.close()
