"""What real machines do that the lab now models (docs/driver.md): each scenario
runs the built hv.sys and is judged from the emulator's side -- guest checks,
emulated_lab.cpu_truth, the allocation tracker, the bugcheck -- on 1, 2 and 8
processors (8 only for a few, to keep `make test` short)."""
import json

import pytest

from emulated_lab import report
from emulated_lab.guest_checks import INIT_SITE
from emulated_lab.lab import HV_BUGCHECK_CODE, HV_BUGCHECK_INIT_SIGNAL, HV_BUGCHECK_VMRESUME_FAILED, run_scenario
from tests.support import build_reverted_hv, run_cli

CLEAN = ("hyperv-parent", "sleep", "debug-registers", "modern-guest", "poisoned-vmcs")
CASES = [(s, c) for s in CLEAN for c in (1, 2, 8)]


def _assert_clean_end(res):
    t = res.truth["processors"]
    assert [p["vmx"] for p in t] == ["off"] * res.cpus, res.summary()
    assert not any(p["cr4_vmxe"] for p in t)
    assert res.leaks == [] and res.held_objects == []
    assert res.unload_ran and res.bugcheck is None and not res.crash


@pytest.mark.parametrize("scenario, cpus", CASES)
def test_scenario_ends_clean_with_every_guest_check_ok(hv_sys, scenario, cpus):
    res = run_scenario(scenario, cpus=cpus, driver=hv_sys)
    assert res.loaded
    assert res.checks, "the scenario checked nothing"
    bad = [c for c in res.checks if not c.ok]
    assert not bad, bad
    _assert_clean_end(res)
    # every processor really ran hv.sys: the CPU saw a VMXON and a VMPTRLD on each
    assert all(p["vmxon_used"] and p["vmptrld_used"] for p in res.truth["processors"])


def test_hyperv_parent_sees_our_guest_traffic(hv_sys):
    res = run_scenario("hyperv-parent", cpus=2, driver=hv_sys)
    names = {c.name for c in res.checks if c.ok}
    for k in range(2):
        assert {"cpu%d:parent-msr-vp-index" % k, "cpu%d:parent-hypercalls" % k, "cpu%d:hv-ping" % k} <= names
    # synthetic MSRs exit (outside the bitmap ranges) and were passed on, not answered with #GP
    assert res.exit_counts.get(31, 0) >= 2 * 2


def test_sleep_leaves_vmx_before_and_returns_after(hv_sys):
    res = run_scenario("sleep", cpus=2, driver=hv_sys)
    ok = {c.name: c.ok for c in res.checks}
    assert ok["left-vmx-before-sleep"] and ok["cpu0:hv-ping"] and ok["cpu1:hv-ping"]
    # the CPU saw a second VMXON on each processor (after resume), on the same region
    for p in res.truth["processors"]:
        assert len(p["vmxon_used"]) == 2 and p["vmxon_used"][0] == p["vmxon_used"][1]


@pytest.mark.parametrize("cpus", [1, 2, 8])
def test_missing_control_refuses_naming_the_feature(hv_sys, cpus):
    res = run_scenario("missing-control", cpus=cpus, driver=hv_sys)
    assert res.load_status == 0xC035001E                 # STATUS_HV_FEATURE_UNAVAILABLE
    assert [c.ok for c in res.checks] == [True]
    assert any("RDTSCP" in m.text and "CPUID.80000001H" in m.text for m in res.messages if m.shown)
    assert res.leaks == [] and res.held_objects == []
    assert [p["vmx"] for p in res.truth["processors"]] == ["off"] * cpus
    assert all(not p["vmxon_used"] for p in res.truth["processors"])   # refused before any VMXON


@pytest.mark.parametrize("cpus", [1, 2])
def test_cr4_bit_forbidden_in_vmx_operation_is_refused_not_cleared(hv_sys, cpus):
    res = run_scenario("cr4-fixed1", cpus=cpus, driver=hv_sys)
    assert res.load_status == 0xC00000BB                 # STATUS_NOT_SUPPORTED
    assert [(c.name, c.ok) for c in res.checks] == [("refused-keeping-cr4", True)]
    assert res.leaks == [] and all(not p["vmxon_used"] for p in res.truth["processors"])


@pytest.mark.parametrize("cpus", [1, 2, 8])
def test_resume_failure_ends_in_the_drivers_bugcheck_with_the_error(hv_sys, cpus, tmp_path):
    image = str(tmp_path / "rf.hvimg")
    res = run_scenario("resume-failure", cpus=cpus, driver=hv_sys, image=image, raise_on_crash=False)
    code, params = res.bugcheck
    assert code == HV_BUGCHECK_CODE and params[0] == HV_BUGCHECK_VMRESUME_FAILED
    assert params[1] == 8                                  # VM entry with invalid host-state field(s)
    assert res.truth["processors"][cpus - 1]["vmx"] == "root"    # VMRESUME fell through: still in VMX root
    rc, out, err = run_cli(["--image", image, "vcpu", str(cpus - 1)])
    assert rc == 0 and "failed at VMRESUME (error 8" in out, err
    rc, out, _ = run_cli(["--image", image, "vmm"])
    assert "error 8" in out


EXIT_REASON_INIT, HV_BUGCHECK_UNEXPECTED_EXIT = 3, 2


@pytest.mark.parametrize("cpus", [1, 2, 8])
def test_init_signal_ends_in_the_bugcheck_that_names_init(hv_sys, cpus):
    """INIT in VMX non-root is a VM exit (SDM Vol.3 26.2), not a reset. The CPU model delivers it to the
    last processor right after an RDMSR; hv.sys cannot emulate the reset and stops the machine with
    P1 = 5 (INIT), P2 = the exit reason, P4 = the guest RIP (past the RDMSR)."""
    res = run_scenario("init-signal", cpus=cpus, driver=hv_sys, raise_on_crash=False)
    code, params = res.bugcheck
    assert (code, params[0], params[1]) == (HV_BUGCHECK_CODE, HV_BUGCHECK_INIT_SIGNAL, EXIT_REASON_INIT)
    assert res.exit_counts.get(EXIT_REASON_INIT) == 1
    assert "on processor %d" % (cpus - 1) in res.crash
    assert res.checks == []                  # the guest did not go on after INIT
    last = [e for e in res.exits if e.reason == EXIT_REASON_INIT][0]
    assert params[3] == last.guest_rip and last.cpu == cpus - 1
    from emulated_lab.asm import assemble
    assert (last.guest_rip - len(assemble(INIT_SITE))) % 16 == 0     # placed code is 16-byte aligned


def test_init_signal_fell_into_the_unexpected_exit_bugcheck_before():
    """The driver before (HV_REVERT_INIT_BUGCHECK): the same INIT exit, the generic bugcheck."""
    res = run_scenario("init-signal", cpus=2, driver=build_reverted_hv("INIT_BUGCHECK"), raise_on_crash=False)
    assert res.bugcheck[1][:2] == [HV_BUGCHECK_UNEXPECTED_EXIT, EXIT_REASON_INIT]


def test_report_schema_and_cli(hv_sys, tmp_path):
    from emulated_lab.__main__ import main
    path = tmp_path / "r.json"
    assert main(["run", "--cpus", "2", "--scenario", "sleep", "--driver", hv_sys, "--report", str(path)]) == 0
    r = json.loads(path.read_text())
    assert r["schema"] == report.SCHEMA_VERSION and r["scenario"] == "sleep"
    assert r["driver_entry_status"] == "0x00000000" and r["bugcheck"] is None
    assert [p["index"] for p in r["processors"]] == [0, 1]
    for p in r["processors"]:
        assert int(p["vmxon_pa"], 16) and int(p["vmcs_pa"], 16) and p["vmxon_pa"] != p["vmcs_pa"]
        assert p["vmx_on_after_unload"] is False and p["cr4_vmxe_after_unload"] is False
    assert r["leaked_allocations"] == [] and all(c["ok"] for c in r["guest_checks"])
    assert r["exits"]["0x12"] >= 4 and all(k.startswith("0x") for k in r["exits"])
    assert any("resume" in m["text"] for m in r["messages"]) and all("level" in m for m in r["messages"])


def test_report_of_a_crash_is_written_and_exit_code_says_so(hv_sys, tmp_path, capsys):
    from emulated_lab.__main__ import main
    path = tmp_path / "r.json"
    assert main(["run", "--cpus", "1", "--scenario", "resume-failure", "--driver", hv_sys,
                 "--report", str(path)]) == 1
    r = json.loads(path.read_text())
    assert r["bugcheck"]["code"] == "0x48564c42" and r["bugcheck"]["params"][:2] == ["0x4", "0x8"]
    assert "crash: KeBugCheckEx" in capsys.readouterr().out


def test_report_to_an_unwritable_place_is_one_line_and_writes_nothing(hv_sys, tmp_path, capsys):
    from emulated_lab.__main__ import main
    missing = tmp_path / "no" / "such" / "r.json"
    assert main(["run", "--scenario", "baseline", "--driver", hv_sys, "--report", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--report" in err and "does not exist" in err and "Traceback" not in err
    assert not missing.parent.exists()


def test_unload_after_vmx_was_lost_without_the_callback_is_safe(hv_sys):
    """A sleep the driver was not told about (no PowerState notification): the
    unload must not VMCALL into a processor that is out of VMX (#UD)."""
    from emulated_lab.machine import DRIVER_BASE, Machine
    from emulated_lab.nt.kernel import NtKernel

    m = Machine(cpus=2)
    try:
        kern = NtKernel(m)
        img = kern.load_driver(hv_sys, DRIVER_BASE)
        drv = kern.make_driver_object(img)
        assert kern.call_on_thread(img.entry, (drv, kern.registry_path)).regs["rax"] & 0xFFFFFFFF == 0
        m.lose_vmx_state()
        assert all(p.vmx == "off" and p.vmx_lost == 1 for p in m.truth.processors)
        r = kern.call_on_thread(kern.driver_unload_routine(drv), (drv,))
        assert r.stop == "return", r.fault
        assert kern.leaks() == [] and kern.held_objects() == []
        lost = [msg.text for msg in kern.messages if "left VMX operation without the driver" in msg.text]
        assert len(lost) == 2
    finally:
        m.close()


@pytest.mark.parametrize("cpus", [1, 2])
def test_a_processor_that_cannot_leave_vmx_keeps_its_vmm_memory(hv_sys, cpus):
    """devirt-failure: unload cannot devirtualize the last processor; the driver
    frees everything else and keeps exactly what that processor's VM exits use
    (the lab unmaps freed memory, so a use after free would fault the ping)."""
    res = run_scenario("devirt-failure", cpus=cpus, driver=hv_sys)
    assert res.unload_ran and res.bugcheck is None and not res.crash
    assert [c.ok for c in res.checks] == [True, True], res.checks
    t = res.truth["processors"]
    assert t[-1]["vmx"] == "guest" and all(p["vmx"] == "off" for p in t[:-1])
    # VMM context, vCPU array, host stack (pool) + VMXON, VMCS, MSR bitmap (contiguous) of that processor
    assert sorted(a.kind for a in res.leaks) == ["contiguous"] * 3 + ["pool"] * 3
    assert any("could not leave VMX" in m.text for m in res.messages)


def test_debug_controls_left_out_lose_dr7_and_debugctl_at_every_exit(hv_sys):
    """The lab keeps IA32_DEBUGCTL per processor and clears it at VM exit (SDM Vol.3 28.5.1), as DR7 is
    set to 0x400: the driver built without "save/load debug controls" (the driver before issue #10) fails
    both checks on every processor; the driver as it is passes them."""
    old = run_scenario("debug-registers", cpus=2, driver=build_reverted_hv("DEBUG_CONTROLS"))
    failed = {c.name: c.detail for c in old.checks if not c.ok}
    assert set(failed) == {"cpu%d:%s-survives-exit" % (k, r) for k in (0, 1) for r in ("dr7", "debugctl")}
    assert "IA32_DEBUGCTL after CPUID 0x0 (set 0x2)" in failed["cpu1:debugctl-survives-exit"]
    new = run_scenario("debug-registers", cpus=2, driver=hv_sys)
    assert all(c.ok for c in new.checks) and len(new.checks) == 6


def test_xmm_fast_hypercall_output_is_lost_when_the_pass_through_leaves_xmm_out():
    """hyperv-parent: HvCallGetVpRegisters as an XMM fast hypercall. The stub built without the XMM0-5
    copies (HV_REVERT_XMM_FAST_HYPERCALL: GPRs only, as before) restores the guest's XMM over the
    parent's output; every other check still passes, so it is exactly that path that fails."""
    old = run_scenario("hyperv-parent", cpus=2, driver=build_reverted_hv("XMM_FAST_HYPERCALL"))
    failed = {c.name: c.detail for c in old.checks if not c.ok}
    assert set(failed) == {"cpu0:parent-xmm-fast-hypercall", "cpu1:parent-xmm-fast-hypercall"}
    assert "xmm1" in failed["cpu1:parent-xmm-fast-hypercall"] and "xmm3" not in failed["cpu1:parent-xmm-fast-hypercall"]
