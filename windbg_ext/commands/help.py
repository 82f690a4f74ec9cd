"""help [command]: the command list, or one command's usage."""
from __future__ import annotations

from windbg_ext.cli import command_parser, load_command
from windbg_ext.commands import COMMANDS
from windbg_ext.commands.base import CommandError
from windbg_ext.render.report import Link, Report

SUMMARY = "list the commands, or show one command's arguments"
NEEDS_TARGET = False

USAGE = ("usage: python -m windbg_ext [--image FILE | --dump FILE] [--json] [--wide] [--stats] <command> [args]\n"
         "       in WinDbg: !py -m windbg_ext <command> [args]\n"
         "       a driver that is not hv.sys: --symbols PDB|ISF [--map FILE] [--module-base ADDR] before the command")


def add_arguments(p) -> None:
    p.add_argument("name", nargs="?", help="a command")


def run(ctx, args) -> Report:
    if args.name:
        module = load_command(args.name)
        usage = command_parser(args.name, module).format_help().rstrip()
        needs = bool(getattr(module, "NEEDS_TARGET", False))
        r = Report(data={"command": args.name, "summary": getattr(module, "SUMMARY", ""), "usage": usage,
                         "needs_target": needs})
        r.text(usage)
        if needs:
            r.text("reads the target: run it in WinDbg, or offline with --image FILE / --dump FILE")
        return r
    rows, data = [], []
    for name in COMMANDS:
        try:
            module = load_command(name)
            summary, needs = getattr(module, "SUMMARY", ""), bool(getattr(module, "NEEDS_TARGET", False))
        except CommandError as e:  # one broken command must not hide the others
            summary, needs = "(%s)" % str(e), False
        rows.append([Link(name, "help " + name), "target" if needs else "-", summary])
        data.append({"command": name, "summary": summary, "needs_target": needs})
    r = Report(data={"commands": data, "usage": USAGE})
    r.text(USAGE)
    r.table(["command", "reads", "what it does"], rows)
    r.text("help <command> shows its arguments; global options go before the command (--json, --wide and --stats "
           "also after it). Numbers: 0x1c, 1ch, fffff801`12345678 are hex, 0n28 decimal; a bare number is decimal "
           "for exit reasons, VM errors, indices and counts, hex for addresses, encodings and values.")
    return r
