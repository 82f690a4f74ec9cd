"""The NT personality, with a small mingw-built driver: PE loading,
relocations, imports, allocations with leak tracking, per-processor work by
affinity, DbgPrintEx filtering by the Kd masks in emulated memory."""
import struct

import pytest

from emulated_lab.lab import run_scenario
from emulated_lab.machine import DRIVER_BASE, Machine
from emulated_lab.nt.kernel import NtKernel
from emulated_lab.nt.pe_loader import LoadError

STATUS_INSUFFICIENT_RESOURCES = 0xC000009A


def _load(m, kern, path):
    img = kern.load_driver(path, DRIVER_BASE)
    drv = kern.make_driver_object(img)
    return img, drv


def test_driver_entry_runs_per_processor_and_unload_frees(testdrv):
    m = Machine(cpus=3)
    try:
        kern = NtKernel(m, kd_masks={"IHVDRIVER": 0xF})
        img, drv = _load(m, kern, testdrv)
        assert img.base == DRIVER_BASE and "TdResults" in img.exports
        r = kern.call_on_thread(img.entry, (drv, kern.registry_path))
        assert r.stop == "return" and r.regs["rax"] & 0xFFFFFFFF == 0
        res = img.exports["TdResults"]
        assert m.read_u64(res) == 3
        contiguous = sorted(a.pa for a in kern.live.values() if a.kind == "contiguous")
        for k in range(3):
            number, pa, flags = (m.read_u64(res + 8 * (4 + 3 * k + i)) for i in range(3))
            assert number == k                       # KeGetCurrentProcessorNumberEx after the affinity switch
            assert pa == contiguous[k]              # MmGetPhysicalAddress = the page-table walk
            assert flags & 0x41 == 0                 # VMXON: CF = ZF = 0
            assert m.vmx_state(k) in ("root",) or m.current == k
        assert len(kern.live) == 4                   # pool + one region per processor
        # the INFO message shows because Kd_IHVDRIVER_Mask = 0xF
        assert any(msg.shown and "info -5 hidden" in msg.text for msg in kern.messages)
        r = kern.call_on_thread(kern.driver_unload_routine(drv), (drv,))
        assert r.stop == "return"
        assert kern.leaks() == []
        for k in range(3):
            m.switch_to(k)
            m.park()
            assert m.vmx_state(k) == "off"
            assert not m.processors[k].state.cr4 & (1 << 13)
    finally:
        m.close()


def test_dbgprint_filter_follows_the_masks_in_memory(testdrv):
    res = run_scenario("baseline", cpus=1, driver=testdrv, workload=False)
    info = [x for x in res.messages if "info" in x.text]
    errors = [x for x in res.messages if "processors in VMX root" in x.text]
    assert info and not info[0].shown                # INFO level, default masks: filtered
    assert errors and errors[0].shown                # ERROR level passes through Kd_WIN2000_Mask = 1
    assert "%" not in errors[0].text and "pa0=" in errors[0].text


def test_every_allocation_failure_is_handled(testdrv):
    ok = run_scenario("baseline", cpus=2, driver=testdrv, workload=False)
    assert ok.loaded and ok.allocation_calls == 3
    for k in range(1, ok.allocation_calls + 1):
        res = run_scenario("alloc-fail:%d" % k, cpus=2, driver=testdrv, workload=False)
        assert res.failed_allocations == [k]
        assert res.load_status == STATUS_INSUFFICIENT_RESOURCES
        assert res.leaks == []
        assert not res.unload_ran


def test_unimplemented_import_fails_by_name(testdrv):
    m = Machine(cpus=1)
    try:
        kern = NtKernel(m)
        del kern._impl["MmGetPhysicalAddress"]
        with pytest.raises(LoadError, match="MmGetPhysicalAddress"):
            kern.load_driver(testdrv, DRIVER_BASE)
    finally:
        m.close()


def test_bad_scenario_names_are_one_line_errors(testdrv):
    from emulated_lab.lab import ScenarioError
    for bad in ("nope", "alloc-fail:0", "alloc-fail:x"):
        with pytest.raises(ScenarioError):
            run_scenario(bad, cpus=1, driver=testdrv)
    with pytest.raises(ScenarioError, match="does not exist"):
        run_scenario("baseline", cpus=1, driver="/nonexistent/hv.sys")


def test_image_opens_in_windbg_ext_and_agrees(testdrv, tmp_path):
    from windbg_ext.target.image import ImageTarget
    path = str(tmp_path / "t.hvimg")
    res = run_scenario("baseline", cpus=2, driver=testdrv, image=path, workload=False)
    t = ImageTarget(path)
    try:
        assert t.processor_count() == 2
        assert t.read_msr(0x3A, 1) == 0x5
        assert t.read_msr(0x480, 0) & 0x7FFFFFFF == 4
        mask_va = t.symbol("nt!Kd_WIN2000_Mask")
        assert struct.unpack("<I", t.read_virtual(mask_va, 4))[0] == 1
        td = t.symbol("testdrv!TdResults")
        count, = struct.unpack("<Q", t.read_virtual(td, 8))
        assert count == 2
        assert t.registers(1)["cr4"] & (1 << 13)     # image taken while VMX was on
        assert t.registers(0)["gdtr_base"] != t.registers(1)["gdtr_base"]
    finally:
        t.close()
    assert res.image_path == path


def test_cli_one_line_errors(tmp_path):
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "emulated_lab", "run", "--scenario", "nope"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "unknown scenario" in p.stderr
    p = subprocess.run([sys.executable, "-m", "emulated_lab", "scenarios"], stdout=subprocess.PIPE,
                       universal_newlines=True)
    assert p.returncode == 0 and "alloc-fail:K" in p.stdout and "launch-failure" in p.stdout


def test_ipi_and_generic_dpc_run_on_every_processor():
    from emulated_lab.asm import assemble
    m = Machine(cpus=3)
    try:
        kern = NtKernel(m)
        buf, _ = m.alloc_page()
        routine = m.place_code(assemble("mov eax, gs:[0x184]\nlea rdx, [rax + 0x10]\nmov [rcx + rax*8], rdx\n"
                                        "mov rax, rdx\nret"))
        ipi = kern.stub("KeIpiGenericCall")
        caller = m.place_code(assemble("sub rsp, 0x28\nmov rcx, %d\nmov rdx, %d\nmov rax, %d\ncall rax\n"
                                       "add rsp, 0x28\nret" % (routine, buf, ipi)))
        r = kern.call_on_thread(caller, ())
        assert r.stop == "return" and r.cpu == 0
        assert [m.read_u64(buf + 8 * k) for k in range(3)] == [0x10, 0x11, 0x12]
        assert r.regs["rax"] == 0x10          # the calling processor's result
        # KeGenericCallDpc: DeferredRoutine(Dpc, Context, SystemArgument1, SystemArgument2)
        sync, done = kern.stub("KeSignalCallDpcSynchronize"), kern.stub("KeSignalCallDpcDone")
        dpc_routine = m.place_code(assemble("""
            push rbx
            push rsi
            sub rsp, 0x28
            mov rbx, rdx
            mov rsi, r8
            mov rcx, r9
            mov rax, %d
            call rax
            mov edx, gs:[0x184]
            mov [rbx + rdx*8 + 0x100], rax
            mov rcx, rsi
            mov rax, %d
            call rax
            add rsp, 0x28
            pop rsi
            pop rbx
            ret
        """ % (sync, done)))
        gdpc = kern.stub("KeGenericCallDpc")
        caller2 = m.place_code(assemble("sub rsp, 0x28\nmov rcx, %d\nmov rdx, %d\nmov rax, %d\ncall rax\n"
                                        "add rsp, 0x28\nret" % (dpc_routine, buf, gdpc)))
        r = kern.call_on_thread(caller2, ())
        assert r.stop == "return"
        assert [m.read_u64(buf + 0x100 + 8 * k) for k in range(3)] == [0, 0, 1]   # TRUE on exactly one
        assert kern.dpc_done == 3
    finally:
        m.close()


def test_a_crash_leaves_an_image_for_post_mortem(testdrv, tmp_path, monkeypatch):
    from emulated_lab.nt import services
    from emulated_lab.nt.kernel import BugCheck
    from windbg_ext.target.image import ImageTarget

    def crash(kern, call):
        raise kern._bugcheck(0xDEAD, [call.arg(0), 0, 0, 0])
    monkeypatch.setitem(services.SERVICES, "MmGetPhysicalAddress", crash)
    image = str(tmp_path / "crash.hvimg")
    with pytest.raises(BugCheck, match="crash.hvimg"):
        run_scenario("baseline", cpus=2, driver=testdrv, image=image)
    t = ImageTarget(image)
    try:
        assert t.processor_count() == 2
        assert struct.unpack("<Q", t.read_virtual(t.symbol("testdrv!TdResults"), 8))[0] == 2   # set before the crash
        assert "KeBugCheckEx(0xdead" in t.meta["crash"]
    finally:
        t.close()
