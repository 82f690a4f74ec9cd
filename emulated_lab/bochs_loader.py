"""Builds and loads the tiny interposer library, then imports bochscpu.

bochscpu-python 0.3.1 exports two stubs whose bodies are assert(false)
(get_enable_a20, reached by every VMXON; dbg_fetch_mem, reached on a triple
fault). emulated_lab/native/bochs_stubs.cpp defines them, and a third one that
counts executed instructions (countdownEvent, see there); loading that shared
library with RTLD_GLOBAL *before* the extension makes the dynamic linker bind
the extension's references to our definitions. The library is built from
source with the system C++ compiler on first use and cached under
emulated_lab/_native/, keyed by the source's hash (so an edit rebuilds it).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "native" / "bochs_stubs.cpp"
CACHE = HERE / "_native"
BOCHSCPU_VERSION = "0.3.1"


class NativeError(Exception):
    """The interposer cannot be built or bochscpu cannot be loaded (one line for the user)."""


_module = None
_handle = None


def source_hash() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]


def library_path() -> Path:
    return CACHE / ("bochs_stubs-%s.so" % source_hash())


def build(force: bool = False) -> Path:
    """Compiles the interposer if the cached copy is missing; returns its path.
    Writes to a temporary name and renames, so a failed build leaves nothing."""
    target = library_path()
    if target.exists() and not force:
        return target
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if not cxx:
        raise NativeError("no C++ compiler found to build the emulator stubs: install g++ "
                          "(tools/bootstrap.sh does) or set CXX")
    CACHE.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=str(CACHE))
    os.close(fd)
    try:
        proc = subprocess.run([cxx, "-O2", "-shared", "-fPIC", "-pthread", "-o", tmp, str(SOURCE)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        if proc.returncode != 0:
            first = (proc.stdout.strip().splitlines() or ["(no output)"])[0]
            raise NativeError("building %s failed: %s" % (SOURCE.name, first))
        os.replace(tmp, str(target))
        for stale in CACHE.glob("bochs_stubs-*.so"):   # builds of older sources
            if stale != target:
                try:
                    stale.unlink()
                except OSError:
                    pass
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load_bochscpu():
    """Returns the `bochscpu` module with the stubs interposed. Idempotent.
    Raises NativeError when bochscpu was imported before the interposer
    (the stubs would then not be replaced) or cannot be imported at all."""
    global _module, _handle
    if _module is not None:
        return _module
    import sys
    if "bochscpu" in sys.modules:
        raise NativeError("bochscpu was imported before emulated_lab.bochs_loader.load_bochscpu(): "
                          "import it only through load_bochscpu() so the stubs are interposed")
    path = build()
    _handle = ctypes.CDLL(str(path), mode=os.RTLD_GLOBAL)
    try:
        import bochscpu  # noqa: F401
        import bochscpu.cpu  # noqa: F401
        import bochscpu.memory  # noqa: F401
    except ImportError as e:
        raise NativeError("cannot import bochscpu (%s): run tools/bootstrap.sh, which installs "
                          "bochscpu-python==%s" % (e, BOCHSCPU_VERSION))
    # the instruction counter forwards to bochscpu's own countdownEvent: dlsym on
    # the extension's handle finds the extension's definition, not ours
    ext = ctypes.CDLL(bochscpu._bochscpu.__file__)
    original = ctypes.cast(ext["_ZN14bx_pc_system_c14countdownEventEv"], ctypes.c_void_p)
    ours = ctypes.cast(_handle["_ZN14bx_pc_system_c14countdownEventEv"], ctypes.c_void_p)
    if original.value == ours.value:
        raise NativeError("cannot find bochscpu's own countdownEvent to count instructions")
    setter = _handle.hvlab_set_countdown
    setter.restype, setter.argtypes = None, [ctypes.c_void_p]
    setter(original)
    _module = bochscpu
    return _module


def instructions() -> int:
    """Instructions the emulated CPU has executed in this process so far."""
    load_bochscpu()
    f = _handle.hvlab_instructions
    f.restype, f.argtypes = ctypes.c_ulonglong, []
    return f()


class Watchdog:
    """Stops an emulator run that exceeds a time limit or reaches an instruction
    count (see bochs_stubs.cpp).

    A stop sets bochscpu's kill bit (cpu_set_killbit), repeated from the
    watchdog thread until disarm(); disarm() returns only when that thread no
    longer touches the CPU, and clears the kill bit it left, so a stop never
    reaches the next run."""

    def __init__(self) -> None:
        bochscpu = load_bochscpu()
        ext = ctypes.CDLL(bochscpu._bochscpu.__file__)   # already loaded: same handle
        # bochscpu is built without SMP: there is one Bochs CPU, 0 (Session.cpu.id
        # counts Sessions and is not a CPU index).
        self._kill = ctypes.cast(ext.cpu_set_killbit, ctypes.c_void_p)
        self._clear = ext.cpu_clear_killbit
        self._clear.restype, self._clear.argtypes = None, [ctypes.c_uint]
        self._arm = _handle.hvlab_watchdog_arm
        self._arm.restype = ctypes.c_int
        self._arm.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_ulonglong]
        self._disarm = _handle.hvlab_watchdog_disarm
        self._disarm.restype, self._disarm.argtypes = ctypes.c_int, []
        self._count = _handle.hvlab_instructions
        self._count.restype, self._count.argtypes = ctypes.c_ulonglong, []

    def instructions(self) -> int:
        """The process-wide count of executed instructions."""
        return self._count()

    def arm(self, seconds: float, until_instruction: int = 0) -> None:
        """Stops the next run after `seconds`, or once the instruction counter
        reaches `until_instruction` (0: no instruction limit)."""
        ms = min(max(1, int(seconds * 1000)), 0xFFFFFFFF)
        if self._arm(self._kill, 0, ms, max(0, until_instruction)) != 0:
            raise NativeError("cannot start the emulator watchdog thread")

    def disarm(self) -> str:
        """Why the run was stopped by the watchdog: "time", "instructions", or ""."""
        fired = self._disarm()
        if fired:
            self._clear(0)   # the run is over: leave no stop request for the next one
        return {1: "time", 2: "instructions"}.get(fired, "")
