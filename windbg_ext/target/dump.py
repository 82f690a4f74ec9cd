"""Windows kernel crash dumps (MEMORY.DMP) as a target, read through kdmp-parser.

`python -m windbg_ext --dump MEMORY.DMP vmm` works on any OS: the dump holds
physical memory (full or bitmap format), the processor count and the
crashing processor's CONTEXT, but no symbols and no MSRs, so the hv walker
finds the driver's descriptor by scanning physical memory for its magic.

The header is checked here first (signature, dump type, run/bitmap sizes
against the file size) so that a corrupt or truncated file becomes one clear
line instead of reaching the C++ parser. `write_dump` writes the same format
(used by the tests and the emulated lab): DUMP_HEADER64 layout facts as
documented by Rekall's crashdump overlay and kdmp-parser's structure asserts.
"""
from __future__ import annotations

import os
import struct
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from windbg_ext.target.base import (Target, TargetError, TargetFormatError, TargetMemoryError, TargetMsrError,
                                    TargetSymbolError)

PAGE = 0x1000
HEADER_SIZE = 0x2000  # DUMP_HEADER64; page data (full) or the bitmap header (bitmap) follows

# DUMP_HEADER64 offsets (64-bit kernel dump)
SIGNATURE = b"PAGE"
VALID_DUMP64 = b"DU64"
OFF_DTB = 0x10
OFF_MACHINE = 0x30
OFF_PROCESSORS = 0x34
OFF_BUGCHECK = 0x38
OFF_BUGCHECK_PARAMS = 0x40
OFF_KDDEBUGGERDATA = 0x80
OFF_RUNS = 0x88           # PHYSICAL_MEMORY_DESCRIPTOR64: u32 runs, u32 pad, u64 pages, runs[]
OFF_CONTEXT = 0x348       # CONTEXT (AMD64)
OFF_EXCEPTION = 0xF00
OFF_DUMP_TYPE = 0xF98
OFF_REQUIRED_SPACE = 0xFA0
OFF_COMMENT = 0xFB0
MAX_RUNS = (OFF_CONTEXT - OFF_RUNS - 0x10) // 0x10  # the run array must end before CONTEXT
MACHINE_AMD64 = 0x8664

DUMP_TYPE_FULL = 1
DUMP_TYPE_BITMAP = 5
# Newer Windows writes bitmap-format bodies under these types too.
BITMAP_LIKE_TYPES = (5, 6, 8, 9, 10)

# Bitmap header at 0x2000
BMP_SIGNATURES = (b"SDMP", b"FDMP")
BMP_VALID = b"DUMP"
BMP_OFF_FIRST_PAGE = 0x20
BMP_OFF_PRESENT = 0x28
BMP_OFF_PAGES = 0x30
BMP_OFF_BITMAP = 0x38

# AMD64 CONTEXT offsets (winnt.h layout) of the registers `registers()` reports.
_CTX_U16 = {"cs": 0x38, "ds": 0x3A, "es": 0x3C, "fs": 0x3E, "gs": 0x40, "ss": 0x42}
_CTX_U64 = dict(zip(
    ["dr0", "dr1", "dr2", "dr3", "dr6", "dr7", "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
     "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip"],
    range(0x48, 0x100, 8)))
_CTX_EFLAGS = 0x44
_CTX_MXCSR, _CTX_MXCSR2 = 0x34, 0x118

_MAX_PAGES = 1 << 40 >> 12  # 1 TiB of physical memory: anything larger is a corrupt count


def _u32(b: bytes, off: int) -> int:
    return struct.unpack_from("<I", b, off)[0]


def _u64(b: bytes, off: int) -> int:
    return struct.unpack_from("<Q", b, off)[0]


class DumpLayout:
    """What the header says: the dump type and where each physical page sits in the file."""

    def __init__(self, dump_type: int, page_offsets: Dict[int, int], header: bytes) -> None:
        self.dump_type = dump_type
        self.page_offsets = page_offsets  # physical page address -> file offset
        self.header = header


def check_dump_file(path: str) -> DumpLayout:
    """Validates a kernel dump's header against its size; raises TargetFormatError
    naming what is wrong. Returns the page map (so reads never depend on luck)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            header = f.read(HEADER_SIZE)
            if len(header) < HEADER_SIZE:
                raise TargetFormatError("%s: truncated dump: %d bytes, the DUMP_HEADER64 alone is 0x%x bytes"
                                        % (path, size, HEADER_SIZE))
            if header[0:4] != SIGNATURE or header[4:8] != VALID_DUMP64:
                raise TargetFormatError("%s: not a 64-bit Windows kernel dump (starts with %r, expected "
                                        "b'PAGEDU64')" % (path, header[0:8]))
            dump_type = _u32(header, OFF_DUMP_TYPE)
            if dump_type == DUMP_TYPE_FULL:
                offsets = _full_dump_pages(path, header, size)
            elif dump_type in BITMAP_LIKE_TYPES:
                bmp_head = f.read(BMP_OFF_BITMAP)
                offsets = _bitmap_dump_pages(path, f, bmp_head, size)
            else:
                raise TargetFormatError("%s: dump type %d is not supported (full = 1, bitmap = 5); write a full "
                                        "or automatic/kernel memory dump" % (path, dump_type))
    except OSError as e:
        raise TargetFormatError("cannot read dump %s: %s" % (path, e.strerror or e))
    return DumpLayout(dump_type, offsets, header)


def _full_dump_pages(path: str, header: bytes, size: int) -> Dict[int, int]:
    runs = _u32(header, OFF_RUNS)
    pages = _u64(header, OFF_RUNS + 8)
    if runs == 0 or runs > MAX_RUNS:
        raise TargetFormatError("%s: full dump header has %d physical memory runs at +0x%x (expected 1..%d)"
                                % (path, runs, OFF_RUNS, MAX_RUNS))
    offsets: Dict[int, int] = {}
    file_off = HEADER_SIZE
    total = 0
    for i in range(runs):
        base, count = struct.unpack_from("<QQ", header, OFF_RUNS + 0x10 + i * 0x10)
        if count > _MAX_PAGES or base > _MAX_PAGES * 16:
            raise TargetFormatError("%s: physical memory run %d (base page 0x%x, %d pages) is absurd"
                                    % (path, i, base, count))
        total += count
        for p in range(count):
            offsets[(base + p) * PAGE] = file_off
            file_off += PAGE
    if total != pages:
        raise TargetFormatError("%s: header says %d pages but its runs add up to %d" % (path, pages, total))
    if file_off > size:
        raise TargetFormatError("%s: truncated dump: the header describes %d pages (%d bytes) but the file has "
                                "%d bytes" % (path, total, file_off, size))
    return offsets


def _bitmap_dump_pages(path: str, f, bmp_head: bytes, size: int) -> Dict[int, int]:
    if len(bmp_head) < BMP_OFF_BITMAP:
        raise TargetFormatError("%s: truncated bitmap dump: no bitmap header at 0x%x" % (path, HEADER_SIZE))
    if bmp_head[0:4] not in BMP_SIGNATURES or bmp_head[4:8] != BMP_VALID:
        raise TargetFormatError("%s: bitmap header at 0x%x starts with %r (expected SDMPDUMP or FDMPDUMP)"
                                % (path, HEADER_SIZE, bmp_head[0:8]))
    first = _u64(bmp_head, BMP_OFF_FIRST_PAGE)
    present = _u64(bmp_head, BMP_OFF_PRESENT)
    bits = _u64(bmp_head, BMP_OFF_PAGES)
    if bits == 0 or bits > _MAX_PAGES:
        raise TargetFormatError("%s: bitmap header says the bitmap covers %d pages (absurd)" % (path, bits))
    bitmap_end = HEADER_SIZE + BMP_OFF_BITMAP + (bits + 7) // 8
    if bitmap_end > size:
        raise TargetFormatError("%s: truncated dump: the %d-page bitmap ends at 0x%x, past the end of the file "
                                "(%d bytes)" % (path, bits, bitmap_end, size))
    if first < bitmap_end or first % PAGE:
        raise TargetFormatError("%s: bitmap header's first page offset 0x%x is inside the header or not "
                                "page aligned" % (path, first))
    bitmap = f.read((bits + 7) // 8)
    offsets: Dict[int, int] = {}
    file_off = first
    for byte_index, byte in enumerate(bitmap):
        if not byte:
            continue
        for bit in range(8):
            if byte >> bit & 1:
                offsets[(byte_index * 8 + bit) * PAGE] = file_off
                file_off += PAGE
    if len(offsets) != present:
        raise TargetFormatError("%s: bitmap header says %d pages are present but the bitmap sets %d"
                                % (path, present, len(offsets)))
    if file_off > size:
        raise TargetFormatError("%s: truncated dump: %d present pages end at 0x%x but the file has %d bytes"
                                % (path, present, file_off, size))
    return offsets


def coalesce(pages: Iterable[int]) -> List[Tuple[int, int]]:
    """Sorted page addresses -> contiguous (start, length) ranges."""
    ranges: List[Tuple[int, int]] = []
    for p in sorted(pages):
        if ranges and ranges[-1][0] + ranges[-1][1] == p:
            ranges[-1] = (ranges[-1][0], ranges[-1][1] + PAGE)
        else:
            ranges.append((p, PAGE))
    return ranges


class DumpTarget(Target):
    name = "dump"
    no_msrs_reason = "a crash dump holds no MSR values"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        from windbg_ext.paths import PathError, readable_file
        try:
            readable_file(path, "dump")
        except PathError as e:
            raise TargetFormatError("%s (give the path of a MEMORY.DMP)" % e)
        self.layout = check_dump_file(path)
        try:
            import kdmp_parser
        except ImportError:
            raise TargetFormatError("reading crash dumps needs kdmp-parser: pip install 'hvlab[dump]'")
        try:
            self._dump = kdmp_parser.KernelDumpParser(path)
        except Exception as e:  # the C++ parser refuses with a generic error
            raise TargetFormatError("%s: kdmp-parser cannot parse this dump (%s)" % (path, e))
        self._header = self.layout.header
        self._ranges: Optional[List[Tuple[int, int]]] = None

    # -- protocol ---------------------------------------------------------------
    def describe(self) -> str:
        kind = "full" if self.layout.dump_type == DUMP_TYPE_FULL else "bitmap"
        return "dump %s (%s, %d pages)" % (self.path, kind, len(self.layout.page_offsets))

    def processor_count(self) -> int:
        return _u32(self._header, OFF_PROCESSORS)

    def memory_ranges(self) -> List[Tuple[int, int]]:
        """Physical memory present in the dump as (start, length): what a scan may read."""
        if self._ranges is None:
            self._ranges = coalesce(self.layout.page_offsets)
        return self._ranges

    def _read_physical(self, address: int, size: int) -> bytes:
        out = bytearray()
        addr = address
        end = address + size
        while addr < end:
            page_base = addr & ~(PAGE - 1)
            if page_base not in self.layout.page_offsets:
                raise TargetMemoryError(address, size, True, "page 0x%x is not in the dump" % page_base)
            raw = self._dump.read_physical_page(page_base)
            if raw is None:
                raise TargetMemoryError(address, size, True, "kdmp-parser has no page 0x%x" % page_base)
            chunk_end = min(end, page_base + PAGE)
            out += raw[addr - page_base:chunk_end - page_base]
            addr = chunk_end
        return bytes(out)

    def _read_virtual(self, address: int, size: int) -> bytes:
        # 4-level walk over the dump's own pages from the header's DirectoryTableBase
        # (not kdmp-parser's VirtTranslate: it prints to stdout when a walk fails).
        return self._read_virtual_by_walk(address, size, _u64(self._header, OFF_DTB), 0, "dump")

    def _symbol(self, name: str) -> int:
        raise TargetSymbolError(name, "a crash dump read offline carries no symbols (the walker scans for "
                                      "the descriptor instead)")

    def _read_msr(self, msr: int, cpu: int) -> int:
        raise TargetMsrError("a crash dump holds no MSR values (MSR 0x%x on CPU %d); run this command live "
                             "in WinDbg" % (msr, cpu))

    def registers(self, cpu: int = 0) -> Dict[str, int]:
        """The crashing processor's CONTEXT (the only one a kernel dump header holds)."""
        if cpu != 0:
            raise TargetFormatError("a kernel dump header holds the context of the crashing processor only "
                                    "(asked for CPU %d)" % cpu)
        ctx = self._header[OFF_CONTEXT:]
        regs = {name: struct.unpack_from("<H", ctx, off)[0] for name, off in _CTX_U16.items()}
        regs.update({name: _u64(ctx, off) for name, off in _CTX_U64.items()})
        regs["rflags"] = _u32(ctx, _CTX_EFLAGS)
        regs["cr3"] = _u64(self._header, OFF_DTB)
        return regs

    def bugcheck(self) -> Tuple[int, Tuple[int, int, int, int]]:
        return (_u32(self._header, OFF_BUGCHECK),
                struct.unpack_from("<4Q", self._header, OFF_BUGCHECK_PARAMS))


# -- writer --------------------------------------------------------------------
def write_dump(path: str, pages: Mapping[int, bytes], kind: str = "full", dtb: int = 0, processors: int = 1,
               registers: Optional[Mapping[str, int]] = None, bugcheck: int = 0,
               bugcheck_params: Tuple[int, int, int, int] = (0, 0, 0, 0)) -> None:
    """Writes a 64-bit kernel dump (kind "full" or "bitmap") holding `pages`
    {page-aligned physical address: 4096 bytes}. Written to a temporary file and
    renamed, so a failure leaves nothing half-written."""
    if kind not in ("full", "bitmap"):
        raise ValueError("dump kind must be 'full' or 'bitmap', not %r" % kind)
    for addr, data in pages.items():
        if addr % PAGE or len(data) != PAGE:
            raise ValueError("page 0x%x: pages must be 4 KiB aligned and 4096 bytes long" % addr)
    header = bytearray(HEADER_SIZE)
    # Unused header space holds the 'PAGE' fill pattern, as Windows writes it.
    header[:] = SIGNATURE * (HEADER_SIZE // 4)
    header[0:8] = SIGNATURE + VALID_DUMP64
    struct.pack_into("<II", header, 8, 15, 19041)  # MajorVersion (0xf = free build), MinorVersion (build)
    struct.pack_into("<QQQQ", header, OFF_DTB, dtb, 0, 0, 0)
    struct.pack_into("<III", header, OFF_MACHINE, MACHINE_AMD64, processors, bugcheck)
    struct.pack_into("<I", header, OFF_BUGCHECK + 4, 0)
    struct.pack_into("<4Q", header, OFF_BUGCHECK_PARAMS, *bugcheck_params)
    struct.pack_into("<Q", header, OFF_KDDEBUGGERDATA, 0)
    ctx = bytearray(OFF_EXCEPTION - OFF_CONTEXT)
    struct.pack_into("<I", ctx, 0x30, 0x10001F)  # ContextFlags: CONTEXT_AMD64 | CONTEXT_ALL
    struct.pack_into("<I", ctx, _CTX_MXCSR, 0x1F80)
    struct.pack_into("<I", ctx, _CTX_MXCSR2, 0x1F80)  # kdmp-parser checks MxCsr == FltSave.MxCsr
    for name, value in (registers or {}).items():
        if name in _CTX_U64:
            struct.pack_into("<Q", ctx, _CTX_U64[name], value & (2 ** 64 - 1))
        elif name in _CTX_U16:
            struct.pack_into("<H", ctx, _CTX_U16[name], value & 0xFFFF)
        elif name == "rflags":
            struct.pack_into("<I", ctx, _CTX_EFLAGS, value & 0xFFFFFFFF)
    header[OFF_CONTEXT:OFF_EXCEPTION] = ctx
    header[OFF_EXCEPTION:OFF_DUMP_TYPE] = bytes(OFF_DUMP_TYPE - OFF_EXCEPTION)
    order = sorted(pages)
    if kind == "full":
        runs = coalesce(order)
        if len(runs) > MAX_RUNS:
            raise ValueError("a full dump header holds at most %d runs; these pages form %d" % (MAX_RUNS, len(runs)))
        header[OFF_RUNS:OFF_RUNS + 0x10 + MAX_RUNS * 0x10] = bytes(0x10 + MAX_RUNS * 0x10)
        struct.pack_into("<IIQ", header, OFF_RUNS, len(runs), 0, len(order))
        for i, (start, length) in enumerate(runs):
            struct.pack_into("<QQ", header, OFF_RUNS + 0x10 + i * 0x10, start // PAGE, length // PAGE)
        struct.pack_into("<I", header, OFF_DUMP_TYPE, DUMP_TYPE_FULL)
        body_parts = [bytes(pages[a]) for a in order]
        body = b"".join(body_parts)
        struct.pack_into("<Q", header, OFF_REQUIRED_SPACE, HEADER_SIZE + len(body))
        blob = bytes(header) + body
    else:
        struct.pack_into("<I", header, OFF_DUMP_TYPE, DUMP_TYPE_BITMAP)
        # The bitmap covers whole bytes: kdmp-parser reads Pages // 8 of them.
        bits = ((order[-1] // PAGE + 1) if order else 1) + 63 & ~63
        bitmap = bytearray((bits + 7) // 8)
        for a in order:
            n = a // PAGE
            bitmap[n // 8] |= 1 << (n % 8)
        bmp_len = BMP_OFF_BITMAP + len(bitmap)
        first = HEADER_SIZE + ((bmp_len + PAGE - 1) // PAGE) * PAGE
        bmp = bytearray(first - HEADER_SIZE)
        bmp[0:8] = b"SDMPDUMP"
        struct.pack_into("<QQQ", bmp, BMP_OFF_FIRST_PAGE, first, len(order), bits)
        bmp[BMP_OFF_BITMAP:bmp_len] = bitmap
        body = b"".join(bytes(pages[a]) for a in order)
        struct.pack_into("<Q", header, OFF_REQUIRED_SPACE, first + len(body))
        blob = bytes(header) + bytes(bmp) + body
    from windbg_ext.paths import write_atomically
    write_atomically(path, "dump", lambda f: f.write(blob))


def image_to_dump(image_path: str, dump_path: str, kind: str = "full", cpu: int = 0) -> int:
    """Writes the physical memory of an hvlab image as a kernel dump (DTB = CR3 of
    processor `cpu`), e.g. to try `--dump` on lab output. Returns the page count."""
    from windbg_ext.target.image import ImageTarget

    image = ImageTarget(image_path)
    try:
        pages: Dict[int, bytes] = {}
        for start, length in image.memory_ranges():
            data = image.read_physical(start, length)
            first = (start + PAGE - 1) & ~(PAGE - 1)
            for pa in range(first, start + length - PAGE + 1, PAGE):
                pages[pa] = data[pa - start:pa - start + PAGE]
        regs = image.registers(cpu)
        write_dump(dump_path, pages, kind=kind, dtb=regs.get("cr3", 0), processors=image.processor_count(),
                   registers=regs)
        return len(pages)
    finally:
        image.close()


def main(argv: Optional[List[str]] = None) -> int:
    """python -m windbg_ext.target.dump IMAGE OUT.DMP [--bitmap]: an hvlab image as a kernel dump."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    kind = "bitmap" if "--bitmap" in args else "full"
    args = [a for a in args if a != "--bitmap"]
    if len(args) != 2:
        sys.stderr.write("error: give two paths, IMAGE and OUT.DMP, not %d (usage: python -m "
                         "windbg_ext.target.dump IMAGE OUT.DMP [--bitmap])\n" % len(args))
        return 2
    from windbg_ext.paths import PathError
    try:
        n = image_to_dump(args[0], args[1], kind)
    except (TargetError, PathError, ValueError, OSError) as e:
        sys.stderr.write("error: %s\n" % e)
        return 2
    sys.stdout.write("%s: %s kernel dump, %d pages\n" % (args[1], kind, n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
