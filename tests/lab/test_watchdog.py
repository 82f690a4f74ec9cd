"""The watchdog always fires: a driver that loops on failed VM entries (its
exit handler VMRESUMEs, fails, VMLAUNCHes again: tests/lab/fixtures/entryloop.c)
is stopped within the time limit, or at the instruction limit, however many
nested runs the lab makes for it (every failed entry is VMREAD in nested runs);
the error is one line naming the loop, and the crash image is written. The
records of exits and failure reads stay bounded."""
import struct
import subprocess
import sys
import time

import pytest

from emulated_lab.lab import run_scenario
from emulated_lab.machine import RunTimeout
from emulated_lab.records import BoundedLog, ExitLog
from emulated_lab.machine import VmExit
from windbg_ext.target.image import ImageTarget

ENTRY_FAILURE = 0x80000021     # SDM Vol.3 28.2.1 / App. C: bit 31 | 33 (invalid guest state)


def _entry_loop_counters(image):
    t = ImageTarget(image)
    try:
        return t.meta, struct.unpack("<4Q", t.read_virtual(t.symbol("entryloop!EntryLoop"), 32))
    finally:
        t.close()


def test_a_driver_looping_on_failed_entries_ends_within_the_time_limit(fixture_driver, tmp_path):
    image = str(tmp_path / "loop.hvimg")
    started = time.monotonic()
    with pytest.raises(RunTimeout) as e:
        run_scenario("baseline", cpus=1, driver=fixture_driver("entryloop"), image=image, run_timeout=2)
    elapsed = time.monotonic() - started
    assert elapsed < 30            # before the fix it never ended (each nested run restarted the clock)
    msg = str(e.value)
    assert "\n" not in msg
    assert "ran for 2 s without finishing" in msg
    assert "VM entry failed" in msg and "times in a row on processor 0, exit reason 0x80000021" in msg
    assert image in msg
    meta, (handled, last_reason, resume_failures, stage) = _entry_loop_counters(image)
    assert stage == 3 and last_reason == ENTRY_FAILURE   # the driver launched, its handler saw the failure
    assert handled >= 2 and resume_failures >= 2
    assert meta["crash"] in msg
    [[cpu, reason, count]] = meta["exit_counts"]
    assert (cpu, int(reason, 16)) == (0, ENTRY_FAILURE) and count >= handled
    assert "{:,} times in a row".format(count) in msg
    # bounded records: details of the first and last exits / failure reads only
    assert len(meta["exits"]) <= 512 and len(meta["vmread_at_entry_failure"]) <= 16
    assert meta["entry_failures_read"] >= min(count - 1, 16)


def test_the_instruction_limit_spans_nested_runs(fixture_driver, tmp_path):
    image = str(tmp_path / "loop.hvimg")
    with pytest.raises(RunTimeout) as e:
        run_scenario("baseline", cpus=1, driver=fixture_driver("entryloop"), image=image, run_timeout=600,
                     instruction_limit=300000)
    assert e.value.by == "instructions"
    assert "reached the limit of 300,000 instructions without finishing" in str(e.value)
    assert "VM entry failed" in str(e.value)
    # every nested run (the VMREADs of each failed entry) counted against one budget
    assert 300000 <= e.value.instructions < 400000
    meta, (handled, _, _, _) = _entry_loop_counters(image)
    assert handled >= 2 and "300,000 instructions" in meta["crash"]


def test_cli_timeout_is_one_line_with_the_image(fixture_driver, tmp_path):
    image = str(tmp_path / "cli.hvimg")
    p = subprocess.run([sys.executable, "-m", "emulated_lab", "run", "--cpus", "1", "--driver",
                        fixture_driver("entryloop"), "--timeout", "2", "--out", image],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: processor 0 ran for 2 s")
    assert "exit reason 0x80000021" in p.stderr and image in p.stderr
    assert "Traceback" not in p.stderr
    meta, _ = _entry_loop_counters(image)
    assert "VM entry failed" in meta["crash"]


def test_the_normal_driver_is_not_stopped_by_a_generous_instruction_limit(testdrv):
    res = run_scenario("baseline", cpus=2, driver=testdrv, workload=False, instruction_limit=5000000)
    assert res.loaded and res.unload_ran


def test_bounded_log_keeps_first_and_last_and_counts_all():
    log = BoundedLog(keep=3)
    for i in range(10):
        log.append(i)
    assert len(log) == 10 and list(log) == [0, 1, 2, 7, 8, 9] and log.dropped == 4
    assert log[2:9] == [2, 7, 8] and log[9] == 9 and log.last == 9
    with pytest.raises(IndexError):
        log[5]
    log.clear()
    assert len(log) == 0 and list(log) == [] and log.last is None


def test_exit_log_counts_every_exit_and_tracks_the_streak():
    log = ExitLog(keep=2)
    for _ in range(5):
        log.append(VmExit(1, ENTRY_FAILURE, 0, 0, False))
    log.append(VmExit(1, 10, 0, 0, True))          # lab-induced: counted apart, streak unchanged
    assert log.counts() == {ENTRY_FAILURE: 5}
    assert log.counts(lab_induced=True) == {ENTRY_FAILURE: 5, 10: 1}
    assert log.streak == (1, ENTRY_FAILURE, 5)
    log.append(VmExit(0, ENTRY_FAILURE, 0, 0, False))
    assert log.streak == (0, ENTRY_FAILURE, 1) and log.counts_by_cpu()[(1, ENTRY_FAILURE)] == 5
    assert len(list(log)) == 4 and len(log) == 7
