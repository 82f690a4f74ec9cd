"""hv.sys's VM-exit handlers, driven by guest code on the emulated VMX CPU:
each case runs ring-0 code as the (virtualized) OS and checks the registers,
the exits the emulator saw and the fault the guest got. Reasons: SDM Vol. 3
App. C; hypercall ABI: driver/include/hv_hypercall.h."""
import pytest

from emulated_lab.asm import assemble

from .pe_descriptor import HEADER, SNAP_HEADER, parse_header, parse_layout, parse_members
from .support import driver_on_one_cpu

SIGNATURE = 0x4D4D5662616C7668
CPUID, VMCALL, VMREAD, CR_ACCESS, XSETBV = 10, 18, 23, 28, 55
UD, GP = 6, 13
CR4_VMXE = 1 << 13


@pytest.fixture(scope="module")
def machine(built_driver):
    """One processor, hv.sys loaded and running; unloaded (and checked) at the end."""
    with driver_on_one_cpu(built_driver["mingw"]) as (m, kern, img, drv):
        yield m, img
        r = kern.call_on_thread(kern.driver_unload_routine(drv), (drv,))
        assert r.stop == "return" and m.vmx_state(0) == "off" and kern.leaks() == []


def run(machine, text, **regs):
    m, _ = machine
    r = m.run(0, m.place_code(assemble(text)), regs=regs)
    return r, [e.basic_reason for e in r.exits], (r.fault.vector if r.fault else None)


def test_cpuid_leaves(machine):
    r, exits, fault = run(machine, "cpuid\nret", rax=0x40000001, rcx=0)
    assert exits == [CPUID] and fault is None
    assert r.regs["rax"] & 0xFFFFFFFF == int.from_bytes(b"hvl0", "little")
    r, _, _ = run(machine, "cpuid\nret", rax=1, rcx=0)
    assert r.regs["rcx"] & (1 << 31) and not r.regs["rcx"] & (1 << 5)  # VMM present, VMX in use
    r, _, _ = run(machine, "cpuid\nret", rax=0x40000077, rcx=0)
    assert [r.regs[x] & 0xFFFFFFFF for x in ("rax", "rbx", "rcx", "rdx")] == [0, 0, 0, 0]


def test_hypercalls(machine):
    m, img = machine
    r, exits, fault = run(machine, "vmcall\nret", rax=SIGNATURE, rcx=99)
    assert exits == [VMCALL] and fault is None and r.regs["rax"] == 1  # unknown function, RIP advanced
    r, exits, fault = run(machine, "vmcall\nret", rax=SIGNATURE ^ 1, rcx=1)
    assert exits == [VMCALL] and fault == UD  # no signature: as if no VMM
    va = img.exports["HvDebugDescriptor"]
    h = parse_header(m.read_virt(va, HEADER.size))
    blob = m.read_virt(va, h["DescriptorSize"])
    members = {n: o for n, o, _ in parse_members(h, blob)}
    # the fields this CPU model accepts, as the driver's layout discovery found them
    supported = sum(1 for _e, _o, _w, flags in parse_layout(h, blob) if not flags & 0x04)
    assert supported >= 150
    r, exits, fault = run(machine, "vmcall\nret", rax=SIGNATURE, rcx=2)
    assert fault is None and r.regs["rax"] == 0 and r.regs["rcx"] == supported
    count, error, reason, exit_reason, seq = SNAP_HEADER.unpack(
        m.read_virt(h["VcpuArrayVa"] + members["VCPU.Snapshot"], SNAP_HEADER.size))
    assert (count, error, reason, exit_reason & 0xFFFF, seq % 2) == (supported, 0, 4, VMCALL, 0)


def test_vmx_instructions_in_the_guest_raise_ud(machine):
    for text in ("vmread rax, rcx\nret", "push rax\nvmptrld [rsp]\npop rax\nret", "vmxoff\nret"):
        r, exits, fault = run(machine, text, rax=0, rcx=0x681E)
        assert len(exits) == 1 and fault == UD, text


def test_xsetbv_checks_the_value(machine):
    r, exits, fault = run(machine, "xor ecx, ecx\nxgetbv\nxsetbv\nret")
    assert exits == [XSETBV] and fault is None
    r, exits, fault = run(machine, "xor ecx, ecx\nxor edx, edx\nmov eax, 6\nxsetbv\nret")
    assert exits == [XSETBV] and fault == GP  # x87 bit clear (SDM Vol. 1 13.3)


def test_cr4_vmxe_is_owned_by_the_vmm(machine):
    """CR4 guest/host mask = VMXE: the guest reads the shadow (VMXE as before
    load); a write that changes VMXE exits and is emulated (SDM 26.3)."""
    r, exits, _ = run(machine, "mov rax, cr4\nret")
    assert exits == [] and not r.regs["rax"] & CR4_VMXE
    r, exits, fault = run(machine, "mov rax, cr4\nor rax, 0x2000\nmov cr4, rax\nmov rbx, cr4\n"
                                   "and rax, ~0x2000\nmov cr4, rax\nmov rcx, cr4\nret")
    assert exits == [CR_ACCESS, CR_ACCESS] and fault is None
    assert r.regs["rbx"] & CR4_VMXE and not r.regs["rcx"] & CR4_VMXE
