"""Each table entry -> PASS / FAIL / UNKNOWN, what was found, and the fix.

Pure apart from the Sources object it is handed (tests hand it hive files
and recorded bcdedit output).
"""
from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Optional, Set, Tuple

from debuggee import settings
from debuggee.registry import Unavailable

PASS, FAIL, UNKNOWN = "PASS", "FAIL", "UNKNOWN"
SERVICE_START = {0: "boot", 1: "system", 2: "automatic", 3: "demand", 4: "disabled"}
SERVICE_KERNEL_DRIVER = 1  # Services\<name>\Type


def _dbgprint():
    # Shared with the WinDbg suite: one copy of the kernel's filter rule.
    try:
        from windbg_ext.arch import dbgprint
    except ImportError:
        raise Unavailable("windbg_ext/arch/dbgprint.py not found: copy the whole hvlab folder, not only scripts/")
    return dbgprint


def _fmt(data: Any, kind: str) -> str:
    if isinstance(data, int) and kind in ("REG_DWORD", "REG_QWORD"):
        return "0x%X" % data if data > 9 else str(data)
    return repr(data) if isinstance(data, str) else str(data)


def _as_int(text: Any) -> Optional[int]:
    if isinstance(text, int):
        return text
    try:
        s = str(text)
        return int(s, 16) if s.lower().startswith("0x") else int(s)
    except ValueError:
        return None


def check_registry(s: Dict[str, Any], params: Dict[str, Optional[str]], src) -> Tuple[str, str]:
    found = src.reg_get(s["root"], s["hive"], s["key"], s["value"])
    if found is None:
        if s["absent"] is None:
            return FAIL, "not set"
        data, note = s["absent"], "not set (Windows default %s)" % s["absent"]
    else:
        data, kind = found
        if kind != s["type"]:
            return FAIL, "%s %s (expected %s)" % (kind, _fmt(data, kind), s["type"])
        note = "%s=%s" % (s["value"], _fmt(data, kind))
    if s.get("check") == "dbgprint":
        return _check_dbgprint(data, note, s, params)
    wanted = [_as_int(settings.fill(w, params)) for w in s.get("wanted_any") or [s["wanted"]]]
    return (PASS if _as_int(data) in wanted else FAIL), note


def _check_dbgprint(mask: Any, note: str, s: Dict[str, Any], params) -> Tuple[str, str]:
    dp = _dbgprint()
    mask = _as_int(mask) or 0
    win2000 = 1  # Kd_WIN2000_Mask's default: ERROR always passes
    shown = [name for name, level in dp.LEVELS if dp.is_printed(level, mask, win2000)]
    dropped = [name for name, level in dp.LEVELS if not dp.is_printed(level, mask, win2000)]
    detail = "%s: shows %s" % (note, ", ".join(shown) or "nothing")
    if dropped:
        detail += "; drops %s" % ", ".join(dropped)
    wanted = _as_int(settings.fill(s["wanted"], params))
    if not dropped and wanted is not None and mask != wanted:
        detail += " (set %s differs from the wanted 0x%X, which is fine)" % (note, wanted)
    return (FAIL if dropped else PASS), detail


def _norm(value: Any) -> str:
    return str(value).strip().lower()


# the values bcdedit prints in English for the options the table checks;
# anything else (a translated Yes/No, a new word) is said to be not understood
_KNOWN_WORDS = {
    "testsigning": ("yes", "no"), "debug": ("yes", "no"), "nointegritychecks": ("yes", "no"),
    "hypervisorlaunchtype": ("off", "auto"),
}
def _understood(option: str, value: Any) -> bool:
    words = _KNOWN_WORDS.get(option)
    return words is None or _norm(value) in words


def _last_boot_value(option: str, src) -> Optional[str]:
    lb = src.last_boot()
    return None if lb is None else lb.get(option)


def check_bcdedit(s: Dict[str, Any], src) -> Tuple[str, str]:
    """The stored setting (BCD store, else bcdedit output) decides; the last boot
    (SystemStartOptions) answers when nothing stored is readable, and any
    difference between the two is reported (the stored one applies at the next boot)."""
    option = s["option"].lower()
    last = _last_boot_value(option, src) if s.get("start_option") else None
    wanted = _norm(s["wanted"])
    try:
        entry, where = src.boot_entry()
        value = entry.get(option)
        if isinstance(value, Unavailable):
            raise value
        effective = value if value is not None else s["absent"]
        if not _understood(option, effective):
            hint = ("bcdedit prints some values in the display language: give --bcd-hive instead"
                    if where.startswith("bcdedit") else "not a value Microsoft documents")
            raise Unavailable("%s has %s %r, a word this checker does not know (%s)" % (where, option, effective, hint))
    except Unavailable as e:
        if last is None:
            raise
        return (PASS if _norm(last) == wanted else FAIL), "%s at the last boot (SystemStartOptions); stored setting unknown: %s" % (
            last, e)
    note = str(value) if value is not None else "not set (default %s)" % s["absent"]
    if last is not None and _norm(last) != _norm(effective):
        note += "; the last boot had %s (bcdedit changes apply at the next boot)" % last
    return (PASS if _norm(effective) == wanted else FAIL), note


def _dbg_field(field: str, src) -> Tuple[Optional[str], str, str]:
    """(value or None, the debug type beside it, a note on where it came from or how the
    last boot differed). Stored settings first; the last boot's when none is readable."""
    last = _last_boot_value(field, src)
    try:
        dbg, _where = src.debug_settings()
    except Unavailable as e:
        if last is None:
            raise
        return last, "?", " (at the last boot, SystemStartOptions; stored setting unknown: %s)" % e
    value = dbg.get(field.lower())
    if isinstance(value, Unavailable):
        if last is None:
            raise value
        return last, "?", " (at the last boot, SystemStartOptions; stored setting unreadable: %s)" % value
    note = ""
    if last is not None and value is not None and _norm(last) != _norm(value):
        note = "; the last boot had %s (applies at the next boot)" % last
    debugtype = dbg.get("debugtype", "?")
    return (None if value is None else str(value)), \
        ("unreadable" if isinstance(debugtype, Unavailable) else str(debugtype)), note


def check_dbgsettings(s: Dict[str, Any], params: Dict[str, Optional[str]], given: Set[str], src,
                      cli: Optional[Dict[str, str]] = None) -> Tuple[str, str]:
    field = s["field"]
    value, debugtype, note = _dbg_field(field, src)
    if value is None:
        return FAIL, "%s not set (debugtype %s)" % (field, debugtype)
    status, found = _judge_dbg_value(s, value, params, given, cli)
    return status, found + note


def _judge_dbg_value(s: Dict[str, Any], value: str, params: Dict[str, Optional[str]], given: Set[str],
                     cli: Optional[Dict[str, str]]) -> Tuple[str, str]:
    names = [n for n in params if "{%s}" % n in str(s["wanted"])]
    compare = all(n in given for n in names)  # defaults (e.g. port 50000) are not what the student must have
    wanted = settings.fill(s["wanted"], params) if compare else None
    check = s["check"]
    if check == "equal":
        ok = wanted is not None and value.strip().lower() == str(wanted).lower()
        return (PASS if ok else FAIL), value
    if check == "ipv4":
        try:
            ipaddress.IPv4Address(value.strip())
            valid = True
        except ValueError:
            valid = False
        if not valid:
            return FAIL, "%s is not an IPv4 address" % value
    elif check == "port":
        if not value.strip().isdigit() or not 49152 <= int(value) <= 65535:
            return FAIL, "%s is outside 49152-65535" % value
    elif check == "kdnet_key":
        if not settings.kdnet_key_ok(value):
            return FAIL, "%s is not a w.x.y.z key" % value
    if wanted is None:
        hint = " ".join((cli or {}).get(n, n) for n in names)
        return PASS, "%s (not compared: give %s)" % (value, hint) if hint else value
    ok = value.strip().lower() == str(wanted).lower()
    return (PASS if ok else FAIL), (value if ok else "%s (wanted %s)" % (value, wanted))


def check_file(s: Dict[str, Any], src) -> Tuple[str, str]:
    text = src.read_text(s["path"])
    if text is None:
        return FAIL, "%s not found" % s["path"]
    words = text.split()
    missing = [c for c in s["contains"] if c.lower() not in (w.lower() for w in words)]
    if missing:
        return FAIL, "%s lacks %s" % (s["path"], " ".join(missing))
    return PASS, "%s has %s" % (s["path"], " ".join(s["contains"]))


def probe_cpuid(src) -> Tuple[str, str]:
    vendor, vmx, hv_present, hv_name = src.cpuid()
    where = "under %s" % hv_name if hv_present else "no hypervisor bit"
    if vendor != "GenuineIntel":
        return FAIL, "%s CPU (%s): hvlab needs Intel VT-x" % (vendor, where)
    if vmx:
        return PASS, "VMX=1 (%s)" % where
    hint = "; 'Microsoft Hv' here often means Hyper-V/VBS runs inside this VM" if hv_name == "Microsoft Hv" else ""
    return FAIL, "VMX=0 (%s)%s" % (where, hint)


def probe_vbs(src) -> Tuple[str, str]:
    st = src.vbs_status()
    from debuggee.sources import VBS_SERVICES, VBS_STATUS
    note = "VBS %s" % VBS_STATUS.get(st["status"], "status %d" % st["status"])
    if st["services"]:
        note += "; running: " + ", ".join(VBS_SERVICES.get(x, "service %d" % x) for x in st["services"])
    return (FAIL if st["status"] == 2 else PASS), note


def probe_service(params: Dict[str, Optional[str]], src) -> Tuple[str, str]:
    name = params["ServiceName"] or "hv"
    values = src.reg_values("HKLM", "SYSTEM", "CurrentControlSet\\Services\\" + name)
    if values is None:
        return FAIL, "Services\\%s not registered" % name
    typ = values.get("type", (None, ""))[0]
    start = values.get("start", (None, ""))[0]
    image = values.get("imagepath", ("?", ""))[0]
    note = "type %s, start %s, %s" % (typ, SERVICE_START.get(start, start), image)
    try:
        state = src.service_state(name)
        if state:
            note += ", " + state
    except Unavailable:
        pass
    if typ != SERVICE_KERNEL_DRIVER:
        return FAIL, note + " (Type must be 1, kernel driver)"
    if start == 4:
        return FAIL, note + " (disabled)"
    return PASS, note


def evaluate(table: Dict[str, Any], params: Dict[str, Optional[str]], given: Set[str], src) -> List[Dict[str, Any]]:
    cli = {n: spec.get("cli", n) for n, spec in table["parameters"].items()}
    results = []
    for s in settings.settings(table):
        try:
            kind = s["kind"]
            if kind == "registry":
                status, found = check_registry(s, params, src)
            elif kind == "bcdedit":
                status, found = check_bcdedit(s, src)
            elif kind == "dbgsettings":
                status, found = check_dbgsettings(s, params, given, src, cli)
            elif kind == "file":
                status, found = check_file(s, src)
            elif s["probe"] == "cpuid_vmx":
                status, found = probe_cpuid(src)
            elif s["probe"] == "vbs_status":
                status, found = probe_vbs(src)
            else:
                status, found = probe_service(params, src)
        except Unavailable as e:
            status, found = UNKNOWN, str(e)
        results.append({
            "id": s["id"],
            "title": settings.fill_fix(s["title"], params),
            "status": status,
            "found": found,
            "fix": settings.fill_fix(s["fix"], params) if status != PASS else None,
            "reboot": bool(s["reboot"]),
            "required": bool(s["required"]),
            "apply": s["apply"],
        })
    return results


def exit_code(results: List[Dict[str, Any]]) -> int:
    """1 when a required item FAILs; UNKNOWN is not a failure (it says why)."""
    return 1 if any(r["status"] == FAIL and r["required"] for r in results) else 0
