"""System information services: the Windows version and the performance counter.

HyperPlatform and hvpp read the version (RtlGetVersion) to pick structure
layouts; HyperPlatform times its work with KeQueryPerformanceCounter. The lab
plays Windows 10 22H2 (10.0.19045), and its performance counter is the
emulator's instruction count at a nominal 10 MHz (the frequency Windows 10
reports), so it only ever increases and is the same on every run.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from emulated_lab.bochs_loader import instructions
from emulated_lab.nt.services import STATUS_INVALID_PARAMETER, STATUS_SUCCESS, service

if TYPE_CHECKING:
    from emulated_lab.nt.kernel import Call, NtKernel

WINDOWS_VERSION = (10, 0, 19045)
VER_PLATFORM_WIN32_NT = 2
VER_NT_WORKSTATION = 1
OSVERSIONINFOW_SIZE, OSVERSIONINFOEXW_SIZE = 0x114, 0x11C     # RTL_OSVERSIONINFO[EX]W
PERFORMANCE_FREQUENCY = 10_000_000


@service("RtlGetVersion")
def _version(self: "NtKernel", c: "Call") -> int:
    # dwOSVersionInfoSize, dwMajorVersion, dwMinorVersion, dwBuildNumber,
    # dwPlatformId, szCSDVersion[128]; the EX form adds service pack numbers,
    # suite mask, product type
    info = c.arg(0)
    size = struct.unpack("<I", self.m.read_virt(info, 4))[0]
    if size not in (OSVERSIONINFOW_SIZE, OSVERSIONINFOEXW_SIZE):
        return STATUS_INVALID_PARAMETER
    body = struct.pack("<IIIII", size, *WINDOWS_VERSION, VER_PLATFORM_WIN32_NT) + bytes(256)
    if size == OSVERSIONINFOEXW_SIZE:
        body += struct.pack("<HHHBB", 0, 0, 0, VER_NT_WORKSTATION, 0)
    self.m.write_virt(info, body)
    return STATUS_SUCCESS


@service("KeQueryPerformanceCounter")
def _performance_counter(self: "NtKernel", c: "Call") -> int:
    if c.arg(0):
        self.m.write_u64(c.arg(0), PERFORMANCE_FREQUENCY)
    return instructions()
