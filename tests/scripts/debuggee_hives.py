"""Real registry hive files for the checker's tests.

hivex (Debian's libhivex-bin) edits hives but cannot create one: there is no
"new hive" in hivexsh or libhivex. So `empty_hive` writes the smallest valid
regf file itself -- a 4 KiB base block (signature, sequence numbers,
version 1.3, root cell offset, checksum = XOR of the first 127 dwords) and one
4 KiB hbin holding the root `nk` key, its `sk` security cell and one free
cell -- and every key and value after that is written by `hivexsh -w`, the
same library virt tools use on real Windows images. regipy then reads it.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
from typing import Dict, Tuple, Union

HIVEXSH = shutil.which("hivexsh")
SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "scripts")
Data = Union[int, str, Tuple[str, object]]

_NK_ROOT_FLAGS = 0x2C  # KEY_HIVE_ENTRY | KEY_NO_DELETE | KEY_COMP_NAME


def _cell(body: bytes) -> bytes:
    size = (4 + len(body) + 7) & ~7  # cells are 8-byte aligned, size negative = in use
    return struct.pack("<i", -size) + body.ljust(size - 4, b"\0")


def empty_hive(path: str, name: str = "SYSTEM") -> None:
    root_name = b"ROOT"
    root_off = 0x20  # first cell after the 32-byte hbin header

    def nk(sk_off: int) -> bytes:
        return (b"nk" + struct.pack("<HQIIIIIIIIIIIIIIIHH", _NK_ROOT_FLAGS, 0, 0, 0xFFFFFFFF, 0, 0,
                                    0xFFFFFFFF, 0xFFFFFFFF, 0, 0xFFFFFFFF, sk_off, 0xFFFFFFFF,
                                    0, 0, 0, 0, 0, len(root_name), 0) + root_name)

    nk_len = len(_cell(nk(0)))
    sk_off = root_off + nk_len
    descriptor = struct.pack("<BBHIIII", 1, 0, 0x8004, 0, 0, 0, 0)  # self-relative, empty DACL
    sk = b"sk" + struct.pack("<HIIII", 0, sk_off, sk_off, 1, len(descriptor)) + descriptor
    cells = _cell(nk(sk_off)) + _cell(sk)
    free = 0x1000 - 0x20 - len(cells)
    hbin = b"hbin" + struct.pack("<IIQQI", 0, 0x1000, 0, 0, 0) + cells + struct.pack("<i", free) + b"\0" * (free - 4)
    base = bytearray(0x1000)
    struct.pack_into("<4sIIQIIIIIII", base, 0, b"regf", 1, 1, 0, 1, 3, 0, 1, root_off, len(hbin), 1)
    base[0x30:0x70] = ("\\SystemRoot\\System32\\Config\\" + name).encode("utf-16-le")[:64].ljust(64, b"\0")
    checksum = 0
    for i in range(0, 0x1FC, 4):
        checksum ^= struct.unpack_from("<I", base, i)[0]
    struct.pack_into("<I", base, 0x1FC, checksum)
    with open(path, "wb") as f:
        f.write(bytes(base) + hbin)


def _value_line(data: Data) -> str:
    if isinstance(data, tuple):  # ("string", "..."), ("qword", 5), ...
        kind, v = data
        return "%s:%s" % (kind, v)
    if isinstance(data, int):
        return "dword:0x%x" % data
    return "string:%s" % data


def make_hive(path: str, name: str, keys: Dict[str, Dict[str, Data]]) -> str:
    """keys: {"ControlSet001\\Control\\Lsa": {"LsaCfgFlags": 0, ...}, "Empty\\Key": {}}."""
    if HIVEXSH is None:
        raise RuntimeError("hivexsh not found: tools/bootstrap.sh installs libhivex-bin")
    empty_hive(path, name)
    lines, made = [], set()
    for key, values in keys.items():
        lines.append("cd \\")
        parts = [p for p in key.split("\\") if p]
        for i, part in enumerate(parts):
            sub = "\\".join(parts[: i + 1]).lower()
            if sub not in made:
                lines.append("add %s" % part)
                made.add(sub)
            lines.append("cd %s" % part)
        if values:
            lines.append("setval %d" % len(values))
            for vname, data in values.items():
                lines.append(vname)
                lines.append(_value_line(data))
    lines.append("commit")
    script = path + ".hivexsh"
    with open(script, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = subprocess.run([HIVEXSH, "-w", "-f", script, path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    if r.returncode != 0:
        raise RuntimeError("hivexsh failed: %s" % r.stdout)
    os.unlink(script)
    return path


def system_keys(control_set: str = "ControlSet001", current: int = 1, **over) -> Dict[str, Dict[str, Data]]:
    """A SYSTEM hive as a ready debuggee has it; `over` replaces whole values by id-like names."""
    cs = control_set
    keys: Dict[str, Dict[str, Data]] = {
        "Select": {"Current": current, "Default": current, "LastKnownGood": current},
        cs + "\\Control": {"SystemStartOptions": " TESTSIGNING  NOEXECUTE=OPTIN  DEBUG"},
        cs + "\\Control\\DeviceGuard": {"EnableVirtualizationBasedSecurity": 0},
        cs + "\\Control\\DeviceGuard\\Scenarios\\HypervisorEnforcedCodeIntegrity": {"Enabled": 0},
        cs + "\\Control\\Lsa": {"LsaCfgFlags": 0},
        cs + "\\Control\\Session Manager\\Debug Print Filter": {"IHVDRIVER": 0xFFFF},
        cs + "\\Control\\SecureBoot\\State": {"UEFISecureBootEnabled": 0},
        cs + "\\Services\\hv": {"Type": 1, "Start": 3, "ImagePath": ("expandstring", "\\??\\C:\\hvlab\\hv.sys")},
    }
    for k, v in over.items():
        key = cs + "\\" + k.replace("/", "\\")
        if v is None:
            keys.pop(key, None)
        else:
            keys[key] = v
    return keys


def software_keys(**over) -> Dict[str, Dict[str, Data]]:
    keys: Dict[str, Dict[str, Data]] = {
        "Microsoft\\Windows\\CurrentVersion\\Policies\\System": {"EnableLUA": 0},
        "Microsoft\\Windows Defender\\Features": {"TamperProtection": 4},
        "Policies\\Microsoft\\Windows Defender\\Real-Time Protection": {"DisableRealtimeMonitoring": 1},
    }
    for k, v in over.items():
        key = k.replace("/", "\\")
        if v is None:
            keys.pop(key, None)
        else:
            keys[key] = v
    return keys
