"""help [command]: the command list, or one command's usage."""
from __future__ import annotations

from windbg_ext.commands.base import Link, Report

SUMMARY = "list the commands, or show one command's arguments"
NEEDS_TARGET = False


def add_arguments(p) -> None:
    p.add_argument("name", nargs="?", help="a command")


def run(ctx, args) -> Report:
    from windbg_ext.cli import command_parser, load_command
    from windbg_ext.commands import COMMANDS

    if args.name:
        module = load_command(args.name)
        usage = command_parser(args.name, module).format_help().rstrip()
        return Report(data={"command": args.name, "summary": getattr(module, "SUMMARY", ""), "usage": usage},
                      blocks=[]).text(usage)
    rows, data = [], []
    for name in COMMANDS:
        module = load_command(name)
        summary = getattr(module, "SUMMARY", "")
        rows.append([Link(name, "help " + name), summary])
        data.append({"command": name, "summary": summary})
    r = Report(data={"commands": data})
    r.text("windbg_ext: usage: [--image FILE | --dump FILE] [--json] [--stats] <command> [args]")
    r.table(["command", "what it does"], rows)
    return r
