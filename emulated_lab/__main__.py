"""python -m emulated_lab {run,scenarios,demo,kd,exercises,exercise}

  run --cpus N --scenario NAME [--out FILE] [--report FILE.json] [--driver PATH]
  scenarios                      list the scenarios
  demo                           baseline on 2 processors, then the suite's view of the image
  kd --cpus N --scenario NAME [--report FILE] [--script FILE] [-- windbg_ext ARGS]
                                 a kernel-debugging session on the running machine (docs/windbg.md)
  exercises / exercise ...       the lab exercises (emulated_lab/exercises/cli.py, docs/exercises.md)
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import textwrap
from typing import List, Optional

from emulated_lab.exercises.cli import add_parsers as add_exercise_parsers
from emulated_lab.exercises.cli import main as exercises_main
from windbg_ext.stdout_pipe import exit_code_quiet_on_broken_pipe
from emulated_lab.exercises.kit import ExerciseError
from windbg_ext.number_syntax import NumberError, parse_number


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write("error: %s (see: python -m emulated_lab --help)\n" % message)
        raise SystemExit(2)


def _seconds(text: str) -> float:
    """--timeout: a positive, finite number of seconds (decimal, as time is written)."""
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError("give a positive number of seconds, e.g. 60 (not %r)" % text)
    return v


def _count(option: str):
    """A count option (--cpus, --nodes, ...): decimal, in windbg_ext's number syntax (0x2 and 0n2 work too)."""
    def parse(text: str) -> int:
        try:
            return parse_number(text, "decimal", option)
        except NumberError as e:
            raise argparse.ArgumentTypeError(str(e))
    return parse


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m emulated_lab", description="run the built hv.sys on an emulated VMX CPU")
    sub = p.add_subparsers(dest="cmd")
    r = sub.add_parser("run", help="run one scenario")
    r.add_argument("--cpus", type=_count("--cpus"), default=2, help="logical processors, 1..16 (default 2)")
    r.add_argument("--scenario", default="baseline", help="see: python -m emulated_lab scenarios")
    r.add_argument("--out", metavar="FILE", help="write an hvlab image here (open with windbg_ext --image)")
    r.add_argument("--report", metavar="FILE.json", help="write what the emulator saw as JSON (docs/lab.md)")
    r.add_argument("--driver", metavar="PATH", help="the driver to load (default driver/out/hv.sys)")
    r.add_argument("--timeout", type=_seconds, default=60.0, metavar="SECONDS",
                   help="longest one step (DriverEntry, DriverUnload, ...) may take, every run nested in it "
                        "included (default 60)")
    r.add_argument("--nodes", type=_count("--nodes"), default=1, metavar="N",
                   help="NUMA nodes the processors are split into, each with its own memory (default 1)")
    r.add_argument("--max-instructions", type=_count("--max-instructions"), default=0, metavar="N",
                   help="stop a step after N instructions, nested runs included (default 0: no limit)")
    r.add_argument("--kd-mask", metavar="NAME=VALUE", action="append", default=[],
                   help="preset nt!Kd_NAME_Mask, e.g. IHVDRIVER=0xffff (NAME: IHVDRIVER, DEFAULT, WIN2000)")
    r.add_argument("--feature-control", metavar="VALUE",
                   help="the IA32_FEATURE_CONTROL value firmware leaves (default 0x5; feature-locked: 0x1)")
    sub.add_parser("scenarios", help="list the scenarios")
    d = sub.add_parser("demo", help="baseline, then the suite's view")
    d.add_argument("--cpus", type=_count("--cpus"), default=2, help="logical processors, 1..16 (default 2)")
    d.add_argument("--out", metavar="FILE", help="where the image goes (default: a temporary file)")
    d.add_argument("--driver", metavar="PATH", help="the driver to load (default driver/out/hv.sys)")
    k = sub.add_parser("kd", help="break in with a kernel debugger (pykd) on the running machine",
                       description="Runs the scenario, breaks in like KD and runs windbg_ext as "
                                   "'!py -m windbg_ext ARGS' does in WinDbg: ARGS after '--', kd commands "
                                   "from --script, or a kd> prompt.")
    k.add_argument("--cpus", type=int, default=2, help="logical processors, 1..16 (default 2)")
    k.add_argument("--scenario", default="baseline", help="see: python -m emulated_lab scenarios")
    k.add_argument("--driver", metavar="PATH", help="the driver to load (default driver/out/hv.sys)")
    k.add_argument("--break-cpu", type=int, default=0, metavar="N",
                   help="the processor that breaks in (runs the debugger loop; default 0)")
    k.add_argument("--report", metavar="FILE.json", help="write the emulator's ground truth at the break-in here")
    k.add_argument("--script", metavar="FILE", help="kd command lines to run (e.g. !py -m windbg_ext vmm, ~1s, r)")
    k.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="longest one emulator run may take (default 60)")
    add_exercise_parsers(sub)
    return p


def kd(args, suite_args: List[str]) -> int:
    from emulated_lab.kd.session import kd_session
    from emulated_lab.lab import ScenarioError
    commands: List[str] = []
    if args.script:
        try:
            with open(args.script) as f:
                commands = [line.rstrip("\n") for line in f]
        except OSError as e:
            raise ScenarioError("cannot read the script %s: %s" % (args.script, e.strerror))
    if suite_args:
        import shlex
        commands.append("!py -m windbg_ext " + " ".join(shlex.quote(a) for a in suite_args))
    if args.report:
        where = os.path.dirname(os.path.abspath(args.report))
        if not os.path.isdir(where) or not os.access(where, os.W_OK):
            raise ScenarioError("cannot write the report %s: directory %s does not exist or is not writable"
                                % (args.report, where))
    out = kd_session(args.scenario, args.cpus, args.driver, args.break_cpu, args.report, commands,
                     interactive=not commands, stream=sys.stdout, timeout=args.timeout)
    if out["crash"]:   # the session ran; the scenario failed afterwards (a finding, as `run` reports it)
        sys.stderr.write("error: after the kd session: %s\n" % out["crash"])
        return 1
    return 0


def demo(cpus: int, out: Optional[str], driver: Optional[str] = None) -> int:
    from emulated_lab.lab import run_scenario
    from windbg_ext import cli
    path = out
    if out is None:  # a fresh name each time: two demos at once do not collide
        fd, path = tempfile.mkstemp(prefix="hvlab-demo-", suffix=".hvimg")
        os.close(fd)
    try:
        res = run_scenario("baseline", cpus=cpus, image=path, driver=driver)
    except BaseException:
        if out is None and os.path.getsize(path) == 0:
            os.unlink(path)
        raise
    print("\n".join(res.summary()))
    for cmd in (["check"], ["caps"], ["dbgfilter"], ["vmm"], ["vcpu", "0"]):
        print("\n$ python -m windbg_ext --image %s %s" % (path, " ".join(cmd)))
        cli.run(["--image", path] + cmd, lambda s: print(s), lambda s: print(s))
    return 0 if res.loaded else 1


def _kd_masks(items: List[str]):
    from emulated_lab.lab import ScenarioError
    from emulated_lab.nt.kernel import KD_MASKS
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        name = name.strip().upper()
        if name.startswith("KD_") or name.startswith("NT!KD_"):
            name = name.split("KD_", 1)[1]
        if name.endswith("_MASK"):
            name = name[:-5]
        try:
            v = parse_number(value, "hex", "--kd-mask value")
        except NumberError:
            v = -1
        if name not in KD_MASKS or not 0 <= v <= 0xFFFFFFFF:
            raise ScenarioError("--kd-mask %r: give NAME=VALUE with NAME one of %s and a 32-bit value"
                                % (item, ", ".join(KD_MASKS)))
        out[name] = v
    return out


def _feature_control(text: Optional[str]) -> Optional[int]:
    from emulated_lab.lab import ScenarioError
    if text is None:
        return None
    try:
        v = parse_number(text, "hex", "--feature-control")   # an MSR value: hex by default, as in WinDbg
    except NumberError:
        v = -1
    if not 0 <= v <= 0xFFFFFFFFFFFFFFFF:
        raise ScenarioError("--feature-control %r: give the MSR value, e.g. 0x5 (locked, VMXON outside SMX)" % text)
    return v


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    suite_args: List[str] = []
    if "--" in argv:   # kd ... -- ARGS: ARGS go to windbg_ext
        i = argv.index("--")
        argv, suite_args = argv[:i], argv[i + 1:]
    args = _parser().parse_args(argv)
    if suite_args and args.cmd != "kd":
        sys.stderr.write("error: arguments after '--' are for 'kd' only (see: python -m emulated_lab --help)\n")
        return 2
    from emulated_lab.lab import SCENARIOS, ScenarioError, run_scenario
    from emulated_lab.machine import MachineError
    from emulated_lab.bochs_loader import NativeError
    from windbg_ext.paths import PathError
    try:
        if args.cmd == "scenarios":
            for name, what in SCENARIOS.items():  # 120 columns, as windbg_ext's output
                print(textwrap.fill(what, 120, initial_indent="%-16s " % name, subsequent_indent=" " * 17))
            return 0
        if args.cmd in ("exercises", "exercise"):
            return exercises_main(args, print)
        if args.cmd == "demo":
            return demo(args.cpus, args.out, args.driver)
        if args.cmd == "kd":
            return kd(args, suite_args)
        if args.cmd == "run":
            from emulated_lab import report
            if args.report is not None:  # "" too: an empty name is an error, not "no report"
                why = report.check_writable(args.report)
                if why:
                    raise ScenarioError(why)
            res = run_scenario(args.scenario, cpus=args.cpus, driver=args.driver, image=args.out,
                               kd_masks=_kd_masks(args.kd_mask), run_timeout=args.timeout,
                               instruction_limit=args.max_instructions, nodes=args.nodes,
                               raise_on_crash=args.report is None,
                               feature_control=_feature_control(args.feature_control))
            print("\n".join(res.summary()))
            if args.report is not None:
                report.write(args.report, report.build(res))
                print("report: %s" % args.report)
            return 1 if res.crash else 0
        _parser().print_help()
        return 2
    except BrokenPipeError:  # the reader went away (| head): exit quietly (windbg_ext/stdout_pipe.py)
        raise
    except (ScenarioError, MachineError, NativeError, PathError, ExerciseError) as e:
        sys.stderr.write("error: %s\n" % e)
        return 2
    except OSError as e:
        sys.stderr.write("error: %s\n" % e)
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 2
    except Exception as e:  # last resort: one line, never a traceback
        sys.stderr.write("error: internal error (%s: %s); please report it with the command line\n"
                         % (type(e).__name__, e))
        return 2


if __name__ == "__main__":
    sys.exit(exit_code_quiet_on_broken_pipe(main))
