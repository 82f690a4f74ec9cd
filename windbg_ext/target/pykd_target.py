"""The live backend: WinDbg kernel debugging through pykd.

Only functions the real pykd 0.3.4.15 exports are called (/work/shared
pykd_api.txt; tests/ext/test_pykd_api.py enforces it). Every call is a KDNET
round trip, so reads are whole blocks (`loadBytes`), never field by field.

In kernel debugging each processor is a debugger "thread". Registers of
processor N: a register-context switch (setCurrentThreadId), always switched
back. MSRs: the KD stub executes RDMSR on the processor that runs the
debugger loop, whatever context is selected (ReactOS kd64
KdpReadMachineSpecificRegister), so MSRs of processor N need a target-side
switch (`~Ns`), verified before any value is believed: IA32_GS_BASE must be
processor N's KPCR (target/kpcr.py); otherwise the read fails with the reason
(UNKNOWN for the commands), never another processor's value.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from windbg_ext.target.base import Target, TargetError, TargetMemoryError, TargetMsrError, TargetSymbolError
from windbg_ext.target.kd_text import RESTORED_REGISTERS, parse_module_list, parse_registers, set_registers_command
from windbg_ext.target.kpcr import IA32_GS_BASE, KPCR_SPAN, kpcr_processor

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
    if "TypeException" in names:  # a SymbolException in pykd: a type, not a missing symbol
        return "type"
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
        self.dump = bool(self._call(self._pykd.isDumpAnalyzing))
        self.live = not self.dump
        if self.dump:
            self.no_msrs_reason = "a kernel dump opened in WinDbg holds no MSRs (isDumpAnalyzing)"
        self._debugger_cpu: Optional[int] = None   # verified processor of the debugger loop
        self._modules: Optional[List[Dict[str, Any]]] = None

    def describe(self) -> str:
        if self.dump:
            return "kernel dump opened in WinDbg (pykd): memory only, no MSRs"
        return "live kernel debugging session (pykd)"

    def _restore(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A call that puts the user's state back (processor, registers): Ctrl+Break
        arriving at it (pykd-ext raises SystemExit("CTRL+BREAK") at the next
        call) must not skip it: it is made again, then the break goes on."""
        try:
            return self._call(fn, *args)
        except SystemExit as e:
            if str(e.code) != "CTRL+BREAK":
                raise
            self._call(fn, *args)
            raise

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

    def modules(self) -> List[Dict[str, Any]]:
        """The debugger's module list (`lm`: one round trip, read once); [] when it has none."""
        if self._modules is None:
            try:
                self._modules = parse_module_list(self._call(self._pykd.dbgCommand, "lm") or "")
            except TargetError:
                self._modules = []
        return [dict(m) for m in self._modules]

    # -- processors -----------------------------------------------------------
    def processor_count(self) -> int:
        if self._count is None:
            count = int(self._call(self._pykd.getNumberThreads))
            if count <= 0:  # pykd returns 0 when the engine cannot say
                raise TargetError("the debugger reports 0 processors (getNumberThreads failed): "
                                  "is the target broken in? (.reload, then try again)")
            self._count = count
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
            self._restore(self._pykd.setCurrentThreadId, current)

    def _read_msr(self, msr: int, cpu: int) -> int:
        values = self._msrs([msr], cpu, counted=True)
        if msr not in values:
            raise TargetMsrError("cannot read MSR 0x%x on processor %d: the debugger's RDMSR failed" % (msr, cpu))
        return values[msr]

    def read_msrs(self, msrs: Sequence[int], cpu: int = 0) -> Dict[int, int]:
        """MSRs of processor `cpu`, read by the KD stub after a verified `~Ns`."""
        return self._msrs(msrs, cpu, counted=False)

    def _msrs(self, msrs: Sequence[int], cpu: int, counted: bool) -> Dict[int, int]:
        if self.dump:  # no MSR is read: a dump holds none (isDumpAnalyzing); the caller sees them unknown
            if counted:
                raise TargetMsrError("a kernel dump holds no MSRs (isDumpAnalyzing): processor %d's are unknown"
                                     % cpu)
            return {}

        def read() -> Dict[int, int]:
            values: Dict[int, int] = {}
            for msr in msrs:
                if not counted:   # read_msr counted it already
                    self.stats.msr_reads += 1
                try:
                    values[msr] = int(self._pykd.rdmsr(msr))
                except Exception as e:
                    if _pykd_kind(e) == "other":
                        raise
            return values
        return self._on_stub_cpu(cpu, read)

    def _stub_processor(self) -> Optional[int]:
        """Which processor executes the debugger's RDMSR now: its IA32_GS_BASE
        must point at a KPCR that names it. None when that cannot be shown."""
        try:
            self.stats.msr_reads += 1
            gs = int(self._pykd.rdmsr(IA32_GS_BASE))
            kpcr = self.read_virtual(gs, KPCR_SPAN)
        except TargetError:
            return None
        except Exception as e:
            if _pykd_kind(e) == "other":
                raise
            return None
        return kpcr_processor(gs, kpcr)

    def _on_stub_cpu(self, cpu: int, fn: Callable[[], Any]) -> Any:
        """Runs fn with the debugger loop on processor `cpu` (a target-side
        `~Ns`, verified), then switches back to where the user was."""
        count = self.processor_count()
        if not isinstance(cpu, int) or not 0 <= cpu < count:
            raise TargetError("processor %s does not exist: the target has %d (0-%d)" % (cpu, count, count - 1))
        if self._debugger_cpu == cpu:
            return fn()
        user = int(self._call(self._pykd.getCurrentThreadId))
        switched = False
        try:
            if user != cpu:
                self._call(self._pykd.dbgCommand, "~%ds" % cpu)
                switched = True
            on = self._stub_processor()
            if on != cpu and not switched:   # the context said cpu, the stub is elsewhere: switch for real
                self._call(self._pykd.dbgCommand, "~%ds" % cpu)
                switched = True
                on = self._stub_processor()
            if on != cpu:
                raise TargetMsrError("UNKNOWN: MSRs of processor %d: RDMSR not shown to run there "
                                     "(after ~%ds, IA32_GS_BASE is %s)"
                                     % (cpu, cpu, "not a KPCR" if on is None else "processor %d's KPCR" % on))
            self._debugger_cpu = cpu
            return fn()
        finally:
            if switched:
                self._debugger_cpu = None
                self._restore(self._pykd.dbgCommand, "~%ds" % user)

    # -- running code on the target --------------------------------------------------
    def run_gadget(self, cpu: int, address: int, registers: Dict[str, int]) -> List[str]:
        """`~Ns`, save the registers (`r`), set them and RIP, trace into the
        gadget until it breaks back in, restore every register, switch back:
        at most 6 target operations."""
        if self.dump:
            raise TargetError("a kernel dump cannot execute code: the snapshot is what hv.sys last stored")
        count = self.processor_count()
        if not 0 <= cpu < count:
            raise TargetError("processor %s does not exist: the target has %d (0-%d)" % (cpu, count, count - 1))
        ops: List[str] = []
        user = int(self._call(self._pykd.getCurrentThreadId))
        if user != cpu:
            self._call(self._pykd.dbgCommand, "~%ds" % cpu)
            ops.append("~%ds" % cpu)
        try:
            saved = parse_registers(self._call(self._pykd.dbgCommand, "r") or "")
            ops.append("r")
            missing = [r for r in RESTORED_REGISTERS if r not in saved]
            if missing:
                raise TargetError("cannot save processor %d's registers (`r` gave no %s): nothing was run"
                                  % (cpu, ", ".join(missing)))
            wanted = dict(registers)
            wanted["rip"] = address
            self._call(self._pykd.dbgCommand, set_registers_command(wanted))
            ops.append("r set")
            try:
                self._call(self._pykd.trace)
                ops.append("t")
            finally:
                self._restore(self._pykd.dbgCommand,
                              set_registers_command({r: saved[r] for r in RESTORED_REGISTERS}))
                ops.append("r restore")
        finally:
            if user != cpu:
                self._restore(self._pykd.dbgCommand, "~%ds" % user)
                ops.append("~%ds" % user)
        return ops

    def registers(self, cpu: int = 0) -> Dict[str, int]:
        return self.register_values([ours for ours, _ in REGISTER_NAMES] + ["efer"], cpu)

    def register_values(self, names: Sequence[str], cpu: int = 0) -> Dict[str, int]:
        windbg_names = dict(REGISTER_NAMES)

        def read() -> Dict[str, int]:  # one processor switch; one `reg` round trip per name
            regs: Dict[str, int] = {}
            for ours in names:
                try:
                    if ours in windbg_names:
                        regs[ours] = int(self._pykd.reg(windbg_names[ours]))
                except Exception as e:
                    if _pykd_kind(e) == "other":
                        raise
                    # a register this target does not have: leave it out
            return regs
        regs = self._on_cpu(cpu, read) if any(n in windbg_names for n in names) else {}
        if "efer" in names and not self.dump:   # an MSR: read where the debugger's RDMSR is shown to run
            try:
                efer = self._msrs([IA32_EFER], cpu, counted=False)
                if IA32_EFER in efer:
                    regs["efer"] = efer[IA32_EFER]
            except TargetMsrError:
                pass   # unknown on this processor: left out, never another processor's
        return regs

    def cpuid(self, leaf: int, subleaf: int = 0, cpu: int = 0) -> Optional[Tuple[int, int, int, int]]:
        return None  # a debugger cannot execute CPUID on the target: unknown
