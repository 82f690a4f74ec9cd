"""hv/symbols.py on hand-made ISF documents and files, without converting a PDB (issue 16: its mutants;
tests/walk/test_symbols.py converts the real sevendays PDB, minutes a mutant). Every expected value is
worked out here from the ISF written in the test: C type sizes of x64 Windows (LLP64), the messages
word for word, difflib's ordering of equally close names (highest ratio first, ties by name, last first)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from windbg_ext.hv import symbols
from windbg_ext.hv.symbols import Field, SymbolsError, describe_type, from_isf, load_symbol_file, pointee, read_json

UINT = {"kind": "base", "name": "unsigned int"}
USHORT = {"kind": "base", "name": "unsigned short"}
# C sizes on x64 Windows (LLP64: long is 4 bytes), typed in, not read from the module
BASE_SIZES = {"char": 1, "unsigned char": 1, "signed char": 1, "short": 2, "unsigned short": 2, "int": 4,
              "unsigned int": 4, "long": 4, "unsigned long": 4, "long long": 8, "unsigned long long": 8,
              "pointer": 8, "void": 0, "bool": 1, "_Bool": 1, "wchar_t": 2, "float": 4, "double": 8}
PDB_MAGIC = b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\x00\x00\x00"


def doc(user_types=None, symbols_=None, **top):
    out = {"user_types": {} if user_types is None else user_types, "symbols": {} if symbols_ is None else symbols_}
    out.update(top)
    return out


def struct_type(size, **members):
    return {"kind": "struct", "size": size, "fields": {n: {"offset": off, "type": t} for n, (off, t) in members.items()}}


def named(names):
    """A table of module "drv" whose structs are `names` (each 8 bytes, no members)."""
    return from_isf(doc({n: struct_type(8) for n in names}), "ISF drv.json", "drv")


# --- Struct.field ---------------------------------------------------------------------------------------

def test_a_member_is_found_with_its_offset_and_type():
    s = from_isf(doc({"S": struct_type(0x10, a=(0, UINT), b=(8, USHORT))}), "ISF x.json", "drv").struct("S")
    assert (s.name, s.size) == ("S", 0x10)
    assert s.fields == {"a": Field("a", 0, UINT), "b": Field("b", 8, USHORT)}
    assert s.field("b") == Field("b", 8, USHORT) and s.field("a") == Field("a", 0, UINT)


def test_a_missing_member_names_the_three_closest():
    s = from_isf(doc({"S": struct_type(0x20, abcd1=(0, UINT), abcd2=(4, UINT), abcd3=(8, UINT), abcd4=(12, UINT),
                                       zzzzz=(16, UINT))}), "ISF x.json", "drv").struct("S")
    with pytest.raises(SymbolsError) as e:
        s.field("abcd")
    assert str(e.value) == "struct S has no member 'abcd' (did you mean abcd4, abcd3, abcd2?)"


def test_a_missing_member_with_nothing_close_lists_the_first_twelve():
    members = {"m%02d" % i: (4 * i, UINT) for i in range(13)}
    s = from_isf(doc({"S": struct_type(52, **members)}), "ISF x.json", "drv").struct("S")
    with pytest.raises(SymbolsError) as e:
        s.field("zzz")
    assert str(e.value) == ("struct S has no member 'zzz' (members: m00, m01, m02, m03, m04, m05, m06, m07, m08, "
                            "m09, m10, m11)")


# --- SymbolTable ----------------------------------------------------------------------------------------

def test_a_table_keeps_what_it_was_given():
    d = doc({"S": struct_type(4, a=(0, UINT))}, {"g": {"address": 0x3000}}, base_types={"long": {"size": 8}})
    t = from_isf(d, "ISF /x/drv.json")
    assert t.module == "drv" and t.source == "ISF /x/drv.json" and t.converted == ""
    assert list(t.structs) == ["S"] and t.structs["S"].fields == {"a": Field("a", 0, UINT)}
    assert t.symbols == {"g": 0x3000}
    assert t.base_sizes == dict(BASE_SIZES, long=8)


def test_a_struct_is_found_by_its_name_or_its_tag():
    t = named(["_X", "Y", "__Z", "K", "_K"])
    assert t.struct("X").name == "_X" and t.struct("_X").name == "_X" and t.struct("Y").name == "Y"
    assert t.struct("K").name == "K" and t.struct("_K").name == "_K"   # the name itself first
    assert t.has_struct("X") and t.has_struct("Y") and t.has_struct("__Z")
    assert not t.has_struct("_Y")      # a name with "_" is not tried with another "_"
    assert not t.has_struct("_Z")      # ... even when "__Z" exists
    assert not t.has_struct("W")


def test_a_missing_struct_names_the_three_closest():
    t = named(["abcd1", "abcd2", "abcd3", "abcd4", "zzzzz"])
    with pytest.raises(SymbolsError) as e:
        t.struct("abcd")
    assert str(e.value) == "the symbols of drv define no struct 'abcd' (did you mean abcd4, abcd3, abcd2?)"


def test_a_missing_struct_with_nothing_close_says_only_that():
    t = named(["abcd1"])
    with pytest.raises(SymbolsError) as e:
        t.struct("zzz")
    assert str(e.value) == "the symbols of drv define no struct 'zzz'"


def test_list_structs_is_sorted():
    assert symbols.list_structs(named(["b", "_a", "a"])) == ["_a", "a", "b"]


# --- SymbolTable.size_of --------------------------------------------------------------------------------

def sized():
    d = doc({"S": struct_type(0x18), "U": {"kind": "union", "size": 6, "fields": {}}},
            base_types={"long": {"size": 8}, "": {"size": 3}})
    return from_isf(d, "ISF x.json", "drv")


@pytest.mark.parametrize("t,size", [
    ({"kind": "pointer", "subtype": {"kind": "struct", "name": "S"}}, 8),
    ({"kind": "pointer"}, 8),
    ({"kind": "struct", "name": "S"}, 0x18),
    ({"kind": "union", "name": "U"}, 6),
    ({"kind": "array", "count": 4, "subtype": UINT}, 16),
    ({"kind": "array", "count": 3, "subtype": {"kind": "struct", "name": "S"}}, 0x48),
    ({"kind": "array", "subtype": UINT}, 0),            # no count: an empty array
    ({"kind": "enum", "name": "E"}, 4),
    ({"kind": "bitfield", "type": USHORT, "bit_position": 3, "bit_length": 2}, 2),
    (UINT, 4),
    ({"kind": "base", "name": "long"}, 8),               # the file's base_types win
    ({"kind": "base", "name": "unsigned long long"}, 8),
    ({}, 3),                                             # no kind, no name: the base type named "" of the file
])
def test_size_of(t, size):
    got = sized().size_of(t)
    assert got == size and type(got) is int


def test_size_of_an_unknown_base_type_says_its_name():
    with pytest.raises(SymbolsError) as e:
        sized().size_of({"kind": "base", "name": "mystery"})
    assert str(e.value) == "type mystery of module drv has no known size"
    with pytest.raises(SymbolsError) as e:
        sized().size_of({"kind": "array", "count": 2, "subtype": {"kind": "base", "name": "mystery"}})
    assert str(e.value) == "type mystery of module drv has no known size"
    with pytest.raises(SymbolsError) as e:
        sized().size_of({"kind": "bitfield", "type": {"kind": "base", "name": "mystery"}})
    assert str(e.value) == "type mystery of module drv has no known size"
    with pytest.raises(SymbolsError) as e:
        named([]).size_of({"kind": "base"})
    assert str(e.value) == "type ? of module drv has no known size"


def test_size_of_an_unknown_struct_is_the_struct_error():
    with pytest.raises(SymbolsError) as e:
        sized().size_of({"kind": "struct", "name": "Nope"})
    assert str(e.value) == "the symbols of drv define no struct 'Nope'"


# --- describe_type, pointee -----------------------------------------------------------------------------

VCPU = {"kind": "struct", "name": "__vcpu_t"}


@pytest.mark.parametrize("t,text", [
    ({"kind": "pointer", "subtype": VCPU}, "__vcpu_t *"),
    ({"kind": "pointer", "subtype": {"kind": "pointer", "subtype": VCPU}}, "__vcpu_t **"),
    ({"kind": "pointer"}, "void *"),
    ({"kind": "array", "count": 4, "subtype": UINT}, "unsigned int[4]"),
    ({"kind": "array", "count": 2, "subtype": {"kind": "pointer", "subtype": VCPU}}, "__vcpu_t *[2]"),
    ({"kind": "array"}, "?[0]"),
    ({"kind": "bitfield", "type": USHORT}, "unsigned short"),
    ({"kind": "bitfield"}, "?"),
    (VCPU, "__vcpu_t"),
    ({"kind": "base"}, "?"),
    ({"kind": "enum", "name": 7}, "7"),
])
def test_describe_type(t, text):
    assert describe_type(t) == text


def test_pointee():
    assert pointee({"kind": "pointer", "subtype": VCPU}) == VCPU
    assert pointee({"kind": "pointer"}) is None
    assert pointee({"kind": "array", "subtype": VCPU}) is None
    assert pointee(VCPU) is None


# --- from_isf -------------------------------------------------------------------------------------------

NOT_ISF = ("ISF x.json is not an ISF symbol file (Volatility 3 JSON with user_types and symbols); give the "
           "driver's .pdb or its ISF .json")


@pytest.mark.parametrize("d", [
    [], {"symbols": {}}, {"user_types": [], "symbols": {}}, {"user_types": {}, "symbols": []}, "text",
])
def test_not_isf_is_said(d):
    with pytest.raises(SymbolsError) as e:
        from_isf(d, "ISF x.json")
    assert str(e.value) == NOT_ISF


def test_symbols_may_be_missing():
    t = from_isf({"user_types": {}}, "ISF x.json", "drv")
    assert t.symbols == {} and t.structs == {}


def test_only_usable_base_types_are_taken():
    d = doc(base_types={"long": {"size": 8}, "text": {"size": "8"}, "odd": 7, "nosize": {}, "char": {"size": 2}})
    assert from_isf(d, "ISF x.json").base_sizes == dict(BASE_SIZES, long=8, char=2)
    assert from_isf(doc(base_types=None), "ISF x.json").base_sizes == BASE_SIZES


def test_only_structs_and_unions_are_kept_in_order():
    d = doc({"E": {"kind": "enum", "size": 4, "constants": {"A": 0}}, "S": struct_type(8, a=(0, UINT)),
             "odd": 5, "F": {"kind": "function"}, "U": {"kind": "union", "size": 4, "fields": {"x": {
                 "offset": 0, "type": UINT}, "": {"offset": 0, "type": UINT}}},
             "bare": {"kind": "struct"}})
    t = from_isf(d, "ISF x.json", "drv")
    assert list(t.structs) == ["S", "U", "bare"]
    assert [(s.name, s.size, s.fields) for s in t.structs.values()] == [
        ("S", 8, {"a": Field("a", 0, UINT)}), ("U", 4, {"x": Field("x", 0, UINT)}), ("bare", 0, {})]


def test_only_symbols_with_an_address_are_kept():
    d = doc(symbols_={"a": {"address": 16}, "b": {"type": UINT}, "c": 5, "d": {"address": "32"}})
    assert from_isf(d, "ISF x.json").symbols == {"a": 16, "d": 32}


@pytest.mark.parametrize("d,why", [
    (doc({"S": {"kind": "struct", "size": 4, "fields": {"a": {"type": UINT}}}}), "KeyError: 'offset'"),
    (doc({"S": {"kind": "struct", "size": 4, "fields": {"a": {"offset": 0}}}}), "KeyError: 'type'"),
    (doc({"S": {"kind": "struct", "size": 4, "fields": {"a": {"offset": "x", "type": UINT}}}}),
     "ValueError: invalid literal for int() with base 10: 'x'"),
    (doc({"S": {"kind": "struct", "size": "big", "fields": {}}}),
     "ValueError: invalid literal for int() with base 10: 'big'"),
    (doc(symbols_={"g": {"address": "0x10"}}), "ValueError: invalid literal for int() with base 10: '0x10'"),
])
def test_malformed_isf_is_said(d, why):
    with pytest.raises(SymbolsError) as e:
        from_isf(d, "ISF x.json")
    assert str(e.value) == "ISF x.json: malformed ISF (%s)" % why


@pytest.mark.parametrize("d,why", [
    (doc({"S": {"kind": "struct", "size": 4, "fields": [1]}}), "AttributeError: 'list' object has no attribute 'items'"),
    (doc(base_types=["int"]), "AttributeError: 'list' object has no attribute 'items'"),
    (doc(metadata=["windows"]), "AttributeError: 'list' object has no attribute 'get'"),
    (doc(metadata={"windows": "pdb"}), "AttributeError: 'str' object has no attribute 'get'"),
])
def test_containers_of_the_wrong_type_are_malformed_isf(d, why):
    """A list where ISF has an object: one line, no traceback."""
    with pytest.raises(SymbolsError) as e:
        from_isf(d, "ISF x.json")
    assert str(e.value) == "ISF x.json: malformed ISF (%s)" % why


def pdb_named(database):
    return {"windows": {"pdb": {"database": database}}}


@pytest.mark.parametrize("metadata,source,module", [
    (pdb_named("sevendays.pdb"), "ISF /x/drv.json", "sevendays"),       # the PDB the ISF names first
    (pdb_named("a.b.pdb"), "ISF /x/drv.json", "a.b"),
    (pdb_named("dir/sevendays.pdb"), "ISF /x/drv.json", "sevendays"),
    (pdb_named(""), "ISF /x/drv.json", "drv"),
    ({"windows": {"pdb": {}}}, "ISF /x/drv.json", "drv"),
    ({"windows": {"pdb": None}}, "ISF /x/drv.json", "drv"),
    ({"windows": None}, "ISF /x/drv.json", "drv"),
    ({"linux": {}}, "ISF /x/drv.json", "drv"),
    (None, "ISF /x/drv.v2.json", "drv"),
    (None, "ISF drv.json", "drv"),              # a bare file name: not "ISF drv"
    (None, "PDB drv.pdb", "drv"),
    (None, "ISF my drv.json", "my drv"),
    (None, "drv.json", "drv"),                  # no kind word
])
def test_the_module_is_named_by_the_pdb_or_the_file(metadata, source, module):
    d = doc() if metadata is None else doc(metadata=metadata)
    t = from_isf(d, source)
    assert t.module == module and t.source == source


def test_a_module_name_given_wins():
    t = from_isf(doc(metadata=pdb_named("sevendays.pdb")), "ISF /x/drv.json", "given")
    assert t.module == "given"


# --- read_json ------------------------------------------------------------------------------------------

def write(path, data):
    with open(str(path), "wb") as f:
        f.write(data)
    return str(path)


def test_read_json_reads_utf8(tmp_path):
    p = write(tmp_path / "m.json", '{"name": "caf\u00e9"}'.encode("utf-8"))
    assert read_json(p, "the map") == {"name": "caf\u00e9"}


class Mine(Exception):
    pass


def test_read_json_refusals_name_what_and_path(tmp_path):
    missing = str(tmp_path / "none.json")
    with pytest.raises(SymbolsError) as e:
        read_json(missing, "the map")
    assert type(e.value) is SymbolsError and str(e.value) == "the map %s does not exist" % missing
    with pytest.raises(Mine) as e:
        read_json(str(tmp_path), "the layout file", Mine)
    assert str(e.value) == "the layout file %s is a directory: give a file inside it" % tmp_path
    bad = write(tmp_path / "bad.json", b"not json")
    with pytest.raises(Mine) as e:
        read_json(bad, "the map", Mine)
    assert str(e.value) == "the map %s is not valid JSON (Expecting value: line 1 column 1 (char 0))" % bad
    binary = write(tmp_path / "bin.json", b"\xff{}")
    with pytest.raises(SymbolsError) as e:
        read_json(binary, "the map")
    assert str(e.value) == ("the map %s is not valid JSON ('utf-8' codec can't decode byte 0xff in position 0: "
                            "invalid start byte)" % binary)


def test_read_json_says_why_it_cannot_read(tmp_path, monkeypatch):
    """An OSError after the path was checked (the file removed in between): its strerror."""
    monkeypatch.setattr(symbols, "readable_file", lambda path, what: path)
    missing = str(tmp_path / "gone.json")
    with pytest.raises(Mine) as e:
        read_json(missing, "the map", Mine)
    assert str(e.value) == "cannot read the map %s: No such file or directory" % missing


def in_ascii_locale(code):
    """Runs `code` in a Python whose locale encoding is ASCII (LC_ALL=C, UTF-8 mode off), importing the
    windbg_ext this test imports (a mutant set in MUTANT_UNDER_TEST stays set). -> its stdout."""
    import windbg_ext
    root = os.path.dirname(os.path.dirname(os.path.abspath(windbg_ext.__file__)))
    env = dict(os.environ, LC_ALL="C", PYTHONUTF8="0", PYTHONPATH=root)
    env.pop("PYTHONIOENCODING", None)
    probe = "import locale; assert locale.getpreferredencoding(False).lower() not in ('utf-8', 'utf8')\n"
    r = subprocess.run([sys.executable, "-c", probe + code], env=env, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")
    return r.stdout.decode("ascii").strip()


def test_read_json_reads_utf8_whatever_the_locale(tmp_path):
    p = write(tmp_path / "m.json", '{"name": "caf\u00e9"}'.encode("utf-8"))
    assert read_json(p, "the map") == {"name": "caf\u00e9"}
    out = in_ascii_locale("from windbg_ext.hv.symbols import read_json, SymbolsError\n"
                          "try: print(ascii(read_json(%r, 'the map')))\n"
                          "except SymbolsError as e: print(ascii(str(e)))\n" % p)
    assert out == ascii({"name": "caf\u00e9"})


# --- cache_dir ------------------------------------------------------------------------------------------

def test_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HVLAB_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert symbols.cache_dir() == str(tmp_path / "c" / "isf")
    monkeypatch.setenv("HVLAB_CACHE", "")
    assert symbols.cache_dir() == str(tmp_path / "home" / ".cache" / "hvlab" / "isf")
    monkeypatch.delenv("HVLAB_CACHE")
    assert symbols.cache_dir() == str(tmp_path / "home" / ".cache" / "hvlab" / "isf")


# --- load_symbol_file -----------------------------------------------------------------------------------

ISF_DOC = {"user_types": {"S": struct_type(8, a=(4, UINT))}, "symbols": {"g": {"address": 0x40}},
           "metadata": pdb_named("sevendays.pdb")}


def json_bytes(d):
    import json
    return json.dumps(d).encode("utf-8")


def test_load_an_isf_file(tmp_path):
    p = write(tmp_path / "drv.json", json_bytes(ISF_DOC))
    t = load_symbol_file(p)
    assert (t.module, t.source, t.converted, t.symbols) == ("sevendays", "ISF " + p, "", {"g": 0x40})
    assert t.struct("S").fields == {"a": Field("a", 4, UINT)}
    assert load_symbol_file(p, "given").module == "given"


def test_a_bare_file_name_names_the_module(tmp_path, monkeypatch):
    """The module of an ISF that names no PDB is the file the user gave: "drv", not "ISF drv"."""
    write(tmp_path / "drv.json", json_bytes({"user_types": {}, "symbols": {}}))
    monkeypatch.chdir(tmp_path)
    t = load_symbol_file("drv.json")
    assert (t.module, t.source) == ("drv", "ISF drv.json")
    with pytest.raises(SymbolsError) as e:
        t.struct("S")
    assert str(e.value) == "the symbols of drv define no struct 'S'"


def test_load_refuses_a_path_in_one_line(tmp_path):
    missing = str(tmp_path / "none.json")
    with pytest.raises(SymbolsError) as e:
        load_symbol_file(missing)
    assert str(e.value) == "symbol file %s does not exist (give the driver's .pdb or an ISF .json)" % missing
    with pytest.raises(SymbolsError) as e:
        load_symbol_file(str(tmp_path))
    assert str(e.value) == ("symbol file %s is a directory: give a file inside it (give the driver's .pdb or an "
                            "ISF .json)" % tmp_path)


def test_load_says_neither_pdb_nor_json(tmp_path):
    bad = write(tmp_path / "x.sym", b"\x00\x01garbage")
    with pytest.raises(SymbolsError) as e:
        load_symbol_file(bad)
    assert str(e.value) == "%s is neither a PDB nor ISF JSON (Expecting value: line 1 column 1 (char 0))" % bad
    text = write(tmp_path / "y.sym", b"hello")
    with pytest.raises(SymbolsError) as e:
        load_symbol_file(text)
    assert str(e.value) == "%s is neither a PDB nor ISF JSON (Expecting value: line 1 column 1 (char 0))" % text
    binary = write(tmp_path / "z.sym", b"\xff\xfe{}")
    with pytest.raises(SymbolsError) as e:
        load_symbol_file(binary)
    assert str(e.value) == ("%s is neither a PDB nor ISF JSON ('utf-8' codec can't decode byte 0xff in position 0: "
                            "invalid start byte)" % binary)
    other = write(tmp_path / "w.json", b'{"hello": 1}')
    with pytest.raises(SymbolsError) as e:
        load_symbol_file(other)
    assert str(e.value) == ("ISF %s is not an ISF symbol file (Volatility 3 JSON with user_types and symbols); "
                            "give the driver's .pdb or its ISF .json" % other)


def test_load_reads_utf8_whatever_the_locale(tmp_path):
    d = {"user_types": {"caf\u00e9": struct_type(4)}, "symbols": {}, "metadata": pdb_named("drv.pdb")}
    p = write(tmp_path / "drv.json", json_bytes(d).replace(b"\\u00e9", "\u00e9".encode("utf-8")))
    assert list(load_symbol_file(p).structs) == ["caf\u00e9"]
    out = in_ascii_locale("from windbg_ext.hv.symbols import load_symbol_file, SymbolsError\n"
                          "try: print(ascii(list(load_symbol_file(%r).structs)))\n"
                          "except SymbolsError as e: print(ascii(str(e)))\n" % p)
    assert out == ascii(["caf\u00e9"])


@pytest.mark.parametrize("module,expected", [(None, "sevendays"), ("given", "given")])
def test_a_pdb_is_converted_through_the_cache(tmp_path, monkeypatch, module, expected):
    from windbg_ext.hv import pdb_isf
    calls = []

    def converted(path, cache):
        calls.append((path, cache))
        return ISF_DOC, "/cache/sevendays-0123.json"

    monkeypatch.setattr(pdb_isf, "isf_for_pdb", converted)
    monkeypatch.setenv("HVLAB_CACHE", str(tmp_path / "c"))
    pdb = write(tmp_path / "drv.pdb", PDB_MAGIC + bytes(64))
    t = load_symbol_file(pdb, module)
    assert calls == [(pdb, str(tmp_path / "c" / "isf"))]
    assert (t.module, t.source, t.converted, t.symbols) == (expected, "PDB " + pdb, "/cache/sevendays-0123.json",
                                                           {"g": 0x40})
    assert t.struct("S").fields == {"a": Field("a", 4, UINT)}


def test_only_the_msf_magic_makes_a_pdb(tmp_path, monkeypatch):
    """The magic is compared byte for byte, at the start: the same words in other case are read as JSON."""
    from windbg_ext.hv import pdb_isf
    monkeypatch.setattr(pdb_isf, "isf_for_pdb", lambda path, cache: (ISF_DOC, "/c.json"))
    assert load_symbol_file(write(tmp_path / "a.pdb", b"Microsoft C/C++ MSF 7.00")).converted == "/c.json"
    lower = write(tmp_path / "b.pdb", b"microsoft c/c++ msf 7.00\r\n")
    with pytest.raises(SymbolsError) as e:
        load_symbol_file(lower)
    assert str(e.value) == "%s is neither a PDB nor ISF JSON (Expecting value: line 1 column 1 (char 0))" % lower
