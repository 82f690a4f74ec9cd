"""A PDB converted to Volatility 3's ISF JSON, once, with volatility3's own
converter (the optional `symbols` extra: pip install hvlab[symbols]).

Two gaps of volatility3 2.x's PdbReader on lld-linked driver PDBs, measured
here, are closed by a subclass (its public methods, no copied code):
- LF_NESTTYPE (0x1510) records in field lists (ntddk.h's nested unions in
  DEVICE_OBJECT, IRP, ...) raise "Unhandled leaf_type": they name a nested
  type and carry no member, so they are skipped.
- A symbol in the PDB's last section (lld puts .data/.bss last) is dropped by
  its `segment < len(sections)` test: the last section is offered twice
  while the symbol stream is read.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Dict, Tuple

from windbg_ext.hv.symbols import SymbolsError

LF_NESTTYPE = 0x1510   # CodeView leaf: nested type definition in a field list


def _reader_class():
    try:
        from volatility3.framework.symbols.windows import pdbconv
    except ImportError:
        raise SymbolsError("reading a PDB needs volatility3 (pip install 'hvlab[symbols]' or pip install "
                           "volatility3), or give an ISF .json converted elsewhere")

    class DriverPdbReader(pdbconv.PdbReader):  # type: ignore[misc, valid-type]
        def consume_type(self, module, offset, length):
            layer = self.context.layers[module.layer_name]
            if int.from_bytes(layer.read(offset, 2), "little") == LF_NESTTYPE:
                # leaf (2), pad (2), type index (4), name (NUL-terminated, any length: a C++ name can pass
                # 256 bytes); `length` is what is left of the field list, at most a 64 KiB record
                name = layer.read(offset + 8, max(0, length - 8))
                end = name.find(b"\0")
                return (None, None, None), 8 + (end + 1 if end >= 0 else len(name))
            return super().consume_type(module, offset, length)

        def convert_fields(self, fields):
            leaf, name, items = self.types[fields]
            if isinstance(items, list):
                self.types[fields] = (leaf, name, [f for f in items if f[2] is not None])
            return super().convert_fields(fields)

        def read_symbol_stream(self):
            if not self._dbiheader:
                self.read_dbi_stream()
            sections = self._sections
            if sections:
                sections.append(sections[-1])
            try:
                return super().read_symbol_stream()
            finally:
                if sections:
                    sections.pop()

    return DriverPdbReader


def convert_pdb(path: str) -> Dict[str, Any]:
    """ISF document for a PDB file (slow: seconds). Raises SymbolsError."""
    reader_class = _reader_class()
    from volatility3.framework import contexts

    try:
        reader = reader_class(contexts.Context(), "file://" + os.path.abspath(path), os.path.basename(path))
        return reader.get_json()
    except SymbolsError:
        raise
    except Exception as e:  # volatility3 raises many kinds on a bad PDB
        raise SymbolsError("volatility3 cannot convert %s (%s: %s)" % (path, type(e).__name__,
                                                                       (str(e).splitlines() or ["?"])[0]))


def isf_for_pdb(path: str, cache: str) -> Tuple[Dict[str, Any], str]:
    """(ISF document, cache file) for a PDB, converting it only when its content is new."""
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:32]
    cached = os.path.join(cache, "%s-%s.json" % (os.path.splitext(os.path.basename(path))[0], digest))
    if os.path.isfile(cached):
        try:
            with open(cached, "r", encoding="utf-8") as f:
                return json.load(f), cached
        except ValueError:
            pass  # a damaged cache entry: convert again
    doc = convert_pdb(path)
    try:
        os.makedirs(cache, exist_ok=True)
        tmp = cached + ".tmp%d" % os.getpid()
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, cached)
    except OSError:
        return doc, "not cached: %s is not writable" % cache
    return doc, cached
