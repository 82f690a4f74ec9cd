"""Registry readers: the live registry (winreg) or exported hive files (regipy).

Both answer get(root, hive, key, value) -> (data, "REG_DWORD") or None when
the value is absent; Unavailable when it cannot be known (no such hive file
given, access denied). Keys under SYSTEM are written with CurrentControlSet:
a hive file has none (it is a link made at boot), so it is resolved through
SYSTEM\\Select\\Current, as Windows does.
"""
from __future__ import annotations

import os
import stat
from typing import Any, Dict, Optional, Tuple

Value = Tuple[Any, str]

_HIVE_ROLE_KEYS = {  # a key each kind of hive has: catches a SOFTWARE hive given as SYSTEM
    "SYSTEM": "Select",
    "SOFTWARE": "Microsoft",
    "NTUSER": "Software",
}
HIVE_OPTIONS = {"SYSTEM": "--hive", "SOFTWARE": "--software-hive", "NTUSER": "--ntuser-hive"}
_HIVE_KIND = {"SYSTEM": "a SYSTEM hive", "SOFTWARE": "a SOFTWARE hive", "NTUSER": "an NTUSER hive"}
_HIVE_EXPORT = {  # how to get each one, for the error line
    "SYSTEM": "give an exported SYSTEM hive, e.g. reg save HKLM\\SYSTEM system.hiv",
    "SOFTWARE": "give an exported SOFTWARE hive, e.g. reg save HKLM\\SOFTWARE software.hiv",
    "NTUSER": "give a user's hive, e.g. reg save HKCU ntuser.hiv, or a copy of C:\\Users\\<name>\\NTUSER.DAT",
}


class Unavailable(Exception):
    """This fact cannot be read from the sources given: the item is UNKNOWN."""


class HiveError(Exception):
    """A hive file that cannot be used: one line for the user, exit 2."""


def _not_a_file(mode: int) -> str:
    try:  # the suite's words for it (windbg_ext/paths.py), when scripts/ sits in the hvlab folder
        from windbg_ext.paths import file_kind
    except ImportError:
        return "not a regular file"
    return file_kind(mode)


def open_hive_file(path: str, option: str, marker: str, how: str, kind: str, error=HiveError):
    """A regf file opened with regipy and checked to have the key `marker`, which
    every hive of the wanted kind has. Every failure is one `error` line: no file,
    not a hive, another kind of hive (`kind` names the wanted one), damaged."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error("%s %s: no such file (%s)" % (option, path, how))
    except OSError as e:
        raise error("%s %s: cannot examine it (%s)" % (option, path, e.strerror or e))
    if not stat.S_ISREG(mode):  # a FIFO or a device would block or read forever: refuse before opening
        raise error("%s %s: %s, not a hive file (%s)" % (option, path, _not_a_file(mode), how))
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise error("%s %s: cannot read it (%s)" % (option, path, e.strerror or e))
    if magic != b"regf":
        raise error("%s %s: not a registry hive (no 'regf' signature); %s" % (option, path, how))
    try:
        from regipy.registry import RegistryHive
        hive = RegistryHive(path)
        hive.get_key("\\" + marker)
    except ImportError:
        raise error("reading hive files needs regipy: pip install regipy")
    except Exception as e:  # regipy raises many kinds on a damaged file
        if type(e).__name__ == "RegistryKeyNotFoundException":
            raise error("%s %s: not %s (it has no %s key); %s" % (option, path, kind, marker, how))
        raise error("%s %s: damaged hive (%s)" % (option, path, type(e).__name__))
    return hive


class HiveRegistry:
    """Exported hive files, e.g. {"SYSTEM": "C:/img/SYSTEM", "SOFTWARE": ...}."""

    def __init__(self, files: Dict[str, str]) -> None:
        self.files = dict(files)
        self._hives: Dict[str, Any] = {}
        self._control_set: Optional[str] = None
        for role, path in self.files.items():
            self._open(role, path)

    def describe(self) -> str:
        return ", ".join("%s hive %s" % (role, path) for role, path in sorted(self.files.items()))

    def _open(self, role: str, path: str) -> None:
        self._hives[role] = open_hive_file(path, HIVE_OPTIONS[role], _HIVE_ROLE_KEYS[role],
                                           how=_HIVE_EXPORT[role], kind=_HIVE_KIND[role])

    def _resolve(self, hive: str, key: str) -> str:
        parts = key.split("\\")
        if hive == "SYSTEM" and parts[0].lower() == "currentcontrolset":
            if self._control_set is None:
                current = self._read("SYSTEM", "Select", "Current")
                if current is None or not isinstance(current[0], int) or not 1 <= current[0] <= 999:
                    raise HiveError("--hive %s: SYSTEM\\Select\\Current is missing or bad: cannot find the control set"
                                    % self.files["SYSTEM"])
                self._control_set = "ControlSet%03d" % current[0]
            parts[0] = self._control_set
        return "\\" + "\\".join(parts)

    def _key(self, hive: str, key: str):
        if hive not in self._hives:
            raise Unavailable("no %s hive given (%s FILE)" % (hive, HIVE_OPTIONS[hive]))
        path = self._resolve(hive, key)
        try:
            return self._hives[hive].get_key(path)
        except Exception as e:
            if type(e).__name__ == "RegistryKeyNotFoundException":
                return None
            raise HiveError("%s %s: damaged hive at %s (%s)" % (HIVE_OPTIONS[hive], self.files[hive], path, type(e).__name__))

    def _read(self, hive: str, key: str, value: str) -> Optional[Value]:
        values = self._values(hive, key)
        if values is None:
            return None
        return values.get(value.lower())

    def _values(self, hive: str, key: str) -> Optional[Dict[str, Value]]:
        k = self._key(hive, key)
        if k is None:
            return None
        out: Dict[str, Value] = {}
        try:
            for v in k.iter_values():
                out[str(v.name).lower()] = (v.value, str(v.value_type))
        except Exception as e:
            raise HiveError("%s %s: damaged values under %s (%s)" % (HIVE_OPTIONS[hive], self.files[hive], key, type(e).__name__))
        return out

    def get(self, root: str, hive: str, key: str, value: str) -> Optional[Value]:
        return self._read(hive, key, value)

    def values(self, root: str, hive: str, key: str) -> Optional[Dict[str, Value]]:
        return self._values(hive, key)


class WinRegistry:
    """The running system's registry (Windows only). Readable without admin for
    everything the table asks, except where an ACL says otherwise (-> UNKNOWN)."""

    _TYPES = {0: "REG_NONE", 1: "REG_SZ", 2: "REG_EXPAND_SZ", 3: "REG_BINARY", 4: "REG_DWORD",
              5: "REG_DWORD_BIG_ENDIAN", 7: "REG_MULTI_SZ", 11: "REG_QWORD"}

    def describe(self) -> str:
        return "live registry"

    def _open(self, root: str, hive: str, key: str):
        import winreg  # type: ignore[import]
        base = winreg.HKEY_CURRENT_USER if root == "HKCU" else winreg.HKEY_LOCAL_MACHINE
        path = key if root == "HKCU" else hive + "\\" + key
        try:
            # KEY_WOW64_64KEY: a 32-bit Python would otherwise read the WOW6432Node copy of SOFTWARE
            return winreg.OpenKey(base, path, 0, winreg.KEY_READ | winreg.KEY_WOW64_64KEY)
        except FileNotFoundError:
            return None
        except PermissionError:
            raise Unavailable("access denied to %s\\%s (run elevated)" % (root, path))

    def get(self, root: str, hive: str, key: str, value: str) -> Optional[Value]:
        import winreg  # type: ignore[import]
        k = self._open(root, hive, key)
        if k is None:
            return None
        with k:
            try:
                data, kind = winreg.QueryValueEx(k, value)
            except FileNotFoundError:
                return None
            except PermissionError:
                raise Unavailable("access denied to value %s (run elevated)" % value)
        return data, self._TYPES.get(kind, "REG_%d" % kind)

    def values(self, root: str, hive: str, key: str) -> Optional[Dict[str, Value]]:
        import winreg  # type: ignore[import]
        k = self._open(root, hive, key)
        if k is None:
            return None
        out: Dict[str, Value] = {}
        with k:
            i = 0
            while True:
                try:
                    name, data, kind = winreg.EnumValue(k, i)
                except OSError:
                    break
                out[name.lower()] = (data, self._TYPES.get(kind, "REG_%d" % kind))
                i += 1
        return out


class NoRegistry:
    def __init__(self, reason: str) -> None:
        self.reason = reason

    def describe(self) -> str:
        return "no registry"

    def get(self, root: str, hive: str, key: str, value: str) -> Optional[Value]:
        raise Unavailable(self.reason)

    def values(self, root: str, hive: str, key: str) -> Optional[Dict[str, Value]]:
        raise Unavailable(self.reason)
