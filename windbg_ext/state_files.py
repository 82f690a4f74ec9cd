"""JSON files that describe a VMCS state: the fields file (encoding or name ->
value, or the output of `vmcs N --json`) and the capability-MSR file (MSR ->
value, optional "maxphyaddr", or the output of `caps --cpu N --json`).

Read by `verify --fields/--caps` and by the emulated lab's entry probe, so it
lives here, below both: the lab imports nothing from windbg_ext.commands.
Bad input raises StateFileError with one line (what is wrong, what to do).
"""
from __future__ import annotations

import json
from typing import Any, Dict, Optional, Tuple

from windbg_ext.arch import capabilities as C
from windbg_ext.arch.vmcs_fields import FieldLookupError, lookup
from windbg_ext.errors import InputError
from windbg_ext.number_syntax import NumberError, parse_number
from windbg_ext.paths import open_for_reading


class StateFileError(InputError):
    """A fields or caps file that cannot be used; the message is one line for the user."""


def _load_json(path: str, what: str) -> Dict[str, Any]:
    try:  # a directory, FIFO or device is refused with what it is (a FIFO never blocks)
        with open_for_reading(path, what, "r") as f:
            data = json.load(f)
    except OSError as e:
        raise StateFileError("cannot read %s %s: %s" % (what, path, e.strerror or e))
    except ValueError as e:
        raise StateFileError("%s %s is not valid JSON (%s); expected an object like {\"0x681e\": \"0x1000\"}"
                             % (what, path, getattr(e, "msg", e)))
    if not isinstance(data, dict):
        raise StateFileError("%s %s must hold a JSON object (key -> hex value), not a %s"
                             % (what, path, type(data).__name__))
    return data


def _number(value: Any, what: str, kind: str = "hex") -> int:
    """A JSON number, or a string in WinDbg syntax (windbg_ext/number_syntax.py): a bare string
    is hex, as the suite's own JSON writes values; maxphyaddr (a bit count) is decimal."""
    if isinstance(value, bool):
        raise StateFileError("%s: %r is not a number" % (what, value))
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        try:
            n = parse_number(value, kind, what)
        except NumberError as e:
            raise StateFileError(str(e))
    else:
        raise StateFileError("%s: %r is not a number (write a JSON string such as \"0x1c\")" % (what, value))
    if not 0 <= n <= 0xFFFFFFFFFFFFFFFF:
        raise StateFileError("%s: %r does not fit in 64 bits" % (what, value))
    return n


def load_fields(path: str) -> Dict[int, int]:
    out: Dict[int, int] = {}
    data = _load_json(path, "fields file")
    if isinstance(data.get("fields"), list):  # the output of `vmcs N --json`: [{name, encoding, value}, ...]
        data = {str(f.get("encoding") or f.get("name")): f.get("value") for f in data["fields"]
                if isinstance(f, dict) and f.get("value") is not None}
    for key, value in data.items():
        try:
            field, access = lookup(key)
        except FieldLookupError as e:
            raise StateFileError("fields file %s: key %r: %s" % (path, key, e))
        v = _number(value, "fields file %s, %s" % (path, key))
        if access == "high":  # bits 63:32 of a 64-bit field (SDM 25.11.2)
            out[field.encoding] = (out.get(field.encoding, 0) & 0xFFFFFFFF) | ((v & 0xFFFFFFFF) << 32)
        else:
            out[field.encoding] = v
    return out


def load_caps(path: str) -> Tuple[Dict[int, int], Optional[int]]:
    caps: Dict[int, int] = {}
    maxphy: Optional[int] = None
    data = _load_json(path, "caps file")
    if isinstance(data.get("cpus"), list):  # the output of `caps --json` (one processor: --cpu N)
        cpus = [c for c in data["cpus"] if isinstance(c, dict) and isinstance(c.get("msrs"), dict)]
        if len(cpus) != 1:
            raise StateFileError("caps file %s holds %d processors: write it with caps --cpu N --json"
                                 % (path, len(cpus)))
        data = {k: v for k, v in cpus[0]["msrs"].items() if v is not None and _number(k, "caps file %s: key" % path)
                in C.VMX_MSRS}
    for key, value in data.items():
        if key.lower() == "maxphyaddr":
            maxphy = _number(value, "caps file %s, maxphyaddr" % path, "decimal")
            continue
        msr = _number(key, "caps file %s: key" % path)
        if msr not in C.VMX_MSRS:
            raise StateFileError("caps file %s: key %s is not a VMX capability MSR (%s)" % (path, key, C.VMX_MSR_SPAN))
        caps[msr] = _number(value, "caps file %s, MSR %s" % (path, key))
    return caps, maxphy
