"""The BCD store itself: a hive file (--bcd-hive) or the live HKLM\\BCD00000000.

Reading the store instead of bcdedit's text answers in every display
language: elements are numbers (bcd_elements.ELEMENTS), values are bytes.
The entry checked is {bootmgr}'s default (BcdBootMgrObject_DefaultObject),
or an identifier the user gives; an element it lacks is looked up in the
objects it inherits (BcdLibraryObjectList_InheritedObjects), depth first,
as the boot manager does -- that is how a loader sees {dbgsettings}.

Both readers answer subkeys(path) and values(path) for paths like
"Objects\\{GUID}\\Elements"; BcdStore only ever sees those two calls.
"""
from __future__ import annotations

import struct
import uuid
from typing import Any, Dict, List, Optional, Tuple

from debuggee import bcd_elements as E
from debuggee.registry import Unavailable, open_hive_file

Value = Tuple[Any, str]
_MAX_INHERIT_DEPTH = 16


class BcdStoreError(Exception):
    """A store that cannot be used (bad file, unknown identifier): one line, exit 2."""


def _binary(data: Any, kind: str) -> Any:
    """regipy gives REG_BINARY data as a hex string; winreg as bytes: make both bytes."""
    if kind == "REG_BINARY" and isinstance(data, str):
        try:
            return bytes.fromhex(data)
        except ValueError:
            return data
    return data


class HiveTree:
    """An exported BCD hive: reg save HKLM\\BCD00000000, or \\EFI\\Microsoft\\Boot\\BCD."""

    def __init__(self, path: str, option: str = "--bcd-hive") -> None:
        self.path, self.option = path, option
        self._hive = open_hive_file(path, option, "Objects", kind="a BCD store", error=BcdStoreError,
                                    how="export the store on the VM: bcdedit /export bcd.hiv, or "
                                        "reg save HKLM\\BCD00000000 bcd.hiv")

    def describe(self) -> str:
        return "BCD store %s" % self.path

    def _key(self, path: str):
        try:
            return self._hive.get_key("\\" + path)
        except Exception as e:
            if type(e).__name__ == "RegistryKeyNotFoundException":
                return None
            raise BcdStoreError("%s %s: damaged hive at %s (%s)" % (self.option, self.path, path, type(e).__name__))

    def subkeys(self, path: str) -> Optional[List[str]]:
        k = self._key(path)
        if k is None:
            return None
        try:
            return [str(s.name) for s in k.iter_subkeys()]
        except Exception as e:
            raise BcdStoreError("%s %s: damaged keys under %s (%s)" % (self.option, self.path, path, type(e).__name__))

    def values(self, path: str) -> Optional[Dict[str, Value]]:
        k = self._key(path)
        if k is None:
            return None
        try:
            return {str(v.name).lower(): (_binary(v.value, str(v.value_type)), str(v.value_type))
                    for v in k.iter_values()}
        except Exception as e:
            raise BcdStoreError("%s %s: damaged values under %s (%s)" % (self.option, self.path, path, type(e).__name__))


class WinregTree:
    """The running system's store, HKLM\\BCD00000000 (readable by administrators only)."""

    ROOT = "BCD00000000"

    def __init__(self) -> None:
        self._open("")  # fail now (Unavailable) when not elevated

    def describe(self) -> str:
        return "live BCD store (HKLM\\%s)" % self.ROOT

    def _open(self, path: str):
        import winreg  # type: ignore[import]
        full = self.ROOT + ("\\" + path if path else "")
        try:
            return winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, full, 0, winreg.KEY_READ)
        except FileNotFoundError:
            if not path:
                raise Unavailable("HKLM\\%s is not loaded" % self.ROOT)
            return None
        except PermissionError:
            raise Unavailable("access denied to HKLM\\%s (run elevated)" % self.ROOT)

    def subkeys(self, path: str) -> Optional[List[str]]:
        import winreg  # type: ignore[import]
        k = self._open(path)
        if k is None:
            return None
        out, i = [], 0
        with k:
            while True:
                try:
                    out.append(winreg.EnumKey(k, i))
                except OSError:
                    return out
                i += 1

    def values(self, path: str) -> Optional[Dict[str, Value]]:
        import winreg  # type: ignore[import]
        from debuggee.registry import WinRegistry
        k = self._open(path)
        if k is None:
            return None
        out: Dict[str, Value] = {}
        i = 0
        with k:
            while True:
                try:
                    name, data, kind = winreg.EnumValue(k, i)
                except OSError:
                    return out
                out[name.lower()] = (data, WinRegistry._TYPES.get(kind, "REG_%d" % kind))
                i += 1


def live_boot_identifier() -> Optional[str]:
    """{current}'s GUID on the running system: NtQuerySystemInformation(
    SystemBootEnvironmentInformation = 90) starts with the boot entry's GUID.
    No elevation needed; None where it cannot be asked."""
    try:
        import ctypes
        ntdll = ctypes.WinDLL("ntdll")  # type: ignore[attr-defined]
        buf = ctypes.create_string_buffer(32)  # GUID, FIRMWARE_TYPE, ULONGLONG BootFlags
        size = ctypes.c_ulong(0)
        status = ntdll.NtQuerySystemInformation(90, buf, 32, ctypes.byref(size))
    except (OSError, AttributeError, ImportError):
        return None
    if status != 0:
        return None
    return "{%s}" % uuid.UUID(bytes_le=bytes(buf.raw[:16]))


def _decode(option: str, etype: int, value: Value, where: str) -> Any:
    """An element's stored value -> what bcdedit would print (English words)."""
    data, kind = value
    fmt = E.element_format(etype)
    if fmt == E.FORMAT_BOOLEAN:
        if isinstance(data, (bytes, bytearray)) and data:
            return E.YES if any(data) else E.NO
        if isinstance(data, int):
            return E.YES if data else E.NO
    elif fmt == E.FORMAT_INTEGER:
        number = None
        if isinstance(data, (bytes, bytearray)) and 0 < len(data) <= 8:
            number = int.from_bytes(bytes(data), "little")
        elif isinstance(data, int):
            number = data
        if number is not None:
            if option == "hostip":  # the address octets in order, lowest byte first
                return ".".join(str(b) for b in struct.pack("<Q", number)[:4])
            names = E.VALUE_NAMES.get(option)
            if names is not None:
                return names.get(number, "unknown (%d)" % number)
            return str(number)
    elif fmt in (E.FORMAT_STRING, E.FORMAT_OBJECT):
        if isinstance(data, str):
            return data
    elif fmt == E.FORMAT_OBJECTLIST:
        if isinstance(data, (list, tuple)):
            return [str(x) for x in data if str(x)]
        if isinstance(data, str):
            return [x for x in data.replace("\0", " ").split() if x]
    raise Unavailable("%s: element %08X (%s) is %s, which this checker cannot read" % (where, etype, option, kind))


class BcdStore:
    def __init__(self, tree) -> None:
        self.tree = tree
        names = tree.subkeys("Objects")
        if names is None:
            raise BcdStoreError("%s: no Objects key: not a BCD store" % tree.describe())
        self._objects = {n.lower(): n for n in names}

    def describe(self) -> str:
        return self.tree.describe()

    def _guid(self, ident: str) -> str:
        return E.WELL_KNOWN.get(ident.lower(), ident.lower())

    def has(self, guid: str) -> bool:
        return guid.lower() in self._objects

    def object_type(self, guid: str) -> Optional[int]:
        values = self.tree.values("Objects\\%s\\Description" % self._objects[guid.lower()])
        t = (values or {}).get("type")
        return t[0] if t and isinstance(t[0], int) else None

    def _raw(self, guid: str, etype: int) -> Optional[Value]:
        name = self._objects.get(guid.lower())
        if name is None:
            return None
        elements = self.tree.subkeys("Objects\\%s\\Elements" % name) or []
        for sub in elements:
            if sub.lower() == "%08x" % etype:
                return (self.tree.values("Objects\\%s\\Elements\\%s" % (name, sub)) or {}).get("element")
        return None

    def _lookup(self, guid: str, option: str, depth: int, seen: set) -> Optional[Tuple[Any, str]]:
        if depth > _MAX_INHERIT_DEPTH or guid.lower() in seen:
            return None
        seen.add(guid.lower())
        where = "%s in %s" % (option, self.describe())
        for etype in E.ELEMENTS[option]:
            raw = self._raw(guid, etype)
            if raw is not None:
                return _decode(option, etype, raw, where), E.display_name(guid)
        inherit = self._raw(guid, E.ELEMENTS["inherit"][0])
        for parent in (_decode("inherit", E.ELEMENTS["inherit"][0], inherit, where) if inherit else []):
            found = self._lookup(self._guid(parent), option, depth + 1, seen)
            if found is not None:
                return found
        return None

    def element(self, guid: str, option: str) -> Optional[Tuple[Any, str]]:
        """(value, the object it came from) for a bcdedit option name, following inheritance; None if unset."""
        return self._lookup(guid, option, 0, set())

    def loader(self, ident: Optional[str], current: Optional[str] = None) -> Tuple[str, str]:
        """(GUID, how it was chosen) of the OS loader entry to check.

        ident None or {default}: {bootmgr}'s default. {current}: `current` (the live
        boot identifier) when known, else the default. Otherwise a GUID or a
        well-known name; it must exist and be an OS loader (BcdStoreError if not).
        """
        how = ""
        if ident and ident.lower() == "{current}":
            if current and self.has(current):
                return current.lower(), "{current}, the entry Windows booted"
            ident, how = None, (" ({current} is only known on the running VM)" if not current
                                else " (the booted entry %s is not in this store)" % current.lower())
        if not ident or ident.lower() == "{default}":
            bootmgr = E.WELL_KNOWN["{bootmgr}"]
            if not self.has(bootmgr):
                raise Unavailable("%s has no {bootmgr} object: give --bcd-id {GUID} of the Windows entry"
                                  % self.describe())
            found = self._raw(bootmgr, E.ELEMENTS["default"][0])
            if found is None:
                raise Unavailable("%s: {bootmgr} has no default entry: give --bcd-id {GUID}" % self.describe())
            guid = str(_decode("default", E.ELEMENTS["default"][0], found, self.describe())).lower()
            if not self.has(guid):
                raise Unavailable("%s: {bootmgr}'s default %s is not in the store" % (self.describe(), guid))
            how = "{bootmgr}'s default" + how
            kind = self.object_type(guid)
            if kind != E.OS_LOADER:
                raise Unavailable("%s: {bootmgr}'s default %s is a %s, not a Windows Boot Loader: give --bcd-id"
                                  % (self.describe(), guid, E.object_type_name(kind)))
            return guid, how
        guid = self._guid(ident)
        if not self.has(guid):
            raise BcdStoreError("--bcd-id %s: no such object in %s (OS loaders there: %s)"
                                % (ident, self.describe(), ", ".join(self.loaders()) or "none"))
        kind = self.object_type(guid)
        if kind != E.OS_LOADER:
            raise BcdStoreError("--bcd-id %s is a %s, not a Windows Boot Loader (OS loaders: %s)"
                                % (ident, E.object_type_name(kind), ", ".join(self.loaders()) or "none"))
        return guid, "given by --bcd-id"

    def loaders(self) -> List[str]:
        return sorted(g for g in self._objects if self.object_type(g) == E.OS_LOADER)

    def _read(self, guid: str, option: str) -> Optional[Tuple[Any, str]]:
        """element(), with an unreadable element kept as its Unavailable (one row UNKNOWN, not all)."""
        try:
            return self.element(guid, option)
        except Unavailable as e:
            return e, E.display_name(guid)

    def entry(self, guid: str, how: str) -> Dict[str, Any]:
        """The loader's options as bcdedit /enum names them (absent options left out;
        an element this checker cannot read is there as an Unavailable)."""
        out: Dict[str, Any] = {"identifier": E.display_name(guid), "chosen": how}
        for option in ("description", "testsigning", "nointegritychecks", "debug", "bootdebug", "hypervisorlaunchtype"):
            found = self._read(guid, option)
            if found is not None:
                out[option] = found[0]
        return out

    def debug_settings(self, guid: str) -> Dict[str, Any]:
        """The KDNET/serial settings the loader gets: its own elements, then what it
        inherits (normally {dbgsettings}); {dbgsettings} itself when the loader
        does not inherit it. Values are bcdedit's words; "from" names the object."""
        out: Dict[str, Any] = {}
        sources = set()
        dbg = E.WELL_KNOWN["{dbgsettings}"]
        for option in ("debugtype", "debugport", "baudrate", "hostip", "port", "key", "dhcp", "busparams"):
            found = self._read(guid, option)
            if found is None and self.has(dbg):
                found = self._read(dbg, option)
            if found is not None:
                out[option] = found[0]
                sources.add(found[1])
        out["from"] = ", ".join(sorted(sources)) or "nowhere"
        return out
