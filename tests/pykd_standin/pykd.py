"""A stand-in for the real pykd module (0.3.4.15), for tests on any OS.

Its functions and exception classes are the emulated kd session's
(emulated_lab/kd/pykd_api.py: only names the real module exports, with its
signatures -- positional-only where pykd's are -- and exception classes),
here backed by an hvlab image instead of the running machine, so the pykd
backend reads the very bytes the image backend reads.

Honest where the real debugger is strict:
- rdmsr runs on the processor of the debugger loop (the image's current
  processor at attach), which only `dbgCommand("~Ns")` moves;
  setCurrentThreadId switches the register context only. IA32_GS_BASE reads
  the processor's recorded GS base (a live session verifies with it).
- getNumberThreads returns 0 when the engine fails (`_fail_threads`).
- dprint/dprintln with dml=True go through sys.stdout.writedml when the
  output object has it (pykd-ext's), else sys.stdout.write.
- an image cannot execute code: trace/step/go raise DbgException.

Test-only controls are private (leading underscore): `_attach(path)`,
`_output` (what dprint/dprintln printed), `_calls` (every call, in order),
`_fail_threads`, `_dump` (isDumpAnalyzing), `_break_after` (Ctrl+Break: the
call after that many more calls raises SystemExit("CTRL+BREAK"), as pykd-ext
delivers it); `_stub_cpu` is the debugger loop's processor. Without
`_attach`, the image named by $HVLAB_PYKD_IMAGE is used.
"""
import os as _os

from emulated_lab.kd.base import KdError as _KdError
from emulated_lab.kd.base import read_register as _read_register
from emulated_lab.kd.base import write_register as _write_register
from emulated_lab.kd.pykd_api import install as _install

_IA32_GS_BASE = 0xC0000101

_stub = None
_calls = []
_output = []
_break_pending = False
_break_after = None
_fail_threads = False
_dump = False


class _ImageStub:
    """An hvlab image as a debugger stub (emulated_lab/kd/base.py)."""

    def __init__(self, path):
        from windbg_ext.target.image import ImageTarget
        self.image = ImageTarget(path)
        self.debugger_cpu = self.context_cpu = self.image.current_cpu
        self.changed = {}   # processor -> registers set with `r name=value` / setReg

    @property
    def processor_count(self):
        return self.image.processor_count()

    def _context(self, cpu):
        ctx = dict(self.image.registers(cpu))
        ctx.update(self.changed.get(cpu, {}))
        return ctx

    def read_physical(self, address, size):
        from windbg_ext.target.base import TargetError
        try:
            return self.image._read_physical(address, size)
        except TargetError:
            raise _KdError("Memory exception at 0x%x target physical address" % address, "memory")

    def read_virtual(self, address, size):
        from windbg_ext.target.base import TargetError
        self.image.current_cpu = self.context_cpu   # translated with the register context's CR3
        try:
            return self.image._read_virtual(address, size)
        except TargetError:
            raise _KdError("Memory exception at 0x%x target virtual address" % address, "memory")

    def symbol(self, name):
        from windbg_ext.target.base import TargetSymbolError
        try:
            return self.image._symbol(name)
        except TargetSymbolError:
            raise _KdError("%s is not found" % name, "symbol")

    def modules(self):
        return [(m["name"], m["base"], m["size"]) for m in self.image.modules()]

    def register(self, name):
        return _read_register(self._context(self.context_cpu), name)

    def set_register(self, name, value):
        _write_register(self.changed.setdefault(self.context_cpu, {}), name, value)

    def rdmsr(self, msr):
        from windbg_ext.target.base import TargetError
        regs = self.image.registers(self.debugger_cpu)
        if msr == _IA32_GS_BASE and "gs_base" in regs:
            return regs["gs_base"]
        try:
            return self.image._read_msr(msr, self.debugger_cpu)
        except TargetError:
            raise _KdError("IDebugDataSpaces::ReadMsr failed", "debugger")

    def switch_processor(self, k):
        if not 0 <= k < self.processor_count:
            raise _KdError("Illegal thread error in '~%ds'" % k)
        self.debugger_cpu = self.context_cpu = k

    def set_context(self, k):
        if not 0 <= k < self.processor_count:
            raise _KdError("IDebugSystemObjects::SetCurrentThreadId failed")
        self.context_cpu = k

    def execute(self, single_step):
        raise _KdError("pykd stand-in: an image cannot execute code")


def _attach(path):
    """Points the stand-in at an hvlab image (None detaches) and resets the controls."""
    global _stub, _break_pending, _break_after, _fail_threads, _dump
    if _stub is not None:
        _stub.image.close()
    _stub = None
    _break_pending = _fail_threads = _dump = False
    _break_after = None
    del _output[:]
    del _calls[:]
    if path is not None:
        _stub = _ImageStub(path)


def _open():
    path = _os.environ.get("HVLAB_PYKD_IMAGE")
    if not path:
        return None
    _attach(path)
    return _stub


def __getattr__(name):
    if name == "_stub_cpu":   # the debugger loop's processor, for tests
        return _stub.debugger_cpu if _stub is not None else 0
    raise AttributeError(name)


_install(globals())
