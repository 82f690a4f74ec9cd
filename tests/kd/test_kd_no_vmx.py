"""A processor without VMX, as strict as hardware: the lab's no-vmx machine hides
CPUID.1:ECX.VMX and has no VMX capability MSRs (RDMSR of 0x480-0x493 raises
#GP, SDM Vol.3 App. A.1), in the guest and for the debugger's rdmsr. `check`
then says what it would say on a real machine, live and on the image; the
old lab let a live `check` derive VMX support from a readable IA32_VMX_BASIC."""
from __future__ import annotations

import json

from tests.support import run_cli

from .conftest import hexmap

LINES = ["rdmsr 480", "rdmsr 3a", "!py -m windbg_ext --json check --cpu 1", "!py -m windbg_ext --json caps --cpu 1",
         "!py -m windbg_ext caps --cpu 1"]
NO_VMX = "IA32_VMX_BASIC unreadable: likely no VMX at all"
FIRMWARE = "enable VT-x in the firmware setup"


def _rows(doc):
    return {c["requirement"]: c for c in doc["processors"][0]["checks"]}


def test_no_vmx_live_and_on_the_image(kd, tmp_path):
    image = str(tmp_path / "nv.hvimg")
    run = kd("no-vmx", 2, LINES, image=image)
    assert "#GP" in run.outputs[0] and "msr[480]" not in run.outputs[0]
    assert run.outputs[1].strip() == "msr[3a] = 00000000`00000001"    # locked, VMXON not enabled
    assert hexmap(run.processor(1)["msrs"]) == {0x3A: 1}              # the ground truth: no 0x480-0x493
    live = _rows(run.json(2))
    assert run.json(2)["verdict"] == "FAIL"
    assert live["CPUID.1:ECX.VMX"]["status"] == "UNKNOWN"            # not "PASS, derived from 0x480"
    assert "#GP without VMX" in live["CPUID.1:ECX.VMX"]["detail"]
    vmxon = live["VMXON outside SMX"]
    assert vmxon["status"] == "FAIL" and "no VMX" in vmxon["detail"] and "firmware setup" not in vmxon["detail"]
    assert live["VMCS revision id"]["status"] == "UNKNOWN"
    caps = run.json(3)["cpus"][0]["msrs"]
    assert caps["0x3a"] == "0x1" and {v for m, v in caps.items() if m != "0x3a"} == {None}   # unreadable
    assert NO_VMX in run.outputs[4] and FIRMWARE not in run.outputs[4]
    # the image of the same run: CPUID recorded (VMX clear), the same MSR-based rows
    code, out, err = run_cli(["--image", image, "--json", "check", "--cpu", "1"])
    assert code == 1, err
    offline = _rows(json.loads(out))
    assert offline["CPUID.1:ECX.VMX"]["status"] == "FAIL"
    assert {k: v for k, v in offline.items() if k != "CPUID.1:ECX.VMX"} == \
        {k: v for k, v in live.items() if k != "CPUID.1:ECX.VMX"}


def test_vmx_disabled_in_the_firmware_is_still_told_apart(kd):
    """The control: VT-x off in the firmware setup leaves CPUID.1:ECX.VMX and the capability MSRs."""
    run = kd("feature-locked", 1, LINES[:1] + ["!py -m windbg_ext --json check --cpu 0", "!py -m windbg_ext caps"])
    assert run.outputs[0].startswith("msr[480] = ")
    live = _rows(run.json(1))
    assert live["CPUID.1:ECX.VMX"]["status"] == "PASS" and "derived" in live["CPUID.1:ECX.VMX"]["detail"]
    assert live["VMXON outside SMX"]["status"] == "FAIL" and "firmware setup" in live["VMXON outside SMX"]["detail"]
    assert FIRMWARE in run.outputs[2] and NO_VMX not in run.outputs[2]
