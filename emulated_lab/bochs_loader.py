"""Builds and loads the tiny interposer library, then imports bochscpu.

bochscpu-python 0.3.1 exports two stubs whose bodies are assert(false)
(get_enable_a20, reached by every VMXON; dbg_fetch_mem, reached on a triple
fault). emulated_lab/native/bochs_stubs.cpp defines them, and a third one that
counts executed instructions (countdownEvent, see there), and wraps the
handlers of the instructions the lab watches (WATCHED_HANDLERS) so that they
call back into Python (set_watch); loading that shared
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


# The Bochs instruction handlers the interposer wraps, in its order (bochs_stubs.cpp),
# with the emulated_lab/insn.py kinds each one executes (VMLAUNCH also runs VMRESUME).
WATCHED_HANDLERS = (
    ("VMXON", ("vmxon",)), ("VMPTRLD", ("vmptrld",)), ("VMCLEAR", ("vmclear",)), ("VMPTRST", ("vmptrst",)),
    ("VMLAUNCH", ("vmlaunch", "vmresume")), ("VMXOFF", ("vmxoff",)), ("VMCALL", ("vmcall",)),
    ("CPUID", ("cpuid",)), ("RDMSR", ("rdmsr",)), ("WRMSR", ("wrmsr",)), ("MOV_CR4Rq", ("mov_cr4",)),
)

# watch(which, after) -> int: `which` indexes WATCHED_HANDLERS; after = 0 before the
# handler runs (return 1 to skip the instruction: the lab emulated it), 1 once it
# returned normally (no VM exit, no fault). Return 0 otherwise.
WatchCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int)


def _handler_symbol(name: str) -> str:
    """Itanium-mangled BX_CPU_C::name(bxInstruction_c*)."""
    return "_ZN8BX_CPU_C%d%sEP15bxInstruction_c" % (len(name), name)


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
    _forward_handlers(ext)
    _module = bochscpu
    return _module


def _forward_handlers(ext) -> None:
    """Hands the interposer bochscpu's own handlers of the watched instructions."""
    if _handle.hvlab_watched_count() != len(WATCHED_HANDLERS):
        raise NativeError("%s and bochs_loader.WATCHED_HANDLERS disagree" % SOURCE.name)
    set_handler = _handle.hvlab_set_handler
    set_handler.restype, set_handler.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_void_p]
    for which, (name, _kinds) in enumerate(WATCHED_HANDLERS):
        symbol = _handler_symbol(name)
        try:
            original = ctypes.cast(ext[symbol], ctypes.c_void_p)
        except AttributeError:
            raise NativeError("bochscpu %s does not export BX_CPU_C::%s: the lab needs bochscpu-python==%s"
                              % (os.path.basename(ext._name), name, BOCHSCPU_VERSION))
        if original.value == ctypes.cast(_handle[symbol], ctypes.c_void_p).value:
            raise NativeError("cannot find bochscpu's own BX_CPU_C::%s to watch it" % name)
        set_handler(which, original)
    _locate_async_event(ext)


ASYNC_EVENT_SEARCH = 0x10000     # bytes of bx_cpu searched for async_event


def _locate_async_event(ext) -> None:
    """Finds bx_cpu.async_event by what bochscpu's cpu_set_killbit does to it (sets
    it to 1; cpu_clear_killbit sets it to 0) and hands its address to the interposer."""
    cpu = ctypes.cast(ext["bx_cpu"], ctypes.c_void_p).value
    words = ASYNC_EVENT_SEARCH // 4
    clear, kill = ext.cpu_clear_killbit, ext.cpu_set_killbit
    clear.restype, clear.argtypes = None, [ctypes.c_uint]
    kill.restype, kill.argtypes = None, [ctypes.c_uint]
    clear(0)
    before = (ctypes.c_uint32 * words).from_address(cpu)[:]
    kill(0)
    after = (ctypes.c_uint32 * words).from_address(cpu)[:]
    clear(0)
    changed = [n for n in range(words) if before[n] == 0 and after[n] == 1]
    if len(changed) != 1:
        raise NativeError("cannot find bx_cpu.async_event in bochscpu (%d candidates): the lab needs "
                          "bochscpu-python==%s" % (len(changed), BOCHSCPU_VERSION))
    where = _handle.hvlab_set_async_event
    where.restype, where.argtypes = None, [ctypes.c_void_p]
    where(cpu + 4 * changed[0])


def set_watch(callback) -> None:
    """Installs a WatchCallback for the following runs (None: no callback). The
    caller keeps `callback` alive while it is installed."""
    load_bochscpu()
    f = _handle.hvlab_set_watch
    f.restype, f.argtypes = ctypes.c_int, [WatchCallback]
    if f(callback if callback is not None else WatchCallback()) != 0:
        raise NativeError("the interposer does not know where bx_cpu.async_event is")


def deliver_init() -> None:
    """The INIT signal reaches the emulated CPU (bochs_stubs.cpp hvlab_deliver_init): call it
    from a watched instruction's callback, in VMX non-root (anywhere else Bochs resets the CPU)."""
    load_bochscpu()
    ext = ctypes.CDLL(_module._bochscpu.__file__)
    f = _handle.hvlab_deliver_init
    f.restype, f.argtypes = ctypes.c_int, [ctypes.c_void_p]
    if f(ctypes.cast(ext["_ZN8BX_CPU_C12deliver_INITEv"], ctypes.c_void_p)) != 0:
        raise NativeError("INIT can only be delivered from a watched instruction's callback")


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
