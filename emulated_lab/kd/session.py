"""`python -m emulated_lab kd`: a kernel-debugging session on the running
emulated machine.

The scenario runs until hv.sys is loaded and its workload ran; then the
debugger breaks in (every processor frozen where it was: a virtualized one
in its guest), `pykd` is this session's (emulated_lab/kd/pykd_live.py), and
commands run as in WinDbg with pykd-ext: from the command line (`-- ARGS`
runs `!py -m windbg_ext ARGS`), from a script of kd commands (`--script`),
or at a `kd>` prompt. When the session ends the scenario continues
(DriverUnload) as after `g`.
"""
from __future__ import annotations

import html
import json
import re
import signal
import sys
import threading
from typing import Callable, List, Optional, TextIO

from emulated_lab.kd import pykd_live
from emulated_lab.lab import ScenarioError, run_scenario
from emulated_lab.kd.commands import run_command
from emulated_lab.kd.pyext import PyExtError, run_py
from emulated_lab.kd.base import KdError
from emulated_lab.kd.stub import KdStub

_TAG = re.compile(r"<[^>]*>")
PROMPT_HELP = ("commands: !py [-g] [-3.N] -m windbg_ext ARGS | ~Ns | r [regs] | rdmsr MSR | lm [m PATTERN] | t | g | q "
               "(g and q end the session; the scenario then unloads the driver)")


def dml_to_text(s: str) -> str:
    """What kd's console shows of DML: the markup dropped, entities decoded."""
    return html.unescape(_TAG.sub("", s))


class Console:
    """Debugger output: shown as kd shows it, and kept (text, dml) for tests."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.transcript: List[tuple] = []

    def __call__(self, text: str, dml: bool) -> None:
        self.transcript.append((text, dml))
        self.stream.write(dml_to_text(text) if dml else text)
        self.stream.flush()


def hex_map(d: dict) -> dict:
    return {"0x%x" % k: "0x%x" % v for k, v in sorted(d.items())}


def report_json(stub: KdStub, scenario: str, vmxon_pas: List[Optional[int]]) -> dict:
    """The emulator's ground truth at the break-in (and at every snapshot
    hypercall the session made), hex strings as the suite's --json writes them."""
    truth = stub.truth()
    procs = []
    for p in truth["processors"]:
        k = p["index"]
        procs.append({
            "index": k, "vmx": p["vmx"],
            "vmxon_pa": None if vmxon_pas[k] is None else "0x%x" % vmxon_pas[k],
            "vmcs_pa": None if p["vmcs_pa"] is None else "0x%x" % p["vmcs_pa"],
            "vmcs_fields": hex_map(p["vmcs_fields"]), "msrs": hex_map(p["msrs"]),
            "cr0": "0x%x" % p["cr0"], "cr4": "0x%x" % p["cr4"],
            "cr0_seen_by_guest": "0x%x" % p["cr0_seen_by_guest"],
            "cr4_seen_by_guest": "0x%x" % p["cr4_seen_by_guest"],
        })
    return {"scenario": scenario, "cpus": len(procs), "break_cpu": truth["break_cpu"], "processors": procs,
            # VMREAD by the emulator when hv.sys began handling each snapshot hypercall
            # (before it advanced GUEST_RIP past the VMCALL)
            "refreshes": [{"processor": k, "vmcs_fields": hex_map(v)} for k, v in stub.refresh_truth]}


def _vmxon_pas(m) -> List[Optional[int]]:
    """The VMXON pointer the CPU model uses per processor (emulated_lab/cpu_truth.py)."""
    return [m.truth.processors[k].vmxon_pa for k in range(len(m.processors))]


class Session:
    """One break-in: the stub, the pykd module bound to it, the console."""

    def __init__(self, stub: KdStub, console: Console) -> None:
        self.stub = stub
        self.console = console

    def __enter__(self) -> "Session":
        self._saved_pykd = sys.modules.get("pykd")
        pykd_live._stub = self.stub
        sys.modules["pykd"] = pykd_live
        self._old_sigint = signal.signal(signal.SIGINT, self._ctrl_break) if _main_thread() else None
        return self

    def __exit__(self, *exc) -> None:
        pykd_live._stub = None
        if self._saved_pykd is not None:
            sys.modules["pykd"] = self._saved_pykd
        else:
            sys.modules.pop("pykd", None)
        if self._old_sigint is not None:
            signal.signal(signal.SIGINT, self._old_sigint)

    def _ctrl_break(self, signum, frame) -> None:
        pykd_live._break_pending = True   # delivered at the script's next pykd call

    @property
    def prompt(self) -> str:
        return "%d: kd> " % self.stub.debugger_cpu

    def execute(self, line: str) -> bool:
        """Runs one kd command line; False when the session should end."""
        line = line.strip()
        if not line or line.startswith("*"):
            return True
        if line in ("q", "qq", "g"):
            return False
        if line in ("?", "help"):
            self.console(PROMPT_HELP + "\n", False)
            return True
        try:
            if line.startswith("!py"):
                pykd_live._break_pending = False
                run_py(line[3:], self.console)
            else:
                text = run_command(self.stub, line)
                if text:
                    self.console(text + "\n", False)
        except (KdError, PyExtError) as e:
            self.console("%s\n" % e, False)
        return True


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def kd_session(scenario: str, cpus: int, driver: Optional[str], break_cpu: int, report: Optional[str],
               commands: List[str], interactive: bool, stream: TextIO, timeout: float = 60.0,
               read_line: Optional[Callable[[str], str]] = None, kd_masks=None, image: Optional[str] = None) -> dict:
    """Runs the scenario, breaks in, runs `commands` (kd command lines) or the
    prompt, writes the report; returns {report, operations, transcript}. With
    `image`, the scenario writes its image after the session (as `run --out`)."""
    out: dict = {}
    console = Console(stream)

    def on_break(m, kern, img, res, msrs, cpuid) -> None:
        symbols = {"%s!%s" % (img.name, n): va for n, va in img.exports.items()}
        symbols.update({n: va for n, va in kern.symbols.items() if n.startswith("nt!")})
        try:
            stub = KdStub(m, symbols, msrs, break_cpu, modules=[kern.module, (img.name, img.base, img.size)])
        except KdError as e:
            raise ScenarioError(str(e))
        vmxon = _vmxon_pas(m)
        out["report"] = report_json(stub, scenario, vmxon)
        console("hvlab kd: scenario %s on %d processor(s), DriverEntry returned 0x%08x; broke in on processor %d\n"
                % (scenario, cpus, (res.load_status or 0) & 0xFFFFFFFF, stub.debugger_cpu), False)
        with Session(stub, console) as s:
            for line in commands:
                console("%s%s\n" % (s.prompt, line), False)
                if not s.execute(line):
                    break
            if interactive:
                reader = read_line or input
                while True:
                    try:
                        line = reader(s.prompt)
                    except EOFError:
                        break
                    except KeyboardInterrupt:
                        console("\n", False)
                        continue
                    if not s.execute(line):
                        break
        out["report"] = report_json(stub, scenario, vmxon)
        out["operations"] = list(stub.operations)
        out["transcript"] = console.transcript

    res = run_scenario(scenario, cpus=cpus, driver=driver, run_timeout=timeout, on_break=on_break,
                       kd_masks=kd_masks, image=image, raise_on_crash=False)
    if "report" not in out:
        raise ScenarioError("scenario %s did not reach the break-in: %s" % (
            scenario, res.crash or "DriverEntry returned 0x%08x" % ((res.load_status or 0) & 0xFFFFFFFF)))
    out["crash"] = res.crash   # what went wrong after the session (e.g. in DriverUnload), or ""
    if report:
        with open(report, "w") as f:
            json.dump(out["report"], f, indent=1)
    return out
