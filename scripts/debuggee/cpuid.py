"""CPUID from an unprivileged Python: a 27-byte machine-code thunk.

CPUID is not privileged (SDM Vol. 2A, CPUID), so any process can ask the
processor; Python just has no CPUID call. We copy a tiny function into a
page we make executable (VirtualAlloc + VirtualProtect on Windows, mmap on
POSIX) and call it through ctypes. No admin, no driver, no WMI. What it sees
is what the hypervisor under this VM exposes to it: exactly the question
"is nested virtualization exposed".

VMX support: CPUID.01H:ECX bit 5 (SDM Vol. 3C 24.6 "Discovering Support for
VMX"); bit 31 is "hypervisor present"; leaf 40000000H EBX:ECX:EDX names it.
"""
from __future__ import annotations

import ctypes
import mmap
import platform
import struct
import sys
from typing import Optional, Tuple

Regs = Tuple[int, int, int, int]

VMX_BIT = 5          # CPUID.01H:ECX.VMX
HYPERVISOR_BIT = 31  # CPUID.01H:ECX, set by hypervisors for their guests


def _thunk(load_args: bytes) -> bytes:
    """void f(uint32 leaf, uint32 out[4]); load_args moves leaf->eax, out->r8."""
    return (b"\x53"                    # push rbx        (callee-saved in both ABIs)
            + load_args
            + b"\x31\xc9"              # xor ecx, ecx    (subleaf 0)
            + b"\x0f\xa2"              # cpuid
            + b"\x41\x89\x00"          # mov [r8], eax
            + b"\x41\x89\x58\x04"      # mov [r8+4], ebx
            + b"\x41\x89\x48\x08"      # mov [r8+8], ecx
            + b"\x41\x89\x50\x0c"      # mov [r8+12], edx
            + b"\x5b"                  # pop rbx
            + b"\xc3")                 # ret


# Microsoft x64: arg1 in rcx, arg2 in rdx.   System V: arg1 in rdi, arg2 in rsi.
THUNK_WIN64 = _thunk(b"\x49\x89\xd0" b"\x89\xc8")  # mov r8, rdx ; mov eax, ecx
THUNK_SYSV = _thunk(b"\x49\x89\xf0" b"\x89\xf8")   # mov r8, rsi ; mov eax, edi


class CpuidUnavailable(Exception):
    pass


def _is_x86_64() -> bool:
    return platform.machine().lower() in ("amd64", "x86_64", "x64") and struct.calcsize("P") == 8


def _call(addr: int, leaf: int) -> Regs:
    out = (ctypes.c_uint32 * 4)()
    fn = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32))(addr)
    fn(leaf, out)
    return out[0], out[1], out[2], out[3]


def _cpuid_windows(leaf: int) -> Regs:
    k32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    k32.VirtualAlloc.restype = ctypes.c_void_p
    k32.VirtualAlloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_uint32]
    k32.VirtualProtect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]
    k32.VirtualFree.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32]
    MEM_COMMIT_RESERVE, MEM_RELEASE, PAGE_READWRITE, PAGE_EXECUTE_READ = 0x3000, 0x8000, 0x04, 0x20
    addr = k32.VirtualAlloc(None, 4096, MEM_COMMIT_RESERVE, PAGE_READWRITE)
    if not addr:
        raise CpuidUnavailable("VirtualAlloc failed (error %d)" % ctypes.get_last_error())  # type: ignore[attr-defined]
    try:
        ctypes.memmove(addr, THUNK_WIN64, len(THUNK_WIN64))
        old = ctypes.c_uint32()
        if not k32.VirtualProtect(addr, 4096, PAGE_EXECUTE_READ, ctypes.byref(old)):
            raise CpuidUnavailable("VirtualProtect refused an executable page (an exploit guard may block it)")
        return _call(addr, leaf)
    finally:
        k32.VirtualFree(addr, 0, MEM_RELEASE)


def _cpuid_posix(leaf: int) -> Regs:
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, ValueError, AttributeError) as e:
        raise CpuidUnavailable("cannot map an executable page: %s" % e)
    try:
        page.write(THUNK_SYSV)
        buf = (ctypes.c_char * mmap.PAGESIZE).from_buffer(page)
        try:
            return _call(ctypes.addressof(buf), leaf)
        finally:
            del buf  # release the export so the map can close
    finally:
        page.close()


def cpuid(leaf: int) -> Regs:
    """(eax, ebx, ecx, edx) of CPUID(leaf, subleaf 0) on this processor."""
    if not _is_x86_64():
        raise CpuidUnavailable("CPUID needs an x86-64 Python (this is %s)" % platform.machine())
    if sys.platform == "win32":
        return _cpuid_windows(leaf)
    return _cpuid_posix(leaf)


def vendor(regs0: Regs) -> str:
    """Leaf 0 vendor string: EBX, EDX, ECX (e.g. GenuineIntel)."""
    _, b, c, d = regs0
    return struct.pack("<III", b, d, c).decode("ascii", "replace")


def hypervisor_vendor(regs: Regs) -> str:
    """Leaf 40000000H name: EBX, ECX, EDX (e.g. 'Microsoft Hv', 'VMwareVMware', 'KVMKVMKVM')."""
    _, b, c, d = regs
    return struct.pack("<III", b, c, d).decode("ascii", "replace").rstrip("\0")


def vmx(ecx1: int) -> bool:
    return bool(ecx1 >> VMX_BIT & 1)


def hypervisor_present(ecx1: int) -> bool:
    return bool(ecx1 >> HYPERVISOR_BIT & 1)


def probe() -> Tuple[str, bool, bool, Optional[str]]:
    """(cpu vendor, VMX, hypervisor present, hypervisor name or None)."""
    v = vendor(cpuid(0))
    ecx1 = cpuid(1)[2]
    hv_name = hypervisor_vendor(cpuid(0x40000000)) if hypervisor_present(ecx1) else None
    return v, vmx(ecx1), hypervisor_present(ecx1), hv_name
