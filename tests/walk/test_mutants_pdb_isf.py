"""hv/pdb_isf.py without converting a real PDB (issue 16: its mutants; tests/walk/test_symbols.py converts the
real one). The PDB reader's two fixes are fed hand-made CodeView records (LF_NESTTYPE 0x1510: leaf (2), pad (2),
type index (4), NUL-terminated name; pad bytes in CodeView are LF_PAD 0xF0..0xFF), with volatility3's own
methods replaced by recorders; the cache is checked against its documented names: <pdb stem>-<first 32 hex
digits of the PDB's SHA-256>.json in the cache folder."""
from __future__ import annotations

import hashlib
import json
import os
import struct
import sys

import pytest

from windbg_ext.hv import pdb_isf
from windbg_ext.hv.symbols import SymbolsError

pdbconv = pytest.importorskip("volatility3.framework.symbols.windows.pdbconv")


# -- the reader's fixes -----------------------------------------------------------------------------------------
class _Layer:
    def __init__(self, data):
        self.data = data

    def read(self, offset, n):
        assert 0 <= offset and offset + n <= len(self.data), (offset, n)
        return self.data[offset:offset + n]


class _Module:
    layer_name = "pdb"


def _reader(data=b"", **attributes):
    """The fixed reader class, made without volatility3's constructor (it would open a PDB)."""
    reader = pdb_isf._reader_class().__new__(pdb_isf._reader_class())
    reader._context = type("Context", (), {"layers": {"pdb": _Layer(data)}})()   # volatility3's `context`
    for name, value in attributes.items():
        setattr(reader, name, value)
    return reader


def _nest(name, pad=b"\xf2\xf1", after=b""):
    return struct.pack("<H", 0x1510) + pad + struct.pack("<I", 0x1234) + name + after


@pytest.mark.parametrize("record,length,consumed", [
    (_nest(b"Inner\0"), 14, 14),                    # 8 + "Inner" + its NUL
    (_nest(b"Inner\0\0\0"), 16, 14),                # padding NULs after the name: the first NUL ends it
    (_nest(b"\0", after=b"\xf2\xf1\x0d\x15"), 13, 9),  # an empty name: its NUL alone (then padding, a field)
    (_nest(b"Inner", after=b"\0"), 13, 13),         # no NUL inside the record: the record's length counts
    (_nest(b"", after=b"\0"), 8, 8),                # no name at all
    (_nest(b"N" * 300 + b"\0", after=b"\0" * 7), 316, 309),   # a long name (C++ templates): all of it
])
def test_nested_type_records_are_skipped_whole(record, length, consumed):
    reader = _reader(b"\xaa" * 4 + record)
    assert reader.consume_type(_Module(), 4, length) == ((None, None, None), consumed)


def test_other_records_go_to_volatility3(monkeypatch):
    calls = []
    monkeypatch.setattr(pdbconv.PdbReader, "consume_type",
                        lambda self, module, offset, length: calls.append((module, offset, length)) or "theirs")
    module = _Module()
    reader = _reader(b"\xaa" * 4 + struct.pack("<H", 0x1203) + bytes(14))   # LF_FIELDLIST
    assert reader.consume_type(module, 4, 16) == "theirs" and calls == [(module, 4, 16)]


def test_field_lists_lose_the_nested_type_entries(monkeypatch):
    seen = []
    monkeypatch.setattr(pdbconv.PdbReader, "convert_fields",
                        lambda self, fields: seen.append((fields, self.types[fields])) or {"x": {}})
    member = ("LF_MEMBER", "x", "offset 0")
    reader = _reader(types={7: ("LF_FIELDLIST", None, [member, (None, None, None), member]), 8: ("LF_X", "y", None)})
    assert reader.convert_fields(7) == {"x": {}}
    assert seen == [(7, ("LF_FIELDLIST", None, [member, member]))]
    reader.convert_fields(8)                         # not a list: left as it is
    assert seen[-1] == (8, ("LF_X", "y", None))


@pytest.mark.parametrize("header", [None, {"read": True}])
def test_the_last_section_is_offered_twice_while_symbols_are_read(monkeypatch, header):
    during, dbi_reads = [], []
    monkeypatch.setattr(pdbconv.PdbReader, "read_symbol_stream",
                        lambda self: during.append(list(self._sections)) or "symbols")
    monkeypatch.setattr(pdbconv.PdbReader, "read_dbi_stream", lambda self: dbi_reads.append(1))
    reader = _reader(_dbiheader=header, _sections=["text", "rdata", "data"])
    assert reader.read_symbol_stream() == "symbols"
    assert during == [["text", "rdata", "data", "data"]] and reader._sections == ["text", "rdata", "data"]
    assert dbi_reads == ([1] if header is None else [])


def test_without_volatility3(monkeypatch):
    # as if not installed: the module cannot be imported (None in sys.modules), nor found on its package
    monkeypatch.setitem(sys.modules, "volatility3.framework.symbols.windows.pdbconv", None)
    monkeypatch.delattr(sys.modules["volatility3.framework.symbols.windows"], "pdbconv")
    with pytest.raises(SymbolsError) as e:
        pdb_isf._reader_class()
    assert str(e.value) == ("reading a PDB needs volatility3 (pip install 'hvlab[symbols]' or pip install "
                            "volatility3), or give an ISF .json converted elsewhere")


# -- convert_pdb -------------------------------------------------------------------------------------------------
def _converting(monkeypatch, outcome):
    """A reader class recording how it is made; get_json() returns or raises `outcome`."""
    made = []

    class Reader:
        def __init__(self, context, location, name):
            made.append((context, location, name))

        def get_json(self):
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
    monkeypatch.setattr(pdb_isf, "_reader_class", lambda: Reader)
    return made


def test_convert_pdb_opens_the_file_by_url(monkeypatch, tmp_path):
    from volatility3.framework.interfaces.context import ContextInterface

    made = _converting(monkeypatch, {"symbols": {}})
    monkeypatch.chdir(tmp_path)
    assert pdb_isf.convert_pdb("sub/drv.pdb") == {"symbols": {}}
    [(context, location, name)] = made
    assert isinstance(context, ContextInterface)
    assert location == "file://%s/sub/drv.pdb" % tmp_path and name == "drv.pdb"


@pytest.mark.parametrize("error,why", [
    (ValueError("bad stream\nmore detail"), "ValueError: bad stream"),    # first line only
    (KeyError(), "KeyError: ?"),                                          # no text at all
])
def test_convert_pdb_failures_in_one_line(monkeypatch, error, why):
    _converting(monkeypatch, error)
    with pytest.raises(SymbolsError) as e:
        pdb_isf.convert_pdb("/x/drv.pdb")
    assert str(e.value) == "volatility3 cannot convert /x/drv.pdb (%s)" % why


def test_convert_pdb_passes_symbols_errors_through(monkeypatch):
    _converting(monkeypatch, SymbolsError("as it was"))
    with pytest.raises(SymbolsError) as e:
        pdb_isf.convert_pdb("/x/drv.pdb")
    assert str(e.value) == "as it was"


# -- the cache ---------------------------------------------------------------------------------------------------
DOC = {"symbols": {"DriverEntry": {"address": 4096}}, "user_types": {}}


@pytest.fixture
def pdb(tmp_path):
    path = tmp_path / "drv.pdb"
    path.write_bytes(b"Microsoft C/C++ MSF 7.00\r\n\x1aDS" + bytes(range(256)))
    return str(path)


def _cache_name(pdb):
    with open(pdb, "rb") as f:
        return "drv-%s.json" % hashlib.sha256(f.read()).hexdigest()[:32]


def _counting(monkeypatch):
    conversions = []
    monkeypatch.setattr(pdb_isf, "convert_pdb", lambda path: conversions.append(path) or DOC)
    return conversions


def test_converted_once_then_read_from_the_cache(monkeypatch, pdb, tmp_path):
    conversions = _counting(monkeypatch)
    cache = str(tmp_path / "cache" / "isf")                 # does not exist yet: made
    expected = os.path.join(cache, _cache_name(pdb))
    assert pdb_isf.isf_for_pdb(pdb, cache) == (DOC, expected)
    assert os.listdir(cache) == [os.path.basename(expected)]    # no temporary file left
    with open(expected, encoding="utf-8") as f:
        assert json.load(f) == DOC
    assert pdb_isf.isf_for_pdb(pdb, cache) == (DOC, expected) and conversions == [pdb]


def test_a_damaged_cache_entry_is_converted_again(monkeypatch, pdb, tmp_path):
    conversions = _counting(monkeypatch)
    cache = str(tmp_path)                                    # exists already
    expected = os.path.join(cache, _cache_name(pdb))
    with open(expected, "w") as f:
        f.write("{not json")
    assert pdb_isf.isf_for_pdb(pdb, cache) == (DOC, expected) and conversions == [pdb]
    with open(expected, encoding="utf-8") as f:
        assert json.load(f) == DOC


def test_an_unwritable_cache_is_said_not_fatal(monkeypatch, pdb, tmp_path):
    _counting(monkeypatch)
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    assert pdb_isf.isf_for_pdb(pdb, str(blocked)) == (DOC, "not cached: %s is not writable" % blocked)
