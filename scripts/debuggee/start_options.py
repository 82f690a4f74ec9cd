"""SystemStartOptions: the boot options the LAST boot actually used.

HKLM\\SYSTEM\\CurrentControlSet\\Control\\SystemStartOptions (REG_SZ) is written
by the loader at every boot: the BCD options it applied, as boot.ini-style
switches without the slash, e.g. " NOEXECUTE=OPTIN  HYPERVISORLAUNCHTYPE=AUTO"
(the Kernel-Boot event's LoadOptions field shows the same string). Microsoft's
"Mapping Boot Options to Elements" table (BCD WMI provider reference) maps
the switches to BCD elements; this module turns them back into bcdedit's
option names and English values, so they compare with the BCD store.

It says what the running system booted with, not what the next boot will
use: bcdedit changes only show up here after a reboot.
"""
from __future__ import annotations

from typing import Dict, List, Optional

# switch -> (bcdedit option, value) for switches whose presence decides it
_FLAGS = {
    "TESTSIGNING": ("testsigning", "Yes"),
    "DISABLE_INTEGRITY_CHECKS": ("nointegritychecks", "Yes"),
    "NOINTEGRITYCHECKS": ("nointegritychecks", "Yes"),
    "FLIGHTSIGNING": ("flightsigning", "Yes"),
    "DEBUG": ("debug", "Yes"),
    "NODEBUG": ("debug", "No"),
}
# options whose switch is absent when off: absence is an answer, not a gap
_ABSENT_MEANS = {"testsigning": "No", "nointegritychecks": "No", "flightsigning": "No", "debug": "No",
                 "hypervisorlaunchtype": "Off"}
_DEBUGPORT = {"NET": "NET", "1394": "1394", "USB": "USB", "LOCAL": "Local"}
_LAUNCH = {"AUTO": "Auto", "OFF": "Off"}


class LastBoot:
    """The parsed value: .text (as stored), .values {bcdedit option: value}, .other switches."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.values: Dict[str, str] = dict(_ABSENT_MEANS)
        self.other: List[str] = []  # switches that do not bear on Day 0 (NOEXECUTE=OPTIN ...)
        for token in text.split():
            self._take(token.upper())

    def _take(self, token: str) -> None:
        name, eq, value = token.partition("=")
        if not eq and token in _FLAGS:
            option, v = _FLAGS[token]
            self.values[option] = v
        elif name == "DEBUG":  # DEBUG=AUTOENABLE,NOUMEX ...: debugging on, with flags
            self.values["debug"] = "Yes"
        elif name == "HYPERVISORLAUNCHTYPE" and value in _LAUNCH:
            self.values["hypervisorlaunchtype"] = _LAUNCH[value]
        elif name == "DEBUGPORT" and value:
            if value.startswith("COM") and value[3:].isdigit():
                self.values["debugtype"] = "Serial"
                self.values["debugport"] = value[3:]
            else:
                self.values["debugtype"] = _DEBUGPORT.get(value, value)
        elif name == "HOST_IP" and value:
            self.values["hostip"] = value
        elif name == "HOST_PORT" and value:
            self.values["port"] = value
        elif name == "BAUDRATE" and value:
            self.values["baudrate"] = value
        else:
            self.other.append(token)

    def get(self, option: str) -> Optional[str]:
        return self.values.get(option.lower())

    def summary(self) -> str:
        """One line for people: what mattered at the last boot."""
        v = self.values
        parts = ["testsigning %s" % v["testsigning"], "debug %s" % v["debug"]]
        if "debugtype" in v:
            where = ":".join(x for x in (v.get("hostip"), v.get("port")) if x)
            parts.append("debugtype %s%s" % (v["debugtype"], " " + where if where else ""))
        parts.append("hypervisorlaunchtype %s" % v["hypervisorlaunchtype"])
        if v["nointegritychecks"] == "Yes":
            parts.append("nointegritychecks Yes")
        if v["flightsigning"] == "Yes":
            parts.append("flightsigning Yes")
        return ", ".join(parts)

    def as_json(self) -> Dict[str, object]:
        return {"text": self.text, "values": dict(self.values), "other": list(self.other)}


def parse(text: Optional[str]) -> Optional[LastBoot]:
    """None when the value is absent (an image that never booted, or a damaged hive)."""
    if text is None:
        return None
    return LastBoot(str(text))
