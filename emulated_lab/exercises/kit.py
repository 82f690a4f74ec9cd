"""Making, grading and self-testing the exercises (the I/O around catalogue.py).

    make_exercise(id, seed, out_dir, key_path)  -> the student folder (+ the key elsewhere)
    check_answers(id, seed, answers_path)        -> per-question verdicts
    selftest(ids, seeds)                         -> every exercise solved with the suite alone
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from typing import Dict, Iterable, List, Optional, Tuple

from emulated_lab.exercises.catalogue import (BY_ID, EXERCISES, Exercise, Params, fault_names, fault_of,
                                              params_for, shown_params)
from emulated_lab.exercises.grading import AnswerError, Verdict, grade, read_answers
from emulated_lab.exercises.suite import SuiteError, SuiteView

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIVER_DIR = os.path.join(ROOT, "driver")
FAULT_HEADER = os.path.join(DRIVER_DIR, "include", "hv_fault.h")
IMAGE = "lab.hvimg"
# what a variant build gives the student folder, per driver (the .sys the lab loads first)
DRIVER_FILES = {"hv": (("hv.sys", "hv.sys"),),
                "sevendays": (("sevendays.sys", os.path.join("clang", "sevendays.sys")),
                              ("sevendays.pdb", os.path.join("clang", "sevendays.pdb")))}
WORKSHEET = "worksheet.md"
ANSWERS = "ANSWERS.json"


class ExerciseError(Exception):
    """Bad input or a build/run that failed (one line for the user)."""


def exercise(ex_id: str) -> Exercise:
    if ex_id not in BY_ID:
        raise ExerciseError("unknown exercise %r; 'python -m emulated_lab exercises' lists them" % ex_id)
    return BY_ID[ex_id]


def check_seed(seed: int) -> int:
    if not 0 <= seed < 2 ** 31:
        raise ExerciseError("--seed must be between 0 and 2147483647, got %d" % seed)
    return seed


# -- the variant build ------------------------------------------------------------------------
def variant_dir(fault: str, cpu: int, arg: int) -> str:
    return os.path.join(DRIVER_DIR, "out", "exercises", "%s-c%d-a%d" % (fault, cpu, arg))


def variant_path(fault: str, cpu: int, arg: int, driver: str = "hv") -> str:
    """The variant's .sys (for sevendays the clang build, whose PDB the student gets)."""
    return os.path.join(variant_dir(fault, cpu, arg), DRIVER_FILES[driver][0][1])


def build_variant(fault: str, cpu: int, arg: int, driver: str = "hv") -> str:
    """driver/out/exercises/<FAULT>-c<cpu>-a<arg>/hv.sys (or sevendays.sys), built by driver/Makefile's
    exercise target."""
    with open(FAULT_HEADER) as f:
        if fault not in fault_names(f.read()):
            raise ExerciseError("fault %s is not defined in driver/include/hv_fault.h" % fault)
    p = subprocess.run(["make", "-s", "--no-print-directory", "-C", DRIVER_DIR, "exercise", "FAULT=" + fault,
                        "FAULT_CPU=%d" % cpu, "FAULT_ARG=%d" % arg],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    path = variant_path(fault, cpu, arg, driver)
    if p.returncode != 0 or not os.path.isfile(path):
        last = (p.stdout.strip().splitlines() or ["no output"])[-1]
        raise ExerciseError("building the %s variant of %s.sys failed: %s (run: make -C driver exercise FAULT=%s "
                            "FAULT_CPU=%d FAULT_ARG=%d)" % (fault, driver, last, fault, cpu, arg))
    return path


def driver_files(ex: Exercise, p: Params) -> Dict[str, str]:
    """{name in the student folder: built file} for the exercise's driver; the first is the .sys."""
    fault = fault_of(ex, p)
    if fault is None:
        # importing the lab costs 0.3 s (measured): `exercises` and `check` never need it
        from emulated_lab.lab import DEFAULT_DRIVER
        if not os.path.isfile(DEFAULT_DRIVER):
            raise ExerciseError("driver/out/hv.sys not found: build it with 'make -C driver'")
        return {"hv.sys": DEFAULT_DRIVER}
    cpu, arg = int(p["fault_cpu"]), int(p["fault_arg"])
    build_variant(fault, cpu, arg, ex.driver)
    return {name: os.path.join(variant_dir(fault, cpu, arg), rel) for name, rel in DRIVER_FILES[ex.driver]}


def driver_name(ex: Exercise) -> str:
    return DRIVER_FILES[ex.driver][0][0]


def symbols_name(ex: Exercise) -> Optional[str]:
    """The PDB a student walks the driver with (`--symbols`), None for hv.sys (its debug descriptor)."""
    names = [n for n, _ in DRIVER_FILES[ex.driver] if n.endswith(".pdb")]
    return names[0] if names else None


# -- the lab run --------------------------------------------------------------------------
def run_command(ex: Exercise, p: Params, secret: bool = True) -> str:
    """The command line that reproduces the image from the student folder. The machine's
    settings an exercise is about (Kd masks, IA32_FEATURE_CONTROL, a hidden scenario) are the answer: with
    secret=True (the worksheet) they are replaced by a note."""
    run = ex.lab(p)
    parts = ["python -m emulated_lab run --driver %s --cpus %d" % (driver_name(ex), p["cpus"])]
    machine = ["--kd-mask %s=0x%x" % kv for kv in sorted((run.kd_masks or {}).items())]
    if run.scenario != "baseline":
        (machine if run.hidden_scenario else parts).append("--scenario " + run.scenario)
    if run.feature_control is not None:
        machine.append("--feature-control 0x%x" % run.feature_control)
    if run.crashes:
        parts.append("--timeout %g" % run.timeout)
    if machine and secret:
        machine = ["<the machine's settings: what you are looking for>"]
    return " ".join(parts + machine + ["--out " + IMAGE])


def run_lab(ex: Exercise, p: Params, driver: str, image: str) -> List[str]:
    """Runs the exercise on the emulated machine; returns what the lab printed (its summary or the crash)."""
    # importing the lab costs 0.3 s (measured): `exercises` and `check` never need it
    from emulated_lab.lab import ScenarioError, run_scenario
    from emulated_lab.machine import MachineError, RunTimeout
    run = ex.lab(p)
    try:
        res = run_scenario(run.scenario, cpus=int(p["cpus"]), driver=driver, image=image, kd_masks=run.kd_masks,
                           run_timeout=run.timeout, feature_control=run.feature_control)
    except MachineError as e:
        if not run.crashes or not os.path.isfile(image):
            raise ExerciseError("exercise %s: the lab run failed: %s" % (ex.id, e))
        if isinstance(e, RunTimeout):
            # the lab's diagnosis of a hang (which processor, which exit) is the answer; a real
            # machine that hangs says nothing
            return ["error: the machine made no progress for %g s; its state then is in %s" % (run.timeout, IMAGE)]
        return ["error: %s" % str(e).replace(image, IMAGE)]    # the folder's name for it, not the build path
    except ScenarioError as e:
        raise ExerciseError("exercise %s: %s" % (ex.id, e))
    if run.crashes:
        raise ExerciseError("exercise %s: the lab run was expected to hang or crash, and it did not" % ex.id)
    res.image_path = IMAGE      # as the student's folder calls it
    return machine_view(res.summary())


def machine_view(summary: List[str]) -> List[str]:
    """The lab's summary without what only the emulator knows: the VM exits it counted and its own
    guest checks (what the guest expected, what the VMCS held). A real machine prints neither, and
    both would name the answer (an exit reason, a missing control)."""
    out: List[str] = []
    skipping = False
    for line in summary:
        if line.startswith("VM exits seen by the emulator:"):
            continue
        if line.startswith("guest checks:"):
            skipping = True
            continue
        if skipping and line.startswith("  "):
            continue
        skipping = False
        out.append(line)
    return out


def leaks(ex: Exercise, key: Dict[str, object], texts: Iterable[str]) -> List[str]:
    """The key's answers a student folder gives away verbatim: a check id or field name
    anywhere in its text, a number of 10 or more in decimal or hex, or the processor a
    processor/vCPU question asks for named in the lab's output ("processor 2", "[cpu2]")."""
    text = "\n".join(texts)
    found = []
    for q in ex.questions:
        a = key[q.id]
        if q.kind == "name" and str(a).lower() in text.lower():
            found.append("%s (%s)" % (q.id, a))
        elif q.kind == "int" and isinstance(a, int) and not isinstance(a, bool):
            words = ["processor %d", r"\[cpu%d\]", "cpu%d:", "vcpu %d"] if q.id in ("processor", "vcpu") else []
            words += ["%d", "0x%x"] if a >= 10 else []
            if any(re.search(r"(?<![\w.])%s(?![\w.])" % (w % a), text, re.I) for w in words):
                found.append("%s (%s)" % (q.id, a))
    return found


# -- the student folder and the key -----------------------------------------------------------
def folder_files(ex: Exercise, p: Params) -> List[str]:
    """The names in the student folder besides the worksheet and ANSWERS.json."""
    return sorted(ex.files(p)) if ex.files else [n for n, _ in DRIVER_FILES[ex.driver]] + [IMAGE]


def worksheet(ex: Exercise, seed: int, p: Params, lab_output: List[str]) -> str:
    shown = shown_params(ex, p)
    lines = ["# Exercise %s (Day %d): %s" % (ex.id, ex.day, ex.title), "",
             "Seed %d. Skills: %s." % (seed, ", ".join(ex.skills)), "", "## The story", "",
             ex.story.format(**shown), "", "## What you have", ""]
    if ex.lab is not None:
        lines += ["- %s: the driver as the student built it" % ", ".join(
                      "`%s`" % n for n, _ in DRIVER_FILES[ex.driver]),
                  "- `%s`: the emulated machine after the run (open it with the suite)" % IMAGE,
                  "- `%s`: fill in your answers here and hand it in" % ANSWERS, "",
                  "The lab ran (in this folder, with hvlab installed):", "", "```",
                  "$ " + run_command(ex, p)] + lab_output + ["```", "",
                  "Look inside with the suite, e.g. `python -m windbg_ext --image %s%s vmm`; "
                  "`python -m windbg_ext help` lists the commands." % (
                      IMAGE, " --symbols %s" % symbols_name(ex) if symbols_name(ex) else "")]
    else:
        lines += ["- %s" % ", ".join("`%s`" % n for n in folder_files(ex, p)),
                  "- `%s`: fill in your answers here and hand it in" % ANSWERS, "",
                  "Check them in this folder with the Day 0 checker (`<hvlab>` is your hvlab checkout): `%s`" % ex.command.format(**shown)]
    lines += ["", "## Questions", ""]
    for i, q in enumerate(ex.questions, 1):
        kind = {"int": "a number", "bool": "yes or no", "name": "a name as the suite prints it",
                "set": "a list, any of: " + ", ".join(q.choices),
                "choice": "one of: " + ", ".join(q.choices)}[q.kind]
        lines.append("%d. `%s`: %s (%s)" % (i, q.id, q.text.format(**shown), kind))
    lines += ["", "Grade: `python -m emulated_lab exercise check %s --seed %d %s`" % (ex.id, seed, ANSWERS), ""]
    return "\n".join(lines)


def answers_doc(ex: Exercise, seed: int, answers: Dict[str, object]) -> str:
    return json.dumps({"exercise": ex.id, "seed": seed, "answers": answers}, indent=2) + "\n"


def key_for(ex: Exercise, seed: int) -> Dict[str, object]:
    return ex.key(params_for(ex, seed))


def make_exercise(ex_id: str, seed: int, out_dir: str, key_path: Optional[str] = None) -> List[str]:
    """Writes the student folder (and the key); returns the files written. Nothing is left
    half-written: the folder is built in a temporary directory and moved into place."""
    ex = exercise(ex_id)
    check_seed(seed)
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise ExerciseError("--out %s exists and is not an empty directory: give a new folder" % out_dir)
    parent = os.path.dirname(out_dir)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise ExerciseError("cannot create %s: %s does not exist or is not writable" % (out_dir, parent))
    if key_path:
        key_path = os.path.abspath(key_path)
        if key_path.startswith(out_dir + os.sep):
            raise ExerciseError("--key %s is inside the student folder: write the key elsewhere" % key_path)
        if not os.path.isdir(os.path.dirname(key_path)):
            raise ExerciseError("cannot write the key %s: its directory does not exist" % key_path)
    p = params_for(ex, seed)
    drivers = driver_files(ex, p) if ex.lab is not None else {}
    tmp = tempfile.mkdtemp(prefix=".hvlab-exercise-", dir=parent)
    try:
        out: List[str] = []
        for name, path in drivers.items():
            shutil.copyfile(path, os.path.join(tmp, name))
        if drivers:
            out = run_lab(ex, p, drivers[driver_name(ex)], os.path.join(tmp, IMAGE))
        for name, text in (ex.files(p) if ex.files else {}).items():
            with open(os.path.join(tmp, name), "w", newline="") as f:
                f.write(text)
        with open(os.path.join(tmp, WORKSHEET), "w") as f:
            f.write(worksheet(ex, seed, p, out))
        with open(os.path.join(tmp, ANSWERS), "w") as f:
            f.write(answers_doc(ex, seed, {q.id: None for q in ex.questions}))
        if key_path:
            with open(key_path + ".tmp", "w") as f:
                f.write(answers_doc(ex, seed, ex.key(p)))
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)
        os.rename(tmp, out_dir)
        tmp = ""
        if key_path:
            os.replace(key_path + ".tmp", key_path)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        if key_path and os.path.exists(key_path + ".tmp"):
            os.unlink(key_path + ".tmp")
    files = [os.path.join(out_dir, n) for n in [WORKSHEET] + folder_files(ex, p) + [ANSWERS]]
    return files + ([key_path] if key_path else [])


def check_answers(ex_id: str, seed: int, answers_path: str) -> List[Verdict]:
    ex = exercise(ex_id)
    check_seed(seed)
    try:
        with open(answers_path) as f:
            text = f.read()
    except OSError as e:
        raise ExerciseError("cannot read %s: %s" % (answers_path, e.strerror or e))
    try:
        answers = read_answers(text, answers_path, ex.id, seed)
    except AnswerError as e:
        raise ExerciseError(str(e))
    return grade(ex.questions, key_for(ex, seed), answers)


# -- selftest: every answer from the suite's own output -----------------------------------------
class SelftestResult:
    def __init__(self, ex_id: str, seed: int) -> None:
        self.ex_id, self.seed = ex_id, seed
        self.verdicts: List[Verdict] = []
        self.error = ""
        self.commands: List[str] = []

    @property
    def ok(self) -> bool:
        return not self.error and bool(self.verdicts) and all(v.right for v in self.verdicts)


def folder_texts(folder: str) -> List[str]:
    """The text files of a student folder (the worksheet, the files it hands out)."""
    out = []
    for name in sorted(os.listdir(folder)):
        if name.endswith((".md", ".txt", ".json")):
            with open(os.path.join(folder, name), newline="") as f:
                out.append(f.read())
    return out


def solve_folder(ex: Exercise, seed: int, folder: str) -> Tuple[Dict[str, object], List[str]]:
    """What the suite says the answers are, for a folder made by make_exercise."""
    view = SuiteView(folder, IMAGE, symbols_name(ex))
    answers = ex.solve(view, shown_params(ex, params_for(ex, seed)))
    return answers, view.calls


def selftest_one(ex_id: str, seed: int, work: str) -> SelftestResult:
    ex = exercise(ex_id)
    r = SelftestResult(ex_id, seed)
    folder = os.path.join(work, "%s-%d" % (ex_id, seed))
    try:
        make_exercise(ex_id, seed, folder)
        given = leaks(ex, key_for(ex, seed), folder_texts(folder))
        if given:
            raise ExerciseError("the student folder gives the answer away: %s" % ", ".join(given))
        answers, r.commands = solve_folder(ex, seed, folder)
        r.verdicts = grade(ex.questions, key_for(ex, seed), answers)
    except (ExerciseError, SuiteError) as e:
        r.error = str(e)
    except (KeyError, IndexError, TypeError, ValueError) as e:
        r.error = "the suite's output lacks what the solution reads (%s: %s)" % (type(e).__name__, e)
    return r


def selftest(ids: Iterable[str], seeds: Iterable[int]) -> List[SelftestResult]:
    ids = list(ids) or [e.id for e in EXERCISES]
    for i in ids:
        exercise(i)
    work = tempfile.mkdtemp(prefix="hvlab-selftest-")
    try:
        return [selftest_one(i, s, work) for i in ids for s in seeds]
    finally:
        shutil.rmtree(work, ignore_errors=True)
