"""Bounded records of what the emulated machine saw.

A driver that loops (a failed VM entry handled as an ordinary exit, then
entered again) makes millions of VM exits: the lab keeps every count, but the
details only of the first and the last `keep` events, so memory stays bounded
however long a run lasts.
"""
from __future__ import annotations

from collections import deque
from typing import Deque, Dict, Generic, Iterator, List, Tuple, TypeVar

T = TypeVar("T")

DEFAULT_KEEP = 256


class BoundedLog(Generic[T]):
    """Events in order: every one counted, the first and the last `keep` kept.

    len() is the number of events appended (kept or not); iterating yields the
    kept ones in order; log[i:j] slices by event number and yields the kept
    events among them (events in the middle are dropped)."""

    def __init__(self, keep: int = DEFAULT_KEEP) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.keep = keep
        self._first: List[T] = []
        self._last: Deque[T] = deque(maxlen=keep)
        self.total = 0

    def append(self, item: T) -> None:
        if len(self._first) < self.keep:
            self._first.append(item)
        else:
            self._last.append(item)
        self.total += 1

    @property
    def dropped(self) -> int:
        """Events counted but not kept (between the first and the last `keep`)."""
        return self.total - len(self._first) - len(self._last)

    def clear(self) -> None:
        self._first.clear()
        self._last.clear()
        self.total = 0

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> Iterator[T]:
        yield from self._first
        yield from self._last

    def _at(self, i: int):
        """(True, event) for a kept event number i, (False, None) for a dropped one."""
        if i < len(self._first):
            return True, self._first[i]
        j = i - (self.total - len(self._last))
        if 0 <= j < len(self._last):
            return True, self._last[j]
        return False, None

    def __getitem__(self, index):
        if isinstance(index, slice):
            out = []
            for i in range(*index.indices(self.total)):
                kept, item = self._at(i)
                if kept:
                    out.append(item)
            return out
        if index < 0:
            index += self.total
        kept, item = self._at(index) if 0 <= index < self.total else (False, None)
        if not kept:
            raise IndexError("event %d is not kept (only the first and last %d are)" % (index, self.keep))
        return item

    @property
    def last(self):
        """The most recent event, or None."""
        if self._last:
            return self._last[-1]
        return self._first[-1] if self._first else None


class ExitLog(BoundedLog):
    """VM exits (emulated_lab.machine.VmExit): bounded details, and counts by
    (processor, exit reason) of every exit the driver saw, lab-induced ones apart;
    plus the current run of identical exits (same processor and reason)."""

    def __init__(self, keep: int = DEFAULT_KEEP) -> None:
        super().__init__(keep)
        self._counts: Dict[Tuple[int, int, bool], int] = {}
        self.streak = (-1, -1, 0)    # (cpu, reason, how many in a row) of exits the driver caused

    def append(self, e) -> None:
        super().append(e)
        key = (e.cpu, e.reason, e.lab_induced)
        self._counts[key] = self._counts.get(key, 0) + 1
        if not e.lab_induced:
            cpu, reason, n = self.streak
            self.streak = (cpu, reason, n + 1) if (cpu, reason) == (e.cpu, e.reason) else (e.cpu, e.reason, 1)

    def clear(self) -> None:
        super().clear()
        self._counts.clear()
        self.streak = (-1, -1, 0)

    def counts(self, lab_induced: bool = False) -> Dict[int, int]:
        """{exit reason: count} over every exit (kept or not), lab-induced ones only if asked."""
        out: Dict[int, int] = {}
        for (_cpu, reason, lab), n in self._counts.items():
            if lab_induced or not lab:
                out[reason] = out.get(reason, 0) + n
        return out

    def counts_by_cpu(self) -> Dict[Tuple[int, int], int]:
        """{(processor, exit reason): count} of the exits the driver caused."""
        out: Dict[Tuple[int, int], int] = {}
        for (cpu, reason, lab), n in self._counts.items():
            if not lab:
                out[(cpu, reason)] = out.get((cpu, reason), 0) + n
        return out
