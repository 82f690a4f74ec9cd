"""pykd 0.3.4.15's functions, defined once for both emulated pykd modules: the
kd session's (kd/pykd_live.py, over the running emulated machine) and the
tests' stand-in (tests/pykd_standin/pykd.py, over an hvlab image).

Real names, signatures (positional-only where pykd's Boost.Python
definitions name no arguments: rdmsr, reg, setReg, setIP, getOffset,
setCurrentThreadId, ...; keywords where they do: loadBytes(offset, count,
phyAddr), dbgCommand(command, suppressOutput), dprint(str, dml)), return
types and exception classes (TypeException is a SymbolException). Only
functions in /work/shared/pykd_api.txt are defined (tests check it).

`install(ns)` defines them in a module's globals `ns`. They call the stub
`ns["_stub"]` (kd/base.py says what a stub is; `ns["_open"]()` makes one when
it is None) and read the module's own controls there, so each module keeps
its own: `_calls` (every call, in order), `_output` ((text, dml) printed,
when the module keeps one), `_break_pending` / `_break_after` (Ctrl+Break:
SystemExit("CTRL+BREAK") at the next call, as pykd-ext delivers it),
`_fail_threads` (getNumberThreads returns 0, pykd's failure value), `_dump`
(isDumpAnalyzing).
"""
import sys as _sys

from emulated_lab.kd.base import KdError
from emulated_lab.kd.commands import run_command


class DbgException(Exception):
    pass


class MemoryException(DbgException):
    pass


class SymbolException(DbgException):
    pass


class TypeException(SymbolException):
    pass


class CPUException(DbgException):
    pass


_KINDS = {"memory": MemoryException, "symbol": SymbolException, "cpu": CPUException}


def install(ns):
    """Defines pykd's exception classes and functions in `ns` (see the module docstring)."""

    def enter(name):
        ns["_calls"].append(name)
        after = ns.get("_break_after")
        if after is not None:
            if after <= 0:
                ns["_break_after"] = None
                ns["_break_pending"] = True
            else:
                ns["_break_after"] = after - 1
        if ns.get("_break_pending"):
            ns["_break_pending"] = False
            raise SystemExit("CTRL+BREAK")
        stub = ns.get("_stub")
        if stub is None and ns.get("_open") is not None:
            stub = ns["_open"]()
        if stub is None:
            raise DbgException("no debug session")
        return stub

    def call(fn, *args):
        try:
            return fn(*args)
        except KdError as e:
            raise _KINDS.get(e.kind, DbgException)(str(e))

    def out(text, dml):
        if isinstance(ns.get("_output"), list):
            ns["_output"].append((text, dml))
        stream = _sys.stdout
        if dml and hasattr(stream, "writedml"):   # pykd-ext's output object
            stream.writedml(text)
        else:
            stream.write(text)

    # -- session ------------------------------------------------------------------
    def isWindbgExt():
        enter("isWindbgExt")
        return True

    def isKernelDebugging():
        enter("isKernelDebugging")
        return True

    def isDumpAnalyzing():
        s = enter("isDumpAnalyzing")
        return bool(ns.get("_dump") or getattr(s, "dump", False))

    def is64bitSystem():
        enter("is64bitSystem")
        return True

    def dprint(str, dml=False):  # noqa: A002  (pykd's keyword names)
        enter("dprint")
        out(str, dml)

    def dprintln(str, dml=False):  # noqa: A002
        enter("dprintln")
        out(str + "\n", dml)

    # -- memory and symbols --------------------------------------------------------
    def loadBytes(offset, count, phyAddr=False):
        s = enter("loadBytes")
        return list(call(s.read_physical if phyAddr else s.read_virtual, int(offset), int(count)))

    def getOffset(name, /):
        return call(enter("getOffset").symbol, name)

    # -- registers and MSRs --------------------------------------------------------
    def reg(name, /):
        return call(enter("reg").register, name)

    def setReg(name, value, /):
        call(enter("setReg").set_register, name, value)

    def getIP():
        return call(enter("getIP").register, "rip")

    def setIP(offset, /):
        call(enter("setIP").set_register, "rip", offset)

    def rdmsr(msrIndex, /):
        """On the processor that runs the debugger loop, whatever register context is selected."""
        return call(enter("rdmsr").rdmsr, int(msrIndex))

    # -- processors ("threads" in kernel debugging) ----------------------------------
    def getNumberThreads():
        s = enter("getNumberThreads")
        return 0 if ns.get("_fail_threads") else s.processor_count

    def getCurrentThreadId():
        return enter("getCurrentThreadId").context_cpu

    def setCurrentThreadId(id, /):  # noqa: A002
        """A register-context switch only: rdmsr stays on the debugger loop's processor."""
        call(enter("setCurrentThreadId").set_context, int(id))

    # -- execution -----------------------------------------------------------------
    def go():
        call(enter("go").execute, False)

    def step():
        call(enter("step").execute, True)

    def trace():
        call(enter("trace").execute, True)

    def dbgCommand(command, suppressOutput=False):
        s = enter("dbgCommand")
        try:
            text = run_command(s, command)
        except KdError as e:
            raise DbgException(str(e))
        return text or None

    ns.update(DbgException=DbgException, MemoryException=MemoryException, SymbolException=SymbolException,
              TypeException=TypeException, CPUException=CPUException)
    for f in (isWindbgExt, isKernelDebugging, isDumpAnalyzing, is64bitSystem, dprint, dprintln, loadBytes,
              getOffset, reg, setReg, getIP, setIP, rdmsr, getNumberThreads, getCurrentThreadId,
              setCurrentThreadId, go, step, trace, dbgCommand):
        ns[f.__name__] = f
