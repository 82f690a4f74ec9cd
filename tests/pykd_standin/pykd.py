"""A stand-in for the real pykd module (0.3.4.15), for tests on any OS.

It defines only names the real module exports: functions listed in
/work/shared/pykd_api.txt (same names, same signatures: positional-only
where pykd's Boost.Python definitions name no arguments) and pykd's
exception classes (DbgException; MemoryException, SymbolException,
CPUException; TypeException is a SymbolException). Behind it is an hvlab
image, so the pykd backend reads the very bytes the image backend reads.

Honest where the real debugger is strict:
- rdmsr runs on the processor of the debugger loop (the image's current
  processor at attach), which only `dbgCommand("~Ns")` moves;
  setCurrentThreadId switches the register context only.
- getNumberThreads returns 0 when the engine fails (`_fail_threads`).
- dprint/dprintln with dml=True go through sys.stdout.writedml when the
  output object has it (pykd-ext's), else sys.stdout.write.
- an image cannot execute code: trace/step/go raise DbgException.

Test-only controls are private (leading underscore): `_attach(path)`,
`_output` (what dprint/dprintln printed), `_calls` (every call, in order),
`_fail_threads`, `_dump` (isDumpAnalyzing), `_break_after` (Ctrl+Break: the
call after that many more calls raises SystemExit("CTRL+BREAK"), as pykd-ext
delivers it). Without `_attach`, the image named by $HVLAB_PYKD_IMAGE is used.
"""
import os as _os
import re as _re
import sys as _sys

_target = None
_current = 0       # register context (setCurrentThreadId)
_stub_cpu = 0      # the processor running the debugger loop (~Ns)
_output = []       # (text, dml) tuples
_calls = []        # function names, in call order (tests count round trips)
_fail_threads = False
_dump = False
_break_after = None
_set_regs = {}     # (cpu, register) -> value set with `r name=value`

# WinDbg x64 register name -> the hvlab image's register name
_WINDBG_REGS = {"efl": "rflags", "gdtr": "gdtr_base", "gdtl": "gdtr_limit",
                "idtr": "idtr_base", "idtl": "idtr_limit"}
_IA32_GS_BASE = 0xC0000101
_GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rip", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12", "r13",
         "r14", "r15", "efl")


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


def _attach(path):
    """Points the stand-in at an hvlab image (None detaches)."""
    global _target, _current, _stub_cpu, _fail_threads, _dump, _break_after
    if _target is not None:
        _target.close()
    _target = None
    _current = _stub_cpu = 0
    _fail_threads = _dump = False
    _break_after = None
    _set_regs.clear()
    del _output[:]
    del _calls[:]
    if path is not None:
        from windbg_ext.target.image import ImageTarget
        _target = ImageTarget(path)
        _current = _stub_cpu = _target.current_cpu


def _enter(name):
    global _break_after
    _calls.append(name)
    if _break_after is not None:
        if _break_after <= 0:
            _break_after = None
            raise SystemExit("CTRL+BREAK")
        _break_after -= 1


def _image(cpu=None):
    global _target, _current
    if _target is None:
        path = _os.environ.get("HVLAB_PYKD_IMAGE")
        if not path:
            raise DbgException("pykd stand-in: no target (call _attach or set HVLAB_PYKD_IMAGE)")
        _attach(path)
    # virtual reads translate with the register context's CR3
    _target.current_cpu = _current if cpu is None else cpu
    return _target


def _out(text, dml):
    out = _sys.stdout
    if dml and hasattr(out, "writedml"):
        out.writedml(text)
    else:
        out.write(text)


# -- the real API (names and signatures as pykd 0.3.4.15) -----------------------
def isWindbgExt():
    _enter("isWindbgExt")
    return True


def isKernelDebugging():
    _enter("isKernelDebugging")
    return True


def isDumpAnalyzing():
    _enter("isDumpAnalyzing")
    return _dump


def is64bitSystem():
    _enter("is64bitSystem")
    return True


def dprint(str, dml=False):  # noqa: A002  (pykd's parameter name)
    _enter("dprint")
    _output.append((str, dml))
    _out(str, dml)


def dprintln(str, dml=False):  # noqa: A002
    _enter("dprintln")
    _output.append((str + "\n", dml))
    _out(str + "\n", dml)


def loadBytes(offset, count, phyAddr=False):
    _enter("loadBytes")
    from windbg_ext.target.base import TargetError
    try:
        if phyAddr:
            data = _image()._read_physical(offset, count)
        else:
            data = _image()._read_virtual(offset, count)
    except TargetError:
        raise MemoryException("Memory exception at 0x%x target %s address"
                              % (offset, "physical" if phyAddr else "virtual"))
    return list(data)


def getOffset(name, /):
    _enter("getOffset")
    from windbg_ext.target.base import TargetSymbolError
    try:
        return _image()._symbol(name)
    except TargetSymbolError:
        raise SymbolException("%s is not found" % name)


def rdmsr(msrIndex, /):
    """On the debugger loop's processor, whatever register context is selected."""
    _enter("rdmsr")
    from windbg_ext.target.base import TargetError
    img = _image()
    if msrIndex == _IA32_GS_BASE and "gs_base" in img.registers(_stub_cpu):
        return img.registers(_stub_cpu)["gs_base"]
    try:
        return img._read_msr(msrIndex, _stub_cpu)
    except TargetError:
        raise DbgException("IDebugDataSpaces::ReadMsr failed")


def _register(cpu, name):
    key = _WINDBG_REGS.get(str(name).lower(), str(name).lower())
    if (cpu, key) in _set_regs:
        return _set_regs[(cpu, key)]
    regs = _image().registers(cpu)
    if key not in regs:
        raise CPUException("invalid register name: %s" % name)
    return regs[key]


def reg(name, /):
    _enter("reg")
    return _register(_current, name)


def getNumberThreads():
    _enter("getNumberThreads")
    return 0 if _fail_threads else _image().processor_count()


def getCurrentThreadId():
    _enter("getCurrentThreadId")
    _image()
    return _current


def setCurrentThreadId(id, /):  # noqa: A002
    """A register-context switch only: rdmsr stays on the debugger loop's processor."""
    global _current
    _enter("setCurrentThreadId")
    if not 0 <= id < _image().processor_count():
        raise DbgException("IDebugSystemObjects::SetCurrentThreadId failed")
    _current = id


def dbgCommand(command, suppressOutput=False):
    """`~Ns` (a target-side switch), `r` / `r a, b` / `r a=v, ...`; None when nothing is printed."""
    global _current, _stub_cpu
    _enter("dbgCommand")
    cmd = str(command).strip()
    m = _re.match(r"^~\s*(\d+)\s*s$", cmd)
    if m:
        n = int(m.group(1))
        if not 0 <= n < _image().processor_count():
            raise DbgException("Illegal thread error in '%s'" % cmd)
        _current = _stub_cpu = n
        return None
    if cmd == "r":
        return " ".join("%s=%016x" % (r, _register(_current, r)) for r in _GPRS if _has(r))
    if cmd.startswith("r "):
        items = [i.strip() for i in cmd[2:].split(",") if i.strip()]
        if all("=" in i for i in items):
            for i in items:
                name, _, value = i.partition("=")
                _set_regs[(_current, _WINDBG_REGS.get(name.strip(), name.strip()))] = int(value, 16)
            return None
        return " ".join("%s=%016x" % (i, _register(_current, i)) for i in items)
    raise DbgException("Syntax error in '%s'" % cmd)


def _has(name):
    try:
        _register(_current, name)
        return True
    except CPUException:
        return False


def trace():
    _enter("trace")
    raise DbgException("pykd stand-in: an image cannot execute code")


def step():
    _enter("step")
    raise DbgException("pykd stand-in: an image cannot execute code")


def go():
    _enter("go")
    raise DbgException("pykd stand-in: an image cannot execute code")
