"""VMCS values of one vCPU, by source, and their one-line decodings (pure).

Sources (docs/walk.md): "snapshot" = VMREAD values the driver stored
(architectural), "region" = the raw VMCS page decoded with the driver's
layout map (implementation-specific: the processor may cache the VMCS and
its memory format is undocumented, SDM 25.11.1).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple
from windbg_ext.arch.controls import CONTROL_FIELD, decode_controls
from windbg_ext.arch.exits import decode_exit_reason, decode_interruption_info, decode_qualification
from windbg_ext.arch.registers import REGISTER_TABLES, bit_names, decode_access_rights
from windbg_ext.hv.state_text import exit_text, vm_error_text

GROUP_ORDER = ("guest", "host", "control", "exit")   # KVM dump_vmcs order
GROUP_TITLES = {"guest": "guest state", "host": "host state", "control": "controls",
                "exit": "VM-exit information (read-only)"}

_INTR_INFO_FIELDS = ("VM_EXIT_INTR_INFO", "IDT_VECTORING_INFO_FIELD", "VM_ENTRY_INTR_INFO_FIELD",
                     "IDT_VECTORING_INFO", "VM_ENTRY_INTR_INFO")


def field_value(value: int, access: str) -> int:
    """A 64-bit field's high access reads bits 63:32 (SDM 25.11.2)."""
    return value >> 32 if access == "high" else value


def _control_kind(name: str) -> Optional[str]:
    for kind, field in CONTROL_FIELD.items():
        if field == name:
            return kind
    return None


def decode(name: str, value: int, values_by_name: Optional[Dict[str, int]] = None) -> str:
    """Short decoding of a field value ('' when the number says it all)."""
    kind = _control_kind(name)
    if kind is not None:
        rows = [(bit, bit_name) for bit, bit_name, is_set in decode_controls(kind, value) if is_set]
        named = [n for _, n in rows if not n.startswith("RESERVED_")]
        # reserved bits are mostly the default1 class (SDM App. A.2): list them as numbers
        reserved = [str(b) for b, n in rows if n.startswith("RESERVED_")]
        text = " ".join(named) if named else "(no named control)"
        if reserved:
            text += " + reserved bits %s" % ",".join(reserved)
        return text if rows else "(none)"
    if name.endswith("_AR_BYTES"):
        a = decode_access_rights(value)
        if a["unusable"]:
            return "unusable"
        flags = [f for f in ("l", "db", "g", "avl") if a[f]]
        return "%s, %s DPL%d%s%s" % (a["type_name"], "S" if a["s"] else "system", a["dpl"],
                                     " P" if a["p"] else " not-present",
                                     (" " + " ".join(f.upper() for f in flags)) if flags else "")
    if name == "VM_EXIT_REASON":
        return exit_text(value)
    if name == "VM_INSTRUCTION_ERROR":
        return vm_error_text(value)
    if name == "EXIT_QUALIFICATION" and values_by_name and "VM_EXIT_REASON" in values_by_name:
        rows = decode_qualification(decode_exit_reason(values_by_name["VM_EXIT_REASON"])["basic"], value)
        if len(rows) == 1 and rows[0][0] == "qualification":
            return ""
        return "; ".join("%s=%s" % (n, v) for n, v, _ in rows)
    if name in _INTR_INFO_FIELDS:
        i = decode_interruption_info(value)
        if not i["valid"]:
            return "not valid"
        return "%s %s%s" % (i["type"], i.get("exception", "vector %d" % i["vector"]),
                            ", error code" if i["error_code_valid"] else "")
    for reg in ("CR0", "CR4"):
        if name.endswith("_" + reg) or name in ("%s_GUEST_HOST_MASK" % reg, "%s_READ_SHADOW" % reg):
            return bit_names(REGISTER_TABLES[reg.lower()], value)
    if name.endswith("_IA32_EFER"):
        return bit_names(REGISTER_TABLES["efer"], value)
    if name == "GUEST_RFLAGS":
        return bit_names(REGISTER_TABLES["rflags"], value)
    return ""


def format_value(field, value: int, access: str = "full") -> str:
    """Zero-padded hex at the field's width."""
    digits = {"16": 4, "32": 8, "64": 16, "natural": 16}[field.width]
    if access == "high":
        digits = 8
    return "0x%0*x" % (digits, value)


def diff(a: Dict[int, int], b: Dict[int, int]) -> List[Tuple[int, Optional[int], Optional[int]]]:
    """(encoding, value in a or None, value in b or None) for every encoding that differs."""
    out = []
    for enc in sorted(set(a) | set(b)):
        va, vb = a.get(enc), b.get(enc)
        if va != vb:
            out.append((enc, va, vb))
    return out
