"""hv/layouts.py, the layout-file format, against hand-written documents (issue 16: these kill the
mutants test_layout.py's lab-backed tests let live). The expected texts and bounds are written out
here: a field lies after the 8-byte header (revision id and abort indicator, SDM 25.2) and inside
the 4 KiB region, 1, 2, 4 or 8 bytes wide."""
from __future__ import annotations

import json
import os

import pytest

from windbg_ext.hv import layouts
from windbg_ext.hv.descriptor import LayoutEntry


def doc(fields, rev="0x4", **extra):
    out = {"format": "hvlab-vmcs-layout/1", "revision_id": rev, "source": "hand", "fields": fields}
    out.update(extra)
    return out


def field(enc="0x4402", off="0x8", width=4, flags=1):
    return {"encoding": enc, "offset": off, "width": width, "flags": flags}


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """(user dir, shipped dir), both empty and private to the test."""
    user, shipped = tmp_path / "user", tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setenv("HVLAB_LAYOUTS", str(user))
    monkeypatch.setattr(layouts, "SHIPPED_DIR", str(shipped))
    return user, shipped


def test_the_document_holds_found_fields_only_in_hex():
    entries = [LayoutEntry(0x4402, 0x8, 4, 1), LayoutEntry(0x681E, 0xFF8, 8, 3), LayoutEntry(0x2800, 0x10, 8, 4)]
    assert layouts.to_document(entries, 0x12, "me") == {
        "format": "hvlab-vmcs-layout/1", "revision_id": "0x12", "source": "me",
        "fields": [{"encoding": "0x4402", "offset": "0x8", "width": 4, "flags": 1},
                   {"encoding": "0x681e", "offset": "0xff8", "width": 8, "flags": 3}]}


def test_dumps_writes_one_field_a_line():
    text = layouts.dumps(doc([field(), field("0x681e", "0x10", 8, 3)]))
    assert text == ('{\n "format": "hvlab-vmcs-layout/1",\n "revision_id": "0x4",\n "source": "hand",\n'
                    ' "fields": [\n'
                    '  {"encoding": "0x4402", "flags": 1, "offset": "0x8", "width": 4},\n'
                    '  {"encoding": "0x681e", "flags": 3, "offset": "0x10", "width": 8}\n ]\n}\n')
    assert json.loads(text) == doc([field(), field("0x681e", "0x10", 8, 3)])


@pytest.mark.parametrize("off,width", [("0x8", 1), ("0x8", 2), ("0x8", 8), ("0xff8", 8), ("0xffc", 4),
                                       ("0xfff", 1), ("0xffe", 2)])
def test_fields_up_to_the_region_edges_are_read(off, width):
    rev, entries, source = layouts.from_document(doc([field(off=off, width=width, flags=5)], "0x80"), "f.json")
    assert (rev, source) == (0x80, "hand")
    assert entries == [LayoutEntry(0x4402, int(off, 16), width, 5)]


@pytest.mark.parametrize("off,width", [("0x7", 1), ("0x0", 4), ("0xff9", 8), ("0xffd", 4), ("0x1000", 1),
                                       ("0x10", 3), ("0x10", 16), ("0x10", 0)])
def test_fields_outside_the_region_are_refused(off, width):
    with pytest.raises(layouts.LayoutFileError) as e:
        layouts.from_document(doc([field(off=off, width=width)]), "f.json")
    assert str(e.value) == "f.json: field 0x4402 at offset %s width %d lies outside a 4 KiB region" % (off, width)


@pytest.mark.parametrize("bad,message", [
    ([], "f.json is not a VMCS layout file (format 'hvlab-vmcs-layout/1' expected; write one with: "
         "layout save FILE)"),
    ({"format": "hvlab-vmcs-layout/2"}, "f.json is not a VMCS layout file (format 'hvlab-vmcs-layout/1' expected; "
                                        "write one with: layout save FILE)"),
    (doc([]), "f.json holds no fields"),
    (doc([field()], rev="4x"), "f.json: malformed layout file (ValueError: invalid literal for int() with base 16: "
                               "'4x')"),
    (doc([{"encoding": "0x4402"}]), "f.json: malformed layout file (KeyError: 'offset')"),
    (doc([field(width=None)]), "f.json: malformed layout file (TypeError: int() argument must be a string, a "
                               "bytes-like object or a real number, not 'NoneType')"),
])
def test_bad_documents_one_line(bad, message):
    with pytest.raises(layouts.LayoutFileError) as e:
        layouts.from_document(bad, "f.json")
    assert str(e.value).replace("or a number", "or a real number") == message


def test_a_document_without_a_source_reads_as_empty():
    d = doc([field()])
    del d["source"]
    assert layouts.from_document(d, "f.json")[2] == ""


def test_user_dir_default(monkeypatch):
    monkeypatch.delenv("HVLAB_LAYOUTS", raising=False)
    monkeypatch.setenv("HOME", "/nowhere")
    assert layouts.user_dir() == "/nowhere/.config/hvlab/layouts"
    monkeypatch.setenv("HVLAB_LAYOUTS", "")
    assert layouts.user_dir() == "/nowhere/.config/hvlab/layouts"


def test_installed_layouts_come_first_and_bad_files_are_skipped(dirs):
    user, shipped = dirs
    user.mkdir()
    for where, name, rev, source in ((shipped, "a.json", "0x4", "shipped"), (shipped, "b.json", "0x9", "nine"),
                                     (user, "z.json", "0x4", "mine"), (user, "a.json", "0x7", "seven")):
        (where / name).write_text(json.dumps(doc([field()], rev, source=source)))
    (user / "broken.json").write_text("{")
    (user / "notes.txt").write_text(json.dumps(doc([field()], "0x5")))
    assert [(os.path.relpath(p, str(user.parent)), r, s) for p, r, s in layouts.available()] == [
        ("user/a.json", 7, "seven"), ("user/z.json", 4, "mine"), ("shipped/a.json", 4, "shipped"),
        ("shipped/b.json", 9, "nine")]
    path, entries, source = layouts.find(4)
    assert path == str(user / "z.json") and source == "mine" and entries == [LayoutEntry(0x4402, 8, 4, 1)]
    assert layouts.find(9)[2] == "nine" and layouts.find(5) is None
    assert layouts.revision_ids() == [4, 7, 9]


def test_no_directories_no_layouts(dirs, tmp_path, monkeypatch):
    monkeypatch.setattr(layouts, "SHIPPED_DIR", str(tmp_path / "absent"))
    assert layouts.available() == [] and layouts.find(4) is None and layouts.revision_ids() == []


def test_install_writes_the_checked_fields_by_revision(dirs, tmp_path):
    user, _ = dirs
    src = tmp_path / "in.json"
    src.write_text(json.dumps(doc([field(), field("0x2800", "0x10", 8, 1)], "0x1f", source="from a box")))
    dest = layouts.install(str(src))
    assert dest == str(user / "revision-0x1f.json") and os.listdir(str(user)) == ["revision-0x1f.json"]
    with open(dest) as f:
        assert f.read() == ('{\n "format": "hvlab-vmcs-layout/1",\n "revision_id": "0x1f",\n'
                            ' "source": "from a box",\n "fields": [\n'
                            '  {"encoding": "0x4402", "flags": 1, "offset": "0x8", "width": 4},\n'
                            '  {"encoding": "0x2800", "flags": 1, "offset": "0x10", "width": 8}\n ]\n}\n')
    assert layouts.install(str(src)) == dest and os.listdir(str(user)) == ["revision-0x1f.json"]   # again: same


def test_read_file_errors_are_layout_errors(tmp_path):
    with pytest.raises(layouts.LayoutFileError) as e:
        layouts.read_file(str(tmp_path / "missing.json"))
    assert "missing.json" in str(e.value)
    (tmp_path / "x.json").write_text("[1")
    with pytest.raises(layouts.LayoutFileError) as e:
        layouts.read_file(str(tmp_path / "x.json"))
    assert "not valid JSON" in str(e.value)


def test_read_file_messages_name_the_layout_file(tmp_path):
    missing = str(tmp_path / "missing.json")
    with pytest.raises(layouts.LayoutFileError) as e:
        layouts.read_file(missing)
    assert str(e.value) == "the layout file %s does not exist" % missing
    (tmp_path / "y.json").write_text("[1]")
    with pytest.raises(layouts.LayoutFileError) as e:
        layouts.read_file(str(tmp_path / "y.json"))
    assert str(e.value) == ("%s is not a VMCS layout file (format 'hvlab-vmcs-layout/1' expected; write one with: "
                            "layout save FILE)" % (tmp_path / "y.json"))


def test_shipped_layouts_are_read_without_an_installed_directory(dirs):
    user, shipped = dirs   # user dir not created
    (shipped / "a.json").write_text(json.dumps(doc([field()], "0x4", source="shipped")))
    assert layouts.available() == [(str(shipped / "a.json"), 4, "shipped")]
