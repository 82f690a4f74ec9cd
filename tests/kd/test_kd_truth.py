"""Every suite command through `emulated_lab kd` (as `!py -m windbg_ext` runs
in WinDbg) against the emulator's ground truth for the processor it names:
VMCS fields after --refresh, capability MSRs, CR0/CR4, VMXON/VMCS PAs; on 1,
2, 4 and 8 processors."""
from __future__ import annotations

import pytest

from windbg_ext.arch.vmcs_fields import lookup

from .conftest import hexmap


def _enc(name: str) -> int:
    f = lookup(name)
    return (f[0] if isinstance(f, tuple) else f).encoding


GUEST_RIP, INSN_LEN = _enc("GUEST_RIP"), _enc("VMEXIT_INSTRUCTION_LENGTH")
CR4_VMXE = 1 << 13


def _lines(n: int):
    return ["!py -m windbg_ext --json vmcs %d --refresh --all" % n,
            "!py -m windbg_ext --json caps --cpu %d" % n,
            "!py -m windbg_ext --json check --cpu %d" % n,
            "!py -m windbg_ext --json verify %d --refresh" % n,
            "~%ds" % n,
            "r cr0, cr4"]


def assert_processor_truth(run, base: int, n: int) -> None:
    truth = run.processor(n)
    # vmcs N --refresh --all: every value the fresh snapshot holds is what VMREAD gave when hv.sys took
    # it; fields the driver's catalogue lacks are shown with no value (unknown), never invented
    doc = run.json(base)
    assert doc["notes"][0].startswith("fresh: hv.sys VMREAD every field on processor %d" % n)
    refresh = [r for r in run.report["refreshes"] if r["processor"] == n]
    assert refresh, "the refresh did not reach processor %d" % n
    vmread = hexmap(refresh[0]["vmcs_fields"])
    shown = {int(f["encoding"], 16): f["value"] for f in doc["fields"]}
    assert len(shown) >= 150
    for enc, value in shown.items():
        if value is None:
            continue
        want = vmread[enc]
        if enc == GUEST_RIP:   # hv.sys advanced RIP past the VMCALL before its snapshot (SDM 27.1)
            want += vmread[INSN_LEN]
        assert int(value, 16) == want, (n, hex(enc))
    # VMXE is set in the real CR4 (VMCS) and hidden by the read shadow
    assert int(shown[_enc("GUEST_CR4")], 16) == int(truth["cr4"], 16)
    # caps --cpu N: the capability MSRs of processor N
    caps = run.json(base + 1)["cpus"][0]["msrs"]
    for msr, value in hexmap(truth["msrs"]).items():
        assert caps["0x%x" % msr] == "0x%x" % value, (n, hex(msr))
    # check --cpu N: the real CR0/CR4 (VMCS), never the shadowed VMXE as the machine's truth
    checks = {c["requirement"]: c for c in run.json(base + 2)["processors"][0]["checks"]}
    assert "CR4=0x%x;" % int(truth["cr4"], 16) in checks["CR4 vs FIXED0/FIXED1"]["detail"]
    assert "CR0=0x%x;" % int(truth["cr0"], 16) in checks["CR0 vs FIXED0/FIXED1"]["detail"]
    assert checks["CR4.VMXE"]["status"] == "INFO" and "hv.sys" in checks["CR4.VMXE"]["detail"]
    # verify N --refresh: the VMCS hv.sys runs passes every VM-entry check
    v = run.json(base + 3)
    assert v["result"] == "success" and v["notes"][0].startswith("fresh:"), v
    # the debugger's registers are the guest's: CR4 through the read shadow
    regs = dict(p.split("=") for p in run.outputs[base + 5].split())
    assert int(regs["cr4"], 16) == int(truth["cr4_seen_by_guest"], 16)
    assert int(regs["cr0"], 16) == int(truth["cr0_seen_by_guest"], 16)
    assert int(truth["cr4"], 16) & CR4_VMXE and not int(regs["cr4"], 16) & CR4_VMXE


@pytest.mark.parametrize("cpus,named", [(1, [0]), (2, [0, 1]), (4, [1, 3]), (8, [0, 6])])
def test_commands_equal_the_ground_truth(kd, cpus, named):
    lines = ["!py -m windbg_ext --json vmm"]
    for n in named:
        lines += _lines(n)
    run = kd("baseline", cpus, lines)
    vmm = run.json(0)
    assert len(vmm["vcpus"]) == cpus
    for v in vmm["vcpus"]:
        truth = run.processor(v["vcpu"])
        assert (v["vmxon_pa"], v["vmcs_pa"]) == (truth["vmxon_pa"], truth["vmcs_pa"]), v["vcpu"]
    for i, n in enumerate(named):
        assert_processor_truth(run, 1 + i * len(_lines(0)), n)
    # each refresh: at most 6 target operations (bench: benchmarks/bench_kd_refresh.py)
    for doc in (run.json(1 + i * len(_lines(0))) for i in range(len(named))):
        assert int(doc["notes"][0].split(" target operations")[0].rsplit("; ", 1)[1]) <= 6


def test_break_in_elsewhere_and_every_processor(kd):
    """The debugger loop on processor 2 of 4; per-processor answers still name the right one."""
    lines = []
    for n in range(4):
        lines += _lines(n)
    run = kd("baseline", 4, lines, break_cpu=2)
    assert run.report["break_cpu"] == 2
    for n in range(4):
        assert_processor_truth(run, n * len(_lines(0)), n)
