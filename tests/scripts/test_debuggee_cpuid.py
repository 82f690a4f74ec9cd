"""The CPUID thunk runs for real on this x86-64 CPU. The Windows variant's only
difference is its first two instructions (MS x64 argument registers): it is
run here too, behind a 6-byte System V -> MS x64 register shuffle. What is not
run here: VirtualAlloc/VirtualProtect (Windows only)."""
import ctypes
import mmap
import platform

import pytest

from debuggee import cpuid

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 CPU needed")


def proc_cpuinfo():
    info = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if ":" in line:
                k, _, v = line.partition(":")
                info.setdefault(k.strip(), v.strip())
    return info["vendor_id"], set(info["flags"].split())


def run_bytes(code, leaf):
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    buf = (ctypes.c_char * mmap.PAGESIZE).from_buffer(page)
    out = (ctypes.c_uint32 * 4)()
    ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32))(ctypes.addressof(buf))(leaf, out)
    del buf
    page.close()
    return tuple(out)


def test_vendor_and_feature_bits_match_the_kernels_view():
    vendor, flags = proc_cpuinfo()
    assert cpuid.vendor(cpuid.cpuid(0)) == vendor
    ecx = cpuid.cpuid(1)[2]
    assert cpuid.hypervisor_present(ecx) == ("hypervisor" in flags)
    if "vmx" in flags:  # Linux may hide vmx when firmware disables it, never invent it
        assert cpuid.vmx(ecx)
    assert cpuid.vmx(ecx) == bool(ecx & (1 << 5))
    assert bool(ecx & (1 << 0)) == ("pni" in flags)  # SSE3, bit 0: proves ECX is really leaf 1's


def test_windows_thunk_gives_the_same_registers():
    shuffle = b"\x48\x89\xf9" b"\x48\x89\xf2"  # mov rcx, rdi ; mov rdx, rsi  (then fall into the thunk)
    for leaf in (0, 1, 0x80000000):
        assert run_bytes(shuffle + cpuid.THUNK_WIN64, leaf) == cpuid.cpuid(leaf)


def test_probe_reports_hypervisor_name():
    vendor, vmx, hv, name = cpuid.probe()
    _, flags = proc_cpuinfo()
    assert hv == ("hypervisor" in flags)
    assert (name is not None) == hv
    if name:
        assert name.isprintable() and 0 < len(name) <= 12


def test_decoders_on_known_values():
    # "GenuineIntel": EBX="Genu", EDX="ineI", ECX="ntel"
    regs = (0xD, 0x756E6547, 0x6C65746E, 0x49656E69)
    assert cpuid.vendor(regs) == "GenuineIntel"
    # "Microsoft Hv": EBX="Micr", ECX="osof", EDX="t Hv"
    assert cpuid.hypervisor_vendor((0x40000006, 0x7263694D, 0x666F736F, 0x76482074)) == "Microsoft Hv"
    assert cpuid.vmx(0x20) and not cpuid.vmx(0xFFFFFFDF)
    assert cpuid.hypervisor_present(0x80000000) and not cpuid.hypervisor_present(0x7FFFFFFF)
