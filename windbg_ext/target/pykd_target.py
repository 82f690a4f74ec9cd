"""The live backend: WinDbg kernel debugging through pykd.

Only functions the real pykd 0.3.4.15 exports are called (/work/shared
pykd_api.txt; tests/ext/test_pykd_api.py enforces it). Every call is a KDNET
round trip, so reads are whole blocks (`loadBytes`), never field by field.

In kernel debugging each processor is a debugger "thread": a per-processor
read switches with setCurrentThreadId and always switches back.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from windbg_ext.target.base import Target, TargetError, TargetMemoryError, TargetMsrError, TargetSymbolError

# our name -> the WinDbg x64 register name that `reg()` understands
REGISTER_NAMES = (
    ("rip", "rip"), ("rsp", "rsp"), ("rflags", "efl"),
    ("cr0", "cr0"), ("cr2", "cr2"), ("cr3", "cr3"), ("cr4", "cr4"), ("cr8", "cr8"),
    ("gdtr_base", "gdtr"), ("gdtr_limit", "gdtl"), ("idtr_base", "idtr"), ("idtr_limit", "idtl"),
    ("cs", "cs"), ("ss", "ss"), ("ds", "ds"), ("es", "es"), ("fs", "fs"), ("gs", "gs"),
    ("tr", "tr"), ("ldtr", "ldtr"), ("dr7", "dr7"),
)
IA32_EFER = 0xC0000080  # WinDbg has no `efer` register: read the MSR (SDM Vol. 4, Table 2-2)


def _pykd_kind(exc: BaseException) -> str:
    """pykd's exception classes (MemoryException, SymbolException, ... all
    DbgException) are not in the function list we may call, so they are
    recognised by class name, never by attribute."""
    names = {k.__name__ for k in type(exc).__mro__}
    if "MemoryException" in names:
        return "memory"
    if "SymbolException" in names:
        return "symbol"
    if "DbgException" in names:
        return "debugger"
    return "other"


def in_windbg() -> bool:
    """True inside WinDbg's !py (pykd importable and attached to a debugger)."""
    try:
        import pykd  # noqa: F401  (only inside WinDbg)
    except ImportError:
        return False
    try:
        return bool(pykd.isWindbgExt())
    except Exception as e:  # pykd's own classes only: anything else is a bug and propagates
        if _pykd_kind(e) == "other":
            raise
        return False


class PykdTarget(Target):
    name = "pykd"
    live = True

    def __init__(self, pykd_module: Any = None) -> None:
        super().__init__()
        if pykd_module is None:
            try:
                import pykd as pykd_module  # type: ignore[no-redef]
            except ImportError:
                raise TargetError("pykd is not importable: run this inside WinDbg after `.load pykd`")
        self._pykd = pykd_module
        self._count: Optional[int] = None
        # processors are debugger threads only in kernel debugging
        if not self._call(self._pykd.isKernelDebugging):
            raise TargetError("windbg_ext needs a kernel debugging session (kd / KDNET, or a kernel dump); "
                              "this WinDbg session debugs a user-mode process")

    def describe(self) -> str:
        return "live kernel debugging session (pykd)"

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as e:  # pykd raises its own classes: map to ours by kind
            if _pykd_kind(e) == "other":
                raise
            raise TargetError("pykd: %s" % (str(e).strip().splitlines() or ["error"])[0])

    # -- memory -------------------------------------------------------------
    def _load(self, address: int, size: int, physical: bool) -> bytes:
        if size == 0:
            return b""
        try:
            data = self._pykd.loadBytes(address, size, physical)
        except Exception as e:
            if _pykd_kind(e) in ("memory", "debugger"):
                raise TargetMemoryError(address, size, physical, "the debugger cannot read it (%s)"
                                        % ((str(e).strip().splitlines() or ["memory error"])[0]))
            raise
        data = bytes(bytearray(data))  # loadBytes returns a list of ints
        if len(data) != size:
            raise TargetMemoryError(address, size, physical, "the debugger returned %d bytes" % len(data))
        return data

    def _read_physical(self, address: int, size: int) -> bytes:
        return self._load(address, size, True)

    def _read_virtual(self, address: int, size: int) -> bytes:
        return self._load(address, size, False)

    # -- symbols --------------------------------------------------------------
    def _symbol(self, name: str) -> int:
        try:
            return int(self._pykd.getOffset(name))
        except Exception as e:
            if _pykd_kind(e) in ("symbol", "debugger"):
                module = name.split("!", 1)[0] if "!" in name else "the module"
                raise TargetSymbolError(name, "check the symbol path and `.reload /f %s` (.sympath, !sym noisy)"
                                        % (module + (".sys" if module not in ("nt", "the module") else "")))
            raise

    # -- processors -----------------------------------------------------------
    def processor_count(self) -> int:
        if self._count is None:
            self._count = int(self._call(self._pykd.getNumberThreads))
        return self._count

    def _on_cpu(self, cpu: int, fn: Callable[[], Any]) -> Any:
        """Runs fn with processor `cpu` current, then restores the one the user had."""
        count = self.processor_count()
        if not isinstance(cpu, int) or not 0 <= cpu < count:
            raise TargetError("processor %s does not exist: the target has %d (0-%d)" % (cpu, count, count - 1))
        current = int(self._call(self._pykd.getCurrentThreadId))
        if current == cpu:
            return fn()
        self._call(self._pykd.setCurrentThreadId, cpu)
        try:
            return fn()
        finally:
            self._call(self._pykd.setCurrentThreadId, current)

    def _read_msr(self, msr: int, cpu: int) -> int:
        def read() -> int:
            try:
                return int(self._pykd.rdmsr(msr))
            except Exception as e:
                if _pykd_kind(e) == "other":
                    raise
                raise TargetMsrError("cannot read MSR 0x%x on processor %d: %s"
                                     % (msr, cpu, (str(e).strip().splitlines() or ["rdmsr failed"])[0]))
        return self._on_cpu(cpu, read)

    def read_msrs(self, msrs: Sequence[int], cpu: int = 0) -> Dict[int, int]:
        def read() -> Dict[int, int]:  # one processor switch for all of them
            values: Dict[int, int] = {}
            for msr in msrs:
                self.stats.msr_reads += 1
                try:
                    values[msr] = int(self._pykd.rdmsr(msr))
                except Exception as e:
                    if _pykd_kind(e) == "other":
                        raise
            return values
        return self._on_cpu(cpu, read)

    def registers(self, cpu: int = 0) -> Dict[str, int]:
        return self.register_values([ours for ours, _ in REGISTER_NAMES] + ["efer"], cpu)

    def register_values(self, names: Sequence[str], cpu: int = 0) -> Dict[str, int]:
        windbg_names = dict(REGISTER_NAMES)

        def read() -> Dict[str, int]:  # one processor switch; one `reg` round trip per name
            regs: Dict[str, int] = {}
            for ours in names:
                try:
                    if ours == "efer":
                        regs[ours] = int(self._pykd.rdmsr(IA32_EFER))
                    elif ours in windbg_names:
                        regs[ours] = int(self._pykd.reg(windbg_names[ours]))
                except Exception as e:
                    if _pykd_kind(e) == "other":
                        raise
                    # a register this target does not have: leave it out
            return regs
        return self._on_cpu(cpu, read)

    def cpuid(self, leaf: int, subleaf: int = 0, cpu: int = 0) -> Optional[Tuple[int, int, int, int]]:
        return None  # a debugger cannot execute CPUID on the target: unknown
