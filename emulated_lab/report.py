"""`python -m emulated_lab run ... --report FILE.json`: what the emulator saw
in one scenario, as JSON for scripts. The schema (version 1) is documented in
docs/lab.md "Report for scripts"; keys are only ever added, never changed.
"""
from __future__ import annotations

import json
from typing import Dict

from windbg_ext.paths import PathError, write_atomically, writable_file

SCHEMA_VERSION = 1


def _hex(v):
    return None if v is None else "0x%x" % v


def build(res) -> Dict[str, object]:
    """The report of a ScenarioResult (emulated_lab/lab.py)."""
    processors = []
    for p in res.truth.get("processors", []):
        processors.append({
            "index": p["index"],
            "vmxon_pa": p["vmxon_used"][-1] if p["vmxon_used"] else None,
            "vmcs_pa": p["vmptrld_used"][-1] if p["vmptrld_used"] else None,
            "vmx_on_after_unload": p["vmx"] != "off",
            "cr4_vmxe_after_unload": p["cr4_vmxe"],
            "vmxon_used": p["vmxon_used"],
            "vmptrld_used": p["vmptrld_used"],
            "vmx_lost": p["vmx_lost"],
        })
    # every exit the driver caused, counted (res.exits keeps only the first and last in detail)
    exits = {"0x%x" % reason: n for reason, n in sorted(res.exit_counts.items())}
    return {
        "schema": SCHEMA_VERSION,
        "scenario": res.scenario,
        "cpus": res.cpus,
        "driver_entry_status": None if res.load_status is None else "0x%08x" % (res.load_status & 0xFFFFFFFF),
        "bugcheck": None if res.bugcheck is None else {"code": _hex(res.bugcheck[0]),
                                                        "params": [_hex(v) for v in res.bugcheck[1]]},
        "crash": res.crash or None,
        "processors": processors,
        "leaked_allocations": [{"kind": a.kind, "va": _hex(a.va), "pa": _hex(a.pa), "size": a.size,
                                "tag": _hex(a.tag)} for a in res.leaks],
        "held_objects": list(res.held_objects),
        "exits": exits,
        "guest_checks": [c.as_dict() for c in res.checks],
        "messages": [{"cpu": m.cpu, "component": m.component, "level": m.level, "shown": m.shown,
                      "text": m.text.rstrip("\n")} for m in res.messages],
    }


def check_writable(path: str) -> str:
    """One line saying why `path` cannot be written, or '' when it can: a new name or a regular,
    writable file (a device, FIFO, symlink, directory or read-only file is refused untouched)."""
    try:
        writable_file(path, "--report")
    except PathError as e:
        return str(e)
    return ""


def write(path: str, report: Dict[str, object]) -> None:
    """Writes the report whole or not at all (windbg_ext/paths.py: a temporary file renamed over path)."""
    text = (json.dumps(report, indent=1, sort_keys=False) + "\n").encode("utf-8")
    write_atomically(path, "--report", lambda f: f.write(text))
