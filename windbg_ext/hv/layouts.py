"""VMCS layout maps kept as files, for drivers that publish none.

hv.sys discovers where each VMCS field lives in the region on the processor it
runs on (docs/debug-descriptor.md). `layout save` writes that map to a file;
`layout load` installs a file for later runs; the lab's map (the Bochs CPU
model, revision id 0x4) ships with the suite. A foreign driver's VMCS region is
then decoded with the map of the same revision id: the values are
region-derived (implementation-specific, and stale while a processor holds the
VMCS on real hardware, SDM 25.11.1).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

from windbg_ext.hv.descriptor import LAYOUT_FLAG_FOUND, LayoutEntry
from windbg_ext.hv.symbols import read_json
from windbg_ext.target.base import TargetError

FORMAT = "hvlab-vmcs-layout/1"
SHIPPED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "layouts")


class LayoutFileError(TargetError):
    pass


def user_dir() -> str:
    """Installed layouts: $HVLAB_LAYOUTS, else ~/.config/hvlab/layouts."""
    return os.environ.get("HVLAB_LAYOUTS") or os.path.join(os.path.expanduser("~"), ".config", "hvlab", "layouts")


def to_document(entries: List[LayoutEntry], revision_id: int, source: str) -> Dict[str, Any]:
    return {"format": FORMAT, "revision_id": "0x%x" % revision_id, "source": source,
            "fields": [{"encoding": "0x%x" % e.encoding, "offset": "0x%x" % e.offset, "width": e.width,
                        "flags": e.flags} for e in entries if e.flags & LAYOUT_FLAG_FOUND]}


def dumps(doc: Dict[str, Any]) -> str:
    """The document as JSON with one field per line (diffable)."""
    head = {k: v for k, v in doc.items() if k != "fields"}
    lines = json.dumps(head, indent=1)[:-2] + ',\n "fields": [\n'
    lines += ",\n".join("  " + json.dumps(f, sort_keys=True) for f in doc["fields"])
    return lines + "\n ]\n}\n"


def from_document(doc: Any, where: str) -> Tuple[int, List[LayoutEntry], str]:
    """(revision id, entries, source) of a layout document; LayoutFileError names what is wrong."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise LayoutFileError("%s is not a VMCS layout file (format %r expected; write one with: layout save FILE)"
                              % (where, FORMAT))
    try:
        rev = int(doc["revision_id"], 16)
        entries = [LayoutEntry(int(f["encoding"], 16), int(f["offset"], 16), int(f["width"]), int(f["flags"]))
                   for f in doc["fields"]]
    except (KeyError, TypeError, ValueError) as e:
        raise LayoutFileError("%s: malformed layout file (%s: %s)" % (where, type(e).__name__, e))
    for e in entries:
        if e.width not in (1, 2, 4, 8) or not 8 <= e.offset <= 0x1000 - e.width:
            raise LayoutFileError("%s: field 0x%x at offset 0x%x width %d lies outside a 4 KiB region"
                                  % (where, e.encoding, e.offset, e.width))
    if not entries:
        raise LayoutFileError("%s holds no fields" % where)
    return rev, entries, str(doc.get("source", ""))


def read_file(path: str) -> Tuple[int, List[LayoutEntry], str]:
    return from_document(read_json(path, "the layout file", LayoutFileError), path)


def available() -> List[Tuple[str, int, str]]:
    """[(path, revision id, source)], installed ones first, then shipped ones."""
    out = []
    for d in (user_dir(), SHIPPED_DIR):
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.endswith(".json"):
                path = os.path.join(d, name)
                try:
                    rev, _, source = read_file(path)
                except LayoutFileError:
                    continue
                out.append((path, rev, source))
    return out


def find(revision_id: int) -> Optional[Tuple[str, List[LayoutEntry], str]]:
    """(path, entries, source) of the first layout for this revision id, or None."""
    for path, rev, _ in available():
        if rev == revision_id:
            _, entries, source = read_file(path)
            return path, entries, source
    return None


def revision_ids() -> List[int]:
    return sorted({rev for _, rev, _ in available()})


def install(path: str) -> str:
    """Copies a checked layout file into user_dir(); returns where it went."""
    rev, entries, source = read_file(path)
    d = user_dir()
    os.makedirs(d, exist_ok=True)
    dest = os.path.join(d, "revision-0x%x.json" % rev)
    tmp = dest + ".tmp%d" % os.getpid()
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps(to_document(entries, rev, source)))
    os.replace(tmp, dest)
    return dest
