"""emulated_lab.cpu_truth: what the CPU model saw, observed at the instructions
(decoded by emulated_lab.insn), not taken from the driver's records."""
import pytest

from emulated_lab.asm import assemble
from emulated_lab.insn import decode, effective_address, scan
from emulated_lab.machine import Machine
from tests.lab.test_machine import VMXON

CLEAR_AND_LOAD = """
    lea r12, [rsp - 0x30]
    mov [r12 + 0x10], rsi
    vmclear [r12 + 0x10]
    vmptrld [r12 + 0x10]
    ret
"""
VMXOFF = "vmxoff\nret"


@pytest.mark.parametrize("text, kind, length", [
    ("vmxon [rsi + 0x20]", "vmxon", 5),
    ("vmptrld [rsp + 0x58]", "vmptrld", 5),
    ("vmclear [r12 + 0x30]", "vmclear", 7),
    ("vmptrst [rax]", "vmptrst", 3),
    ("vmxoff", "vmxoff", 3),
    ("vmlaunch", "vmlaunch", 3),
    ("vmresume", "vmresume", 3),
    ("vmcall", "vmcall", 3),
    ("cpuid", "cpuid", 2),
    ("rdmsr", "rdmsr", 2),
    ("wrmsr", "wrmsr", 2),
])
def test_decode_the_watched_instructions(text, kind, length):
    insn = decode(assemble(text))
    assert insn is not None and (insn.kind, insn.length) == (kind, length)


def test_decode_mov_to_cr4_names_its_source_and_nothing_else():
    assert (decode(assemble("mov cr4, rax")).kind, decode(assemble("mov cr4, rax")).src) == ("mov_cr4", "rax")
    assert decode(assemble("mov cr4, r13")).src == "r13" and decode(assemble("mov cr4, r13")).length == 4
    for other in ("mov cr0, rax", "mov cr3, rbx", "mov cr8, rax", "mov rax, cr4"):
        assert decode(assemble(other)) is None, other


def test_effective_address_of_sib_rex_and_rip_relative_operands():
    regs = {"rsp": 0x1000, "r12": 0x2000, "rsi": 0x3000, "rax": 4}
    assert effective_address(decode(assemble("vmptrld [rsp + 0x58]")).mem, regs.get, 0) == 0x1058
    assert effective_address(decode(assemble("vmclear [r12 + 0x30]")).mem, regs.get, 0) == 0x2030
    assert effective_address(decode(assemble("vmxon [rsi + rax*8 - 8]")).mem, regs.get, 0) == 0x3018
    rip_rel = decode(assemble("vmptrld [rip + 0x100]"))
    assert effective_address(rip_rel.mem, regs.get, 0x5000) == 0x5100


def test_scan_finds_sites_and_ignores_other_code():
    code = assemble("nop\nmov eax, 1\nvmclear [r12 + 0x30]\nadd eax, 2\ncpuid\nret")
    sites = scan(code, 0x1000)
    kinds = {va - 0x1000: i.kind for va, i in sites.items()}
    assert kinds[6] == "vmclear" and kinds[13 + 3] == "cpuid"
    assert "vmxon" not in kinds.values() and decode(assemble("mov eax, 1")) is None


def _region(m, rev):
    va, pa = m.alloc_page()
    m.write_phys(pa, rev.to_bytes(4, "little"))
    return pa


def test_truth_follows_vmxon_vmptrld_vmclear_vmxoff_across_processor_switches():
    m = Machine(cpus=2)
    try:
        rev = m.read_msrs(0, [0x480])[0x480] & 0x7FFFFFFF
        vmxon, vmcs = _region(m, rev), _region(m, rev)
        m.run(1, m.place_code(assemble(VMXON)), regs={"rdi": vmxon})
        r = m.run(1, m.place_code(assemble(CLEAR_AND_LOAD)), regs={"rsi": vmcs})
        assert r.stop == "return"
        t = m.truth.processors[1]
        assert (t.vmx, t.vmxon_pa, t.vmcs_pa, t.vmxon_used, t.vmptrld_used) == ("root", vmxon, vmcs, [vmxon], [vmcs])
        assert m.truth.processors[0].vmx == "off" and m.truth.processors[0].vmxon_used == []
        m.run(0, m.place_code(assemble("ret")))            # processor 1 parked, re-established later
        assert t.cr4_vmxe and t.vmxon_pa == vmxon           # the lab's firmware steps are not observed
        m.run(1, m.place_code(assemble(VMXOFF)))
        assert (t.vmx, t.vmxon_pa, t.vmcs_pa) == ("off", None, None)
        d = m.truth.as_dict()["processors"][1]
        assert d["vmxon_used"] == ["0x%x" % vmxon] and d["vmx"] == "off"
    finally:
        m.close()


def test_a_vmptrld_the_cpu_refuses_is_not_recorded():
    m = Machine(cpus=1)
    try:
        rev = m.read_msrs(0, [0x480])[0x480] & 0x7FFFFFFF
        vmxon, bad = _region(m, rev), _region(m, rev ^ 1)     # wrong revision identifier
        m.run(0, m.place_code(assemble(VMXON)), regs={"rdi": vmxon})
        m.run(0, m.place_code(assemble(CLEAR_AND_LOAD)), regs={"rsi": bad})
        t = m.truth.processors[0]
        assert t.vmx == "root" and t.vmcs_pa is None and t.vmptrld_used == []
        m.run(0, m.place_code(assemble(VMXOFF)))
    finally:
        m.close()


def test_truth_of_the_driver_on_the_emulated_cpu(hv_sys):
    from emulated_lab import lab
    seen = {}
    orig = lab.run_workload

    def spy(m, k):
        p = m.truth.processors[k]
        seen[k] = (p.vmx, p.vmxon_pa, p.vmcs_pa, list(p.launched))
        return orig(m, k)
    lab.run_workload = spy
    try:
        res = lab.run_scenario("baseline", cpus=2, driver=hv_sys)
    finally:
        lab.run_workload = orig
    for k in range(2):
        vmx, vmxon, vmcs, launched = seen[k]
        assert vmx == "guest" and vmxon and vmcs and launched == [vmcs] and vmxon != vmcs
    assert seen[0][1] != seen[1][1] and seen[0][2] != seen[1][2]
    assert [p["vmx"] for p in res.truth["processors"]] == ["off", "off"]
    assert [p["vmxon_used"] for p in res.truth["processors"]] == [["0x%x" % seen[k][1]] for k in range(2)]


def test_observe_false_keeps_no_truth_but_still_runs_vmx():
    m = Machine(cpus=1, observe=False)
    try:
        rev = m.read_msrs(0, [0x480])[0x480] & 0x7FFFFFFF
        r = m.run(0, m.place_code(assemble(VMXON)), regs={"rdi": _region(m, rev)})
        assert r.stop == "return" and r.vmx_status == "success"
        assert m.truth.processors[0].vmx == "off" and m.truth.processors[0].vmxon_used == []
        m.run(0, m.place_code(assemble(VMXOFF)))
    finally:
        m.close()


def test_a_cpuid_filter_acts_before_the_next_instruction_of_the_trace():
    """The watched handlers are interposed in a CPU that chains handlers through a
    trace: the filter's values must be what the very next instruction reads."""
    m = Machine(cpus=1)
    try:
        m.cpuid_filter = lambda k, leaf, sub, regs: (0x1111, 0x2222, 0x3333, 0x4444) if leaf == 0x1234 else regs
        code = "mov eax, 0x1234\n cpuid\n mov rsi, rax\n mov rdi, rdx\n inc rsi\n jmp 1f\n 1: ret"
        r = m.run(0, m.place_code(assemble(code)))
        assert r.stop == "return"
        assert (r.regs["rsi"], r.regs["rdi"]) == (0x1112, 0x4444)
    finally:
        m.close()


def test_an_exception_in_a_filter_comes_out_of_run():
    m = Machine(cpus=1)
    try:
        def broken(k, leaf, sub, regs):
            raise ValueError("filter broke")
        m.cpuid_filter = broken
        with pytest.raises(ValueError, match="filter broke"):
            m.run(0, m.place_code(assemble("xor eax, eax\n cpuid\n ret")))
    finally:
        m.close()
