"""What the guest keeps across VM exits through hv.sys's exit stub: every XMM register.
HvAsmVmExit saves only XMM0-5 (volatile in the MS x64 ABI) and relies on the C
handler keeping XMM6-15 (callee-saved); this pins that the guest sees no change
in any of the 16 after a CPUID exit and a hypercall, on every processor."""
import pytest

from emulated_lab.asm import assemble
from emulated_lab.guest_checks import PING, SIGNATURE
from emulated_lab.lab import run_scenario

LOAD = "".join("movdqu xmm%d, [rdi + %d]\n" % (n, 16 * n) for n in range(16))
STORE = "".join("movdqu [rdi + %d], xmm%d\n" % (256 + 16 * n, n) for n in range(16))
BODY = """
    push rbx
    xor eax, eax
    xor ecx, ecx
    cpuid
    mov rax, %d
    mov ecx, %d
    vmcall
""" % (SIGNATURE, PING)
CPUID_EXITS, VMCALL_EXITS = 10, 18


def _values(k):
    return [(0x1111_0000 + 0x101 * n + k) << 96 | (0xA5A5 + n) << 32 | k << 8 | n for n in range(16)]


@pytest.mark.parametrize("cpus", [1, 2])
def test_guest_xmm0_15_survive_exits(hv_sys, cpus):
    seen = {}

    def on_break(m, _kern, _img, _res, _msrs, _cpuid):
        for k in range(cpus):
            va, pa = m.alloc_page()
            m.write_phys(pa, b"".join(v.to_bytes(16, "little") for v in _values(k)))
            r = m.run(k, m.place_code(assemble(LOAD + BODY + STORE + "pop rbx\nret")), regs={"rdi": va})
            raw = m.read_phys(pa + 256, 256)
            seen[k] = (r.stop, [e.reason for e in r.exits], [int.from_bytes(raw[16 * n:16 * n + 16], "little")
                                                          for n in range(16)])

    res = run_scenario("baseline", cpus=cpus, driver=hv_sys, workload=False, on_break=on_break)
    assert res.loaded and len(seen) == cpus
    for k, (stop, reasons, got) in seen.items():
        assert stop == "return" and reasons == [CPUID_EXITS, VMCALL_EXITS], (k, stop, reasons)
        bad = [n for n in range(16) if got[n] != _values(k)[n]]
        assert not bad, "processor %d: XMM%s changed across the exits" % (k, bad)
