"""Fuzzing the parsers and the walker: corrupted descriptors, driver
structures and dump headers give a result or one clear error, never a crash."""
from __future__ import annotations

from typing import Dict, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from windbg_ext import cli
from windbg_ext.arch.paging import PagingError, translate_range
from windbg_ext.hv import descriptor as hd
from windbg_ext.target.base import Target, TargetError, TargetMemoryError, TargetSymbolError

from .builder import HvState

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_state = {}


def state() -> HvState:
    if "s" not in _state:
        _state["s"] = HvState(vcpus=2).build()
    return _state["s"]


def sizes() -> Dict[str, int]:
    """Bytes of each area, from the driver's own descriptor (its sizes come from offsetof/sizeof):
    the whole descriptor with its tables and failure record, the VMM context, the vCPU array."""
    s = state()
    d = hd.parse(s.blob, s.va["desc"])
    return {"desc": d.DescriptorSize, "vmm": d.VmmContextSize, "vcpus": d.VcpuSize * d.VcpuCount}


def test_fuzzed_areas_cover_the_driver_structures():
    """The fuzzer's areas are the structures the driver built, end to end (a stale hand-typed size
    would leave the failure record or the vCPU array unfuzzed)."""
    s = state()
    got = sizes()
    assert got == {"desc": s.facts["sizeof"]["HV_DEBUG_DESCRIPTOR"], "vmm": s.facts["sizeof"]["HV_VMM_CONTEXT"],
                   "vcpus": 2 * s.facts["sizeof"]["HV_VCPU"]}
    assert sum(got.values()) == len(s.blob)
    d = hd.parse(s.blob, s.va["desc"])
    assert d.FailureOffset and d.FailureOffset < got["desc"]  # the failure record is inside the fuzzed bytes


class PagesTarget(Target):
    """A target over a dict of physical pages (bytes), page tables included."""

    name = "pages"

    def __init__(self, pages: Dict[int, bytes], cr3: int, symbols: Dict[str, int]) -> None:
        super().__init__()
        self.pages, self.cr3, self.symbols = pages, cr3, symbols

    def _read_physical(self, address: int, size: int) -> bytes:
        out = bytearray()
        at = address
        while at < address + size:
            page = at & ~0xFFF
            if page not in self.pages:
                raise TargetMemoryError(address, size, True)
            take = min(address + size, page + 0x1000) - at
            out += self.pages[page][at - page:at - page + take]
            at += take
        return bytes(out)

    def _read_virtual(self, address: int, size: int) -> bytes:
        try:
            pieces = translate_range(address, size, self.cr3, self._read_physical)
        except PagingError as e:
            raise TargetMemoryError(address, size, False, e.why)
        return b"".join(self._read_physical(pa, n) for pa, n in pieces)

    def _symbol(self, name: str) -> int:
        if name not in self.symbols:
            raise TargetSymbolError(name)
        return self.symbols[name]

    def processor_count(self) -> int:
        return 2

    def memory_ranges(self):
        return [(pa, 0x1000) for pa in sorted(self.pages)]


def _run(target: Target, argv: List[str]):
    out: List[str] = []
    err: List[str] = []
    original = cli._opener
    cli._opener = lambda gopts, live: (lambda: target)
    try:
        code = cli.run(argv, out.append, err.append)
    finally:
        cli._opener = original
    return code, out, err


mutations = st.lists(st.tuples(st.integers(min_value=0, max_value=1 << 20), st.integers(0, 255)),
                     min_size=1, max_size=12)


@SETTINGS
@given(mutations, st.integers(min_value=0, max_value=1 << 16))
def test_descriptor_parser_on_corrupted_bytes(muts, cut):
    s = state()
    blob = bytearray(s.blob[:sizes()["desc"]])
    for off, val in muts:
        blob[off % len(blob)] = val
    cut %= len(blob)
    data = bytes(blob[:cut]) if cut < hd.HEADER_SIZE else bytes(blob)
    try:
        d = hd.parse(data, 0x1000)
    except hd.DescriptorError as e:
        assert "\n" not in str(e) and str(e)
    else:
        assert d.VcpuCount <= hd.MAX_VCPUS and d.tables_end <= len(data)


def _corrupted_pages(muts, area: str) -> Dict[int, bytes]:
    s = state()
    pages = {pa: bytearray(p) for pa, p in s.mem.pages.items()}
    base = s.pa[area]
    size = sizes()[area]
    for off, val in muts:
        pa = base + off % size
        pages[pa & ~0xFFF][pa & 0xFFF] = val
    return {pa: bytes(p) for pa, p in pages.items()}


@SETTINGS
@given(mutations, st.sampled_from(["desc", "vmm", "vcpus"]),
       st.sampled_from([["vmm"], ["vcpu", "1"], ["vmcs", "0", "--all"], ["vmcs", "1", "--diff", "0"],
                        ["vmcs", "0", "--source", "region"], ["regions"], ["msrbitmap", "1"]]))
def test_walker_on_corrupted_driver_state(muts, area, cmd):
    s = state()
    target = PagesTarget(_corrupted_pages(muts, area), s.aspace.cr3, {"hv!HvDebugDescriptor": s.va["desc"]})
    code, out, err = _run(target, ["--json"] + cmd)
    assert code in (0, 1, 2)
    text = "\n".join(err)
    assert "internal error" not in text, text
    if code == 2:
        assert len(err) == 1 and err[0].startswith("error: ")


@SETTINGS
@given(mutations, st.sampled_from(["desc", "vmm", "vcpus"]))
def test_scan_on_corrupted_driver_state(muts, area):
    s = state()
    target = PagesTarget(_corrupted_pages(muts, area), s.aspace.cr3, {})
    code, out, err = _run(target, ["vmm"])
    assert code in (0, 1, 2) and "internal error" not in "\n".join(err)


@pytest.fixture(scope="module")
def dump_bytes(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzdump")
    out = {}
    for kind in ("full", "bitmap"):
        p = state().write_dump(str(d / kind), kind)
        out[kind] = open(p, "rb").read()
    return out


header_mutations = st.lists(st.tuples(st.integers(min_value=0, max_value=0x2040), st.integers(0, 255)),
                            min_size=1, max_size=8)


@SETTINGS
@given(header_mutations, st.sampled_from(["full", "bitmap"]), st.sampled_from([None, 0x88, 0xF98, 0x2020]))
def test_dump_reader_on_corrupted_headers(dump_bytes, tmp_path, muts, kind, hot):
    from windbg_ext.target.dump import DumpTarget

    data = bytearray(dump_bytes[kind])
    for off, val in muts:
        if hot is not None:  # aim at the fields the layout depends on
            off = hot + off % 0x20
        data[off] = val
    path = tmp_path / ("m-%s.dmp" % kind)
    path.write_bytes(bytes(data))
    try:
        t = DumpTarget(str(path))
    except TargetError as e:
        assert "\n" not in str(e)
        return
    for pa, _ in (t.memory_ranges() or [])[:4]:
        try:
            t.read_physical(pa, 0x10)
        except TargetError:
            pass


@SETTINGS
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=1 << 24), st.integers(0, 255)), min_size=1,
                max_size=6), st.sampled_from([["vmm"], ["vcpu", "0"], ["vmcs", "1"], ["regions"]]))
def test_commands_on_corrupted_image_files(image2, tmp_path, muts, cmd):
    data = bytearray(open(image2, "rb").read())
    for off, val in muts:
        data[off % len(data)] = val
    path = tmp_path / "corrupt.hvimg"
    path.write_bytes(bytes(data))
    code, out, err = _run_file(["--image", str(path)] + cmd)
    assert code in (0, 1, 2) and "internal error" not in err and "Traceback" not in err
    if code == 2:
        assert err.count("\n") == 0 and err.startswith("error: ")


def _run_file(argv):
    from tests.support import run_cli
    return run_cli(argv)
