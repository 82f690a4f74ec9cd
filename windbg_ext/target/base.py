"""The one protocol every target backend implements, and its typed errors.

A backend is where bytes come from: a live kernel debugging session (pykd),
an hvlab image written by the emulated lab, or a Windows crash dump. Nothing
above this layer knows which. Backends read in large contiguous blocks,
because over KDNET each read is a round trip that costs milliseconds.
"""
from __future__ import annotations

from typing import Dict, Optional


class TargetError(Exception):
    """Anything the target cannot give; the message is one line for the user."""


class TargetMemoryError(TargetError):
    def __init__(self, address: int, size: int, physical: bool, why: str = "not present in the target"):
        kind = "physical" if physical else "virtual"
        super().__init__("cannot read %d bytes at %s address 0x%x: %s" % (size, kind, address, why))
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

    def processor_count(self) -> int:
        raise NotImplementedError

    def registers(self, cpu: int = 0) -> Dict[str, int]:
        """Register name (lower case: rip, cr0, cr4, gdtr_base, ...) -> value."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

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


def optional_symbol(target: Target, name: str) -> Optional[int]:
    try:
        return target.symbol(name)
    except TargetSymbolError:
        return None
