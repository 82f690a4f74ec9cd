"""exit: what a VM exit reason means (SDM App. C, 28.2.1), with the exit
qualification and interruption information decoded."""
from __future__ import annotations

from typing import Any, Dict, List

from windbg_ext.commands.base import CommandError, Report, parse_int

SUMMARY = "explain a VM exit reason (number, hex, name or full value with bit 31); --qual decodes the qualification"
NEEDS_TARGET = False


def add_arguments(p) -> None:
    p.add_argument("reason", nargs="?", help="basic reason (48, 0x30, EPT_VIOLATION) or the full exit-reason "
                                             "field (0x80000021); omit to list every reason")
    p.add_argument("--qual", metavar="Q", help="exit qualification to decode for this reason")
    p.add_argument("--intr-info", metavar="V", help="VM-exit / IDT-vectoring interruption information to decode")
    p.add_argument("--instr-info", metavar="V", help="VM-exit instruction information (VMX_INSTRUCTION_INFO) to decode")


def _parse_reason(text: str) -> int:
    from windbg_ext.arch.exits import EXIT_REASONS

    norm = text.strip().upper().replace("-", "_")
    for prefix in ("EXIT_REASON_", "VMX_EXIT_"):
        if norm.startswith(prefix):
            norm = norm[len(prefix):]
    for basic, r in EXIT_REASONS.items():
        if r.name == norm:
            return basic
    if not any(c.isdigit() for c in norm[:3]) and not norm.startswith("0X"):
        import difflib
        close = difflib.get_close_matches(norm, [r.name for r in EXIT_REASONS.values()], n=3)
        hint = (" (did you mean %s?)" % ", ".join(close)) if close else ""
        raise CommandError("unknown exit reason %r%s; run 'exit' to list them" % (text, hint))
    value = parse_int(text, "exit reason")
    if not 0 <= value <= 0xFFFFFFFF:
        raise CommandError("exit reason %s does not fit the 32-bit exit-reason field" % text)
    return value


def _list_all() -> Report:
    from windbg_ext.arch.exits import EXIT_REASONS

    rows = [[n, "0x%x" % n, r.name, r.meaning] for n, r in sorted(EXIT_REASONS.items())]
    data = [{"basic": n, "name": r.name, "meaning": r.meaning} for n, r in sorted(EXIT_REASONS.items())]
    return Report(data={"exit_reasons": data}).table(["reason", "hex", "name", "meaning"], rows,
                                                     title="basic exit reasons (SDM Appendix C)")


def run(ctx, args) -> Report:
    from windbg_ext.arch import exits

    if args.reason is None:
        if args.qual is not None or args.intr_info is not None or args.instr_info is not None:
            raise CommandError("--qual/--intr-info/--instr-info need an exit reason: exit <reason> --qual Q")
        return _list_all()
    value = _parse_reason(args.reason)
    info = exits.decode_exit_reason(value)
    if not info["known"]:
        if value != info["basic"]:
            raise CommandError("exit reason 0x%x: its basic reason (bits 15:0) %d (0x%x) is not one of SDM "
                               "Appendix C; run 'exit' to list them" % (value, info["basic"], info["basic"]))
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
    reason_data["value"] = "0x%x" % value
    reason_data["reserved_bits"] = "0x%x" % info["reserved_bits"]
    data: Dict[str, Any] = {"reason": reason_data}
    r = Report(data=data)
    r.table(["", "value", "meaning"], rows, title="exit reason 0x%x" % value)
    if info["entry_failure"]:
        r.text("bit 31 set: VM entry failed (SDM 27.8); the guest never ran. Basic reason 33 means a guest-state "
               "check failed, 34 MSR loading, 41 a machine check.")
    if args.qual is not None:
        qual = parse_int(args.qual, "exit qualification")
        if not 0 <= qual <= 0xFFFFFFFFFFFFFFFF:
            raise CommandError("exit qualification %s does not fit in 64 bits" % args.qual)
        decoded = exits.decode_qualification(info["basic"], qual)
        data["qualification"] = {"value": "0x%x" % qual,
                                 "fields": [{"name": n, "value": v, "meaning": m} for n, v, m in decoded]}
        r.table(["field", "value", "meaning"], [[n, v, m] for n, v, m in decoded],
                title="exit qualification 0x%x (SDM 28.2.1)" % qual)
    if args.intr_info is not None:
        v = parse_int(args.intr_info, "interruption information")
        if not 0 <= v <= 0xFFFFFFFF:
            raise CommandError("interruption information %s does not fit in 32 bits" % args.intr_info)
        ii = exits.decode_interruption_info(v)
        ii_rows = [["valid (31)", ii["valid"]], ["vector (7:0)", "%d%s" % (ii["vector"], (
            " " + ii["exception"]) if "exception" in ii else "")], ["type (10:8)", "%d %s" % (ii["type_number"], ii["type"])],
            ["error code valid (11)", ii["error_code_valid"]], ["NMI unblocking due to IRET (12)", ii["nmi_unblocking"]]]
        if ii["reserved_bits"]:
            ii_rows.append(["reserved (30:13)", "0x%x" % ii["reserved_bits"]])
        data["interruption_info"] = dict(ii, value="0x%x" % v, reserved_bits="0x%x" % ii["reserved_bits"])
        r.table(["bit(s)", "value"], ii_rows, title="interruption information 0x%x (SDM 25.9.2)" % v)
    if args.instr_info is not None:
        v = parse_int(args.instr_info, "instruction information")
        if not 0 <= v <= 0xFFFFFFFF:
            raise CommandError("instruction information %s does not fit in 32 bits" % args.instr_info)
        decoded = exits.decode_instruction_info(info["basic"], v)
        data["instruction_info"] = {"value": "0x%x" % v,
                                    "fields": [{"name": n, "value": x, "meaning": m} for n, x, m in decoded]}
        r.table(["field", "value", "meaning"], [[n, x, m] for n, x, m in decoded],
                title="VM-exit instruction information 0x%x (SDM 28.2.5)" % v)
    return r
