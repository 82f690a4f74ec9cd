"""The crash-dump backend: dumps written in the DUMP_HEADER64 format (full
and bitmap) read back through kdmp-parser."""
from __future__ import annotations

import struct

import pytest

from windbg_ext.target.base import TargetFormatError, TargetMemoryError, TargetMsrError, TargetSymbolError
from windbg_ext.target.dump import DumpTarget, write_dump

from .builder import AddressSpace, PhysMem

VA = 0xFFFFF80000401000


def _pages():
    mem = PhysMem(base=0x10000)
    aspace = AddressSpace(mem)
    pa = aspace.alloc_mapped(VA, 0x2000)
    mem.write(pa, bytes(range(256)) * 32)
    far = 0x7FF000  # a page far away: several runs in a full dump
    mem.pages[far] = bytearray(b"\xAB" * 0x1000)
    return mem, aspace, pa, far


@pytest.mark.parametrize("kind", ["full", "bitmap"])
def test_roundtrip_through_kdmp_parser(tmp_path, kind):
    mem, aspace, pa, far = _pages()
    path = str(tmp_path / ("m-%s.dmp" % kind))
    write_dump(path, {a: bytes(p) for a, p in mem.pages.items()}, kind=kind, dtb=aspace.cr3, processors=4,
               registers={"rip": 0xFFFFF80000123456, "rsp": 0xFFFFF80000800000, "cs": 0x10, "rflags": 0x246},
               bugcheck=0xE2, bugcheck_params=(1, 2, 3, 4))
    t = DumpTarget(path)
    assert t._dump.type.name == ("FullDump" if kind == "full" else "BMPDump")  # kdmp-parser agrees
    assert t.processor_count() == 4
    assert t.read_physical(pa + 0xFF0, 0x20) == (bytes(range(256)) * 32)[0xFF0:0x1010]  # across a page
    assert t.read_physical(far + 8, 4) == b"\xAB" * 4
    assert t.read_virtual(VA + 0x1FF0, 0x10) == bytes(range(0xF0, 0x100))
    regs = t.registers()
    assert regs["rip"] == 0xFFFFF80000123456 and regs["cs"] == 0x10 and regs["rflags"] == 0x246
    assert regs["cr3"] == aspace.cr3
    assert t.bugcheck() == (0xE2, (1, 2, 3, 4))
    assert sum(n for _, n in t.memory_ranges()) == len(mem.pages) * 0x1000
    assert t.stats.reads == 3


def test_reads_outside_the_dump_are_typed_errors(tmp_path):
    mem, aspace, pa, far = _pages()
    path = str(tmp_path / "m.dmp")
    write_dump(path, {a: bytes(p) for a, p in mem.pages.items()}, dtb=aspace.cr3)
    t = DumpTarget(path)
    with pytest.raises(TargetMemoryError) as e:
        t.read_physical(0x5000000, 8)
    assert "page 0x5000000 is not in the dump" in str(e.value)
    with pytest.raises(TargetMemoryError) as e:
        t.read_virtual(VA + 0x10000, 8)
    assert "not present" in str(e.value)
    with pytest.raises(TargetSymbolError):
        t.symbol("hv!HvDebugDescriptor")
    with pytest.raises(TargetMsrError):
        t.read_msr(0x480)


def test_header_checks(tmp_path):
    mem, aspace, pa, far = _pages()
    path = tmp_path / "m.dmp"
    write_dump(str(path), {a: bytes(p) for a, p in mem.pages.items()})
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 0x88, 100000)  # absurd run count
    bad = tmp_path / "runs.dmp"
    bad.write_bytes(bytes(data))
    with pytest.raises(TargetFormatError) as e:
        DumpTarget(str(bad))
    assert "100000 physical memory runs at +0x88" in str(e.value)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 0xF98, 3)  # unknown dump type
    bad.write_bytes(bytes(data))
    with pytest.raises(TargetFormatError) as e:
        DumpTarget(str(bad))
    assert "dump type 3 is not supported" in str(e.value)


def test_writer_refuses_bad_pages_and_leaves_nothing(tmp_path):
    path = tmp_path / "x.dmp"
    with pytest.raises(ValueError):
        write_dump(str(path), {0x1001: bytes(0x1000)})
    with pytest.raises(ValueError):
        write_dump(str(path), {0x1000: bytes(10)})
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_image_to_dump_command_bad_input(tmp_path, capsys):
    from windbg_ext.target.dump import main

    assert main([str(tmp_path / "missing.hvimg"), str(tmp_path / "out.dmp")]) == 2
    assert main(["only-one-arg"]) == 2
    err = capsys.readouterr().err
    assert "missing.hvimg does not exist" in err and "usage:" in err
    assert not (tmp_path / "out.dmp").exists()
