"""The one protocol every target backend implements, and its typed errors.

A backend is where bytes come from: a live kernel debugging session (pykd),
an hvlab image written by the emulated lab, or a Windows crash dump. Nothing
above this layer knows which. Backends read in large contiguous blocks,
because over KDNET each read is a round trip that costs milliseconds.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple
from windbg_ext.arch.paging import PagingError, translate_range


class TargetError(Exception):
    """Anything the target cannot give; the message is one line for the user."""


class TargetMemoryError(TargetError):
    def __init__(self, address: int, size: int, physical: bool, why: str = "not present in the target"):
        kind = "physical" if physical else "virtual"
        super().__init__("cannot read %d bytes at %s address 0x%x: %s" % (size, kind, address, why))
        self.why = why  # the reason alone, for a caller that names the address itself
        self.address = address
        self.size = size
        self.physical = physical


class TargetSymbolError(TargetError):
    def __init__(self, name: str, hint: str = ""):
        msg = "symbol %s not found" % name
        if hint:
            msg += ": " + hint
        super().__init__(msg)
        self.name = name


class TargetMsrError(TargetError):
    pass


class TargetFormatError(TargetError):
    """A corrupt or unsupported image/dump."""


class ReadStats:
    """Counts target reads: the cost that matters over KDNET."""

    def __init__(self) -> None:
        self.reads = 0
        self.bytes = 0
        self.msr_reads = 0
        self.symbol_lookups = 0

    def as_dict(self) -> Dict[str, int]:
        return {"reads": self.reads, "bytes": self.bytes,
                "msr_reads": self.msr_reads, "symbol_lookups": self.symbol_lookups}

    def line(self) -> str:
        return "%d reads, %d bytes, %d MSR reads, %d symbol lookups" % (
            self.reads, self.bytes, self.msr_reads, self.symbol_lookups)


class Target:
    """Base class of backends. Subclasses implement the _raw methods; the
    public methods count every round trip in `stats`."""

    name = "target"
    # What a target can do, asked by callers instead of testing `name`:
    live = False            # a running system seen through a debugger (memory may be mid-update;
                            # an active VMCS's page is not its current values, SDM 25.11.1; run_gadget works)
    no_msrs_reason: Optional[str] = None  # why this kind of target holds no MSR values, when it holds none

    def __init__(self) -> None:
        self.stats = ReadStats()

    # -- the protocol -------------------------------------------------------
    def read_physical(self, address: int, size: int) -> bytes:
        self.stats.reads += 1
        self.stats.bytes += size
        return self._read_physical(address, size)

    def read_virtual(self, address: int, size: int) -> bytes:
        self.stats.reads += 1
        self.stats.bytes += size
        return self._read_virtual(address, size)

    def symbol(self, name: str) -> int:
        """Address of `module!name` (e.g. `nt!Kd_IHVDRIVER_Mask`)."""
        self.stats.symbol_lookups += 1
        return self._symbol(name)

    def read_msr(self, msr: int, cpu: int = 0) -> int:
        self.stats.msr_reads += 1
        return self._read_msr(msr, cpu)

    def read_msrs(self, msrs: Sequence[int], cpu: int = 0) -> Dict[int, int]:
        """Several MSRs of one processor; those that cannot be read are left
        out. Backends that must switch processors (pykd) switch once."""
        values: Dict[int, int] = {}
        for msr in msrs:
            try:
                values[msr] = self.read_msr(msr, cpu)
            except TargetMsrError:
                pass
        return values

    def processor_count(self) -> int:
        raise NotImplementedError

    def registers(self, cpu: int = 0) -> Dict[str, int]:
        """Register name (lower case: rip, cr0, cr4, gdtr_base, ...) -> value."""
        raise NotImplementedError

    def register_values(self, names: Sequence[str], cpu: int = 0) -> Dict[str, int]:
        """Only the named registers (those the target has). Backends where each
        register is a round trip (pykd) read just these."""
        regs = self.registers(cpu)
        return {n: regs[n] for n in names if n in regs}

    def describe(self) -> str:
        return self.name

    def run_gadget(self, cpu: int, address: int, registers: Dict[str, int]) -> List[str]:
        """Makes processor `cpu` execute the code at `address` with `registers`
        set, until it breaks back into the debugger, then restores every
        register it had. Returns the target operations it took (for --stats
        and benchmarks). Only a live target can."""
        raise TargetError("%s cannot execute code: it is not a live debugging session" % self.describe())

    # -- optional: backends that know more override these -------------------
    def cpuid(self, leaf: int, subleaf: int = 0, cpu: int = 0) -> Optional[Tuple[int, int, int, int]]:
        """(eax, ebx, ecx, edx) the target recorded for CPUID(leaf, subleaf) on
        processor `cpu`, or None when the target cannot say (e.g. live pykd:
        a debugger cannot execute CPUID on the target)."""
        return None

    def modules(self) -> List[Dict[str, Any]]:
        """[{name, base, size}] of loaded modules, when the backend knows them."""
        return []

    def memory_ranges(self) -> Optional[List[Tuple[int, int]]]:
        """[(physical address, length)] present in the target, for scanning
        (e.g. for the driver's descriptor magic); None when unknown."""
        return None

    # -- backends implement -------------------------------------------------
    def _read_physical(self, address: int, size: int) -> bytes:
        raise NotImplementedError

    def _read_virtual(self, address: int, size: int) -> bytes:
        raise NotImplementedError

    def _symbol(self, name: str) -> int:
        raise NotImplementedError

    def _read_msr(self, msr: int, cpu: int) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # -- shared by the backends that hold physical memory only (image, dump) --
    def _read_virtual_by_walk(self, address: int, size: int, cr3: int, cr4: int, where: str) -> bytes:
        """Virtual bytes through a 4-level page-table walk from cr3 over _read_physical;
        `where` names the backend's memory in errors ("image", "dump")."""
        try:
            pieces = translate_range(address, size, cr3, self._read_physical, cr4)
        except PagingError as e:
            raise TargetMemoryError(address, size, False, e.why)
        except TargetMemoryError as e:
            raise TargetMemoryError(address, size, False, "a page table is not in the %s (%s)" % (where, e))
        return b"".join(self._read_physical(pa, n) for pa, n in pieces)


def optional_symbol(target: Target, name: str) -> Optional[int]:
    try:
        return target.symbol(name)
    except TargetSymbolError:
        return None
