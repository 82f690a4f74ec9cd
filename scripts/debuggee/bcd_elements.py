"""BCD facts, defined once: element types, well-known objects, value names.

Source: Microsoft's BCD WMI provider reference (learn.microsoft.com,
previous-versions/windows/desktop/bcd): BcdLibraryElementTypes,
BcdOSLoaderElementTypes, BcdBootMgrElementTypes, BcdLibrary_DebuggerType,
BcdOSLoader_HypervisorLaunchType, and "Mapping Boot Options to Elements"
(which bcdedit option names which element). The well-known object GUIDs are
the ones `bcdedit /enum all /v` prints for `{bootmgr}`, `{dbgsettings}` ...
(bcdedit /? ID lists the names).

In a BCD hive each object is a key Objects\\{GUID}; its type is the REG_DWORD
Objects\\{GUID}\\Description\\Type and each element is the value "Element"
under Objects\\{GUID}\\Elements\\<type as 8 hex digits>. The element type's
bits 24-27 give the data format (below); booleans and integers are stored
as REG_BINARY (1 and 8 bytes, little endian), strings and objects as REG_SZ,
object lists as REG_MULTI_SZ.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

# element format: bits 27:24 of the element type (BcdElementType "Format" field)
FORMAT_DEVICE, FORMAT_STRING, FORMAT_OBJECT, FORMAT_OBJECTLIST = 1, 2, 3, 4
FORMAT_INTEGER, FORMAT_BOOLEAN, FORMAT_INTEGERLIST = 5, 6, 7


def element_format(etype: int) -> int:
    return (etype >> 24) & 0xF


# bcdedit option name -> element type(s), first one preferred. The names are
# the words bcdedit prints in every language (only headings, the identifier
# label and messages are translated; see docs/day0.md).
ELEMENTS: Dict[str, Tuple[int, ...]] = {
    "description": (0x12000004,),            # BcdLibraryString_Description
    "inherit": (0x14000006,),                # BcdLibraryObjectList_InheritedObjects
    "bootdebug": (0x16000010,),              # BcdLibraryBoolean_DebuggerEnabled
    "debugtype": (0x15000011,),              # BcdLibraryInteger_DebuggerType
    "debugport": (0x15000013,),              # BcdLibraryInteger_SerialDebuggerPort
    "baudrate": (0x15000014,),               # BcdLibraryInteger_SerialDebuggerBaudRate
    "busparams": (0x12000019,),              # BcdLibraryString_DebuggerBusParameters
    "hostip": (0x1500001A,),                 # BcdLibraryInteger_DebuggerNetHostIP
    "port": (0x1500001B,),                   # BcdLibraryInteger_DebuggerNetPort
    "dhcp": (0x1600001C,),                   # BcdLibraryBoolean_DebuggerNetDhcp
    "key": (0x1200001D,),                    # BcdLibraryString_DebuggerNetKey
    "nointegritychecks": (0x16000048,),      # BcdLibraryBoolean_DisableIntegrityChecks
    # BcdLibraryBoolean_AllowPrereleaseSignatures; Vista's loader-only twin second
    "testsigning": (0x16000049, 0x26000027),
    "debug": (0x260000A0,),                  # BcdOSLoaderBoolean_KernelDebuggerEnabled
    "hypervisorlaunchtype": (0x250000F0,),   # BcdOSLoaderInteger_HypervisorLaunchType
    "default": (0x23000003,),                # BcdBootMgrObject_DefaultObject
    "displayorder": (0x24000001,),           # BcdBootMgrObjectList_DisplayOrder
}

# integer elements whose numbers bcdedit shows as words
VALUE_NAMES: Dict[str, Dict[int, str]] = {
    # BcdLibrary_DebuggerType documents 0-3; bcdedit shows 4 as "Local" (debugtype local)
    "debugtype": {0: "Serial", 1: "1394", 2: "USB", 3: "NET", 4: "Local"},
    "hypervisorlaunchtype": {0: "Off", 1: "Auto"},  # BcdOSLoader_HypervisorLaunchType
}

# The words bcdedit prints for booleans. English Windows prints Yes/No; other
# display languages may translate them, so any other word is reported as not
# understood rather than guessed at.
YES, NO = "Yes", "No"

WELL_KNOWN: Dict[str, str] = {
    "{bootmgr}": "{9dea862c-5cdd-4e70-acc1-f32b344d4795}",
    "{fwbootmgr}": "{a5a30fa2-3d06-4e9f-b5f4-a01df9d1fcba}",
    "{memdiag}": "{b2721d73-1db4-4c62-bf78-c548a880142d}",
    "{ntldr}": "{466f5a88-0af2-4f76-9038-095b170dc21c}",
    "{current}": "{fa926493-6f1c-4193-a414-58f0b2456d1e}",  # virtual: the running OS
    "{default}": "{1cae1eb7-a0df-4d4d-9851-4860e34ef535}",  # virtual: {bootmgr}'s default
    "{dbgsettings}": "{4636856e-540f-4170-a130-a84776f4c654}",
    "{emssettings}": "{0ce4991b-e6b3-4b16-b23c-5e0d9250e5d9}",
    "{badmemory}": "{5189b25c-5558-4bf2-bca4-289b11bd29e2}",
    "{globalsettings}": "{7ea2e1ac-2e61-4728-aaa3-896d9d0a9f0e}",
    "{bootloadersettings}": "{6efb52bf-1766-41db-a6b3-0ee5eff72bd7}",
    "{hypervisorsettings}": "{7ff607e0-4395-11db-b0de-0800200c9a66}",
    "{resumeloadersettings}": "{1afa9c49-16ab-4a5c-901b-212802da9460}",
}
NAMES_BY_GUID = {guid: name for name, guid in WELL_KNOWN.items()}

# Objects\{GUID}\Description\Type (BCD object type: application, image and application type)
OBJECT_TYPES: Dict[int, str] = {
    0x10100002: "Windows Boot Manager",
    0x10200003: "Windows Boot Loader",
    0x10200004: "Windows Resume Application",
    0x10200005: "Windows Memory Tester",
    0x101FFFFF: "firmware application",
    0x20100000: "settings (inheritable by any object)",
    0x20200003: "settings (inheritable by OS loaders)",
}
OS_LOADER = 0x10200003
BOOT_MANAGER = 0x10100002


def object_type_name(value: Optional[int]) -> str:
    if value is None:
        return "object without a type"
    return OBJECT_TYPES.get(value, "object type 0x%08X" % value)


def display_name(guid: str) -> str:
    """{9dea...} -> {bootmgr}; other GUIDs unchanged (lower case, braces)."""
    return NAMES_BY_GUID.get(guid.lower(), guid.lower())
