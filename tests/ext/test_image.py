"""The hvlab image format: round trips through the real writer and reader,
and every way a file can be broken."""
from __future__ import annotations

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from windbg_ext.target.base import TargetError, TargetFormatError, TargetMemoryError, TargetMsrError, TargetSymbolError
from windbg_ext.target.image import HEADER, ImageTarget, ImageWriter

runs = st.lists(st.tuples(st.integers(0, 0x3FFFF), st.binary(min_size=1, max_size=600)), min_size=0, max_size=12)
symbols = st.dictionaries(st.from_regex(r"[a-z]{1,6}![A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
                          st.integers(0, 2 ** 64 - 1), max_size=10)


def _model(adds):
    """What physical memory should hold after the adds: later bytes win."""
    mem = {}
    for pa, data in adds:
        for i, b in enumerate(data):
            mem[pa + i] = b
    return mem


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(adds=runs, syms=symbols, regs=st.dictionaries(st.sampled_from(["rip", "cr3", "cr0", "gdtr_base"]),
                                                     st.integers(0, 2 ** 64 - 1)),
       msrs=st.dictionaries(st.integers(0, 0xFFFFFFFF), st.integers(0, 2 ** 64 - 1), max_size=8))
def test_round_trip(tmp_path, adds, syms, regs, msrs):
    w = ImageWriter()
    for pa, data in adds:
        w.add_memory(pa, data)
    for name, va in syms.items():
        w.add_symbol(name, va)
    w.add_module("hv", 0xFFFFF80001000000, 0x8000)
    w.add_cpu(regs, msrs, cpuid={(7, 0): (1, 2, 3, 2 ** 32 - 1)})
    w.meta["scenario"] = "roundtrip"
    path = str(tmp_path / "rt.hvimg")
    w.write(path)

    mem = _model(adds)
    with_target = ImageTarget(path)
    try:
        # every byte written reads back; contiguous stretches in one read
        addresses = sorted(mem)
        start = None
        for i, a in enumerate(addresses):
            if start is None:
                start = a
            if i + 1 == len(addresses) or addresses[i + 1] != a + 1:
                got = with_target.read_physical(start, a - start + 1)
                assert got == bytes(mem[x] for x in range(start, a + 1))
                start = None
        # a gap is an error, never zeros
        gaps = [a + 1 for a in addresses if a + 1 not in mem]
        for gap in gaps[:3]:
            with pytest.raises(TargetMemoryError):
                with_target.read_physical(gap, 1)
        for name, va in syms.items():
            assert with_target.symbol(name) == va
            assert with_target.symbol(name.upper()) == va  # WinDbg symbols are case-insensitive
        assert with_target.registers(0) == {k: v for k, v in regs.items()}
        for msr, value in msrs.items():
            assert with_target.read_msr(msr, 0) == value
        assert with_target.cpuid(7, 0, 0) == (1, 2, 3, 2 ** 32 - 1)
        assert with_target.cpuid(1, 0, 0) is None
        assert with_target.modules() == [{"name": "hv", "base": 0xFFFFF80001000000, "size": 0x8000}]
        assert with_target.meta == {"scenario": "roundtrip"}
        assert with_target.processor_count() == 1
    finally:
        with_target.close()


def test_read_spanning_runs_and_stats(tmp_path):
    w = ImageWriter()
    w.add_memory(0x1000, b"a" * 0x10)
    w.add_memory(0x1010, b"b" * 0x10)      # touches: merged into one run
    w.add_memory(0x1008, b"XY")           # overlaps: later bytes win
    w.add_memory(0x5000, b"c" * 4)
    w.add_cpu({}, {})
    w.write(str(tmp_path / "a.hvimg"))
    t = ImageTarget(str(tmp_path / "a.hvimg"))
    assert t.memory_ranges() == [(0x1000, 0x20), (0x5000, 4)]
    assert t.read_physical(0x1006, 6) == b"aaXYaa"
    with pytest.raises(TargetMemoryError) as e:
        t.read_physical(0x101E, 0x10)
    assert "0x1020 is not in the image" in str(e.value)
    assert t.stats.reads == 2 and t.stats.bytes == 6 + 0x10
    t.close()


def test_symbol_errors_and_bare_names(std_image):
    t = ImageTarget(std_image)
    assert t.symbol("Kd_DEFAULT_Mask") == t.symbol("nt!Kd_DEFAULT_Mask")
    with pytest.raises(TargetSymbolError) as e:
        t.symbol("nt!Kd_IHVDRIVER_Mas")
    assert "did you mean nt!Kd_IHVDRIVER_Mask" in str(e.value)
    with pytest.raises(TargetMsrError) as m:
        t.read_msr(0x123, 1)
    assert "0x123" in str(m.value) and "processor 1" in str(m.value)
    with pytest.raises(TargetError) as c:
        t.registers(5)
    assert "has 2 (0-1)" in str(c.value)


def _write_basic(path):
    w = ImageWriter()
    w.add_memory(0x2000, bytes(range(256)) * 16)
    w.add_symbol("nt!X", 0x10)
    w.add_cpu({"cr3": 0x1000}, {0x3A: 5})
    w.write(str(path))
    return open(str(path), "rb").read()


def _expect_format_error(path, fragment):
    with pytest.raises(TargetFormatError) as e:
        ImageTarget(str(path)).read_physical(0x2000, 0x1000)
    msg = str(e.value)
    assert fragment in msg, msg
    assert "\n" not in msg and "is not a usable hvlab image" in msg


def test_truncated(tmp_path):
    good = _write_basic(tmp_path / "g.hvimg")
    for cut in (0, 5, 40, HEADER.size, len(good) // 2, len(good) - 1):
        p = tmp_path / ("t%d.hvimg" % cut)
        p.write_bytes(good[:cut])
        frag = "no HVLABIMG magic" if cut < 8 else ("truncated" if cut else "magic")
        _expect_format_error(p, frag)


def test_corruptions(tmp_path):
    good = _write_basic(tmp_path / "g.hvimg")
    header = HEADER.unpack(good[:HEADER.size])
    table_off, meta_off = header[4], header[7]

    def corrupt(name, at, fragment):
        data = bytearray(good)
        data[at] ^= 0xFF
        p = tmp_path / name
        p.write_bytes(bytes(data))
        _expect_format_error(p, fragment)

    corrupt("magic", 0, "magic")
    corrupt("hdr", 20, "header checksum")
    corrupt("table", table_off + 3, "run table checksum")
    corrupt("meta", meta_off + 2, "metadata checksum")
    corrupt("data", HEADER.size + 100, "fails its checksum")  # found on first read of the run
    p = tmp_path / "trail"
    p.write_bytes(good + b"\0")
    _expect_format_error(p, "trailing bytes")


def test_wrong_version(tmp_path):
    good = bytearray(_write_basic(tmp_path / "g.hvimg"))
    struct.pack_into("<H", good, 8, 2)
    p = tmp_path / "v2.hvimg"
    p.write_bytes(bytes(good))
    _expect_format_error(p, "format version 2, this windbg_ext reads version 1")


def test_malformed_metadata_with_valid_crc(tmp_path):
    """A writer bug (valid CRCs, bad JSON content) is still one line."""
    import zlib
    from windbg_ext.target.image import _pack_header
    meta = b'{"symbols": {"nt!X": 16}, "modules": [], "cpus": []}'  # 16: not a hex string
    body = HEADER.size
    data = _pack_header(0, body, zlib.crc32(b""), body, len(meta), zlib.crc32(meta), body + len(meta)) + meta
    p = tmp_path / "m.hvimg"
    p.write_bytes(data)
    _expect_format_error(p, "metadata is malformed")


def test_missing_file(tmp_path):
    with pytest.raises(TargetError) as e:
        ImageTarget(str(tmp_path / "nope.hvimg"))
    assert "nope.hvimg does not exist" in str(e.value)


def test_writer_validates_and_is_atomic(tmp_path):
    w = ImageWriter()
    with pytest.raises(ValueError):
        w.add_memory(-1, b"x")
    with pytest.raises(ValueError):
        w.add_symbol("nt!X", 2 ** 64)
    with pytest.raises(ValueError):
        w.add_cpu({"rip": "0x10"}, {})
    w.meta["bad"] = object()
    target = tmp_path / "atomic.hvimg"
    target.write_bytes(b"previous")
    with pytest.raises(ValueError):
        w.write(str(target))
    assert target.read_bytes() == b"previous"           # nothing written half-way
    assert [p.name for p in tmp_path.iterdir()] == ["atomic.hvimg"]  # no temp file left behind


def test_virtual_reads_use_current_cpu_cr3(tmp_path):
    from .images import PageTables
    w = ImageWriter()
    pt0 = PageTables(w, table_base=0x10000)
    pt1 = PageTables(w, table_base=0x20000)
    va = 0xFFFFF80000400000
    pt0.map(va, 0x100000)
    pt1.map(va, 0x101000)
    pt0.flush()
    pt1.flush()
    w.add_memory(0x100000, b"zero" * 1024)
    w.add_memory(0x101000, b"one!" * 1024)
    w.add_cpu({"cr3": pt0.cr3}, {})
    w.add_cpu({"cr3": pt1.cr3}, {})
    w.current_cpu = 1
    w.write(str(tmp_path / "v.hvimg"))
    t = ImageTarget(str(tmp_path / "v.hvimg"))
    assert t.read_virtual(va, 4) == b"one!"
    t.current_cpu = 0
    assert t.read_virtual(va, 4) == b"zero"
    with pytest.raises(TargetMemoryError) as e:
        t.read_virtual(va + 0x1000, 4)
    assert "PTE" in str(e.value) and "0xfffff80000401000" in str(e.value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_byte_flip_is_a_format_error(tmp_path, data):
    """Every byte of the file is covered by a check (header, run table,
    metadata or run-data CRC): a flip anywhere is caught, as one line."""
    good = _write_basic(tmp_path / "g.hvimg")
    at = data.draw(st.integers(0, len(good) - 1))
    flip = data.draw(st.integers(1, 255))
    bad = bytearray(good)
    bad[at] ^= flip
    p = tmp_path / "flip.hvimg"
    p.write_bytes(bytes(bad))
    with pytest.raises(TargetFormatError) as e:
        t = ImageTarget(str(p))
        for pa, n in t.memory_ranges():
            t.read_physical(pa, n)
    assert "\n" not in str(e.value)


def test_image_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        _write_basic(tmp_path / "m.hvimg")
    finally:
        os.umask(old)
    assert (tmp_path / "m.hvimg").stat().st_mode & 0o777 == 0o644


def test_long_runs_are_stored_in_pieces(tmp_path):
    w = ImageWriter()
    data = bytes(range(251)) * 10000  # 2.5 MB: three 1 MiB pieces
    w.add_memory(0x100000, data)
    w.add_cpu({}, {})
    w.write(str(tmp_path / "p.hvimg"))
    t = ImageTarget(str(tmp_path / "p.hvimg"))
    assert len(t._runs) == 3 and t.memory_ranges() == [(0x100000, len(data))]
    assert t.read_physical(0x100000 + (1 << 20) - 5, 10) == data[(1 << 20) - 5:(1 << 20) + 5]
    assert t.read_physical(0x100000, len(data)) == data
