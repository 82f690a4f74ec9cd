"""The hvlab image: physical memory runs + metadata, written by the emulated
lab (and by tests) with ImageWriter, read by ImageTarget. Format: see
docs/image-format.md (version 1).

    +--------------------+ 0
    | header (64 bytes)  |  magic, version, where the run table / metadata are, CRCs, file size
    +--------------------+ 64
    | run data ...       |  the bytes of each physical run, back to back
    +--------------------+ run table offset
    | run table          |  run_count x 32 bytes: pa, length, file offset, CRC32 of the data
    +--------------------+ metadata offset
    | metadata (JSON)    |  symbols, modules, processors (registers, MSRs, CPUID), meta
    +--------------------+ file size

Every integer in the metadata is a "0x..." string: JSON numbers lose
precision above 2**53 in many readers, and addresses are 64-bit.
"""
from __future__ import annotations

import bisect
import json
import mmap
import os
import struct
import zlib
from typing import Any, Dict, List, Mapping, Optional, Tuple

from windbg_ext.target.base import (Target, TargetError, TargetFormatError, TargetMemoryError, TargetMsrError,
                                    TargetSymbolError)

MAGIC = b"HVLABIMG"
VERSION = 1
HEADER = struct.Struct("<8sHHIQIIQQIIQ")  # see docs/image-format.md, "Header"
RUN = struct.Struct("<QQQII")              # pa, length, file offset, crc32(data), reserved (0)
assert HEADER.size == 64 and RUN.size == 32
U64 = (1 << 64) - 1
RUN_PIECE = 1 << 20  # long runs are written as 1 MiB pieces: a first read checks one piece's CRC, not 64 MiB

Cpuid = Tuple[int, int, int, int]


def _hex(v: int) -> str:
    return "0x%x" % v


def _u64(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64:
        raise ValueError("%s must be an int in 0..2**64-1, not %r" % (what, value))
    return value


def _cpuid_key(key: Any) -> str:
    if isinstance(key, tuple):
        leaf, subleaf = key
        return "%s:%s" % (_hex(_u64(leaf, "CPUID leaf")), _hex(_u64(subleaf, "CPUID subleaf")))
    return "%s:0x0" % _hex(_u64(key, "CPUID leaf"))


class ImageWriter:
    """Collects memory and metadata, then `write(path)` writes the image
    atomically (temp file in the same directory + rename): a reader never
    sees half a file.

    Overlapping add_memory calls: the later bytes win."""

    def __init__(self) -> None:
        self._writes: List[Tuple[int, bytes]] = []  # in call order; merged by write()
        self.symbols: Dict[str, int] = {}
        self.modules: List[Dict[str, Any]] = []
        self.cpus: List[Dict[str, Any]] = []
        self.meta: Dict[str, Any] = {}
        self.current_cpu = 0

    # -- collecting ---------------------------------------------------------
    def add_memory(self, pa: int, data: bytes) -> None:
        _u64(pa, "physical address")
        data = bytes(data)
        if data and pa + len(data) - 1 > U64:
            raise ValueError("memory at 0x%x + %d bytes runs past 2**64" % (pa, len(data)))
        if data:
            self._writes.append((pa, data))

    def _runs(self) -> List[Tuple[int, bytes]]:
        """Writes merged into sorted runs that neither overlap nor touch; where
        writes overlap, the later one wins. Linear in the bytes written."""
        spans: List[List[int]] = []  # [start, end) of the union, sorted
        for pa, data in sorted(self._writes, key=lambda w: w[0]):
            end = pa + len(data)
            if spans and pa <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([pa, end])
        starts = [a for a, _ in spans]
        buffers = [bytearray(b - a) for a, b in spans]
        for pa, data in self._writes:  # call order: later bytes overwrite earlier ones
            i = bisect.bisect_right(starts, pa) - 1
            buffers[i][pa - starts[i]:pa - starts[i] + len(data)] = data
        return [(a, bytes(b)) for a, b in zip(starts, buffers)]

    def add_symbol(self, name: str, va: int) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("symbol name must be a non-empty string like 'nt!Kd_DEFAULT_Mask'")
        self.symbols[name] = _u64(va, "address of " + name)

    def add_module(self, name: str, base: int, size: int) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("module name must be a non-empty string")
        self.modules.append({"name": name, "base": _u64(base, "module base"), "size": _u64(size, "module size")})

    def add_cpu(self, regs: Mapping[str, int], msrs: Mapping[int, int],
                cpuid: Optional[Mapping[Any, Cpuid]] = None) -> int:
        """Adds the next processor; returns its index. `regs`: lower-case names
        (rip, rsp, cr0, cr3, cr4, efer, gdtr_base, ...). `cpuid`: {leaf or
        (leaf, subleaf): (eax, ebx, ecx, edx)}."""
        cpu = {
            "regs": {str(k).lower(): _u64(v, "register " + str(k)) for k, v in regs.items()},
            "msrs": {int(k): _u64(v, "MSR 0x%x" % int(k)) for k, v in msrs.items()},
            "cpuid": {},
        }
        for key, values in (cpuid or {}).items():
            if len(values) != 4:
                raise ValueError("CPUID %r must be (eax, ebx, ecx, edx)" % (key,))
            cpu["cpuid"][_cpuid_key(key)] = [_u64(v, "CPUID value") for v in values]
        self.cpus.append(cpu)
        return len(self.cpus) - 1

    # -- writing ------------------------------------------------------------
    def _metadata(self) -> bytes:
        doc = {
            "symbols": {k: _hex(v) for k, v in self.symbols.items()},
            "modules": [{"name": m["name"], "base": _hex(m["base"]), "size": _hex(m["size"])} for m in self.modules],
            "cpus": [{"regs": {k: _hex(v) for k, v in c["regs"].items()},
                      "msrs": {_hex(k): _hex(v) for k, v in sorted(c["msrs"].items())},
                      "cpuid": {k: [_hex(x) for x in v] for k, v in c["cpuid"].items()}} for c in self.cpus],
            "current_cpu": int(self.current_cpu),
            "meta": self.meta,
        }
        try:
            return json.dumps(doc, sort_keys=True).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise ValueError("image meta must be JSON-serialisable: %s" % e)

    def write(self, path: str, what: str = "image") -> None:
        """Writes the image to `path` whole or not at all. A path that is not a
        regular file or a new name (a device, FIFO, symlink, directory) is
        refused untouched with PathError (see windbg_ext/paths.py)."""
        from windbg_ext.paths import write_atomically

        metadata = self._metadata()

        def fill(f) -> None:
            f.write(b"\0" * HEADER.size)
            table = bytearray()
            offset = HEADER.size
            runs = [(pa + at, data[at:at + RUN_PIECE]) for pa, data in self._runs()
                    for at in range(0, len(data), RUN_PIECE)]
            for pa, run in runs:
                f.write(run)
                table += RUN.pack(pa, len(run), offset, zlib.crc32(run), 0)
                offset += len(run)
            run_table_offset = offset
            f.write(table)
            meta_offset = offset + len(table)
            f.write(metadata)
            file_size = meta_offset + len(metadata)
            f.seek(0)
            f.write(_pack_header(len(runs), run_table_offset, zlib.crc32(table),
                                 meta_offset, len(metadata), zlib.crc32(metadata), file_size))

        write_atomically(os.fspath(path), what, fill)


def _pack_header(run_count: int, run_table_offset: int, run_table_crc: int, meta_offset: int,
                 meta_size: int, meta_crc: int, file_size: int) -> bytes:
    fields = [MAGIC, VERSION, HEADER.size, 0, run_table_offset, run_count, run_table_crc,
              meta_offset, meta_size, meta_crc, 0, file_size]
    header_crc = zlib.crc32(HEADER.pack(*fields))  # computed with its own field zero
    fields[10] = header_crc
    return HEADER.pack(*fields)


class _Run:
    __slots__ = ("pa", "length", "offset", "crc", "checked")

    def __init__(self, pa: int, length: int, offset: int, crc: int) -> None:
        self.pa, self.length, self.offset, self.crc = pa, length, offset, crc
        self.checked = False


class ImageTarget(Target):
    """An hvlab image as a target. Virtual addresses translate through the
    page tables in the image, with CR3/CR4 of the current processor."""

    name = "image"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self._file = None
        self._map: Optional[mmap.mmap] = None
        from windbg_ext.paths import PathError, open_for_reading
        try:
            self._file = open_for_reading(self.path, "image")
        except PathError as e:
            raise TargetError(str(e))
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    # -- parsing ------------------------------------------------------------
    def _bad(self, why: str) -> TargetFormatError:
        return TargetFormatError("%s is not a usable hvlab image: %s" % (self.path, why))

    def _load(self) -> None:
        f = self._file
        size = os.fstat(f.fileno()).st_size
        head = f.read(HEADER.size)
        if head[:8] != MAGIC:
            raise self._bad("no HVLABIMG magic at offset 0 (not an image written by the emulated lab or ImageWriter)")
        if len(head) < HEADER.size:
            raise self._bad("truncated: the file ends inside the %d-byte header" % HEADER.size)
        (_, version, header_size, _flags, table_off, run_count, table_crc,
         meta_off, meta_size, meta_crc, header_crc, file_size) = HEADER.unpack(head)
        if version != VERSION:
            raise self._bad("format version %d, this windbg_ext reads version %d (update windbg_ext or re-write "
                            "the image)" % (version, VERSION))
        if zlib.crc32(head[:52] + b"\0\0\0\0" + head[56:]) != header_crc or header_size != HEADER.size:
            raise self._bad("header checksum mismatch (the file is corrupt)")
        if size != file_size:
            what = "truncated" if size < file_size else "has trailing bytes"
            raise self._bad("%s: %d bytes on disk, the header says %d" % (what, size, file_size))
        if table_off + run_count * RUN.size > meta_off or meta_off + meta_size != file_size:
            raise self._bad("header points outside the file (corrupt)")
        self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        table = self._map[table_off:table_off + run_count * RUN.size]
        if zlib.crc32(table) != table_crc:
            raise self._bad("run table checksum mismatch (the file is corrupt)")
        metadata = self._map[meta_off:meta_off + meta_size]
        if zlib.crc32(metadata) != meta_crc:
            raise self._bad("metadata checksum mismatch (the file is corrupt)")
        self._runs: List[_Run] = []
        prev_end = -1
        for i in range(run_count):
            pa, length, offset, crc, _ = RUN.unpack_from(table, i * RUN.size)
            if offset < HEADER.size or offset + length > table_off or pa < prev_end or length == 0:
                raise self._bad("run %d (pa 0x%x, %d bytes) is out of place (corrupt)" % (i, pa, length))
            prev_end = pa + length
            self._runs.append(_Run(pa, length, offset, crc))
        self._starts = [r.pa for r in self._runs]
        try:
            self._parse_metadata(json.loads(metadata.decode("utf-8")))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise self._bad("metadata is malformed (%s: %s)" % (type(e).__name__, e))

    def _parse_metadata(self, doc: Dict[str, Any]) -> None:
        def num(s: Any) -> int:
            if not isinstance(s, str) or not s.startswith("0x"):
                raise ValueError("expected a 0x-prefixed hex string, got %r" % (s,))
            return int(s, 16)

        self._symbols = {str(k): num(v) for k, v in doc["symbols"].items()}
        self._symbols_lower = {k.lower(): v for k, v in self._symbols.items()}
        self._modules = [{"name": str(m["name"]), "base": num(m["base"]), "size": num(m["size"])}
                         for m in doc["modules"]]
        self._cpus = []
        for c in doc["cpus"]:
            cpuid = {}
            for key, values in c.get("cpuid", {}).items():
                leaf, subleaf = key.split(":")
                cpuid[(num(leaf), num(subleaf))] = tuple(num(v) for v in values)
            self._cpus.append({"regs": {str(k): num(v) for k, v in c["regs"].items()},
                               "msrs": {num(k): num(v) for k, v in c["msrs"].items()},
                               "cpuid": cpuid})
        self.meta: Dict[str, Any] = dict(doc.get("meta", {}))
        current = int(doc.get("current_cpu", 0))
        self.current_cpu = current if 0 <= current < len(self._cpus) else 0

    # -- the protocol -------------------------------------------------------
    def describe(self) -> str:
        return "image %s" % self.path

    def _data(self, run: _Run, start: int, stop: int) -> bytes:
        """Bytes [start, stop) of a run (offsets inside the run)."""
        m = self._map
        if not run.checked:  # checked on first use: opening stays cheap for big images
            if zlib.crc32(m[run.offset:run.offset + run.length]) != run.crc:  # type: ignore[index]
                raise self._bad("data of the run at physical 0x%x fails its checksum (corrupt)" % run.pa)
            run.checked = True
        return m[run.offset + start:run.offset + stop]  # type: ignore[index]

    def _read_physical(self, address: int, size: int) -> bytes:
        if size < 0 or address < 0:
            raise TargetMemoryError(address, size, True, "negative address or size")
        out = bytearray()
        at, end = address, address + size
        i = bisect.bisect_right(self._starts, at) - 1
        while at < end:
            if i < 0 or i >= len(self._runs) or not self._runs[i].pa <= at < self._runs[i].pa + self._runs[i].length:
                raise TargetMemoryError(address, size, True, "physical 0x%x is not in the image" % at)
            run = self._runs[i]
            take = min(end, run.pa + run.length) - at
            out += self._data(run, at - run.pa, at - run.pa + take)
            at += take
            i += 1
        return bytes(out)

    def _read_virtual(self, address: int, size: int) -> bytes:
        regs = self.registers(self.current_cpu)
        if "cr3" not in regs:
            raise TargetMemoryError(address, size, False, "the image records no CR3 for processor %d"
                                    % self.current_cpu)
        return self._read_virtual_by_walk(address, size, regs["cr3"], regs.get("cr4", 0), "image")

    def _symbol(self, name: str) -> int:
        key = name.strip().lower()
        if key in self._symbols_lower:
            return self._symbols_lower[key]
        if "!" not in key:  # a bare name: accept it when exactly one module has it
            hits = [v for k, v in self._symbols_lower.items() if k.split("!", 1)[-1] == key]
            if len(hits) == 1:
                return hits[0]
        import difflib
        close = difflib.get_close_matches(name, list(self._symbols), n=3)
        hint = ("did you mean %s?" % ", ".join(close)) if close else \
            "the image has %d symbols; none matches" % len(self._symbols)
        raise TargetSymbolError(name, hint)

    def _cpu(self, cpu: int) -> Dict[str, Any]:
        if not isinstance(cpu, int) or not 0 <= cpu < len(self._cpus):
            if not self._cpus:
                raise TargetError("the image records no processors")
            raise TargetError("processor %s does not exist: the image has %d (0-%d)"
                              % (cpu, len(self._cpus), len(self._cpus) - 1))
        return self._cpus[cpu]

    def _read_msr(self, msr: int, cpu: int) -> int:
        msrs = self._cpu(cpu)["msrs"]
        if msr not in msrs:
            raise TargetMsrError("MSR 0x%x was not recorded for processor %d in %s" % (msr, cpu, self.path))
        return msrs[msr]

    def processor_count(self) -> int:
        return len(self._cpus)

    def registers(self, cpu: int = 0) -> Dict[str, int]:
        return dict(self._cpu(cpu)["regs"])

    def cpuid(self, leaf: int, subleaf: int = 0, cpu: int = 0) -> Optional[Cpuid]:
        return self._cpu(cpu)["cpuid"].get((leaf, subleaf))  # type: ignore[return-value]

    def modules(self) -> List[Dict[str, Any]]:
        return [dict(m) for m in self._modules]

    def symbols(self) -> Dict[str, int]:
        return dict(self._symbols)

    def memory_ranges(self) -> List[Tuple[int, int]]:
        ranges: List[Tuple[int, int]] = []
        for r in self._runs:  # pieces of one run come back as one range
            if ranges and ranges[-1][0] + ranges[-1][1] == r.pa:
                ranges[-1] = (ranges[-1][0], ranges[-1][1] + r.length)
            else:
                ranges.append((r.pa, r.length))
        return ranges

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._file is not None:
            self._file.close()
            self._file = None
