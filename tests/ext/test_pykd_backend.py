"""The pykd backend through the stand-in (real pykd names and signatures,
backed by an hvlab image): same bytes as the image backend, typed errors,
processor switching restored, and the live front end end to end (DML)."""
from __future__ import annotations

import json
import sys

import pytest

from tests.support import run_cli
from windbg_ext import cli
from windbg_ext.arch.msr_bitmap import build_msr_bitmap
from windbg_ext.target.base import TargetError, TargetMemoryError, TargetMsrError, TargetSymbolError
from windbg_ext.target.image import ImageTarget
from windbg_ext.target.kpcr import KPCR_SPAN
from windbg_ext.target.pykd_target import PykdTarget

from .images import BITMAP_PA, BITMAP_VA, KD_PAGE_VA, standard_image


@pytest.fixture
def live(standin, tmp_path):
    img = standard_image(tmp_path / "live.hvimg", bitmap=build_msr_bitmap(read=[0x3A, 0xC0000080], write=[0x1D9]),
                         per_cpu=[{}, {"regs": {"cr4": 0x26F8}, "msrs": {0x3A: 0x1}}])
    standin._attach(img)
    return standin, img


def test_same_bytes_as_the_image_backend(live):
    pykd, img = live
    t, ref = PykdTarget(pykd), ImageTarget(img)
    assert t.read_physical(BITMAP_PA, 4096) == ref.read_physical(BITMAP_PA, 4096)
    assert t.read_virtual(KD_PAGE_VA + 0xF0, 0x40) == ref.read_virtual(KD_PAGE_VA + 0xF0, 0x40)
    assert t.symbol("nt!Kd_WIN2000_Mask") == ref.symbol("nt!Kd_WIN2000_Mask")
    assert t.processor_count() == 2
    assert t.read_msr(0x480, 1) == ref.read_msr(0x480, 1)
    # the MSR read proves where the debugger's RDMSR runs: IA32_GS_BASE and the KPCR it points at
    assert t.stats.as_dict() == {"reads": 3, "bytes": 4096 + 0x40 + KPCR_SPAN, "msr_reads": 2, "symbol_lookups": 1}


def test_modules_come_from_the_debuggers_lm(live):
    pykd, img = live
    t, ref = PykdTarget(pykd), ImageTarget(img)
    assert t.modules() == ref.modules() and t.modules()
    assert t.modules() == ref.modules() and pykd._calls.count("dbgCommand") == 1   # one round trip, kept


def test_lm_text_as_windbg_prints_it():
    from windbg_ext.target.kd_text import parse_module_list
    text = ("start             end                 module name\n"
            "fffff806`10000000 fffff806`10008000   sevendays   (private pdb symbols)  C:\\sym\\sevendays.pdb\n"
            "fffff800`12a00000 fffff800`13a46000   nt         (pdb symbols)          c:\\sym\\ntkrnlmp.pdb\n"
            "\nUnloaded modules:\n"
            "fffff806`20000000 fffff806`20010000   old.sys\n")
    assert parse_module_list(text) == [{"name": "sevendays", "base": 0xfffff80610000000, "size": 0x8000},
                                       {"name": "nt", "base": 0xfffff80012a00000, "size": 0x1046000}]
    assert parse_module_list(None) == [] and parse_module_list("start end module name\n") == []


def test_registers_map_windbg_names(live):
    pykd, img = live
    regs = PykdTarget(pykd).registers(1)
    ref = ImageTarget(img).registers(1)
    for ours in ("rip", "rsp", "rflags", "cr0", "cr3", "cr4", "gdtr_base", "gdtr_limit", "idtr_base",
                 "idtr_limit", "cs", "ss", "tr", "dr7"):
        assert regs[ours] == ref[ours], ours
    assert regs["cr4"] == 0x26F8
    assert "efer" not in regs  # the image records no MSR 0xC0000080: left out, not invented


def test_processor_switch_is_restored(live):
    pykd, _ = live
    t = PykdTarget(pykd)
    pykd.setCurrentThreadId(0)
    assert t.read_msr(0x3A, 1) == 0x1 and t.read_msr(0x3A, 0) == 0x5
    assert pykd.getCurrentThreadId() == 0 and pykd._stub_cpu == 0
    del pykd._calls[:]
    t.read_msrs([0x3A, 0x480, 0x486], 1)  # one target-side switch there and one back for all three
    assert pykd._calls.count("dbgCommand") == 2 and pykd._calls.count("rdmsr") == 3 + 1  # + IA32_GS_BASE
    with pytest.raises(TargetMsrError):
        t.read_msr(0x1234, 1)
    assert pykd.getCurrentThreadId() == 0 and pykd._stub_cpu == 0  # restored after a failure too
    with pytest.raises(TargetError) as e:
        t.read_msr(0x3A, 9)
    assert "has 2 (0-1)" in str(e.value)


def test_msrs_follow_the_debugger_loop_not_the_register_context(live):
    """setCurrentThreadId moves registers only; an MSR read is verified (KPCR)
    and, when the stub is elsewhere, a real `~Ns` moves it."""
    pykd, _ = live
    t = PykdTarget(pykd)
    pykd.setCurrentThreadId(1)           # what a script may have done: context 1, stub still on 0
    assert pykd.rdmsr(0x3A) == 0x5       # the raw call answers for processor 0, not 1
    del pykd._calls[:]
    assert t.read_msr(0x3A, 1) == 0x1    # verified: GS_BASE showed processor 0, so ~1s was made
    assert "dbgCommand" in pykd._calls


def test_unverifiable_processor_is_unknown(live, monkeypatch):
    """When IA32_GS_BASE does not lead to processor N's KPCR, no value is believed."""
    pykd, _ = live
    real = pykd.dbgCommand
    monkeypatch.setattr(pykd, "dbgCommand", lambda c, s=False: None)   # a `~Ns` that does nothing
    t = PykdTarget(pykd)
    with pytest.raises(TargetMsrError) as e:
        t.read_msr(0x3A, 1)
    assert str(e.value).startswith("UNKNOWN: MSRs of processor 1") and "processor 0's KPCR" in str(e.value)
    monkeypatch.setattr(pykd, "dbgCommand", real)


def test_pykd_exceptions_become_typed_errors(live):
    pykd, _ = live
    t = PykdTarget(pykd)
    with pytest.raises(TargetMemoryError) as m:
        t.read_physical(0x7FFF0000, 16)
    assert "physical address 0x7fff0000" in str(m.value)
    with pytest.raises(TargetMemoryError):
        t.read_virtual(0xFFFFF80000900000, 16)
    with pytest.raises(TargetSymbolError) as s:
        t.symbol("hv!NoSuchThing")
    assert ".reload" in str(s.value) and "hv.sys" in str(s.value)
    assert t.cpuid(1) is None  # a debugger cannot run CPUID on the target


def _live_main(pykd, argv):
    del pykd._output[:]
    code = cli.main(argv)
    assert code == 0  # never a SystemExit inside WinDbg
    return "".join(text for text, _ in pykd._output), [dml for _, dml in pykd._output]


def test_check_round_trips(live):
    """Per processor: a verified target-side switch there and back for 6 MSRs
    (+1: IA32_GS_BASE), a register-context switch for 2 registers."""
    pykd, _ = live
    pykd.setCurrentThreadId(0)
    del pykd._calls[:]
    _live_main(pykd, ["check", "--cpu", "1"])
    assert pykd._calls.count("rdmsr") == 6 + 1 and pykd._calls.count("reg") == 2
    assert pykd._calls.count("dbgCommand") == 2          # ~1s, ~0s
    assert pykd._calls.count("setCurrentThreadId") == 2  # registers: there and back
    assert pykd.getCurrentThreadId() == 0


def test_live_check_dml(live):
    pykd, _ = live
    out, dml = _live_main(pykd, ["check"])
    assert dml and all(dml)   # DML, printed block by block
    # links name this Python (-3.N), so a click reaches the interpreter that has pykd and windbg_ext
    assert '<exec cmd="%scaps --cpu 0">caps --cpu 0</exec>' % cli.pyext_prefix() in out
    assert cli.pyext_prefix() == "!py -%d.%d -m windbg_ext " % sys.version_info[:2]
    assert "processor 1: FAIL" in out  # cpu 1: FEATURE_CONTROL locked without bit 2
    assert "derived: IA32_VMX_BASIC is readable" in out  # no CPUID over pykd
    assert "Traceback" not in out


def test_live_json_matches_offline(live):
    pykd, img = live
    for argv in (["dbgfilter"], ["msrbitmap", "0x%x" % BITMAP_VA], ["msrbitmap", "0x%x" % BITMAP_PA, "--phys"]):
        out, _ = _live_main(pykd, ["--json"] + argv)
        code, offline_out, _ = run_cli(["--image", img, "--json"] + argv)
        assert json.loads(out) == json.loads(offline_out), argv


def test_live_check_json_differs_only_in_cpuid_source(live):
    pykd, img = live
    out, _ = _live_main(pykd, ["--json", "check"])
    code, offline_out, _ = run_cli(["--image", img, "--json", "check"])
    live_doc, off_doc = json.loads(out), json.loads(offline_out)
    assert live_doc["verdict"] == off_doc["verdict"] == "FAIL"
    for lp, op in zip(live_doc["processors"], off_doc["processors"]):
        for lc, oc in zip(lp["checks"], op["checks"]):
            if lc["requirement"] != "CPUID.1:ECX.VMX":
                assert lc == oc


def test_live_errors_are_one_red_line(live):
    pykd, _ = live
    out, dml = _live_main(pykd, ["msrbitmap", "0xfffff80000900000"])
    assert out.startswith('<col fg="errfg">error: cannot read 4096 bytes at virtual address 0xfffff80000900000')
    assert out.count("\n") == 1 and all(dml)
    out, _ = _live_main(pykd, ["check", "--cpu", "&lt"])
    assert "&amp;lt" in out  # user text is escaped in DML


def test_live_help_links(live):
    pykd, _ = live
    out, _ = _live_main(pykd, ["help"])
    assert '<exec cmd="%shelp dbgfilter">dbgfilter</exec>' % cli.pyext_prefix() in out
    del pykd._output[:]
    cli.main(["help"], global_interpreter=True)   # a -g run: its links keep -g
    assert '<exec cmd="!py -g -%d.%d -m windbg_ext help dbgfilter">' % sys.version_info[:2] in \
        "".join(t for t, _ in pykd._output)


def test_live_stats(live):
    pykd, _ = live
    _live_main(pykd, ["--stats", "msrbitmap", "0x%x" % BITMAP_PA, "--phys"])
    assert ("stats: 1 reads, 4096 bytes, 0 MSR reads, 0 symbol lookups\n", False) in pykd._output


def test_live_json_is_not_dml(live):
    """JSON goes out as plain text: a '<' in it must not be taken for DML markup."""
    pykd, _ = live
    _, dml = _live_main(pykd, ["--json", "dbgfilter"])
    assert dml == [False]


def test_user_mode_session_is_refused(live, monkeypatch):
    pykd, _ = live
    monkeypatch.setattr(pykd, "isKernelDebugging", lambda: False)
    out, _ = _live_main(pykd, ["dbgfilter"])
    assert out.startswith('<col fg="errfg">error: windbg_ext needs a kernel debugging session')


# -- what a WinDbg user meets (pykd 0.3.4.15 / pykd-ext 2.0 behaviour) ---------------------
def test_ctrl_break_says_interrupted_and_restores_the_processor(live):
    """pykd-ext delivers Ctrl+Break as SystemExit("CTRL+BREAK") at the next pykd call."""
    pykd, _ = live
    pykd.setCurrentThreadId(0)
    hits = 0
    for n in range(1, 12):   # break at every point of `caps --cpu 1` (a switch there, reads, a switch back)
        pykd._break_after = n
        out, dml = _live_main(pykd, ["caps", "--cpu", "1"])
        if pykd._break_after is not None:   # finished before the break came
            pykd._break_after = None
            continue
        hits += 1
        assert "interrupted (Ctrl+Break)" in out and "Traceback" not in out, n
        assert pykd.getCurrentThreadId() == 0 and pykd._stub_cpu == 0, n
    assert hits >= 5


def test_zero_threads_is_an_error(live):
    pykd, _ = live
    pykd._fail_threads = True
    out, _ = _live_main(pykd, ["check"])
    assert "error: the debugger reports 0 processors (getNumberThreads failed)" in out


def test_dump_session_is_labelled_and_reads_no_msrs(live):
    pykd, _ = live
    pykd._dump = True
    t = PykdTarget(pykd)
    assert "kernel dump" in t.describe() and not t.live
    del pykd._calls[:]
    out, _ = _live_main(pykd, ["check", "--cpu", "1"])
    assert "rdmsr" not in pykd._calls and "dbgCommand" not in pykd._calls
    assert "processor 1: UNKNOWN" in out and "kernel dump opened in WinDbg holds no MSRs" in out
    with pytest.raises(TargetMsrError):
        t.read_msr(0x480, 0)


def test_errors_escape_every_dml_character(live):
    pykd, _ = live
    out, dml = _live_main(pykd, ["vmcs", "<a&b>"])
    assert all(dml) and "&lt;a&amp;b&gt;" in out and "<a&b>" not in out


def test_long_output_is_printed_block_by_block(live):
    pykd, _ = live
    _live_main(pykd, ["field", "--all"])
    sizes = [t.count("\n") for t, _ in pykd._output]
    assert len(sizes) > 1 and max(sizes) <= 201


def test_inside_windbg_without_pykd_says_which_python(monkeypatch, capsys):
    """pykd-ext started a Python that cannot import pykd: sys.stdout has writedml."""
    class DbgOut:
        def __init__(self):
            self.text = []

        def write(self, s):
            self.text.append(s)

        def writedml(self, s):
            self.text.append(s)

    out = DbgOut()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setitem(sys.modules, "pykd", None)   # import pykd fails
    assert cli.main(["vmm"]) == 0
    text = "".join(out.text)
    assert "cannot import pykd" in text and "!py -3.9 -m windbg_ext" in text and text.count("\n") == 1


def test_caps_of_an_unverifiable_processor_fall_back_to_what_hv_recorded(standin, lab_images, monkeypatch):
    """UNKNOWN with the reason, then the capability MSRs hv.sys read at load -- never processor 0's as 1's."""
    path, _ = lab_images("baseline", cpus=2)
    standin._attach(path)
    monkeypatch.setattr(standin, "dbgCommand", lambda c, s=False: None)   # a `~1s` that does nothing
    out, _ = _live_main(standin, ["--json", "caps", "--cpu", "1"])
    doc = json.loads(out)
    assert doc["cpus"][0]["source"] == "hv.sys's VMM context"
    assert doc["cpus"][0]["msrs"]["0x480"] == "0xd8100000000004"
    out, _ = _live_main(standin, ["caps", "--cpu", "1"])
    assert "UNKNOWN: MSRs of processor 1" in out and "hv.sys read at load instead" in out
