"""vmerror: the meaning of a VM-instruction error number (SDM 31.4)."""
from __future__ import annotations

from windbg_ext.arch.vm_errors import VM_INSTRUCTION_ERRORS, vm_error_meaning
from windbg_ext.commands.base import CommandError
from windbg_ext.number_syntax import NumberError, parse_with_other, reading_note
from windbg_ext.render.report import Report

SUMMARY = "explain a VM-instruction error number (VM_INSTRUCTION_ERROR, SDM 31.4); no number lists them all"
NEEDS_TARGET = False


def add_arguments(p) -> None:
    p.add_argument("number", nargs="?", help="the VM_INSTRUCTION_ERROR value (decimal as in SDM 31.4; 0x.. or "
                                             "..h for hex)")


def run(ctx, args) -> Report:
    if args.number is None:
        rows = [[n, name, vm_error_meaning(n)] for n, (name, _) in sorted(VM_INSTRUCTION_ERRORS.items())]
        data = [{"number": n, "name": name, "meaning": vm_error_meaning(n)}
                for n, (name, _) in sorted(VM_INSTRUCTION_ERRORS.items())]
        return Report(data={"errors": data}).table(["n", "name", "meaning"], rows,
                                                   title="VM-instruction errors (SDM 31.4)")
    try:
        n, other, radix = parse_with_other(args.number, "decimal", "VM-instruction error")
    except NumberError as e:
        raise CommandError(str(e))
    note = reading_note(args.number, n, other, radix) if other in VM_INSTRUCTION_ERRORS else ""
    if n == 0:
        data = {"number": 0, "name": None, "meaning": "no error recorded: the field is only meaningful after a VMX "
                                                      "instruction failed with VMfailValid (ZF=1)", "sdm": "31.4"}
        return Report(data=data).text("0: " + data["meaning"])
    if n not in VM_INSTRUCTION_ERRORS:
        raise CommandError("VM-instruction error %s is not defined: SDM 31.4 numbers them 1..28" % args.number)
    name, meaning = VM_INSTRUCTION_ERRORS[n][0], vm_error_meaning(n)
    data = {"number": n, "name": name, "meaning": meaning, "sdm": "31.4"}
    r = Report(data=data)
    if note:
        data["reading"] = note
        r.text(note)
    r.table(["n", "name", "meaning"], [[n, name, meaning]])
    if n in (7, 8):
        what = "control" if n == 7 else "host-state"
        r.text("next: verify <n> names the %s check that fails (SDM 27.2), or verify --fields F.json --caps "
               "C.json offline; caps shows the allowed control settings" % what)
    return r
