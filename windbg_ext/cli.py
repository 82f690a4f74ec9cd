"""The front end: `python -m windbg_ext [--image F | --dump F] [--json] [--stats] <command> [args]`
offline, `!py -m windbg_ext <command> [args]` in WinDbg.

Global options come before the command. Every failure ends as one line on
stderr (offline) or one line in the debugger, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, List, Optional

from windbg_ext.commands import COMMANDS
from windbg_ext.commands.base import CommandError
from windbg_ext.errors import InputError
from windbg_ext.render.text import PREFIX, escape_dml, render_json, render_text
from windbg_ext.target.base import Target, TargetError
from windbg_ext.target.pykd_target import in_windbg

EXIT_OK, EXIT_FINDING, EXIT_ERROR = 0, 1, 2
WIDTH = 120  # default output width: the kd console wraps anything longer


class ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        see = "help" if self.prog == "windbg_ext" else "help " + self.prog
        raise ArgumentError("%s: %s (see: %s)" % (self.prog, message, see))

    def exit(self, status: int = 0, message: Optional[str] = None) -> None:  # type: ignore[override]
        raise ArgumentError(message or "")


class Context:
    """What a command gets: the target (opened on first use) and options."""

    def __init__(self, opener: Optional[Callable[[], Target]], dml: bool, json_out: bool,
                 wide: bool = False, source_args: Optional[List[str]] = None) -> None:
        self._opener = opener
        self._target: Optional[Target] = None
        self.dml = dml
        self.json = json_out
        self.wide = wide  # --wide: every column, no wrapping (default: fit WIDTH columns)
        # the global options that name the target (--image F / --dump F), for "next:" hints that can be pasted
        self.source_args = list(source_args or [])
        self.symbols_path: Optional[str] = None   # --symbols / --map / --module-base (hv/foreign.py)
        self.map_path: Optional[str] = None
        self.module_base: Optional[int] = None

    @property
    def has_target(self) -> bool:
        return self._opener is not None

    @property
    def target(self) -> Target:
        if self._target is None:
            if self._opener is None:
                raise CommandError("this command reads a target: run it in WinDbg, or give --image FILE or "
                                   "--dump FILE before it")
            self._target = self._opener()
        return self._target

    def close(self) -> None:
        if self._target is not None:
            self._target.close()


def load_command(name: str):
    if name not in COMMANDS:
        import difflib
        close = difflib.get_close_matches(name, list(COMMANDS), n=3)
        hint = (" (did you mean %s?)" % ", ".join(close)) if close else ""
        raise CommandError("unknown command %r%s; run 'help' for the list" % (name, hint))
    try:
        return importlib.import_module(COMMANDS[name])
    except ImportError as e:  # a registered command whose module (or a dependency of it) is missing
        raise CommandError("command %r is unavailable: %s" % (name, missing_dependency(e)))


def command_parser(name: str, module) -> argparse.ArgumentParser:
    p = _Parser(prog=name, description=getattr(module, "SUMMARY", ""), add_help=False)
    module.add_arguments(p)
    return p


def _global_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="windbg_ext", add_help=False)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--image", metavar="FILE", help="an hvlab image (emulated lab output)")
    src.add_argument("--dump", metavar="FILE", help="a Windows kernel crash dump (MEMORY.DMP)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--stats", action="store_true", help="print target reads and bytes")
    p.add_argument("--wide", action="store_true", help="every column, no wrapping (default: fit %d columns)" % WIDTH)
    # a driver that is not hv.sys, walked from its symbols (docs/walk.md)
    p.add_argument("--symbols", metavar="FILE", help="the driver's .pdb or ISF .json: walk it without a descriptor")
    p.add_argument("--map", metavar="FILE", help="map of roles (JSON) for --symbols; default: a built-in one")
    p.add_argument("--module-base", metavar="ADDR", help="the driver's load address when the target cannot say")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("command", nargs="?")
    p.add_argument("args", nargs=argparse.REMAINDER)
    return p


def _windbg_without_pykd() -> bool:
    """Inside WinDbg (pykd-ext's output object has writedml) in a Python that cannot import pykd."""
    return hasattr(sys.stdout, "writedml")


def no_pykd_message() -> str:
    v = "%d.%d" % sys.version_info[:2]
    return ("error: windbg_ext is running inside WinDbg in Python %s (%s), which cannot import pykd: install it "
            "there (py -%s -m pip install pykd), or use the Python that has it: !py -3.9 -m windbg_ext ..."
            % (v, sys.executable or "embedded", v))


CTRL_BREAK = "CTRL+BREAK"   # what pykd-ext raises (as SystemExit) when the user presses Ctrl+Break


def pyext_prefix(global_interpreter: bool = False) -> str:
    """The `!py` options that reach this Python again (DML links): its version,
    and -g when this run is in pykd-ext's global interpreter."""
    return "!py %s-%d.%d -m windbg_ext " % ("-g " if global_interpreter else "", sys.version_info[0],
                                            sys.version_info[1])


def dml_blocks(text: str, max_lines: int = 200):
    """Long output in pieces (pykd output is a debugger round trip; WinDbg shows
    each piece as it arrives): split at blank lines, at most max_lines each."""
    block: List[str] = []
    for line in text.split("\n"):
        block.append(line)
        if (not line and len(block) >= max_lines // 2) or len(block) >= max_lines:
            yield "\n".join(block)
            block = []
    if block:
        yield "\n".join(block)


def _opener(gopts, live: bool) -> Optional[Callable[[], Target]]:
    if gopts.image:
        def open_image() -> Target:
            from windbg_ext.target.image import ImageTarget
            return ImageTarget(gopts.image)
        return open_image
    if gopts.dump:
        def open_dump() -> Target:
            from windbg_ext.target.dump import DumpTarget
            return DumpTarget(gopts.dump)
        return open_dump
    if live:
        def open_pykd() -> Target:
            from windbg_ext.target.pykd_target import PykdTarget
            return PykdTarget()
        return open_pykd
    return None


def _symbol_options(ctx: Context, gopts) -> None:
    """--symbols / --map / --module-base for walking a driver from its symbols (hv/foreign.py)."""
    from windbg_ext.commands.base import parse_int

    ctx.symbols_path = gopts.symbols
    ctx.map_path = gopts.map
    ctx.module_base = parse_int(gopts.module_base, "--module-base") if gopts.module_base else None


def run(argv: List[str], out: Callable[[str], None], err: Callable[[str], None], live: bool = False,
        out_plain: Optional[Callable[[str], None]] = None, link_prefix: Optional[str] = None) -> int:
    """Runs one command line; returns the exit code. All output goes through
    out/err. Live (WinDbg), `out` takes DML and `out_plain` text that must not
    be read as DML (JSON); offline both are stdout."""
    plain = out_plain or out
    ctx = None
    # until the options are parsed: an error is JSON too when --json was asked (offline: stdout is for scripts)
    json_out = "--json" in argv and not live
    try:
        gopts = _global_parser().parse_args(argv)
        name = gopts.command or "help"
        args_list = list(gopts.args)
        for flag in ("--json", "--wide", "--stats"):  # global flags are also accepted after the command
            if flag in args_list:
                args_list = [a for a in args_list if a != flag]
                setattr(gopts, flag[2:], True)
        json_out = gopts.json and not live
        if gopts.help or (name != "help" and ("-h" in args_list or "--help" in args_list)):
            args_list, name = [name] if gopts.command else [], "help"
        module = load_command(name)
        # intermixed: `vmcs 0 --source region GUEST_RIP HOST_RIP` gives the fields after an option too
        args = command_parser(name, module).parse_intermixed_args(args_list)
        source = _source_args(gopts)
        ctx = Context(_opener(gopts, live), dml=live and not gopts.json, json_out=gopts.json, wide=gopts.wide,
                      source_args=source)
        _symbol_options(ctx, gopts)
        report = module.run(ctx, args)
        if gopts.json:
            plain(render_json(report))
        else:
            pasteable = "" if live else " ".join(["python -m windbg_ext"] + [_quote(a) for a in ctx.source_args]) + " "
            text = render_text(report, dml=ctx.dml, width=None if gopts.wide else WIDTH, command_prefix=pasteable,
                               prefix=link_prefix or PREFIX)
            if text:
                out(text)
        if gopts.stats:  # stderr offline (stdout stays clean for --json); plain text in WinDbg
            line = "stats: " + (ctx._target.stats.line() if ctx._target is not None
                                else "0 reads (no target was read)")
            (plain if live else err)(line)
        return report.exit_code
    except BrokenPipeError:  # the reader went away (| head): the edge exits quietly (stdout_pipe.py)
        raise
    except (InputError, TargetError, ArgumentError) as e:  # CommandError and PathError are InputErrors
        return _error(str(e).strip() or "invalid arguments", json_out, err, plain)
    except ImportError as e:  # a dependency missing from this Python: how to install it, not "internal error"
        return _error(missing_dependency(e), json_out, err, plain)
    except KeyboardInterrupt:
        return _error("interrupted", json_out, err, plain)
    except SystemExit as e:
        if str(e.code) != CTRL_BREAK:
            raise
        # every processor switch and register change was undone on the way out (finally blocks)
        return _error("interrupted (Ctrl+Break); the debugger's processor and registers were restored", json_out,
                      err, plain)
    except Exception as e:  # last resort: one line, never a traceback
        return _error("internal error (%s: %s); please report it with the command line" % (type(e).__name__, e),
                      json_out, err, plain)
    finally:
        if ctx is not None:
            try:
                ctx.close()
            except (TargetError, OSError):  # the answer is out; a failing close changes nothing
                pass


def missing_dependency(e: ImportError) -> str:
    """One line: which package this Python lacks and how to get it."""
    name = getattr(e, "name", None) or str(e)
    return ("Python package %s is missing from %s: run inside hvlab's venv (source .venv/bin/activate) or "
            "install hvlab into this Python (python -m pip install -e <hvlab folder>)" % (name, sys.executable))


def _source_args(gopts) -> List[str]:
    """The global options that name the target, for "next:" hints that can be pasted offline."""
    out = ["--image", gopts.image] if gopts.image else ["--dump", gopts.dump] if gopts.dump else []
    for option, value in (("--symbols", gopts.symbols), ("--map", gopts.map), ("--module-base", gopts.module_base)):
        if value is not None:
            out += [option, value]
    return out


def _quote(arg: str) -> str:
    import shlex
    return shlex.quote(arg)


def _error(msg: str, json_out: bool, err: Callable[[str], None], plain: Callable[[str], None]) -> int:
    """One line on stderr (WinDbg: one red line); offline with --json also {"error", "exit_code"} on
    stdout, so that a script reading stdout always gets a JSON object (docs/json.md). In WinDbg
    there is one output window: the red line alone (json_out is False there)."""
    msg = " ".join(msg.split())  # one line, whatever the message held
    err("error: " + msg)
    if json_out:
        import json
        plain(json.dumps({"error": msg, "exit_code": EXIT_ERROR}))
    return EXIT_ERROR


def main(argv: Optional[List[str]] = None, global_interpreter: bool = False) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if in_windbg():
        import pykd

        def out(s: str) -> None:
            for block in dml_blocks(s):
                pykd.dprintln(block, True)

        def out_plain(s: str) -> None:
            for block in dml_blocks(s):
                pykd.dprintln(block, False)

        def err(s: str) -> None:
            pykd.dprintln('<col fg="errfg">%s</col>' % escape_dml(s), True)

        # In WinDbg the exit code means nothing: never raise SystemExit there.
        run(argv, out, err, live=True, out_plain=out_plain, link_prefix=pyext_prefix(global_interpreter))
        return 0
    if _windbg_without_pykd():
        sys.stdout.write(no_pykd_message() + "\n")
        return 0

    def out_(s: str) -> None:
        sys.stdout.write(s + "\n")

    def err_(s: str) -> None:
        sys.stderr.write(s + "\n")

    return run(argv, out_, err_)
