"""`pykd` for the emulated kd session: the real pykd 0.3.4.15 names, signatures
(positional-only where pykd's Boost.Python definitions give no keyword names),
return types and exception classes, backed by the frozen emulated machine
(emulated_lab/kd/stub.py).

`python -m emulated_lab kd` puts this module in sys.modules as `pykd` while it
runs a script, as pykd-ext does with the real one. Only functions listed in
/work/shared/pykd_api.txt are defined (tests/ext/test_pykd_api.py checks it);
the session's controls are private (leading underscore).
"""
import sys as _sys

_stub = None          # emulated_lab.kd.stub.KdStub, set by the session
_break_pending = False  # Ctrl+Break pressed: the next call raises SystemExit("CTRL+BREAK")
_break_after = None     # tests: Ctrl+Break after this many more calls
_calls = []           # every call, in order (benchmarks count round trips)


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


def _enter(name):
    """Every call: counted; Ctrl+Break is delivered as pykd-ext delivers it."""
    global _break_pending, _break_after
    _calls.append(name)
    if _break_after is not None:
        _break_after -= 1
        if _break_after < 0:
            _break_after = None
            _break_pending = True
    if _break_pending:
        _break_pending = False
        raise SystemExit("CTRL+BREAK")
    if _stub is None:
        raise DbgException("no debug session")
    return _stub


def _call(fn, *args):
    from emulated_lab.kd.stub import KdError
    try:
        return fn(*args)
    except KdError as e:
        raise _KINDS.get(e.kind, DbgException)(str(e))


def _out(text, dml):
    out = _sys.stdout
    if dml and hasattr(out, "writedml"):
        out.writedml(text)
    else:
        out.write(text)


# -- session ----------------------------------------------------------------------
def isWindbgExt():
    _enter("isWindbgExt")
    return True


def isKernelDebugging():
    _enter("isKernelDebugging")
    return True


def isDumpAnalyzing():
    _enter("isDumpAnalyzing")
    return False


def is64bitSystem():
    _enter("is64bitSystem")
    return True


def dprint(str, dml=False):  # noqa: A002  (pykd's keyword names)
    _enter("dprint")
    _out(str, dml)


def dprintln(str, dml=False):  # noqa: A002
    _enter("dprintln")
    _out(str + "\n", dml)


# -- memory and symbols --------------------------------------------------------
def loadBytes(offset, count, phyAddr=False):
    s = _enter("loadBytes")
    read = s.read_physical if phyAddr else s.read_virtual
    return list(_call(read, int(offset), int(count)))


def getOffset(name, /):
    s = _enter("getOffset")
    return _call(s.symbol, name)


# -- registers and MSRs --------------------------------------------------------
def reg(name, /):
    s = _enter("reg")
    return _call(s.register, name)


def setReg(name, value, /):
    s = _enter("setReg")
    _call(s.set_register, name, value)


def getIP():
    s = _enter("getIP")
    return _call(s.register, "rip")


def setIP(offset, /):
    s = _enter("setIP")
    _call(s.set_register, "rip", offset)


def rdmsr(msrIndex, /):
    s = _enter("rdmsr")
    return _call(s.rdmsr, int(msrIndex))


# -- processors ("threads" in kernel debugging) ----------------------------------
def getNumberThreads():
    s = _enter("getNumberThreads")
    return s.processor_count


def getCurrentThreadId():
    s = _enter("getCurrentThreadId")
    return s.context_cpu


def setCurrentThreadId(id, /):  # noqa: A002
    s = _enter("setCurrentThreadId")
    _call(s.set_context, int(id))


# -- execution -----------------------------------------------------------------
def go():
    s = _enter("go")
    _call(s.execute, False)


def step():
    s = _enter("step")
    _call(s.execute, True)


def trace():
    s = _enter("trace")
    _call(s.execute, True)


def dbgCommand(command, suppressOutput=False):
    s = _enter("dbgCommand")
    from emulated_lab.kd.commands import run_command
    from emulated_lab.kd.stub import KdError
    try:
        text = run_command(s, command)
    except KdError as e:
        raise DbgException(str(e))
    return text or None
