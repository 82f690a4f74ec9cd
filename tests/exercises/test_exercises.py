"""The lab exercises end to end: each exercise's fault is built into hv.sys
(driver/Makefile `exercise`), run on the emulated CPU, and solved from the
suite's --json output alone; the answer must equal the key. Plus grading
(a wrong answer is wrong), seeds, bad input, and the worksheet/key split.

The student folders are made once per session (one seed per exercise, a
second seed for a few), the expensive part: builds and lab runs."""
import json
import os
import re

import pytest

from emulated_lab.__main__ import main as lab_main
from emulated_lab.exercises import catalogue, kit
from emulated_lab.exercises.grading import Question, grade, normalise

IDS = [e.id for e in catalogue.EXERCISES]
# more seeds where a seed changes what the CPU does: which register, which control, which processor
MORE_SEEDS = [("d3-msr-bitmap", 5), ("d4-guest-segment", 5), ("d4-control-after-mask", 5),
              ("d2-cr-fixed-bit", 4), ("d2-cr-fixed-bit", 2),
              ("d5-debug-lost", 6), ("d5-debug-lost", 2), ("d4-guest-activity", 2)]
MADE = [(i, 1) for i in IDS] + MORE_SEEDS


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    """{(id, seed): (folder, key file)}: every exercise made once with `exercise make --key`."""
    base = tmp_path_factory.mktemp("exercises")
    out = {}
    for ex_id, seed in MADE:
        folder, key = str(base / ("%s-%d" % (ex_id, seed))), str(base / ("%s-%d.key.json" % (ex_id, seed)))
        assert lab_main(["exercise", "make", ex_id, "--seed", str(seed), "--out", folder, "--key", key]) == 0
        out[(ex_id, seed)] = (folder, key)
    return out


@pytest.mark.parametrize("ex_id,seed", MADE)
def test_suite_alone_finds_the_key(folders, ex_id, seed):
    """What a student finds with the suite on the image the emulated CPU produced == the key."""
    ex = catalogue.BY_ID[ex_id]
    folder, key_file = folders[(ex_id, seed)]
    answers, commands = kit.solve_folder(ex, seed, folder)
    assert commands, "the solution must run suite commands"
    with open(key_file) as f:
        key = json.load(f)
    assert key["exercise"] == ex_id and key["seed"] == seed
    verdicts = grade(ex.questions, key["answers"], answers)
    assert [v for v in verdicts if not v.right] == []


def test_the_key_grades_all_right_and_a_wrong_answer_wrong(folders, tmp_path, capsys):
    folder, key_file = folders[("d4-host-tr", 1)]
    assert lab_main(["exercise", "check", "d4-host-tr", "--seed", "1", key_file]) == 0
    with open(key_file) as f:
        doc = json.load(f)
    doc["answers"]["processor"] = doc["answers"]["processor"] + 1      # a neighbour's answer
    doc["answers"]["check"] = "host.cr4.fixed0"
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(doc))
    capsys.readouterr()
    assert lab_main(["exercise", "check", "d4-host-tr", "--seed", "1", str(wrong), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    right = {q["question"]: q["right"] for q in report["questions"]}
    assert right == {"processor": False, "vm_instruction_error": True, "check": False}
    assert not report["all_right"]


def test_an_empty_answers_file_is_all_wrong(folders, capsys):
    folder, _ = folders[("d2-vmxon-revision", 1)]
    assert lab_main(["exercise", "check", "d2-vmxon-revision", "--seed", "1",
                     os.path.join(folder, "ANSWERS.json")]) == 1
    out = capsys.readouterr().out
    assert "0 of 4 right" in out and out.count("WRONG") == 4


def test_the_student_folder(folders):
    """worksheet, the variant driver, the image and a blank ANSWERS.json; no key inside."""
    for (ex_id, seed), (folder, key_file) in folders.items():
        ex = catalogue.BY_ID[ex_id]
        made = kit.folder_files(ex, catalogue.params_for(ex, seed))
        assert sorted(os.listdir(folder)) == sorted(["worksheet.md", "ANSWERS.json"] + made)
        assert ("lab.hvimg" in made) == (ex.lab is not None)
        with open(os.path.join(folder, "ANSWERS.json")) as f:
            blank = json.load(f)
        assert blank == {"exercise": ex_id, "seed": seed, "answers": {q.id: None for q in ex.questions}}
        with open(os.path.join(folder, "worksheet.md")) as f:
            sheet = f.read()
        for q in ex.questions:
            assert "`%s`" % q.id in sheet
        assert "HV_FAULT" not in sheet and "fault_arg" not in sheet
        with open(key_file) as f:
            key = json.load(f)["answers"]
        for value in key.values():   # check ids are the answers nobody may read off the sheet
            if isinstance(value, str) and "." in value:
                assert value not in sheet


def test_variant_drivers_are_real_builds(folders, hv_sys):
    """Each faulty driver is its own build of the same sources, not the reference driver."""
    references = {"hv": hv_sys, "sevendays": os.path.join(kit.DRIVER_DIR, "out", "clang", "sevendays.sys")}
    for (ex_id, _), (folder, _) in folders.items():
        ex = catalogue.BY_ID[ex_id]
        if ex.lab is None:
            continue
        with open(references[ex.driver], "rb") as f:
            reference = f.read()
        with open(os.path.join(folder, kit.driver_name(ex)), "rb") as f:
            data = f.read()
        assert data[:2] == b"MZ"
        if catalogue.BY_ID[ex_id].fault is not None:
            assert data != reference, ex_id
        else:
            assert data == reference, ex_id


def test_keys_follow_the_seed():
    """Neighbours get different answers: over 20 seeds every exercise has more than one key."""
    for ex in catalogue.EXERCISES:
        keys = {json.dumps(kit.key_for(ex, seed), sort_keys=True) for seed in range(20)}
        assert len(keys) > 1, ex.id
        assert kit.key_for(ex, 3) == kit.key_for(ex, 3)


def test_every_question_of_every_key_is_answerable():
    for ex in catalogue.EXERCISES:
        for seed in (0, 1):
            key = kit.key_for(ex, seed)
            assert sorted(key) == sorted(q.id for q in ex.questions), ex.id
            for q in ex.questions:
                assert normalise(q, key[q.id]) is not None, (ex.id, q.id)


def test_faults_are_defined_once_in_the_driver():
    with open(kit.FAULT_HEADER) as f:
        names = catalogue.fault_names(f.read())
    used = {e.fault for e in catalogue.EXERCISES if e.fault} | {f for e in catalogue.EXERCISES for f in e.other_faults}
    assert used <= set(names)
    assert set(names) - {"NONE"} == used, "a fault in hv_fault.h that no exercise uses"
    sources = []
    for d, _, files in os.walk(kit.DRIVER_DIR):
        if os.sep + "out" in d:
            continue
        sources += [open(os.path.join(d, f)).read() for f in files if f.endswith(".c")]
    for name in used:   # exactly one #if block per fault, at its spot
        assert sum(s.count("#if HV_FAULT == HV_FAULT_%s" % name) for s in sources) == 1, name


def test_at_least_fifteen_ordered_by_day():
    assert len(catalogue.EXERCISES) >= 15
    days = [e.day for e in catalogue.EXERCISES]
    assert days == sorted(days)
    assert len(set(IDS)) == len(IDS)


def test_docs_walk_through_every_exercise():
    with open(os.path.join(kit.ROOT, "docs", "exercises.md")) as f:
        doc = f.read()
    for ex in catalogue.EXERCISES:
        assert re.search(r"^### `?%s`?" % re.escape(ex.id), doc, re.M), ex.id


def test_grading_normalises_numbers_words_and_lists():
    q_int, q_set = Question("a", "", "int"), Question("b", "", "set", ("ERROR", "INFO"))
    q_bool, q_name = Question("c", "", "bool"), Question("d", "", "name")
    key = {"a": 0x80000021, "b": ["INFO", "ERROR"], "c": False, "d": "guest.tr.type_ia32e"}
    for a in (0x80000021, "0x80000021", "80000021h", "0n2147483681"):
        assert grade([q_int], key, {"a": a})[0].right
    assert not grade([q_int], key, {"a": "0x21"})[0].right
    assert grade([q_set], key, {"b": ["error", "info"]})[0].right
    assert not grade([q_set], key, {"b": ["error"]})[0].right
    assert grade([q_bool], key, {"c": "no"})[0].right and not grade([q_bool], key, {"c": True})[0].right
    assert grade([q_name], key, {"d": "Guest.TR.type_ia32e"})[0].right
    assert not grade([q_name], key, {"d": "guest.tr.type_legacy"})[0].right


@pytest.mark.parametrize("argv,message", [
    (["exercise", "make", "nope", "--out", "{tmp}/x"], "unknown exercise 'nope'"),
    (["exercise", "make", "d4-host-tr", "--seed", "-1", "--out", "{tmp}/x"], "--seed must be"),
    (["exercise", "make", "d4-host-tr", "--out", "{tmp}/full"], "not an empty directory"),
    (["exercise", "make", "d4-host-tr", "--out", "{tmp}/x", "--key", "{tmp}/x/key.json"], "inside the student folder"),
    (["exercise", "make", "d4-host-tr", "--out", "{tmp}/no/such/x"], "does not exist"),
    (["exercise", "check", "d4-host-tr", "--seed", "1", "{tmp}/missing.json"], "cannot read"),
    (["exercise", "check", "d4-host-tr", "--seed", "1", "{tmp}/notjson.json"], "is not JSON"),
    (["exercise", "check", "d4-host-tr", "--seed", "1", "{tmp}/other.json"], "answers exercise 'd4-host-cr4'"),
    (["exercise", "check", "d4-host-tr", "--seed", "2", "{tmp}/seed1.json"], "made for seed 1"),
    (["exercise", "selftest", "--seeds", "x"], "--seeds takes"),
    (["exercise"], "needs an action"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    (tmp_path / "notjson.json").write_text("{")
    (tmp_path / "other.json").write_text(json.dumps({"exercise": "d4-host-cr4", "answers": {}}))
    (tmp_path / "seed1.json").write_text(json.dumps({"exercise": "d4-host-tr", "seed": 1, "answers": {}}))
    before = sorted(os.listdir(tmp_path))
    assert lab_main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == before       # nothing written half-way


def test_list_json(capsys):
    assert lab_main(["exercises", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == IDS
    assert all(set(r) == {"id", "day", "title", "skills", "fault"} for r in rows)


def test_fault_blocks_compile_on_the_msvc_side(tmp_path):
    """Each fault block in core/ also compiles as the WDK build sees it (clang in MSVC mode,
    warnings are errors; see tests/driver/test_static_checks.py)."""
    import glob
    import subprocess
    (tmp_path / "setjmp.h").write_text("typedef int jmp_buf[16];\n")
    core = sorted(glob.glob(os.path.join(kit.DRIVER_DIR, "core", "*.c")))
    checked = 0
    for ex, fault in [(e, f) for e in catalogue.EXERCISES if e.fault for f in (e.fault,) + e.other_faults]:
        p = catalogue.params_for(ex, 1)
        for src in core:
            with open(src) as f:
                if "HV_FAULT_%s" % fault not in f.read():
                    continue
            r = subprocess.run(["clang", "--target=x86_64-pc-windows-msvc", "-fms-extensions", "-fms-compatibility",
                                "-D_KERNEL_MODE", "-D_AMD64_", "-D__MM_MALLOC_H", "-isystem", str(tmp_path),
                                "-I", os.path.join(kit.DRIVER_DIR, "include"), "-Wall", "-Wextra", "-Werror",
                                "-DHV_FAULT=HV_FAULT_%s" % fault, "-DHV_FAULT_CPU=%d" % p["fault_cpu"],
                                "-DHV_FAULT_ARG=%d" % p["fault_arg"], "-fsyntax-only", src],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
            assert r.returncode == 0, "%s with %s:\n%s" % (src, fault, r.stdout)
            checked += 1
    assert checked >= 12


@pytest.mark.parametrize("arg", [0, 1])
def test_no_secondary_controls_makes_rdtscp_fault_on_the_cpu(arg):
    """The d5-no-secondary story comes from the CPU model: the guest's RDTSCP raises #UD (vector 6)."""
    from emulated_lab.lab import run_scenario
    res = run_scenario("baseline", cpus=2, driver=kit.build_variant("NO_SECONDARY_CONTROLS", 0, arg))
    assert res.loaded
    for k in range(2):
        assert res.workload[k]["rdtscp"]["fault"] == 6
        assert res.workload[k]["rdtscp"]["exits"] == []


def test_the_worksheet_hides_the_machine_settings_that_are_the_answer():
    """d0-dbgfilter's Kd mask, d2-feature-locked's IA32_FEATURE_CONTROL and the machine whose CR4_FIXED1
    forbids a bit (d2-cr-fixed-bit, seed 2: the scenario's name says which) are the answers: the
    worksheet's command leaves them out; the full command (for the instructor) has them."""
    for ex_id, seed, option in (("d0-dbgfilter", 1, "--kd-mask IHVDRIVER="),
                                ("d2-feature-locked", 1, "--feature-control 0x"),
                                ("d2-cr-fixed-bit", 2, "--scenario cr4-fixed1")):
        ex = catalogue.BY_ID[ex_id]
        p = catalogue.params_for(ex, seed)
        assert option not in kit.run_command(ex, p) and "machine's settings" in kit.run_command(ex, p)
        full = kit.run_command(ex, p, secret=False)
        assert option in full and full.endswith("--out lab.hvimg")


def test_no_student_folder_gives_the_answer_away(folders):
    """No worksheet or handed-out file holds a key's answer: the DbgPrint lines of an exercise
    build (TRACE level, dropped by a stock filter), the lab's own exit counts, guest checks and
    hang diagnosis stay out of what the student gets."""
    for (ex_id, seed), (folder, key_file) in folders.items():
        with open(key_file) as f:
            key = json.load(f)["answers"]
        assert kit.leaks(catalogue.BY_ID[ex_id], key, kit.folder_texts(folder)) == [], (ex_id, seed)


def test_the_leak_check_finds_what_the_old_worksheets_showed():
    """Lines the worksheets showed before: the driver's ERROR line naming the processor, the
    emulator's exit counts, a guest check naming the missing control."""
    ex = catalogue.BY_ID["d4-guest-activity"]
    key = {"processor": 2, "exit_reason": 0x80000021, "check": "guest.activity.supported",
           "field": "GUEST_ACTIVITY_STATE"}
    old = ["  [cpu2] hv: processor 2 failed: step 8, VM-instruction error 0, status 0xc0000001",
           "VM exits seen by the emulator: 3 (0xa x1, 0x12 x1, 0x80000021 x1)",
           "GUEST_ACTIVITY_STATE = 0xa4a3a2a1: not supported"]
    assert kit.leaks(ex, key, old) == ["processor (2)", "exit_reason (2147483681)", "field (GUEST_ACTIVITY_STATE)"]
    assert kit.leaks(ex, key, ["after: VMX cpu0=off, cpu1=off, cpu2=off", "DbgPrintEx: 7 message(s), 0 shown"]) == []
    summary = ["scenario debug-registers on 2 processors: DriverEntry returned 0x00000000",
               "VM exits seen by the emulator: 32 (0xa x14)", "guest checks: 6, 2 failed",
               "  FAILED cpu1:dr7-survives-exit: DR7 after CPUID 0x400 (armed 0x402)",
               "      controls OFF)", "image: lab.hvimg"]
    assert kit.machine_view(summary) == [summary[0], summary[-1]]


# seeds whose d5-debug-lost variants cover both registers and all three ARGs (no save, no load, neither)
DEBUG_LOST_SEEDS = [6, 0, 1, 4, 2, 5]


@pytest.mark.parametrize("seed", DEBUG_LOST_SEEDS)
def test_dropped_debug_controls_lose_the_chosen_register_on_that_processor_only(seed):
    """d5-debug-lost's symptom comes from the machine: the guest arms DR7 (or sets IA32_DEBUGCTL.BTF),
    takes a CPUID exit and reads it back; every exit resets both (SDM 28.5.1: DR7 = 400H, IA32_DEBUGCTL
    = 0), and without both debug controls nothing brings them back. The register of the seed's story is
    lost on the faulty processor, kept on the others (the lab's guest checks)."""
    from emulated_lab.lab import run_scenario
    ex = catalogue.BY_ID["d5-debug-lost"]
    p = catalogue.params_for(ex, seed)
    res = run_scenario(ex.lab(p).scenario, cpus=p["cpus"],
                       driver=kit.build_variant(ex.fault, p["fault_cpu"], p["fault_arg"]))
    assert res.loaded
    kept = {c.name: c.ok for c in res.checks}
    check = catalogue.DEBUG_REGISTERS[p["register"]].lab_check
    assert [k for k in range(p["cpus"]) if not kept["cpu%d:%s" % (k, check)]] == [p["fault_cpu"]]
    # the same two controls carry the other register: it is lost there too
    for other in catalogue.DEBUG_REGISTERS.values():
        assert not kept["cpu%d:%s" % (p["fault_cpu"], other.lab_check)]


def test_debug_lost_seeds_cover_both_registers_and_every_arg():
    ex = catalogue.BY_ID["d5-debug-lost"]
    params = [catalogue.params_for(ex, s) for s in DEBUG_LOST_SEEDS]
    seen = {(p["register"], p["fault_arg"]) for p in params}
    assert seen == {(r, a) for r in catalogue.DEBUG_REGISTERS for a in (1, 2, 3)}


def test_an_unwritten_activity_state_fails_only_where_vmclear_leaves_junk():
    """The lab's default CPU leaves unwritten fields 0 (= active): the fault shows only in the
    poisoned-vmcs scenario, where it is exit 0x80000021 (SDM 27.3.1.5)."""
    from emulated_lab.lab import run_scenario
    driver = kit.build_variant("GUEST_ACTIVITY_UNWRITTEN", 1, 0)
    assert run_scenario("baseline", cpus=2, driver=driver, workload=False).loaded
    res = run_scenario("poisoned-vmcs", cpus=2, driver=driver, workload=False)
    assert not res.loaded
    assert [c for c, _ in res.failure_vmreads] == [1]


@pytest.mark.parametrize("arg,exception", [(5, "#GP"), (32 + 13, "#UD")])
def test_a_cr_bit_left_clear_makes_vmxon_fault(arg, exception):
    """d2-cr-fixed-bit on the CPU model: VMXON with CR0.NE = 0 raises #GP(0), with CR4.VMXE = 0
    #UD (SDM Vol. 3 31.3 VMXON); the processors before it were virtualized."""
    from emulated_lab.lab import run_scenario
    res = run_scenario("baseline", cpus=2, driver=kit.build_variant("CR_FIXED_BIT", 1, arg), raise_on_crash=False)
    assert "processor 1: exception %s" % exception in res.crash


def test_a_driver_that_ignores_cr4_fixed1_faults_at_vmxon_where_fixed1_forbids_a_bit():
    """d2-cr-fixed-bit's FIXED1 variant on the lab: on the cr4-fixed1 machine (IA32_VMX_CR4_FIXED1 reports
    OSXSAVE fixed to 0) VMXON with CR4.OSXSAVE set raises #GP(0) (SDM Vol. 3 31.3 VMXON, 24.8), on the
    first processor; on a machine whose FIXED1 allows the bit the same driver loads."""
    from emulated_lab.lab import run_scenario
    driver = kit.build_variant("CR4_FIXED1_IGNORED", 0, 0)
    res = run_scenario("cr4-fixed1", cpus=2, driver=driver, raise_on_crash=False, workload=False)
    assert "processor 0: exception #GP" in res.crash
    assert run_scenario("baseline", cpus=2, driver=driver, workload=False).loaded
