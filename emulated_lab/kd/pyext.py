"""`!py` as the pykd-ext bootstrapper (pykd.dll 2.0.0.x) runs it, for the
emulated kd session.

    !py [-g] [-3 | -3.N] -m module args...     run a module as __main__ (runpy)
    !py [-g] [-3 | -3.N] script.py args...     run a file

Like pykd-ext: `sys.argv` is the module name and the arguments; the recursion
limit is 500; each call runs in a fresh interpreter unless `-g` (modelled by
giving each run its own set of the package's modules: none for a fresh
interpreter, those of earlier -g runs for the global one; the host
process's modules are put back afterwards); `sys.stdout` is the debugger's output object, with
`write` and `writedml`; Ctrl+Break arrives in the script as
SystemExit("CTRL+BREAK"); an uncaught exception prints its traceback in the
debugger, as pykd-ext does.
"""
from __future__ import annotations

import os
import runpy
import shlex
import sys
import traceback
from typing import Callable, Dict, List, Tuple

RECURSION_LIMIT = 500   # pykd-ext sets it for every script


class PyExtError(Exception):
    pass


class DbgOut:
    """The object pykd-ext puts in sys.stdout/sys.stderr: text and DML go to the debugger."""

    encoding = "utf-8"
    closed = False

    def __init__(self, sink: Callable[[str, bool], None]) -> None:
        self._sink = sink

    def write(self, s: str) -> None:
        self._sink(str(s), False)

    def writedml(self, s: str) -> None:
        self._sink(str(s), True)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def parse_py(argline: str) -> Tuple[bool, str, str, List[str]]:
    """`-g -3.9 -m windbg_ext vmm` -> (global, python version or "", module or "", args); a
    script path is returned as args[0] with module "". Raises PyExtError."""
    try:
        words = shlex.split(argline, posix=True)
    except ValueError as e:
        raise PyExtError("!py: %s" % e)
    glob, version = False, ""
    while words and words[0].startswith("-") and words[0] != "-m":
        w = words.pop(0)
        if w == "-g":
            glob = True
        elif w[1:2].isdigit():
            version = w[1:]
        else:
            raise PyExtError("!py: unknown option %s (the emulated !py knows -g, -3.N, -m)" % w)
    if words and words[0] == "-m":
        if len(words) < 2:
            raise PyExtError("!py -m: give a module name")
        return glob, version, words[1], words[2:]
    if not words:
        raise PyExtError("!py: give -m MODULE or a script (the interactive Python console is not emulated)")
    return glob, version, "", words


# pykd-ext's global interpreter (-g): the package modules its runs imported, kept between -g runs
_GLOBAL_MODULES: Dict[str, object] = {}


def _take(package: str) -> Dict[str, object]:
    """Removes the package's modules from sys.modules and returns them."""
    names = [n for n in sys.modules if n == package or n.startswith(package + ".")]
    return {n: sys.modules.pop(n) for n in names}


def run_py(argline: str, sink: Callable[[str, bool], None]) -> None:
    """Runs one `!py` command line with its output going to sink(text, dml)."""
    glob, version, module, args = parse_py(argline)
    running = "%d.%d" % sys.version_info[:2]
    if version and not running.startswith(version):
        raise PyExtError("!py -%s: this session's Python is %s (the emulated kd has one interpreter)"
                         % (version, running))
    package = module.split(".")[0] if module else ""
    # the interpreter this run sees: a fresh one (no package modules), or pykd-ext's global one;
    # the host process's own modules are put back afterwards
    host = _take(package) if package else {}
    if package and glob:
        sys.modules.update(_GLOBAL_MODULES)
    saved = (sys.argv, sys.stdout, sys.stderr, sys.getrecursionlimit())
    out = DbgOut(sink)
    try:
        sys.argv = [module or args[0]] + (args if module else args[1:])
        sys.stdout = sys.stderr = out
        sys.setrecursionlimit(RECURSION_LIMIT)
        if module:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            if not os.path.isfile(args[0]):
                raise PyExtError("!py: script %s not found" % args[0])
            runpy.run_path(args[0], run_name="__main__")
    except SystemExit as e:
        if e.code not in (None, 0):
            sink("%s\n" % (e.code if isinstance(e.code, str) else "exit code %s" % e.code), False)
    except PyExtError:
        raise
    except BaseException:  # what pykd-ext does: the traceback in the debugger window
        sink(traceback.format_exc(), False)
    finally:
        sys.argv, sys.stdout, sys.stderr = saved[0], saved[1], saved[2]
        sys.setrecursionlimit(saved[3])
        if package:
            ran = _take(package)
            if glob:
                _GLOBAL_MODULES.clear()
                _GLOBAL_MODULES.update(ran)
            sys.modules.update(host)
