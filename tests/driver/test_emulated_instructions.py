"""What hv.sys leaves behind after it emulates an instruction and after it
unloads, checked on the emulated CPU (Bochs CPU model) in the state the CPU
itself stores: the VMCS snapshot the driver takes at an exit, what the guest
reads back, and the processor's registers after DriverUnload.

Each test first shows the condition it depends on really arises (e.g. the CPU
saves blocking by STI at the CPUID after STI), so a passing test cannot be a
test of nothing."""
import contextlib

import pytest

from emulated_lab.asm import assemble

from .pe_descriptor import HEADER, SNAP_ENTRY, SNAP_HEADER, parse_header, parse_members
from .support import driver_on_one_cpu

GUEST_INTERRUPTIBILITY, GUEST_RIP = 0x4824, 0x681E          # SDM App. B
CR0_GUEST_HOST_MASK, CR0_READ_SHADOW, GUEST_CR0 = 0x6000, 0x6004, 0x6800
STI_BLOCKING, MOV_SS_BLOCKING = 1, 2                           # SDM 25.4.2, Table 25-3
CR0_TS = 1 << 3
EXIT_CR_ACCESS, CLTS_ACCESS = 28, 2                            # App. C; Table 28-3 access type
IA32_FS_BASE = 0xC0000100
GUEST_DR7 = 0x700              # LE, GE, bit 10: no breakpoint armed; a VM exit loads 0x400 (28.5.1)


@contextlib.contextmanager
def snapshots_on_every_exit(driver):
    """hv.sys on one emulated CPU with SnapshotOnEveryExit set (as a debugger would):
    yields (machine, snapshot()) where snapshot() -> {encoding: value} of the last exit."""
    with driver_on_one_cpu(driver) as (m, _kern, img, _drv):
        va = img.exports["HvDebugDescriptor"]
        h = parse_header(m.read_virt(va, HEADER.size))
        members = {n: o for n, o, _ in parse_members(h, m.read_virt(va, h["DescriptorSize"]))}
        snap_va = h["VcpuArrayVa"] + members["VCPU.Snapshot"]
        m.write_virt(va + members["SnapshotOnEveryExit"] if "SnapshotOnEveryExit" in members else va + 0x3C,
                     (1).to_bytes(4, "little"))

        def snapshot():
            count = SNAP_HEADER.unpack(m.read_virt(snap_va, SNAP_HEADER.size))[0]
            raw = m.read_virt(snap_va + SNAP_HEADER.size, SNAP_ENTRY.size * count)
            return {e: v for e, _pad, v in (SNAP_ENTRY.unpack_from(raw, SNAP_ENTRY.size * i) for i in range(count))}
        yield m, snapshot


@pytest.mark.parametrize("name,prologue,blocking", [
    ("STI", "cli\nsti", STI_BLOCKING),   # STI blocks only when IF was 0 (SDM Vol. 2B, STI)
    ("MOV SS", "mov eax, ss\nmov ss, eax", MOV_SS_BLOCKING),
])
def test_blocking_ends_after_an_emulated_instruction(built_driver, name, prologue, blocking):
    """CPUID right after STI / MOV SS exits with that blocking saved (SDM 28.3.4). The driver
    emulates CPUID and moves RIP past it; the blocking covered only that instruction, so the
    driver clears it (25.4.2): the next CPUID must see none."""
    with snapshots_on_every_exit(built_driver["mingw"]) as (m, snapshot):
        one = m.place_code(assemble(prologue + "\ncpuid\nret"))
        r = m.run(0, one, regs={"rax": 0, "rcx": 0})
        assert [e.basic_reason for e in r.exits] == [10]
        assert snapshot()[GUEST_INTERRUPTIBILITY] & 3 == blocking, "the CPU did not save %s blocking" % name

        two = m.place_code(assemble(prologue + "\ncpuid\ncpuid\nret"))
        r = m.run(0, two, regs={"rax": 0, "rcx": 0})
        assert [e.basic_reason for e in r.exits] == [10, 10]
        snap = snapshot()
        assert snap[GUEST_RIP] == two + len(assemble(prologue)) + 2      # the second CPUID's exit
        assert snap[GUEST_INTERRUPTIBILITY] & 3 == 0, "%s blocking outlived the emulated CPUID" % name


def test_clts_clears_ts_in_the_cr0_read_shadow(built_driver):
    """With CR0.TS owned by the host (guest/host mask bit 3) and set in the read shadow, CLTS
    exits (SDM 26.1.3). The driver clears TS in the guest's CR0 and in the read shadow, so the
    guest's next MOV from CR0 (which reads the shadow for owned bits, 26.3) sees TS = 0."""
    with snapshots_on_every_exit(built_driver["mingw"]) as (m, _snapshot):
        cr0 = m.run(0, m.place_code(assemble("mov rax, cr0\nret"))).regs["rax"]
        for field, value in ((CR0_GUEST_HOST_MASK, CR0_TS), (CR0_READ_SHADOW, cr0 | CR0_TS), (GUEST_CR0, cr0 | CR0_TS)):
            assert m.vmwrite_parked(0, field, value), hex(field)   # from VMX root, as a debugger's gadget
        seen = m.run(0, m.place_code(assemble("mov rax, cr0\nret"))).regs["rax"]
        assert seen & CR0_TS, "the guest does not read TS from the shadow: the test would show nothing"

        r = m.run(0, m.place_code(assemble("clts\nmov rax, cr0\nret")))
        assert [(e.basic_reason, e.qualification >> 4 & 3) for e in r.exits] == [(EXIT_CR_ACCESS, CLTS_ACCESS)]
        assert not r.regs["rax"] & CR0_TS, "CLTS was emulated but the guest still reads CR0.TS = 1"


def _processor_state(m):
    r = m.run(0, m.place_code(assemble("mov rax, dr7\nmov ecx, 0x1d9\nrdmsr\nshl rdx, 32\nor rax, rdx\n"
                                       "mov rbx, rax\nmov rax, dr7\nret")))
    regs = m.registers()
    out = {k: regs[k] for k in ("gdtr_base", "gdtr_limit", "idtr_base", "idtr_limit", "fs_base", "gs_base",
                                "cs", "ss", "ds", "es", "fs", "gs", "tr")}
    out["dr7"], out["debugctl"] = r.regs["rax"], r.regs["rbx"]
    return out


def test_unload_gives_the_processor_back_as_the_guest_left_it(built_driver):
    """While virtualized the guest sets DR7 and FS base; every VM exit overwrites them in the
    processor (DR7 = 400H, GDTR/IDTR limits = FFFFH, FS base = the host's; SDM 28.5.1-28.5.2),
    so the guest keeps them only if the driver saves and reloads them. After DriverUnload the
    processor must hold the guest's values. IA32_DEBUGCTL too: the lab keeps it (Bochs drops its
    writes) and clears it at every exit (28.5.1, emulated_lab/debugctl.py), so only the driver's
    restore at devirtualization gives the guest's BTF back."""
    with driver_on_one_cpu(built_driver["mingw"]) as (m, kern, _img, drv):
        fs_base = 0xFFFFF80000ABC000
        set_state = assemble("""
            mov rax, %d
            mov dr7, rax
            mov ecx, %d
            mov rax, %d
            mov rdx, rax
            shr rdx, 32
            wrmsr
            mov ecx, 0x1d9
            mov eax, 2
            xor edx, edx
            wrmsr
            xor eax, eax
            xor ecx, ecx
            cpuid
            ret""" % (GUEST_DR7, IA32_FS_BASE, fs_base))
        r = m.run(0, m.place_code(set_state), regs={"rax": 0, "rcx": 0})
        assert r.stop == "return" and 10 in [e.basic_reason for e in r.exits]   # exits happened since
        before = _processor_state(m)
        assert before["gdtr_limit"] != 0xFFFF and before["idtr_limit"] != 0xFFFF
        assert (before["dr7"], before["fs_base"], before["debugctl"]) == (GUEST_DR7, fs_base, 2)   # kept across exits

        unload = kern.driver_unload_routine(drv)
        assert kern.call_on_thread(unload, (drv,)).stop == "return"
        m.park()
        assert m.processors[0].vmx == "off"
        assert _processor_state(m) == before
