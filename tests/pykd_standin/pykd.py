"""A stand-in for the real pykd module (0.3.4.15), for tests on any OS.

It defines only names the real module exports: functions listed in
/work/shared/pykd_api.txt (same names, same signatures) and pykd's
exception classes (DbgException and its subclasses). Behind it is an hvlab
image, so the pykd backend reads the very bytes the image backend reads.

Test-only controls are private (leading underscore): `_attach(path)`,
`_output` (what dprint/dprintln printed), `_calls` (every call, in order).
Without `_attach`, the image named by $HVLAB_PYKD_IMAGE is used.
"""
import os as _os
import sys as _sys

_target = None
_current = 0
_output = []   # (text, dml) tuples
_calls = []    # function names, in call order (tests count round trips)

# WinDbg x64 register name -> the hvlab image's register name
_WINDBG_REGS = {"efl": "rflags", "gdtr": "gdtr_base", "gdtl": "gdtr_limit",
                "idtr": "idtr_base", "idtl": "idtr_limit"}


class DbgException(Exception):
    pass


class MemoryException(DbgException):
    pass


class SymbolException(DbgException):
    pass


class TypeException(DbgException):
    pass


def _attach(path):
    """Points the stand-in at an hvlab image (None detaches)."""
    global _target, _current
    if _target is not None:
        _target.close()
    _target = None
    _current = 0
    del _output[:]
    del _calls[:]
    if path is not None:
        from windbg_ext.target.image import ImageTarget
        _target = ImageTarget(path)
        _current = _target.current_cpu


def _image():
    global _target, _current
    if _target is None:
        path = _os.environ.get("HVLAB_PYKD_IMAGE")
        if not path:
            raise DbgException("pykd stand-in: no target (call _attach or set HVLAB_PYKD_IMAGE)")
        _attach(path)
    _target.current_cpu = _current  # virtual reads translate with the current processor's CR3
    return _target


# -- the real API (names and signatures as pykd 0.3.4.15) -----------------------
def isWindbgExt():
    _calls.append("isWindbgExt")
    return True


def isKernelDebugging():
    _calls.append("isKernelDebugging")
    return True


def is64bitSystem():
    _calls.append("is64bitSystem")
    return True


def dprint(str, dml=False):  # noqa: A002  (pykd's parameter name)
    _calls.append("dprint")
    _output.append((str, dml))
    _sys.stdout.write(str)


def dprintln(str, dml=False):  # noqa: A002
    _calls.append("dprintln")
    _output.append((str + "\n", dml))
    _sys.stdout.write(str + "\n")


def loadBytes(offset, count, phyAddr=False):
    _calls.append("loadBytes")
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


def getOffset(name):
    _calls.append("getOffset")
    from windbg_ext.target.base import TargetSymbolError
    try:
        return _image()._symbol(name)
    except TargetSymbolError:
        raise SymbolException("%s is not found" % name)


def rdmsr(msrIndex):
    _calls.append("rdmsr")
    from windbg_ext.target.base import TargetError
    try:
        return _image()._read_msr(msrIndex, _current)
    except TargetError:
        raise DbgException("IDebugDataSpaces::ReadMsr failed")


def reg(name):
    _calls.append("reg")
    regs = _image().registers(_current)
    key = _WINDBG_REGS.get(str(name).lower(), str(name).lower())
    if key not in regs:
        raise DbgException("invalid register name: %s" % name)
    return regs[key]


def getNumberThreads():
    _calls.append("getNumberThreads")
    return _image().processor_count()


def getCurrentThreadId():
    _calls.append("getCurrentThreadId")
    _image()
    return _current


def setCurrentThreadId(id):  # noqa: A002
    global _current
    _calls.append("setCurrentThreadId")
    if not 0 <= id < _image().processor_count():
        raise DbgException("IDebugSystemObjects::SetCurrentThreadId failed")
    _current = id
