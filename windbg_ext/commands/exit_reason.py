"""exit: what a VM exit reason means (SDM App. C, 28.2.1), with the exit
qualification and interruption information decoded."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

from windbg_ext.arch import exits
from windbg_ext.arch.exits import EXIT_REASONS
from windbg_ext.commands.base import CommandError, parse_int
from windbg_ext.number_syntax import NumberError, parse_with_other, reading_note
from windbg_ext.render.report import Report

SUMMARY = "explain a VM exit reason (number, hex, name or full value with bit 31); --qual decodes the qualification"
NEEDS_TARGET = False


def add_arguments(p) -> None:
    p.add_argument("reason", nargs="?", help="basic reason (48 decimal as in SDM App. C, 0x30, 30h, "
                                             "EPT_VIOLATION) or the full exit-reason field (0x80000021, or 8 digits "
                                             "as WinDbg shows it: 80000021); omit to list every reason")
    p.add_argument("--qual", metavar="Q", help="exit qualification to decode for this reason")
    p.add_argument("--intr-info", metavar="V", help="VM-exit / IDT-vectoring interruption information to decode")
    p.add_argument("--instr-info", metavar="V", help="VM-exit instruction information (VMX_INSTRUCTION_INFO) to decode")


def _parse_reason(text: str) -> Tuple[int, str]:
    """-> (the exit-reason value, a note when a bare number is also a valid reason in the other radix)."""

    norm = text.strip().upper().replace("-", "_")
    for prefix in ("EXIT_REASON_", "VMX_EXIT_"):
        if norm.startswith(prefix):
            norm = norm[len(prefix):]
    for basic, r in EXIT_REASONS.items():
        if r.name == norm:
            return basic, ""
    if not any(c.isdigit() for c in norm[:3]) and not norm.startswith("0X"):
        import difflib
        close = difflib.get_close_matches(norm, [r.name for r in EXIT_REASONS.values()], n=3)
        hint = (" (did you mean %s?)" % ", ".join(close)) if close else ""
        raise CommandError("unknown exit reason %r%s; run 'exit' to list them" % (text, hint))
    try:
        value, other, radix = parse_with_other(text, "reason", "exit reason")
    except NumberError as e:
        raise CommandError(str(e))
    if not 0 <= value <= 0xFFFFFFFF:
        raise CommandError("exit reason %s does not fit the 32-bit exit-reason field" % text)
    note = ""
    if other is not None and (other & 0xFFFF) in EXIT_REASONS and (value & 0xFFFF) in EXIT_REASONS:
        note = reading_note(text, value, other, radix) + " (%s)" % EXIT_REASONS[other & 0xFFFF].name
    return value, note


def _list_all() -> Report:
    rows = [[n, "0x%x" % n, r.name, r.meaning] for n, r in sorted(EXIT_REASONS.items())]
    data = [{"basic": n, "name": r.name, "meaning": r.meaning} for n, r in sorted(EXIT_REASONS.items())]
    return Report(data={"exit_reasons": data}).table(["reason", "hex", "name", "meaning"], rows,
                                                     title="basic exit reasons (SDM Appendix C)")


def run(ctx, args) -> Report:
    if args.reason is None:
        if args.qual is not None or args.intr_info is not None or args.instr_info is not None:
            raise CommandError("--qual/--intr-info/--instr-info need an exit reason: exit <reason> --qual Q")
        return _list_all()
    value, note = _parse_reason(args.reason)
    info = exits.decode_exit_reason(value)
    if not info["known"]:
        if value != info["basic"]:
            raise CommandError("exit reason 0x%x: basic reason (bits 15:0) %d is not in SDM Appendix C; run 'exit' "
                               "to list them" % (value, info["basic"]))
        raise CommandError("%d (0x%x) is not a basic exit reason of SDM Appendix C; run 'exit' to list them"
                           % (info["basic"], info["basic"]))
    rows: List[List[Any]] = [["basic reason", "%d (0x%x)" % (info["basic"], info["basic"]), info["name"]],
                             ["meaning", "", info["meaning"]]]
    for bit, (key, meaning) in sorted(exits.EXIT_REASON_FLAGS.items()):
        if info[key]:
            rows.append(["bit %d" % bit, key, meaning])
    if info["reserved_bits"]:
        rows.append(["reserved", "0x%x" % info["reserved_bits"], "reserved bits are set: is this an exit reason?"])
    reason_data: Dict[str, Any] = dict(info)
    if note:
        reason_data["reading"] = note
    reason_data["value"] = "0x%x" % value
    reason_data["reserved_bits"] = "0x%x" % info["reserved_bits"]
    data: Dict[str, Any] = {"reason": reason_data}
    r = Report(data=data)
    if note:
        r.text(note)
    r.table(["", "value", "meaning"], rows, title="exit reason 0x%x" % value)
    problems = exits.exit_reason_problems(value)
    if info["entry_failure"]:
        r.text("bit 31 set: VM entry failed (SDM 27.8); the guest never ran. Basic reason 33 means a guest-state "
               "check failed, 34 MSR loading, 41 a machine check.")
        if info["basic"] in (33, 34):
            r.text("next: verify <n> names the failing check (or verify --fields F.json --caps C.json offline)")
    if args.qual is not None:
        _add_decoded(r, data, "qualification", args.qual, "exit qualification", 64,
                     lambda q: _fields(q, exits.decode_qualification(info["basic"], q)),
                     "exit qualification 0x%x (SDM 28.2.1)")
    if args.intr_info is not None:
        _add_decoded(r, data, "interruption_info", args.intr_info, "interruption information", 32,
                     _interruption_info, "interruption information 0x%x (SDM 25.9.2)")
    if args.instr_info is not None:
        _add_decoded(r, data, "instruction_info", args.instr_info, "instruction information", 32,
                     lambda v: _fields(v, exits.decode_instruction_info(info["basic"], v)),
                     "VM-exit instruction information 0x%x (SDM 28.2.5)")
    if "qualification" in data:
        problems += exits.qualification_problems(info["basic"], int(data["qualification"]["value"], 16))
    data["problems"] = problems  # what no processor reports: a typo, or not the field you think
    for p in problems:
        r.text("impossible: " + p)
    if problems:
        r.exit_code = 1
    return r


Decoded = Tuple[List[str], List[List[Any]], Dict[str, Any]]  # table headers, table rows, JSON


def _add_decoded(r: Report, data: Dict[str, Any], key: str, text: str, what: str, bits: int,
                 decode: Callable[[int], Decoded], title: str) -> None:
    """One option's number: parsed, checked to fit its field, decoded, added as a table and as data[key]."""
    value = parse_int(text, what)
    if not 0 <= value < 1 << bits:
        raise CommandError("%s %s does not fit in %d bits" % (what, text, bits))
    headers, rows, json = decode(value)
    data[key] = json
    r.table(headers, rows, title=title % value)


def _fields(value: int, decoded) -> Decoded:
    """(name, value, meaning) rows of arch.exits' qualification / instruction-information decoders."""
    return (["field", "value", "meaning"], [[n, x, m] for n, x, m in decoded],
            {"value": "0x%x" % value, "fields": [{"name": n, "value": x, "meaning": m} for n, x, m in decoded]})


def _interruption_info(v: int) -> Decoded:
    ii = exits.decode_interruption_info(v)
    rows = [["valid (31)", ii["valid"]], ["vector (7:0)", "%d%s" % (ii["vector"], (
        " " + ii["exception"]) if "exception" in ii else "")], ["type (10:8)", "%d %s" % (ii["type_number"], ii["type"])],
        ["error code valid (11)", ii["error_code_valid"]], ["NMI unblocking due to IRET (12)", ii["nmi_unblocking"]]]
    if ii["reserved_bits"]:
        rows.append(["reserved (30:13)", "0x%x" % ii["reserved_bits"]])
    return ["bit(s)", "value"], rows, dict(ii, value="0x%x" % v, reserved_bits="0x%x" % ii["reserved_bits"])
