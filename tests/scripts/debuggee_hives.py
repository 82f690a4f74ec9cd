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


# --- BCD stores -------------------------------------------------------------
# The shape of a real store (regipy's test BCD, exported from a Windows 10 UEFI
# machine, and Microsoft's BCD WMI provider reference): Objects\{GUID} keys with
# Description\Type (REG_DWORD) and Elements\<8 hex digits>\Element values --
# booleans REG_BINARY 1 byte, integers REG_BINARY 8 bytes little endian, strings
# and objects REG_SZ, object lists REG_MULTI_SZ, devices REG_BINARY blobs.

BOOTMGR = "{9dea862c-5cdd-4e70-acc1-f32b344d4795}"
DBGSETTINGS = "{4636856e-540f-4170-a130-a84776f4c654}"
GLOBALSETTINGS = "{7ea2e1ac-2e61-4728-aaa3-896d9d0a9f0e}"
BOOTLOADERSETTINGS = "{6efb52bf-1766-41db-a6b3-0ee5eff72bd7}"
HYPERVISORSETTINGS = "{7ff607e0-4395-11db-b0de-0800200c9a66}"
EMSSETTINGS = "{0ce4991b-e6b3-4b16-b23c-5e0d9250e5d9}"
LOADER = "{733b62e5-f608-11eb-825c-c112f60133ab}"      # the Windows entry {bootmgr} defaults to
OTHER_LOADER = "{733b62e6-f608-11eb-825c-c112f60133ab}"
RESUME = "{733b62e4-f608-11eb-825c-c112f60133ab}"


def hexbytes(data: bytes) -> str:
    return ",".join("%02x" % b for b in data)


def el_bool(on: bool) -> Data:
    return ("hex:3", hexbytes(b"\x01" if on else b"\x00"))


def el_int(n: int) -> Data:
    return ("hex:3", hexbytes(n.to_bytes(8, "little")))


def el_ip(dotted: str) -> Data:
    return ("hex:3", hexbytes(bytes(int(x) for x in dotted.split(".")) + b"\0" * 4))


def el_multi(items) -> Data:
    return ("hex:7", hexbytes(("\0".join(items) + "\0\0").encode("utf-16-le")))


def el_device() -> Data:  # an opaque partition device blob, as real stores hold
    return ("hex:3", hexbytes(bytes(range(88))))


READY_LOADER = {
    "12000004": "Windows 10",                                 # description
    "11000001": el_device(),                                  # device
    "12000002": "\\Windows\\system32\\winload.efi",           # path
    "14000006": el_multi([BOOTLOADERSETTINGS]),               # inherit
    "16000049": el_bool(True),                                # testsigning
    "260000a0": el_bool(True),                                # debug
    "250000f0": el_int(0),                                    # hypervisorlaunchtype Off
    "25000020": el_int(0),                                    # nx OptIn
}
READY_DBG = {
    "15000011": el_int(3),                                    # debugtype NET
    "1500001a": el_ip("192.168.56.1"),                        # hostip
    "1500001b": el_int(50000),                                # port
    "1200001d": "2steg4fzbj2sz.23418vzkd4ko3.1g34ou07z4pev.1sp3yo9yz874p",  # key
    "1600001c": el_bool(True),                                # dhcp
}


def bcd_keys(loader=None, dbg=None, default: str = LOADER, drop=()) -> Dict[str, Dict[str, Data]]:
    """A BCD store like a real one; loader/dbg replace element sets (hex type -> value,
    None removes); drop removes whole objects."""
    def obj(guid: str, typ: int, elements: Dict[str, Data]) -> Dict[str, Dict[str, Data]]:
        out: Dict[str, Dict[str, Data]] = {"Objects\\%s\\Description" % guid: {"Type": typ}}
        out["Objects\\%s\\Elements" % guid] = {}
        for etype, value in elements.items():
            if value is not None:
                out["Objects\\%s\\Elements\\%s" % (guid, etype.upper())] = {"Element": value}
        return out

    loader_el = dict(READY_LOADER, **(loader or {}))
    dbg_el = dict(READY_DBG, **(dbg or {}))
    keys: Dict[str, Dict[str, Data]] = {"Description": {"KeyName": "BCD00000000", "System": 1, "TreatAsSystem": 1}}
    objects = [
        (BOOTMGR, 0x10100002, {"12000004": "Windows Boot Manager", "11000001": el_device(),
                               "23000003": default, "24000001": el_multi([LOADER, OTHER_LOADER]),
                               "14000006": el_multi([GLOBALSETTINGS]), "25000004": el_int(30)}),
        (LOADER, 0x10200003, loader_el),
        (OTHER_LOADER, 0x10200003, {"12000004": "Windows Recovery Environment", "14000006": el_multi([BOOTLOADERSETTINGS]),
                                    "250000f0": el_int(1), "26000022": el_bool(True)}),
        (RESUME, 0x10200004, {"12000004": "Windows Resume Application", "14000006": el_multi([GLOBALSETTINGS])}),
        (DBGSETTINGS, 0x20100000, dbg_el),
        (EMSSETTINGS, 0x20100000, {"16000020": el_bool(False)}),
        (GLOBALSETTINGS, 0x20100000, {"14000006": el_multi([DBGSETTINGS, EMSSETTINGS])}),
        (BOOTLOADERSETTINGS, 0x20200003, {"14000006": el_multi([GLOBALSETTINGS, HYPERVISORSETTINGS])}),
        (HYPERVISORSETTINGS, 0x20200003, {"250000f3": el_int(0), "250000f4": el_int(1), "250000f5": el_int(115200)}),
    ]
    for guid, typ, elements in objects:
        if guid not in drop:
            keys.update(obj(guid, typ, elements))
    return keys


def make_bcd(path: str, **kw) -> str:
    return make_hive(path, "BCD", bcd_keys(**kw))
