"""The suite as a student runs it, for `exercise selftest`: every answer is
derived from a command's --json output (parsed, never scraped from text).

`SuiteView(folder)` runs `python -m windbg_ext --image <folder>/lab.hvimg --json
<command>` in this process (the same front end, windbg_ext.cli.run) and
`check_debuggee(...)` runs scripts/check-debuggee --json as a program.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

from windbg_ext import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK_DEBUGGEE = os.path.join(ROOT, "scripts", "check-debuggee")


class SuiteError(Exception):
    """A suite command did not give the JSON an answer needs."""


class SuiteView:
    def __init__(self, folder: str, image: str = "lab.hvimg", symbols: Optional[str] = None) -> None:
        self.folder = folder
        self.image = os.path.join(folder, image)
        # a driver without hvlab's debug descriptor is walked from its PDB (--symbols)
        self.symbols = ["--symbols", os.path.join(folder, symbols)] if symbols else []
        self.calls: List[str] = []    # the command lines run, for the selftest report

    def run(self, *argv: str) -> Tuple[int, object]:
        """(exit code, parsed JSON) of `windbg_ext --image IMAGE --json ARGV`."""
        out: List[str] = []
        err: List[str] = []
        self.calls.append("windbg_ext --image %s %s--json %s" % (
            os.path.basename(self.image), "--symbols %s " % os.path.basename(self.symbols[1]) if self.symbols else "",
            " ".join(argv)))
        code = cli.run(["--image", self.image] + self.symbols + ["--json"] + list(argv), out.append, err.append)
        if not out:
            raise SuiteError("%s gave no JSON (exit %d): %s" % (self.calls[-1], code, " ".join(err)))
        return code, json.loads("\n".join(out))

    def json(self, *argv: str):
        return self.run(*argv)[1]

    # -- what several exercises ask ---------------------------------------------------------
    def last_failure(self) -> Dict[str, object]:
        """vmm --json: the driver's recorded failure (processor, step name, VM-instruction error)."""
        lf = self.json("vmm")["descriptor"].get("last_failure")
        if not lf:
            raise SuiteError("vmm shows no recorded failure")
        return {"processor": lf["processor"], "step": lf["step"],
                "vm_instruction_error": lf["vm_instruction_error"]}

    def first_failing_check(self, cpu: int) -> Dict[str, object]:
        """verify <cpu> --json: the check the processor reports, and how the entry failed."""
        v = self.json("verify", str(cpu))
        if not v["failures"]:
            raise SuiteError("verify %d finds no failing check" % cpu)
        return {"check": v["failures"][0]["id"], "vm_instruction_error": v["vm_instruction_error"] or 0,
                "exit_reason": int(v["exit_reason"], 16) if v["exit_reason"] else 0,
                "exit_qualification": int(v["exit_qualification"], 16) if v["exit_qualification"] else 0}

    def field(self, cpu: int, name: str, source: Optional[str] = None) -> int:
        """One VMCS field's value from vmcs <cpu> NAME --json."""
        argv = ["vmcs", str(cpu), name] + (["--source", source] if source else [])
        for f in self.json(*argv)["fields"]:
            if f["name"] == name:
                return int(f["value"], 16)
        raise SuiteError("vmcs %d has no field %s" % (cpu, name))

    def caps(self, cpu: int = 0) -> Dict[str, object]:
        return self.json("caps", "--cpu", str(cpu))["cpus"][0]

    def check_debuggee(self, args: List[str]) -> Tuple[int, Dict[str, object]]:
        """scripts/check-debuggee --json ARGS, run in the exercise folder (its files are relative)."""
        self.calls.append("scripts/check-debuggee --json " + " ".join(args))
        return check_debuggee(args, cwd=self.folder)


def check_debuggee(args: List[str], cwd: Optional[str] = None) -> Tuple[int, Dict[str, object]]:
    """scripts/check-debuggee --json ARGS as a program: (exit code, parsed JSON)."""
    p = subprocess.run([sys.executable, CHECK_DEBUGGEE, "--json"] + args, stdout=subprocess.PIPE, cwd=cwd,
                       stderr=subprocess.PIPE, universal_newlines=True, check=False)
    try:
        return p.returncode, json.loads(p.stdout)
    except ValueError:
        raise SuiteError("check-debuggee gave no JSON (exit %d): %s" % (p.returncode, p.stderr.strip()))
