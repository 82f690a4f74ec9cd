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

from debuggee import bcd_elements, bcdedit, start_options
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
    """registry: a registry reader; enum_text/dbg_text: bcdedit output (callables);
    bcd: a callable opening the BCD store (bcd_store.BcdStore) or None; bcd_id: the
    entry to check in it (None: {bootmgr}'s default, "{current}" on the VM)."""

    def __init__(self, registry, enum_text: Optional[TextFn], dbg_text: Optional[TextFn],
                 live: bool, offline_reason: str = "", bcd: Optional[Callable[[], Any]] = None,
                 bcd_id: Optional[str] = None, current_id: Optional[Callable[[], Optional[str]]] = None) -> None:
        self.registry = registry
        self._enum_text = enum_text
        self._dbg_text = dbg_text
        self._bcd = bcd
        self._bcd_id = bcd_id
        self._current_id = current_id
        self.live = live  # True only on the VM itself: probes and files are read there
        self.offline_reason = offline_reason or "only on the VM itself (run check-debuggee there)"
        self._cache: Dict[str, Any] = {}
        self.notes: List[str] = []  # lines of bcdedit output that could not be read, and the like

    # registry
    def reg_get(self, root: str, hive: str, key: str, value: str):
        return self.registry.get(root, hive, key, value)

    def reg_values(self, root: str, hive: str, key: str):
        return self.registry.values(root, hive, key)

    def start_options(self) -> Optional[str]:
        v = self.registry.get("HKLM", "SYSTEM", "CurrentControlSet\\Control", "SystemStartOptions")
        return None if v is None else str(v[0])

    def last_boot(self) -> Optional[start_options.LastBoot]:
        """SystemStartOptions parsed; None when absent or unreadable (the reason is in last_boot_reason)."""
        if "last_boot" not in self._cache:
            try:
                self._cache["last_boot"] = start_options.parse(self.start_options())
                self._cache["last_boot_reason"] = "no SystemStartOptions value in the SYSTEM hive"
            except Unavailable as e:
                self._cache["last_boot"] = None
                self._cache["last_boot_reason"] = str(e)
        return self._cache["last_boot"]

    def last_boot_reason(self) -> str:
        self.last_boot()
        return self._cache["last_boot_reason"]

    # the stored boot configuration: the BCD store first, bcdedit's text second
    def _memo(self, name: str, fn):
        if name not in self._cache:
            try:
                self._cache[name] = fn()
            except bcdedit.BcdOutputError as e:  # denied, or not bcdedit output: UNKNOWN, with why
                self._cache[name] = Unavailable(str(e))
            except Unavailable as e:
                self._cache[name] = e
        value = self._cache[name]
        if isinstance(value, Exception):
            raise value
        return value

    def store(self):
        """(BcdStore, loader GUID, how chosen); Unavailable when there is no usable store."""
        def open_it():
            if self._bcd is None:
                raise Unavailable("no BCD store (give --bcd-hive FILE)")
            st = self._bcd()
            current = self._current_id() if self._current_id else None
            guid, how = st.loader(self._bcd_id, current)
            return st, guid, how
        return self._memo("store", open_it)

    def describe_bcd(self) -> str:
        """Which source answered the boot items, for the summary line."""
        try:
            st, guid, how = self.store()
            return "%s, entry %s (%s)" % (st.describe(), bcd_elements.display_name(guid), how)
        except Unavailable as e:
            store_reason = str(e)
        if self._enum_text is not None or self._dbg_text is not None:
            return "bcdedit output" + ("" if self._bcd is None else " (BCD store: %s)" % store_reason)
        return "none (%s)" % store_reason

    def boot_entry(self) -> Tuple[Dict[str, Any], str]:
        """The loader entry's options (bcdedit names) and where they came from."""
        try:
            st, guid, how = self.store()
            return self._memo("entry", lambda: st.entry(guid, how)), "the BCD store"
        except Unavailable as e:
            if self._enum_text is None:
                if self._bcd is None:
                    raise Unavailable("no boot configuration given (--bcd-hive FILE, or --bcdedit-enum FILE)")
                raise
            store_reason = str(e) if self._bcd is not None else None
        entry = self._memo("enum", lambda: self._text_entry(self._enum_text, bcdedit.parse_enum, "--bcdedit-enum"))
        return entry, "bcdedit output" if store_reason is None else "bcdedit output (%s)" % store_reason

    def debug_settings(self) -> Tuple[Dict[str, Any], str]:
        try:
            st, guid, how = self.store()
            return self._memo("dbg_store", lambda: st.debug_settings(guid)), "the BCD store"
        except Unavailable:
            if self._dbg_text is None:
                if self._bcd is None:
                    raise Unavailable("no debugger settings given (--bcd-hive FILE, or --dbgsettings FILE)")
                raise
        return self._memo("dbg", lambda: self._text_entry(self._dbg_text, bcdedit.parse_dbgsettings,
                                                          "--dbgsettings")), "bcdedit output"

    def _text_entry(self, fn: TextFn, parse, option: str):
        entry = parse(fn())
        for line in getattr(entry, "unread", []):
            self.notes.append("%s: line not understood, ignored: %r" % (option, line))
        return entry

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
