"""Types and global symbols of a driver that publishes no debug descriptor.

Offline they come from a symbol file (`--symbols FILE`): Volatility 3's
Intermediate Symbol Format (ISF JSON), or a PDB converted to ISF once
(hv/pdb_isf.py, the optional `symbols` extra) and cached. Live they come from
the PDB WinDbg loaded, through pykd's typeInfo (hv/pykd_types.py). Both give
the same small model: struct layouts by name and symbol RVAs.

Pure apart from `load_symbol_file` (reads the file, maybe converts a PDB).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, NamedTuple, Optional

from windbg_ext.paths import PathError, readable_file
from windbg_ext.target.base import TargetError

POINTER_SIZE = 8
# ISF base types have sizes in the file; these cover hand-written ISF without them
BASE_SIZES = {"char": 1, "unsigned char": 1, "signed char": 1, "short": 2, "unsigned short": 2, "int": 4,
              "unsigned int": 4, "long": 4, "unsigned long": 4, "long long": 8, "unsigned long long": 8,
              "pointer": 8, "void": 0, "bool": 1, "_Bool": 1, "wchar_t": 2, "float": 4, "double": 8}


class SymbolsError(TargetError):
    """A symbol file or type that cannot be used; one line for the user."""


class Field(NamedTuple):
    name: str
    offset: int
    type: Dict[str, Any]   # ISF type descriptor: {"kind": "base"|"pointer"|"struct"|"array"|"enum"|..., ...}


class Struct:
    def __init__(self, name: str, size: int, fields: Dict[str, Field]) -> None:
        self.name = name
        self.size = size
        self.fields = fields

    def field(self, name: str) -> Field:
        f = self.fields.get(name)
        if f is None:
            import difflib
            close = difflib.get_close_matches(name, list(self.fields), n=3)
            raise SymbolsError("struct %s has no member %r%s" % (
                self.name, name, (" (did you mean %s?)" % ", ".join(close)) if close
                else " (members: %s)" % ", ".join(list(self.fields)[:12])))
        return f


class SymbolTable:
    """Struct layouts and symbol RVAs of one module."""

    def __init__(self, module: str, structs: Dict[str, Struct], symbols: Dict[str, int],
                 base_sizes: Dict[str, int], source: str) -> None:
        self.module = module
        self.structs = structs
        self.symbols = symbols          # name -> RVA (offset from the module base)
        self.base_sizes = base_sizes
        self.source = source            # what to tell the user: "ISF x.json", "PDB x.pdb"
        self.converted = ""             # the cached ISF a PDB was converted to

    def _lookup(self, name: str) -> Optional[Struct]:
        """By name, or by its tag: `typedef struct _X {...} X` is `_X` in a PDB (the typedef is an alias)."""
        s = self.structs.get(name)
        if s is None and not name.startswith("_"):
            s = self.structs.get("_" + name)
        return s

    def struct(self, name: str) -> Struct:
        s = self._lookup(name)
        if s is None:
            import difflib
            close = difflib.get_close_matches(name, list(self.structs), n=3)
            raise SymbolsError("the symbols of %s define no struct %r%s" % (
                self.module, name, (" (did you mean %s?)" % ", ".join(close)) if close else ""))
        return s

    def has_struct(self, name: str) -> bool:
        return self._lookup(name) is not None

    def size_of(self, t: Dict[str, Any]) -> int:
        kind = t.get("kind")
        if kind == "pointer":
            return POINTER_SIZE
        if kind in ("struct", "union"):
            return self.struct(t["name"]).size
        if kind == "array":
            return int(t.get("count", 0)) * self.size_of(t["subtype"])
        if kind == "enum":
            return 4
        if kind == "bitfield":
            return self.size_of(t["type"])
        name = t.get("name", "")
        if name in self.base_sizes:
            return self.base_sizes[name]
        raise SymbolsError("type %s of module %s has no known size" % (describe_type(t), self.module))


def describe_type(t: Dict[str, Any]) -> str:
    """C-like spelling of an ISF type descriptor: `__vcpu_t **`, `unsigned int[4]`."""
    kind = t.get("kind")
    if kind == "pointer":
        inner = describe_type(t.get("subtype", {"kind": "base", "name": "void"}))
        return inner + ("*" if inner.endswith("*") else " *")
    if kind == "array":
        return "%s[%d]" % (describe_type(t.get("subtype", {})), int(t.get("count", 0)))
    if kind == "bitfield":
        return describe_type(t.get("type", {}))
    return str(t.get("name", "?"))


def pointee(t: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    return t.get("subtype") if t.get("kind") == "pointer" else None


def from_isf(doc: Dict[str, Any], source: str, module: Optional[str] = None) -> SymbolTable:
    """SymbolTable from a parsed ISF document (pure). Raises SymbolsError when it is not ISF.
    `source` is what the user gave, "ISF <path>" or "PDB <path>"."""
    if not isinstance(doc, dict) or not isinstance(doc.get("user_types"), dict) or \
            not isinstance(doc.get("symbols", {}), dict):
        raise SymbolsError("%s is not an ISF symbol file (Volatility 3 JSON with user_types and symbols); give "
                           "the driver's .pdb or its ISF .json" % source)
    base_sizes = dict(BASE_SIZES)
    structs: Dict[str, Struct] = {}
    try:  # AttributeError: a list where ISF has an object
        for name, bt in (doc.get("base_types") or {}).items():
            if isinstance(bt, dict) and isinstance(bt.get("size"), int):
                base_sizes[name] = bt["size"]
        for name, ut in doc["user_types"].items():
            if not isinstance(ut, dict) or ut.get("kind") not in ("struct", "union"):
                continue
            fields = {fname: Field(fname, int(f["offset"]), f["type"])
                      for fname, f in (ut.get("fields") or {}).items() if fname}
            structs[name] = Struct(name, int(ut.get("size", 0)), fields)
        symbols = {name: int(s["address"]) for name, s in (doc.get("symbols") or {}).items()
                   if isinstance(s, dict) and "address" in s}
        if module is None:  # the PDB the ISF names, else the file the user gave ("ISF drv.json" -> "drv")
            db = (((doc.get("metadata") or {}).get("windows") or {}).get("pdb") or {}).get("database", "")
            module = os.path.splitext(os.path.basename(str(db)))[0] or \
                os.path.basename(source.partition(" ")[2] or source).split(".")[0]
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise SymbolsError("%s: malformed ISF (%s: %s)" % (source, type(e).__name__, e))
    return SymbolTable(module, structs, symbols, base_sizes, source)


def read_json(path: str, what: str, error=None):
    """A JSON file for the user: `what` names it in the one-line error (class `error`, default SymbolsError)."""
    error = error or SymbolsError
    try:  # a directory, FIFO or device is refused with what it is (a FIFO never blocks)
        readable_file(path, what)
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except PathError as e:
        raise error(str(e))
    except OSError as e:
        raise error("cannot read %s %s: %s" % (what, path, e.strerror or e))
    except (ValueError, UnicodeDecodeError) as e:
        raise error("%s %s is not valid JSON (%s)" % (what, path, str(e).splitlines()[0]))


def cache_dir() -> str:
    """Where converted PDBs are kept: $HVLAB_CACHE or ~/.cache/hvlab."""
    root = os.environ.get("HVLAB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hvlab")
    return os.path.join(root, "isf")


def load_symbol_file(path: str, module: Optional[str] = None) -> SymbolTable:
    """An ISF JSON file, or a PDB converted to ISF (once; the result is cached by the PDB's content)."""
    try:
        readable_file(path, "symbol file")
    except PathError as e:
        raise SymbolsError("%s (give the driver's .pdb or an ISF .json)" % e)
    with open(path, "rb") as f:
        head = f.read(32)
    if head.startswith(b"Microsoft C/C++ MSF 7.00"):
        from windbg_ext.hv.pdb_isf import isf_for_pdb  # local: pdb_isf imports this module

        doc, cached = isf_for_pdb(path, cache_dir())
        table = from_isf(doc, "PDB %s" % path, module)
        table.converted = cached
        return table
    try:
        with open(path, "r", encoding="utf-8") as f:
            doc = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise SymbolsError("%s is neither a PDB nor ISF JSON (%s)" % (path, str(e).splitlines()[0]))
    return from_isf(doc, "ISF %s" % path, module)


def list_structs(table: SymbolTable) -> List[str]:
    return sorted(table.structs)
