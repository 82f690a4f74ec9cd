"""The settings table (scripts/debuggee-settings.json): load, validate, fill parameters.

The same file drives setup-debuggee.ps1, so what the checker verifies is what
the set-up applies. `{Name}` in `wanted`, `fix` and `path` is a parameter.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
from typing import Any, Dict, List, Optional

TABLE_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "debuggee-settings.json")

KINDS = ("registry", "bcdedit", "dbgsettings", "file", "probe")
APPLY = ("auto", "manual", "none")
ROOT_HIVES = {"HKLM": ("SYSTEM", "SOFTWARE"), "HKCU": ("NTUSER",)}
PROBES = ("cpuid_vmx", "vbs_status", "driver_service")
_COMMON = ("id", "title", "kind", "apply", "reboot", "required", "fix", "why")
_REQUIRED = {
    "registry": ("root", "hive", "key", "value", "type", "wanted", "absent"),
    "bcdedit": ("option", "set", "wanted", "absent"),
    "dbgsettings": ("field", "wanted", "check"),
    "file": ("path", "contains"),
    "probe": ("probe",),
}
_PARAM = re.compile(r"\{([A-Z][A-Za-z]*)\}")  # {current} is bcdedit's, not ours
# KDNET keys are four dot-separated base-36 words (bcdedit /dbgsettings docs).
_KDNET_KEY = re.compile(r"^[0-9a-z]{1,13}(\.[0-9a-z]{1,13}){3}$", re.I)


class SettingsError(Exception):
    """The table or a parameter is unusable: one line for the user."""


def load(path: str = TABLE_PATH) -> Dict[str, Any]:
    try:
        with open(path, "r", encoding="utf-8") as f:
            table = json.load(f)
    except OSError as e:
        raise SettingsError("cannot read the settings table %s: %s" % (path, e.strerror or e))
    except ValueError as e:
        raise SettingsError("settings table %s is not valid JSON: %s" % (path, e))
    validate(table)
    return table


def validate(table: Any) -> None:
    if not isinstance(table, dict) or table.get("format") != "hvlab-debuggee-settings":
        raise SettingsError("settings table: not an hvlab-debuggee-settings file")
    if table.get("version") != 1:
        raise SettingsError("settings table version %r is not 1: update scripts/" % table.get("version"))
    params = table.get("parameters")
    if not isinstance(params, dict):
        raise SettingsError("settings table: 'parameters' missing")
    seen = set()
    for s in table.get("settings") or []:
        sid = s.get("id", "?")
        if sid in seen:
            raise SettingsError("settings table: id %r twice" % sid)
        seen.add(sid)
        kind = s.get("kind")
        if kind not in KINDS:
            raise SettingsError("settings table: %s: kind %r is not one of %s" % (sid, kind, ", ".join(KINDS)))
        missing = [k for k in _COMMON + _REQUIRED[kind] if k not in s]
        if missing:
            raise SettingsError("settings table: %s lacks %s" % (sid, ", ".join(missing)))
        if s["apply"] not in APPLY:
            raise SettingsError("settings table: %s: apply %r is not one of %s" % (sid, s["apply"], ", ".join(APPLY)))
        if kind == "registry" and s["hive"] not in ROOT_HIVES.get(s["root"], ()):
            raise SettingsError("settings table: %s: hive %s is not under %s" % (sid, s["hive"], s["root"]))
        if kind == "registry" and s["type"] != "REG_DWORD":  # the one type both scripts write and compare
            raise SettingsError("settings table: %s: type %s is not REG_DWORD" % (sid, s["type"]))
        if kind == "probe" and s["probe"] not in PROBES:
            raise SettingsError("settings table: %s: unknown probe %r" % (sid, s["probe"]))
        for text in (s.get("wanted"), s.get("fix"), s.get("path"), s.get("title")):
            for name in _PARAM.findall(text if isinstance(text, str) else ""):
                if name not in params:
                    raise SettingsError("settings table: %s uses unknown parameter {%s}" % (sid, name))
    if not seen:
        raise SettingsError("settings table: no settings")


def check_parameter(kind: str, name: str, value: str) -> str:
    """Validates one parameter value by its type; returns it normalised."""
    v = str(value).strip()
    if kind == "dword":
        try:
            n = int(v, 16) if v.lower().startswith("0x") else int(v, 10)
        except ValueError:
            n = -1
        if not 0 <= n <= 0xFFFFFFFF:
            raise SettingsError("%s %r is not a 32-bit number (e.g. 0xFFFF)" % (name, value))
        return "0x%X" % n
    if kind == "ipv4":
        try:
            return str(ipaddress.IPv4Address(v))
        except ValueError:
            raise SettingsError("%s %r is not an IPv4 address (the WinDbg host, e.g. 192.168.1.10)" % (name, value))
    if kind == "port":
        if not v.isdigit() or not 49152 <= int(v) <= 65535:
            raise SettingsError("%s %r is not a KDNET port (49152-65535, e.g. 50000)" % (name, value))
        return str(int(v))
    if kind == "kdnet_key":
        if not _KDNET_KEY.match(v):
            raise SettingsError("%s %r is not a KDNET key (four dot-separated words of 0-9a-z, e.g. 1.2.3.4)" % (name, value))
        return v.lower()
    if kind == "name":
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", v):
            raise SettingsError("%s %r is not a service name" % (name, value))
        return v
    raise SettingsError("settings table: parameter %s has unknown type %r" % (name, kind))


def resolve_parameters(table: Dict[str, Any], given: Dict[str, Optional[str]]) -> Dict[str, Optional[str]]:
    """Parameter values: given (validated) or the table's default (None = not set)."""
    out: Dict[str, Optional[str]] = {}
    for name, spec in table["parameters"].items():
        value = given.get(name)
        if value is None:
            value = spec.get("default")
        out[name] = None if value is None else check_parameter(spec["type"], name, value)
    return out


def fill(text: Any, params: Dict[str, Optional[str]]) -> Any:
    """Substitutes {Name}; a string that names an unset parameter becomes None."""
    if not isinstance(text, str):
        return text
    names = _PARAM.findall(text)
    if any(params.get(n) is None for n in names):
        return None
    return _PARAM.sub(lambda m: str(params[m.group(1)]), text)


def fill_fix(text: str, params: Dict[str, Optional[str]]) -> str:
    """A fix command with unset parameters shown as <Name> placeholders."""
    return _PARAM.sub(lambda m: str(params[m.group(1)]) if params.get(m.group(1)) is not None
                      else "<%s>" % m.group(1), text)


def registry_path(s: Dict[str, Any]) -> str:
    """The full path a person types: HKLM\\SYSTEM\\CurrentControlSet\\... or HKCU\\Software\\..."""
    if s["root"] == "HKCU":
        return "HKCU\\" + s["key"]
    return "%s\\%s\\%s" % (s["root"], s["hive"], s["key"])


def kdnet_key_ok(text: str) -> bool:
    return bool(_KDNET_KEY.match(text.strip()))


def settings(table: Dict[str, Any]) -> List[Dict[str, Any]]:
    return list(table["settings"])
