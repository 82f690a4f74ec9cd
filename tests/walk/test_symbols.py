"""Symbols of a driver that is not hv.sys: its lld-linked PDB converted to ISF
by volatility3 (for real), cross-checked against llvm-pdbutil, cached; ISF
files read as they are; bad symbol files refused in one line."""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess

import pytest

from tests.support import run_cli


def _pdbutil():
    found = shutil.which("llvm-pdbutil") or (sorted(glob.glob("/usr/lib/llvm-*/bin/llvm-pdbutil")) or [None])[-1]
    assert found, "llvm-pdbutil is part of the llvm package (tools/bootstrap.sh installs it)"
    return found


def _pdbutil_members(pdb, struct):
    """{member: offset} of a struct as llvm-pdbutil reads the PDB (an independent reader)."""
    text = subprocess.run([_pdbutil(), "dump", "--types", pdb], check=True, capture_output=True, text=True).stdout
    m = re.search(r"LF_STRUCTURE \[size = \d+\] `%s`\s+vtable: [^\n]*field list: (0x[0-9A-F]+)" % re.escape(struct),
                  text)
    assert m, struct
    block = re.search(r"%s \| LF_FIELDLIST[^\n]*\n((?:\s+- [^\n]*\n)+)" % m.group(1), text).group(1)
    return {name: int(off) for name, off in re.findall(r"name = `(\w+)`.*?offset = (\d+)", block)}


def test_pdb_types_match_an_independent_reader(sevendays):
    from windbg_ext.hv.symbols import load_symbol_file

    t = load_symbol_file(sevendays["pdb"])
    assert t.module == "sevendays" and t.converted.endswith(".json")
    for struct in ("__vcpu_t", "__vmm_context_t"):
        ours = {f.name: f.offset for f in t.struct(struct).fields.values()}
        assert ours == _pdbutil_members(sevendays["pdb"], struct)
    # g_vmm_context lives in lld's last section, which volatility3's reader alone drops
    assert "g_vmm_context" in t.symbols and "DriverEntry" in t.symbols


def test_plain_volatility3_fails_on_this_pdb(sevendays):
    """The two gaps hv/pdb_isf.py closes, shown on the real PDB with volatility3's own reader."""
    from volatility3.framework import contexts
    from volatility3.framework.symbols.windows import pdbconv

    reader = pdbconv.PdbReader(contexts.Context(), "file://" + os.path.abspath(sevendays["pdb"]), "sevendays.pdb")
    with pytest.raises(TypeError, match="Unhandled leaf_type"):
        reader.get_json()       # LF_NESTTYPE in ntddk.h's field lists
    reader = pdbconv.PdbReader(contexts.Context(), "file://" + os.path.abspath(sevendays["pdb"]), "sevendays.pdb")
    reader.read_symbol_stream()
    assert "g_vmm_context" not in reader.symbols and "DriverEntry" in reader.symbols


def test_conversion_is_cached(sevendays, monkeypatch):
    from windbg_ext.hv import pdb_isf
    from windbg_ext.hv.symbols import load_symbol_file

    first = load_symbol_file(sevendays["pdb"])

    def refuse(path):
        raise AssertionError("converted again")

    monkeypatch.setattr(pdb_isf, "convert_pdb", refuse)
    again = load_symbol_file(sevendays["pdb"])
    assert again.converted == first.converted and again.symbols == first.symbols


def test_isf_json_is_read_as_it_is(sevendays, tmp_path):
    from windbg_ext.hv.symbols import load_symbol_file

    converted = load_symbol_file(sevendays["pdb"]).converted
    isf = str(tmp_path / "sevendays.json")
    shutil.copy(converted, isf)
    code, out, err = run_cli(["--symbols", isf, "--json", "map"])
    assert code == 0, err
    data = json.loads(out)
    assert data["module"] == "sevendays" and data["symbols"] == "ISF %s" % isf
    assert data["roles"]["vmcs_pa"]["member"] == "vmcs_physical"


@pytest.mark.parametrize("content,message", [
    (None, "does not exist"),  # windbg_ext/paths.py: which kind of path, not "not found" for a directory too
    (b"\x00\x01garbage", "neither a PDB nor ISF JSON"),
    (b'{"hello": 1}', "is not an ISF symbol file"),
    (b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\x00\x00\x00" + bytes(64), "cannot convert"),
])
def test_bad_symbol_files_one_line(tmp_path, content, message):
    path = str(tmp_path / "x.sym")
    if content is not None:
        with open(path, "wb") as f:
            f.write(content)
    code, out, err = run_cli(["--symbols", path, "map"])
    assert code == 2 and err.count("\n") == 0 and "Traceback" not in err
    assert message in err, err


def test_commands_without_symbols_say_so(sevendays):
    code, out, err = run_cli(["map"])
    assert code == 2 and "--symbols FILE" in err
