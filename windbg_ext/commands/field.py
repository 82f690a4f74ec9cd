"""field: VMCS field name <-> encoding (SDM 25.11.2, Appendix B), or the
whole catalogue with --all."""
from __future__ import annotations

from typing import Any, Dict, List

from windbg_ext.arch import vmcs_fields
from windbg_ext.arch.encoding import decode_encoding
from windbg_ext.commands.base import CommandError
from windbg_ext.render.report import Link, Report

SUMMARY = "decode VMCS field names/encodings (SDM App. B), or list the catalogue with --all"
NEEDS_TARGET = False


def add_arguments(p) -> None:
    p.add_argument("fields", nargs="*", metavar="NAME|ENCODING",
                   help="field name (GUEST_RIP, vmcs_guest_rip, GUEST_ES_AR_BYTES, IO_BITMAP_A_HIGH) "
                        "or encoding in WinDbg syntax (681e, 0x681e, 0n26654)")
    p.add_argument("--all", action="store_true", help="list every field of the catalogue")
    p.add_argument("--type", choices=("guest", "host", "control", "exit"),
                   help="with --all: only fields of this type (exit = read-only VM-exit information)")
    p.add_argument("--width", choices=("16", "32", "64", "natural"), help="with --all: only fields of this width")


def field_json(field, access: str) -> Dict[str, Any]:
    enc = field.encoding | (1 if access == "high" else 0)
    return {"name": field.name + ("_HIGH" if access == "high" else ""), "field": field.name,
            "encoding": "0x%04x" % enc, "width": _bits(field.width), "natural_width": field.width == "natural",
            "type": field.type, "access": access,
            "index": decode_encoding(enc).index, "readonly": field.readonly, "meaning": field.meaning, "sdm": field.sdm}


def _row(d: Dict[str, Any], dml_link: bool) -> List[Any]:
    name = Link(d["name"], "field " + d["name"]) if dml_link else d["name"]
    width = "natural" if d["natural_width"] else d["width"]
    return [name, d["encoding"], width, d["type"], d["access"], d["index"], d["meaning"]]


def _bits(width: str) -> int:
    """A field width in bits, a number in JSON: natural-width fields are 64 bits wide on a
    processor that supports Intel 64 (SDM 25.11.2); "natural_width" says which ones they are."""
    return 64 if width == "natural" else int(width)


HEADERS = ["name", "encoding", "width", "type", "access", "index", "meaning"]


def run(ctx, args) -> Report:
    if args.all:
        if args.fields:
            raise CommandError("give field names or --all, not both")
        chosen = [f for f in vmcs_fields.FIELDS
                  if (args.type is None or f.type == args.type) and (args.width is None or f.width == args.width)]
        data = [field_json(f, "full") for f in chosen]
        r = Report(data={"fields": data, "count": len(data)})
        r.table(HEADERS, [_row(d, True) for d in data],
                title="%d VMCS fields%s" % (len(data), "" if not (args.type or args.width) else " (%s)" % ", ".join(
                    x for x in (args.type, args.width and args.width + "-bit") if x)))
        return r
    if args.type or args.width:
        raise CommandError("--type and --width filter the catalogue: use them with --all")
    if not args.fields:
        raise CommandError("give a field name or encoding (e.g. field GUEST_RIP, field 0x681e), or --all")

    found: List[Dict[str, Any]] = []
    invalid: List[Dict[str, Any]] = []
    for text in args.fields:
        try:
            field, access = vmcs_fields.lookup(text)
            found.append(field_json(field, access))
        except vmcs_fields.FieldLookupError as e:
            value = vmcs_fields._parse_number(str(text))
            if value is None or value > 0xFFFFFFFF:
                raise CommandError(str(e))
            parts = decode_encoding(value)
            invalid.append({"input": text, "encoding": "0x%04x" % value, "valid": parts.valid,
                            "problems": list(parts.problems) or ["no SDM Appendix B field has this encoding"],
                            "access": parts.access, "index": parts.index, "type": parts.type, "width": _bits(parts.width),
                            "natural_width": parts.width == "natural",
                            "name": None, "message": str(e)})

    r = Report(data={"fields": found, "not_fields": invalid, "count": len(found)})
    if found:
        r.table(HEADERS, [_row(d, False) for d in found])
    for d in invalid:
        r.table(["encoding", "access (bit 0)", "index (9:1)", "type (11:10)", "width (14:13)"],
                [[d["encoding"], d["access"], d["index"], d["type"], "natural" if d["natural_width"] else d["width"]]],
                title="%s decoded as a VMCS encoding (SDM 25.11.2):" % d["encoding"])
        r.text("not a field: " + "; ".join(d["problems"]))
    if invalid:  # a finding (documented exit code 1): the number was read, it names no field
        r.exit_code = 1
    return r
