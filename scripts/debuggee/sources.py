"""Where each fact comes from: the running Windows VM, or recorded files.

Sources bundles a registry reader, the two bcdedit outputs and the live
probes (CPUID, VBS status, service state). Anything not available raises
Unavailable and the item becomes UNKNOWN, with the reason.
"""
from __future__ import annotations

import json
import ntpath
import subprocess
from typing import Any, Callable, Dict, List, Optional, Tuple

from debuggee import bcdedit
from debuggee.registry import Unavailable

TextFn = Callable[[], str]

# Win32_DeviceGuard (root\Microsoft\Windows\DeviceGuard): VirtualizationBasedSecurityStatus
VBS_STATUS = {0: "not enabled", 1: "enabled, not running", 2: "running"}
VBS_SERVICES = {1: "Credential Guard", 2: "HVCI (memory integrity)", 3: "System Guard Secure Launch",
                4: "SMM Firmware Measurement", 5: "Kernel-mode Hardware-enforced Stack Protection",
                7: "Hypervisor-Enforced Paging Translation"}
VBS_QUERY = ("Get-CimInstance -Namespace root\\Microsoft\\Windows\\DeviceGuard -ClassName Win32_DeviceGuard | "
             "Select-Object VirtualizationBasedSecurityStatus,SecurityServicesRunning | ConvertTo-Json -Compress")


def parse_vbs_json(text: str) -> Dict[str, Any]:
    """The JSON that VBS_QUERY prints -> {"status": int, "services": [int]}."""
    try:
        data = json.loads(text)
    except ValueError:
        raise Unavailable("Win32_DeviceGuard query printed no JSON")
    if isinstance(data, list):
        data = data[0] if data else {}
    if not isinstance(data, dict) or not isinstance(data.get("VirtualizationBasedSecurityStatus"), int):
        raise Unavailable("Win32_DeviceGuard gave no VirtualizationBasedSecurityStatus")
    services = data.get("SecurityServicesRunning") or []
    if isinstance(services, int):  # ConvertTo-Json flattens a one-element array
        services = [services]
    return {"status": data["VirtualizationBasedSecurityStatus"], "services": [int(s) for s in services if int(s)]}


def parse_sc_query(text: str) -> Optional[str]:
    """`sc.exe query NAME` -> "RUNNING"/"STOPPED"/... or None (1060: no such service)."""
    if "FAILED 1060" in text:  # ERROR_SERVICE_DOES_NOT_EXIST
        return None
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name.strip().upper() == "STATE":
            words = rest.split()
            return words[1] if len(words) > 1 else (words[0] if words else None)
    raise Unavailable("sc.exe query printed no STATE line")


def _run(argv: List[str], what: str, timeout: int = 60) -> Tuple[int, str]:
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    except FileNotFoundError:
        raise Unavailable("%s: %s not found" % (what, argv[0]))
    except (OSError, subprocess.SubprocessError) as e:
        raise Unavailable("%s failed: %s" % (what, e))
    return p.returncode, bcdedit.decode(p.stdout)


class Sources:
    def __init__(self, registry, enum_text: Optional[TextFn], dbg_text: Optional[TextFn],
                 live: bool, offline_reason: str = "") -> None:
        self.registry = registry
        self._enum_text = enum_text
        self._dbg_text = dbg_text
        self.live = live  # True only on the VM itself: probes and files are read there
        self.offline_reason = offline_reason or "only on the VM itself (run check-debuggee there)"
        self._cache: Dict[str, Any] = {}

    # registry
    def reg_get(self, root: str, hive: str, key: str, value: str):
        return self.registry.get(root, hive, key, value)

    def reg_values(self, root: str, hive: str, key: str):
        return self.registry.values(root, hive, key)

    def start_options(self) -> Optional[str]:
        v = self.registry.get("HKLM", "SYSTEM", "CurrentControlSet\\Control", "SystemStartOptions")
        return None if v is None else str(v[0])

    # bcdedit
    def _parsed(self, name: str, fn: Optional[TextFn], parse, missing: str):
        if name not in self._cache:
            try:
                if fn is None:
                    raise Unavailable(missing)
                self._cache[name] = parse(fn())
            except bcdedit.BcdOutputError as e:  # denied, or a non-English Windows: UNKNOWN, with why
                self._cache[name] = Unavailable(str(e))
            except Unavailable as e:
                self._cache[name] = e
        value = self._cache[name]
        if isinstance(value, Exception):
            raise value
        return value

    def bcd_enum(self) -> Dict[str, str]:
        return self._parsed("enum", self._enum_text, bcdedit.parse_enum,
                            "no bcdedit output (give --bcdedit-enum FILE)")

    def dbgsettings(self) -> Dict[str, str]:
        return self._parsed("dbg", self._dbg_text, bcdedit.parse_dbgsettings,
                            "no bcdedit output (give --dbgsettings FILE)")

    # live-only probes
    def _need_live(self) -> None:
        if not self.live:
            raise Unavailable(self.offline_reason)

    def cpuid(self):
        self._need_live()
        from debuggee import cpuid
        try:
            return cpuid.probe()
        except cpuid.CpuidUnavailable as e:
            raise Unavailable(str(e))

    def vbs_status(self) -> Dict[str, Any]:
        self._need_live()
        _, out = _run(["powershell.exe", "-NoProfile", "-NonInteractive", "-Command", VBS_QUERY], "Win32_DeviceGuard query")
        return parse_vbs_json(out)

    def service_state(self, name: str) -> Optional[str]:
        self._need_live()
        _, out = _run(["sc.exe", "query", name], "sc.exe query")
        return parse_sc_query(out)

    def read_text(self, path: str) -> Optional[str]:
        self._need_live()
        full = ntpath.expandvars(path)
        try:
            with open(full, "rb") as f:
                return bcdedit.decode(f.read())
        except FileNotFoundError:
            return None
        except OSError as e:
            raise Unavailable("cannot read %s: %s" % (full, e.strerror or e))


def live_bcdedit(args: List[str]) -> TextFn:
    """bcdedit on this machine; its refusal without elevation becomes UNKNOWN."""
    def run() -> str:
        rc, out = _run(["bcdedit"] + args, "bcdedit " + " ".join(args))
        if rc != 0:
            bcdedit._check_denied(out, "bcdedit " + " ".join(args))
            raise Unavailable("bcdedit %s failed: %s" % (" ".join(args), out.strip().splitlines()[0] if out.strip() else rc))
        return out
    return run


def file_text(path: str, option: str) -> TextFn:
    """A recorded output file; read now so that a bad path stops the run (exit 2)."""
    try:
        with open(path, "rb") as f:
            text = bcdedit.decode(f.read())
    except OSError as e:
        raise bcdedit.BcdOutputError("%s %s: cannot read it (%s)" % (option, path, e.strerror or e))
    # parse now as well: a file that is not bcdedit output is bad input, not UNKNOWN
    parse = bcdedit.parse_enum if option == "--bcdedit-enum" else bcdedit.parse_dbgsettings
    try:
        parse(text, "%s %s" % (option, path))
    except bcdedit.BcdAccessDenied:
        pass  # a recorded refusal is a fact about that run: UNKNOWN, not an error
    return lambda: text
