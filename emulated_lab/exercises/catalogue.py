"""The exercises, as data: one entry per exercise, ordered by the day it teaches.

An entry says which fault to build into hv.sys (a name from
driver/include/hv_fault.h, or None when the fault is in the machine or the
debuggee's settings), how a seed picks the details (`params`), how the lab
runs it, the story and the questions, the key (`key`: from the params and
Intel facts alone, never from the suite) and how a student finds each answer
with the suite (`solve`: from the suite's --json output only; `exercise
selftest` checks solve == key for every exercise and seed).

Adding an exercise = one `Exercise(...)` here + its `#if HV_FAULT == ...`
block in the driver (docs/exercises.md, "Adding an exercise").
"""
from __future__ import annotations

import random
import re
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from windbg_ext.arch.controls import CONTROL_BITS
from windbg_ext.arch.exits import EXIT_REASONS, SEGMENT_NAMES
from windbg_ext.arch.registers import CR0_BITS, CR4_BITS, bit_of
from windbg_ext.arch.vm_errors import VM_INSTRUCTION_ERRORS

from emulated_lab.exercises.grading import Question
from emulated_lab.nt import print_filter
from emulated_lab.exercises.suite import SuiteView

Params = Dict[str, object]



def _vm_error(name: str) -> int:
    """A VM-instruction error number by its name in the suite's table (SDM 31.4)."""
    return next(n for n, (nm, _) in VM_INSTRUCTION_ERRORS.items() if nm == name)


def _exit_reason(name: str) -> int:
    """A basic exit reason by its name in the suite's table (SDM App. C)."""
    return next(n for n, r in EXIT_REASONS.items() if r.name == name)


# What VM-entry failures report: VMfailValid with error 7 (invalid control fields) or
# 8 (invalid host state), or a VM exit "invalid guest state" with bit 31 set (SDM 28.8, 28.2.1).
VMERR_INVALID_CONTROLS = _vm_error("ENTRY_INVALID_CONTROL_FIELD")
VMERR_INVALID_HOST_STATE = _vm_error("ENTRY_INVALID_HOST_STATE_FIELD")
EXIT_ENTRY_FAILURE_GUEST_STATE = _exit_reason("INVALID_GUEST_STATE") | 1 << 31
# The emulated CPU's IA32_VMX_BASIC[30:0] (docs/lab.md, "Measured facts about the emulator").
LAB_REVISION_ID = 4
# A VMXON region is 4 KiB and must be 4-KByte aligned (SDM 25.11.5, App. A.1).
VMX_REGION_BYTES = 4096

SEGMENTS = tuple(n.lower() for n in SEGMENT_NAMES)  # ES..GS: the order of the VMCS guest segment fields
STEP_CHOICES = ("VMX unsupported", "IA32_FEATURE_CONTROL", "allocation", "VMXON", "VMCLEAR", "VMPTRLD",
                "VMWRITE", "VMLAUNCH")
LEVELS = ("ERROR", "WARNING", "TRACE", "INFO")


class LabRun(NamedTuple):
    scenario: str = "baseline"
    kd_masks: Optional[Dict[str, int]] = None
    feature_control: Optional[int] = None
    timeout: float = 20.0
    crashes: bool = False          # the fault ends the run in a crash/hang: the image is the post-mortem
    hidden_scenario: bool = False  # the scenario is the machine the answer is about: the worksheet leaves it out


class Exercise(NamedTuple):
    id: str
    day: int
    title: str
    skills: Tuple[str, ...]
    fault: Optional[str]                       # HV_FAULT_<fault> in driver/include/hv_fault.h
    params: Callable[[random.Random], Params]  # seeded details: always "cpus"; "fault_cpu"/"fault_arg" for the build
    lab: Optional[Callable[[Params], LabRun]]  # None: no lab run, the exercise is the files below
    story: str                                 # worksheet text; {name} takes a shown param
    shown: Tuple[str, ...]                     # params the worksheet tells the student
    questions: Tuple[Question, ...]            # question texts may use shown params too
    key: Callable[[Params], Dict[str, object]]
    solve: Callable[[SuiteView, Params], Dict[str, object]]   # gets only the shown params
    files: Optional[Callable[[Params], Dict[str, str]]] = None  # extra files for the student folder
    command: str = ""                          # how to look at the files (worksheet); {name} takes a shown param
    driver: str = "hv"                         # the driver the fault is built into: hv | sevendays
    other_faults: Tuple[str, ...] = ()         # faults a seed may build instead (its params' "fault")


def _lab(**kw) -> Callable[[Params], LabRun]:
    return lambda p: LabRun(**kw)


def _cpus_and_one(rng: random.Random, first: int = 0) -> Params:
    cpus = rng.choice((2, 3, 4))
    return {"cpus": cpus, "fault_cpu": rng.randrange(first, cpus)}


# -- questions several exercises ask ------------------------------------------------------
Q_PROCESSOR = Question("processor", "Which processor (index) failed?", "int")
Q_STEP = Question("step", "At which step of the per-processor sequence did it fail?", "choice", STEP_CHOICES)
Q_VMERR = Question("vm_instruction_error", "Which VM-instruction error number was reported (0 if none)?", "int")
Q_CHECK = Question("check", "Which VM-entry check fails first (the check id, e.g. guest.rip.canonical)?", "name")
Q_EXIT = Question("exit_reason", "Which exit reason did VM entry report (full 32-bit value, 0 if none)?", "int")


def _failure(s: SuiteView, *names: str) -> Dict[str, object]:
    lf = s.last_failure()
    return {n: lf[n] for n in names}


def _entry_failure(s: SuiteView, *names: str) -> Dict[str, object]:
    """Processor from the driver's failure record, the rest from verify on that processor."""
    cpu = s.last_failure()["processor"]
    out = dict(s.first_failing_check(cpu), processor=cpu)
    return {n: out[n] for n in ("processor",) + names}


# -- Day 0 ---------------------------------------------------------------------------------
def _dbgfilter_params(rng: random.Random) -> Params:
    while True:
        mask = rng.choice((0x0, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x8, 0x9, 0xA, 0xC, 0x10, 0x11, 0x1F0))
        if (mask & 0xE) != 0xE:
            return {"cpus": 2, "mask": mask}


def _dbgfilter_key(p: Params) -> Dict[str, object]:
    # the answer comes from the lab's own model of the kernel's filter, not the suite's `dbgfilter`
    masks = {print_filter.SYSTEM_MASK: 1, print_filter.COMPONENT_TABLE[print_filter.IHVDRIVER_ID]: p["mask"]}
    dropped = [name for level, name in enumerate(LEVELS)
               if not print_filter.shown(print_filter.IHVDRIVER_ID, level, masks.__getitem__)]
    return {"dropped": dropped, "ihvdriver_mask": p["mask"]}


def _dbgfilter_solve(s: SuiteView, shown: Params) -> Dict[str, object]:
    j = s.json("dbgfilter")
    return {"dropped": j["dropped"], "ihvdriver_mask": int(j["masks"]["Kd_IHVDRIVER_Mask"]["value"], 16)}


# The Day 0 boot settings a student can get wrong, as check-debuggee names its rows.
BOOT_ITEMS = ("hyperv_launch", "testsigning", "kdnet_debug", "kdnet_hostip", "kdnet_port")


def _debuggee_params(rng: random.Random) -> Params:
    host = "192.168.%d.%d" % (rng.choice((56, 100, 122)), rng.randrange(1, 10))
    return {"cpus": 1, "host_ip": host, "port": 50000 + rng.randrange(40),
            "broken": sorted(rng.sample(BOOT_ITEMS, rng.choice((1, 2, 3)))), "other_ip_last": rng.randrange(10, 250),
            "bad_port": rng.choice((1234, 5000, 50100))}


def _debuggee_files(p: Params) -> Dict[str, str]:
    """`bcdedit /enum {current}` and `bcdedit /dbgsettings` as a VM with p's mistakes prints them."""
    broken = p["broken"]
    ip = p["host_ip"]
    if "kdnet_hostip" in broken:
        ip = ip.rsplit(".", 1)[0] + ".%d" % p["other_ip_last"]
    port = p["bad_port"] if "kdnet_port" in broken else p["port"]
    rows = [("identifier", "{current}"), ("device", "partition=C:"), ("path", "\\WINDOWS\\system32\\winload.efi"),
            ("description", "Windows 11"), ("locale", "en-US"), ("inherit", "{bootloadersettings}"),
            ("testsigning", "No" if "testsigning" in broken else "Yes"), ("osdevice", "partition=C:"),
            ("systemroot", "\\WINDOWS"), ("nx", "OptIn"), ("bootmenupolicy", "Standard"),
            ("hypervisorlaunchtype", "Auto" if "hyperv_launch" in broken else "Off"),
            ("debug", "No" if "kdnet_debug" in broken else "Yes")]
    enum = "\r\nWindows Boot Loader\r\n-------------------\r\n" + "".join(
        "%-24s%s\r\n" % (k, v) for k, v in rows)
    dbg = "".join("%-24s%s\r\n" % (k, v) for k, v in (
        ("key", "1a2b3c4d5e6f7.2b3c4d5e6f7g8.3c4d5e6f7g8h9.4d5e6f7g8h9i0"), ("debugtype", "NET"),
        ("hostip", ip), ("port", str(port)), ("dhcp", "Yes"))) + "The operation completed successfully.\r\n"
    return {"enum.txt": enum, "dbg.txt": dbg}


def _debuggee_solve(s: SuiteView, shown: Params) -> Dict[str, object]:
    code, j = s.check_debuggee(["--bcdedit-enum", "enum.txt", "--dbgsettings", "dbg.txt",
                                "--host-ip", shown["host_ip"], "--port", str(shown["port"])])
    return {"failing": [r["id"] for r in j["results"] if r["status"] == "FAIL"], "exit_code": code}


# -- Day 2 ---------------------------------------------------------------------------------
def _fc_solve(s: SuiteView, shown: Params) -> Dict[str, object]:
    caps = s.caps(0)
    return {"step": s.last_failure()["step"], "feature_control": int(caps["msrs"]["0x3a"], 16),
            "vmx_outside_smx": caps["feature_control"]["vmx_outside_smx"]}


def _vmxon_exercise(ex_id: str, title: str, fault: str, args: Tuple[int, ...], story: str, question: Question,
                    answer: int, basic_item: str) -> Exercise:
    """VMXON fails on processor k (VMfailInvalid: no error number, SDM 31.3); the last question is
    answered by the IA32_VMX_BASIC item `basic_item` of `caps --json`."""
    def solve(s: SuiteView, shown: Params) -> Dict[str, object]:
        return dict(_failure(s, "processor", "step", "vm_instruction_error"),
                    **{question.id: s.caps(0)["basic"][basic_item]})

    return Exercise(
        ex_id, 2, title, ("vmm", "caps", "VMXON region"), fault,
        lambda rng: dict(_cpus_and_one(rng), fault_arg=rng.choice(args)), _lab(), story, ("cpus",),
        (Q_PROCESSOR, Q_STEP, Q_VMERR, question),
        lambda p: {"processor": p["fault_cpu"], "step": "VMXON", "vm_instruction_error": 0, question.id: answer},
        solve)


# CR0/CR4 bits VMX operation needs set (IA32_VMX_CR0/CR4_FIXED0, SDM 24.8, A.7, A.8) that a driver
# running in IA-32e mode can leave clear: CR0.PE and CR0.PG cannot be cleared there (#GP on MOV CR0).
CR_FIXED_CHOICES = (("cr0", bit_of(CR0_BITS, "NE")), ("cr4", bit_of(CR4_BITS, "VMXE")))
# A bit the OS set that IA32_VMX_CR4_FIXED1 reports fixed to 0 (A.8): the lab's `cr4-fixed1` machine, as
# nested parents do. A driver that takes the OS's CR4 as allowed executes VMXON with it: #GP(0) (31.3).
CR4_FIXED1_CHOICE = ("cr4", bit_of(CR4_BITS, "OSXSAVE"))
CR4_FIXED1_RUN = {"fault": "CR4_FIXED1_IGNORED", "scenario": "cr4-fixed1"}


def _cr_fixed_params(rng: random.Random) -> Params:
    reg, bit = rng.choice(CR_FIXED_CHOICES + (CR4_FIXED1_CHOICE,))
    if (reg, bit) == CR4_FIXED1_CHOICE:     # every processor would fault: processor 0 is the first
        return dict(CR4_FIXED1_RUN, cpus=rng.choice((2, 3, 4)), register=reg, bit=bit, fault_cpu=0, fault_arg=0)
    # the build's ARG: CR0 bit n is n, CR4 bit n is 32 + n (driver/include/hv_fault.h)
    return dict(_cpus_and_one(rng), register=reg, bit=bit, fault_arg=bit + (32 if reg == "cr4" else 0))


def _cr_fixed_solve(s: SuiteView, shown: Params) -> Dict[str, object]:
    # processors are virtualized one after another: the first one not launched is where VMXON faulted
    cpu = next(v["vcpu"] for v in s.json("vmm")["vcpus"] if v["state"] != "launched")
    regs = s.json("check", "--cpu", str(cpu))["processors"][0]["control_registers"]
    wrong = [(reg, b["bit"]) for reg in ("cr0", "cr4") for b in regs[reg]["missing"] + regs[reg]["forbidden"]]
    if len(wrong) != 1:
        return {"register": [r for r, _ in wrong], "bit": [b for _, b in wrong]}
    return {"register": wrong[0][0], "bit": wrong[0][1]}


# -- Day 3 ---------------------------------------------------------------------------------
COMMON_MSRS = (0x10, 0x1B, 0x174, 0x175, 0x176, 0x1D9, 0x277, 0xC0000080, 0xC0000081, 0xC0000082,
               0xC0000084, 0xC0000100, 0xC0000101, 0xC0000102, 0xC0000103)
STALE_BYTES = (0xCD, 0xFF, 0xAA, 0x55, 0x0F, 0xF0, 0x33, 0xCC, 0x5A, 0xA5)


def _bitmap_params(rng: random.Random) -> Params:
    p = _cpus_and_one(rng)
    p["fault_arg"] = rng.choice(STALE_BYTES)
    p["read_msr"], p["write_msr"] = rng.sample(COMMON_MSRS, 2)
    p["read_msr_hex"], p["write_msr_hex"] = "0x%x" % p["read_msr"], "0x%x" % p["write_msr"]
    return p


def _bitmap_key(p: Params) -> Dict[str, object]:
    # Worked out here, not with the suite's msr_exits (the solver uses that): every byte of the page is
    # the stale byte, and each of the four 1-KByte bitmaps gives MSR m (low 0..1FFFH or high
    # C0000000H..C0001FFFH, as all COMMON_MSRS are) bit (m & 1FFFH) mod 8 of one byte (SDM 25.6.9)
    def exits(msr: int) -> bool:
        return bool(p["fault_arg"] >> (msr & 7) & 1)
    return {"vcpu": p["fault_cpu"], "read_exits": exits(p["read_msr"]), "write_exits": exits(p["write_msr"])}


def _bitmap_solve(s: SuiteView, shown: Params) -> Dict[str, object]:
    busy = [k for k in range(shown["cpus"]) if s.json("msrbitmap", str(k))["read"]]
    if len(busy) != 1:
        return {"vcpu": busy}
    k = busy[0]
    r = s.json("msrbitmap", str(k), "--msr", shown["read_msr_hex"])["msrs"][0]
    w = s.json("msrbitmap", str(k), "--msr", shown["write_msr_hex"])["msrs"][0]
    return {"vcpu": k, "read_exits": r["read_exits"], "write_exits": w["write_exits"]}


def _skip_params(rng: random.Random) -> Params:
    cpus = rng.choice((2, 3, 4))
    return {"cpus": cpus, "fault_arg": rng.choice((0, 1))}


def _skip_key(p: Params) -> Dict[str, object]:
    return {"vcpu": 0 if p["fault_arg"] == 0 else p["cpus"] - 1, "virtualized": p["cpus"] - 1,
            "driver_state": "running"}


def _skip_solve(s: SuiteView, shown: Params) -> Dict[str, object]:
    j = s.json("vmm")
    left = [v["vcpu"] for v in j["vcpus"] if v["state"] != "launched"]
    return {"vcpu": left[0] if len(left) == 1 else left, "virtualized": j["vmm"]["virtualized_count"],
            "driver_state": j["descriptor"]["driver_state"]}


# -- Day 4: controls, host state, guest state -------------------------------------------
CONTROL_KINDS = ("pin", "proc", "exit", "entry")
# (control, bit): VM-exit / VM-entry controls the emulated CPU does not offer (allowed-1 = 0, SDM A.4/A.5):
# exit 23 clear IA32_BNDCFGS, 24 conceal VMX from PT, 25 clear IA32_RTIT_CTL, 28 load CET state,
# 29 load PKRS; entry 16 load IA32_BNDCFGS, 17 conceal VMX from PT, 18 load IA32_RTIT_CTL,
# 20 load CET state, 22 load PKRS.
FORBIDDEN_BITS = ((2, 23), (2, 24), (2, 25), (2, 28), (2, 29), (3, 16), (3, 17), (3, 18), (3, 20), (3, 22))


def _raw_params(rng: random.Random) -> Params:
    return {"cpus": rng.choice((2, 3)), "fault_arg": rng.randrange(4)}


def _after_mask_params(rng: random.Random) -> Params:
    kind, bit = rng.choice(FORBIDDEN_BITS)
    return {"cpus": rng.choice((2, 3)), "fault_arg": kind * 32 + bit, "kind": kind, "bit": bit}


def _after_mask_solve(s: SuiteView, shown: Params) -> Dict[str, object]:
    out = _entry_failure(s, "vm_instruction_error", "check")
    kind = str(out["check"]).split(".")[1]           # control.<kind>.allowed1
    ctl = s.caps(out["processor"])["controls"][kind]
    value = s.field(out["processor"], ctl["field"], "failure")
    extra = value & ~int(ctl["may_be_one"], 16)
    out["bit"] = extra.bit_length() - 1 if extra and extra & (extra - 1) == 0 else extra
    return out


def _rip_params(rng: random.Random) -> Params:
    p = _cpus_and_one(rng)
    p["fault_arg"] = rng.choice((48, 49, 50, 55, 60, 62))
    return p


def _segment_params(rng: random.Random) -> Params:
    p = _cpus_and_one(rng)
    p["fault_arg"] = rng.randrange(len(SEGMENTS))
    return p


def _segment_solve(s: SuiteView, shown: Params) -> Dict[str, object]:
    out = _entry_failure(s, "exit_reason", "check")
    out["segment"] = str(out["check"]).split(".")[1]   # guest.<segment>.present
    return out


def _link_params(rng: random.Random) -> Params:
    p = _cpus_and_one(rng)
    # ~0UL is 32 bits on Windows (LLP64); TRUE; a stray page offset
    p["fault_arg"] = rng.choice((0xFFFFFFFF, 0x1, 0xFFF, 0x800))
    return p


def _link_solve(s: SuiteView, shown: Params) -> Dict[str, object]:
    out = _entry_failure(s, "check", "exit_qualification")
    out["link_pointer"] = s.field(out["processor"], "VMCS_LINK_POINTER", "failure")
    return out


def _activity_solve(s: SuiteView, shown: Params) -> Dict[str, object]:
    out = _entry_failure(s, "exit_reason", "check")
    # the fields the failing check reads (verify --json): here the one the driver never wrote
    fields = s.json("verify", str(out["processor"]))["failures"][0]["fields"]
    out["field"] = fields[0] if len(fields) == 1 else fields
    return out


# -- Day 5: VM exits --------------------------------------------------------------------
# instructions whose handler advances the guest RIP (SDM App. C exit reasons)
STUCK_EXITS = tuple(_exit_reason(n) for n in ("CPUID", "INVD", "XSETBV"))


def _stuck_params(rng: random.Random) -> Params:
    return {"cpus": rng.choice((2, 3)), "fault_arg": rng.choice(STUCK_EXITS)}


def _stuck_solve(s: SuiteView, shown: Params) -> Dict[str, object]:
    vcpus = s.json("vmm")["vcpus"]
    top = max(vcpus, key=lambda v: v["exit_count"])
    return {"vcpu": top["vcpu"], "exit_reason": int(top["last_exit_reason"], 16),
            "endless": top["exit_count"] > 1000}


def _secondary_params(rng: random.Random) -> Params:
    cpus = rng.choice((2, 3, 4))
    return {"cpus": cpus, "vcpu": rng.randrange(cpus), "fault_arg": rng.choice((0, 1))}


def _secondary_solve(s: SuiteView, shown: Params) -> Dict[str, object]:
    k = shown["vcpu"]
    primary = s.field(k, "CPU_BASED_VM_EXEC_CONTROL")
    secondary = s.field(k, "SECONDARY_VM_EXEC_CONTROL")
    # SDM 25.6.2: primary bit 31 activates the secondary controls; secondary bit 3 enables RDTSCP
    active = bool(primary >> 31 & 1)
    return {"activate_secondary": active, "rdtscp_enabled": active and bool(secondary >> 3 & 1),
            "rdtscp_allowed": bool(int(s.caps(k)["controls"]["proc2"]["may_be_one"], 16) >> 3 & 1)}


# "save debug controls" (VM-exit control) and "load debug controls" (VM-entry control): SDM 25.7.1, 25.8.1
DEBUG_CONTROLS = (("exit", "SAVE_DEBUG_CONTROLS"), ("entry", "LOAD_DEBUG_CONTROLS"))


def _control_bit(kind: str, name: str) -> int:
    return next(b for b, (n, _) in CONTROL_BITS[kind].items() if n == name)


class DebugRegister(NamedTuple):
    guest_field: str     # where "save debug controls" puts it and "load debug controls" takes it from
    lab_check: str       # the debug-registers guest check that arms it (emulated_lab/guest_checks.py)
    symptom: str         # what the class sees when it is lost


# The registers the two debug controls carry (SDM 25.7.1, 25.8.1; fields App. B.2.3, B.4.3). Both are
# reset by every VM exit (28.5.1: DR7 to 400H, IA32_DEBUGCTL to 0): the seed picks the one the story is about.
DEBUG_REGISTERS: Dict[str, DebugRegister] = {
    "DR7": DebugRegister(
        "GUEST_DR7", "dr7-survives-exit",
        "WinDbg's hardware breakpoints (ba) fire on some processors only: on one of them, DR7 reads "
        "0x400 again soon after it was armed"),
    "IA32_DEBUGCTL": DebugRegister(
        "GUEST_IA32_DEBUGCTL", "debugctl-survives-exit",
        "a branch-tracing tool (it sets BTF, single-step on branches, in IA32_DEBUGCTL) works on some "
        "processors only: on one of them, RDMSR of IA32_DEBUGCTL reads 0 again soon after the tool set it"),
}


def _debug_params(rng: random.Random) -> Params:
    # ARG bit 0: no "save debug controls" on exit, bit 1: no "load debug controls" on entry
    p = dict(_cpus_and_one(rng), fault_arg=rng.choice((1, 2, 3)), register=rng.choice(sorted(DEBUG_REGISTERS)))
    p["symptom"] = DEBUG_REGISTERS[p["register"]].symptom
    return p


def _debug_key(p: Params) -> Dict[str, object]:
    return {"vcpu": p["fault_cpu"], "saved": not p["fault_arg"] & 1, "loaded": not p["fault_arg"] & 2,
            "field": DEBUG_REGISTERS[p["register"]].guest_field}


def _debug_solve(s: SuiteView, shown: Params) -> Dict[str, object]:
    fields = {"exit": "VM_EXIT_CONTROLS", "entry": "VM_ENTRY_CONTROLS"}
    per_vcpu = {}
    for k in range(shown["cpus"]):
        per_vcpu[k] = [bool(s.field(k, fields[kind]) >> _control_bit(kind, name) & 1) for kind, name in DEBUG_CONTROLS]
    odd = [k for k, bits in per_vcpu.items() if not all(bits)]
    if len(odd) != 1:
        return {"vcpu": odd}
    # the guest-state field that holds the register: the student finds it in `vmcs k --group guest`
    guest = [f["name"] for f in s.json("vmcs", str(odd[0]), "--group", "guest")["fields"]]
    named = [n for n in guest if n.endswith("_" + str(shown["register"]))]
    return {"vcpu": odd[0], "saved": per_vcpu[odd[0]][0], "loaded": per_vcpu[odd[0]][1],
            "field": named[0] if len(named) == 1 else named}


def _bitmap_exercise(ex_id: str, title: str, skills: Tuple[str, ...], fault: str, driver: str,
                     story: str) -> Exercise:
    """Processor k's MSR bitmap holds a stale byte (SDM 25.6.9: a set bit makes the access exit)."""
    return Exercise(
        ex_id, 3, title, skills, fault, _bitmap_params, _lab(), story, ("cpus", "read_msr_hex", "write_msr_hex"),
        (Question("vcpu", "Which vCPU's MSR bitmap makes MSR accesses exit?", "int"),
         Question("read_exits", "On that vCPU, does RDMSR of MSR {read_msr_hex} cause a VM exit (yes/no)?", "bool"),
         Question("write_exits", "On that vCPU, does WRMSR of MSR {write_msr_hex} cause a VM exit (yes/no)?",
                  "bool")),
        _bitmap_key, _bitmap_solve, driver=driver)


def _host_state_exercise(ex_id: str, title: str, fault: str, check: str, story: str) -> Exercise:
    """A host-state field wrong on processor k: VMfailValid 8 and one host check (SDM 27.2.2-27.2.4)."""
    return Exercise(
        ex_id, 4, title, ("verify", "host state"), fault, _cpus_and_one, _lab(), story, ("cpus",),
        (Q_PROCESSOR, Q_VMERR, Q_CHECK),
        lambda p: {"processor": p["fault_cpu"], "vm_instruction_error": VMERR_INVALID_HOST_STATE, "check": check},
        lambda s, shown: _entry_failure(s, "vm_instruction_error", "check"))


EXERCISES: Tuple[Exercise, ...] = (
    Exercise(
        "d0-dbgfilter", 0, "Where are my DbgPrintEx messages?", ("dbgfilter", "Debug Print Filter"), None,
        _dbgfilter_params, lambda p: LabRun(kd_masks={"IHVDRIVER": p["mask"]}),
        "The student's hv.sys loads and runs, but WinDbg shows only some of its DbgPrintEx "
        "messages (component IHVDRIVER, levels ERROR, WARNING, TRACE, INFO). The machine's Debug "
        "Print Filter was set by hand by a previous student. Find out what the debugger is told to drop.",
        ("cpus",),
        (Question("dropped", "Which IHVDRIVER levels are dropped (a list of ERROR/WARNING/TRACE/INFO, [] if none)?",
                  "set", LEVELS),
         Question("ihvdriver_mask", "What is the value of nt!Kd_IHVDRIVER_Mask?", "int")),
        _dbgfilter_key, _dbgfilter_solve),
    Exercise(
        "d0-debuggee", 0, "The debuggee VM's boot settings", ("check-debuggee", "bcdedit", "KDNET"), None,
        _debuggee_params, None,
        "A student's debuggee VM does not load the test-signed hv.sys, or WinDbg never connects, or "
        "both. They sent you the output of `bcdedit /enum {{current}}` (enum.txt) and `bcdedit "
        "/dbgsettings` (dbg.txt). The class's WinDbg host is {host_ip}, KDNET port {port}.",
        ("host_ip", "port"),
        (Question("failing", "Which check-debuggee items FAIL (a list of their ids)?", "set", BOOT_ITEMS),
         Question("exit_code", "With which exit code does check-debuggee end?", "int")),
        lambda p: {"failing": p["broken"], "exit_code": 1},
        _debuggee_solve, files=_debuggee_files,
        command="<hvlab>/scripts/check-debuggee --bcdedit-enum enum.txt --dbgsettings dbg.txt --host-ip {host_ip} "
                "--port {port}"),
    Exercise(
        "d2-feature-locked", 2, "VT-x disabled in the firmware", ("vmm", "caps", "check", "IA32_FEATURE_CONTROL"),
        None, lambda rng: {"cpus": rng.choice((2, 3, 4)), "fc": rng.choice((0x1, 0x3))},
        lambda p: LabRun(feature_control=p["fc"]),
        "DriverEntry fails on a machine the student's own laptop never showed a problem on. The "
        "driver is the class's reference hv.sys: the difference is the machine.",
        ("cpus",),
        (Q_STEP, Question("feature_control", "What value does IA32_FEATURE_CONTROL (MSR 0x3A) hold?", "int"),
         Question("vmx_outside_smx", "Does the firmware allow VMXON outside SMX (yes/no)?", "bool")),
        lambda p: {"step": "IA32_FEATURE_CONTROL", "feature_control": p["fc"], "vmx_outside_smx": False},
        _fc_solve),
    _vmxon_exercise(
        "d2-vmxon-revision", "VMXON fails on one processor", "VMXON_REVISION", (0x1, 0x2, 0x3, 0x10, 0x12, 0x15),
        "hv.sys worked on the author's laptop. On the lab machine ({cpus} processors) DriverEntry "
        "returns STATUS_UNSUCCESSFUL and every processor is back to normal. The author admits to "
        "'a small shortcut for one processor' while debugging.",
        Question("revision_id", "Which value must the first dword of the VMXON region hold on this CPU?", "int"),
        LAB_REVISION_ID, "revision_id"),
    _vmxon_exercise(
        "d2-vmxon-unaligned", "VMXON with a pointer into the page", "VMXON_UNALIGNED",
        (0x10, 0x40, 0x100, 0x400, 0x800),
        "A student moved the VMXON region's bookkeeping into a header at the start of the page, "
        "on one processor. DriverEntry now fails on the {cpus}-processor lab machine.",
        Question("alignment", "To how many bytes must the VMXON region's physical address be aligned?", "int"),
        VMX_REGION_BYTES, "region_size"),
    Exercise(
        "d2-cr-fixed-bit", 2, "VMXON faults on one processor", ("vmm", "check", "CR0/CR4 fixed bits"),
        "CR_FIXED_BIT", _cr_fixed_params,
        lambda p: LabRun(scenario=str(p.get("scenario", "baseline")), crashes=True, hidden_scenario=True),
        "The lab machine ({cpus} processors) crashes while hv.sys's DriverEntry runs. The student "
        "'cleaned up' how the driver prepares a processor for VMX operation, and the old version "
        "worked. The lab kept the machine's state at the crash in lab.hvimg, like a crash dump.",
        ("cpus",),
        (Question("register", "Which control register holds a value VMX operation does not allow?", "choice",
                  ("cr0", "cr4")),
         Question("bit", "Which bit of that register is wrong (its number)?", "int")),
        lambda p: {"register": p["register"], "bit": p["bit"]},
        _cr_fixed_solve, other_faults=(CR4_FIXED1_RUN["fault"],)),
    Exercise(
        "d3-vmcs-revision", 3, "VMPTRLD refuses the VMCS", ("vmm", "caps", "VMCS region"), "VMCS_REVISION",
        _cpus_and_one, _lab(),
        "VMXON now works everywhere, but DriverEntry still fails on the {cpus}-processor lab machine, "
        "one step later.",
        ("cpus",),
        (Q_PROCESSOR, Q_STEP,
         Question("revision_id", "Which value must the first dword of the VMCS region hold on this CPU?", "int")),
        lambda p: {"processor": p["fault_cpu"], "step": "VMPTRLD", "revision_id": LAB_REVISION_ID},
        lambda s, shown: dict(_failure(s, "processor", "step"), revision_id=s.caps(0)["basic"]["revision_id"])),
    _bitmap_exercise(
        "d3-msr-bitmap", "A storm of MSR exits", ("msrbitmap", "regions", "MSR bitmap"), "MSR_BITMAP_DIRTY", "hv",
        "hv.sys loads on the {cpus}-processor lab machine, but one processor spends its life in the "
        "VM-exit handler: RDMSR and WRMSR of ordinary MSRs exit there (and the handler injects #GP). "
        "The other processors are fine."),
    _bitmap_exercise(
        "d3-sevendays-msr-bitmap", "Your own driver, walked from its PDB", ("--symbols", "msrbitmap", "vmm"),
        "SEVENDAYS_MSR_BITMAP_DIRTY", "sevendays",
        "Not hvlab's hv.sys this time: a student's own 7 Days driver (sevendays.sys, with its "
        "sevendays.pdb), which has no debug descriptor. On the {cpus}-processor lab machine one "
        "processor takes VM exits for ordinary RDMSR and WRMSR."),
    Exercise(
        "d3-skipped-processor", 3, "One processor left behind", ("vmm", "per-processor loop"), "SKIP_PROCESSOR",
        _skip_params, _lab(),
        "hv.sys loads and reports success on the {cpus}-processor lab machine, yet its hypercalls and "
        "CPUID leaves answer on some processors only.",
        ("cpus",),
        (Question("vcpu", "Which processor (index) is not virtualized?", "int"),
         Question("virtualized", "How many processors run as guests?", "int"),
         Question("driver_state", "What state does the driver's debug descriptor report?", "choice",
                  ("loading", "running", "failed", "unloaded"))),
        _skip_key, _skip_solve),
    Exercise(
        "d4-control-raw", 4, "VMLAUNCH: invalid control field", ("verify", "caps", "VM-execution controls"),
        "CONTROL_RAW", _raw_params, _lab(),
        "VMLAUNCH fails with VMfailValid. The student 'simplified' the control setup "
        "and writes one control field exactly as the tutorial's #defines say.",
        ("cpus",),
        (Q_PROCESSOR, Q_VMERR, Q_CHECK),
        lambda p: {"processor": 0, "vm_instruction_error": VMERR_INVALID_CONTROLS,
                   "check": "control.%s.allowed0" % CONTROL_KINDS[p["fault_arg"]]},
        lambda s, shown: _entry_failure(s, "vm_instruction_error", "check")),
    Exercise(
        "d4-control-after-mask", 4, "A control the CPU does not have", ("verify", "caps", "vmcs"),
        "CONTROL_AFTER_MASK", _after_mask_params, _lab(),
        "After adjusting every control against its capability MSR, the student added 'one more "
        "feature' to a control field. VMLAUNCH now fails.",
        ("cpus",),
        (Q_PROCESSOR, Q_VMERR, Q_CHECK,
         Question("bit", "Which bit of that control field does the CPU not allow?", "int")),
        lambda p: {"processor": 0, "vm_instruction_error": VMERR_INVALID_CONTROLS,
                   "check": "control.%s.allowed1" % CONTROL_KINDS[p["kind"]], "bit": p["bit"]},
        _after_mask_solve),
    _host_state_exercise(
        "d4-host-cr4", "Host CR4 without VMXE", "HOST_CR4_NO_VMXE", "host.cr4.fixed0",
        "VMLAUNCH fails with VMfailValid on one processor of {cpus}; the others were virtualized and "
        "then undone. The student reads CR4 'once at the start, to save time'."),
    _host_state_exercise(
        "d4-host-tr", "Host TR selector zero", "HOST_TR_ZERO", "host.tr.nonzero",
        "VMLAUNCH fails with VMfailValid on one processor of {cpus}. 'A 64-bit host does not need a "
        "task register', the student says."),
    Exercise(
        "d4-host-rip", 4, "Host RIP not canonical", ("verify", "vmcs", "host state"), "HOST_RIP_NONCANONICAL",
        _rip_params, _lab(),
        "VMLAUNCH fails with VMfailValid on one processor of {cpus}. The student computes the VM-exit "
        "handler's address with some pointer arithmetic of their own.",
        ("cpus",),
        (Q_PROCESSOR, Q_VMERR, Q_CHECK,
         Question("host_rip_bit", "Which bit of the HOST_RIP value breaks the canonical form (the one that "
                                  "differs from bit 47)?", "int")),
        lambda p: {"processor": p["fault_cpu"], "vm_instruction_error": VMERR_INVALID_HOST_STATE,
                   "check": "host.size.rip_canonical", "host_rip_bit": p["fault_arg"]},
        lambda s, shown: _host_rip_solve(s)),
    Exercise(
        "d4-guest-tr", 4, "Guest TR: available, not busy", ("verify", "vmcs", "guest state"), "GUEST_TR_AVAILABLE",
        _cpus_and_one, _lab(),
        "VM entry fails on one processor of {cpus} with a VM exit the driver did not expect. The "
        "student copied the guest TR access rights from a 32-bit tutorial.",
        ("cpus",),
        (Q_PROCESSOR, Q_EXIT, Q_CHECK,
         Question("tr_access_rights", "What value did the driver write to GUEST_TR_AR_BYTES?", "int")),
        lambda p: {"processor": p["fault_cpu"], "exit_reason": EXIT_ENTRY_FAILURE_GUEST_STATE,
                   "check": "guest.tr.type_ia32e", "tr_access_rights": 0x89},
        lambda s, shown: _guest_tr_solve(s)),
    Exercise(
        "d4-guest-cr0", 4, "Guest CR0 breaks a fixed bit", ("verify", "caps", "guest state"), "GUEST_CR0_BIT",
        lambda rng: dict(_cpus_and_one(rng), fault_arg=5), _lab(),
        "VM entry fails on one processor of {cpus}. The student clears 'an x87 leftover' in the guest "
        "CR0 'to keep the guest simple'.",
        ("cpus",),
        (Q_PROCESSOR, Q_EXIT, Q_CHECK,
         Question("cr0_bit", "Which CR0 bit does the guest CR0 lack?", "int")),
        lambda p: {"processor": p["fault_cpu"], "exit_reason": EXIT_ENTRY_FAILURE_GUEST_STATE,
                   "check": "guest.cr0.fixed0", "cr0_bit": p["fault_arg"]},
        lambda s, shown: _guest_cr0_solve(s)),
    Exercise(
        "d4-guest-segment", 4, "A guest segment that is not present", ("verify", "vmcs", "access rights"),
        "GUEST_SEGMENT_NOT_PRESENT", _segment_params, _lab(),
        "VM entry fails on one processor of {cpus}. The student builds the guest access rights from "
        "the GDT by hand, with a mask of their own.",
        ("cpus",),
        (Q_PROCESSOR, Q_EXIT, Q_CHECK,
         Question("segment", "Which segment register's access rights are wrong?", "choice", SEGMENTS)),
        lambda p: {"processor": p["fault_cpu"], "exit_reason": EXIT_ENTRY_FAILURE_GUEST_STATE,
                   "check": "guest.%s.present" % SEGMENTS[p["fault_arg"]], "segment": SEGMENTS[p["fault_arg"]]},
        _segment_solve),
    Exercise(
        "d4-guest-link", 4, "The VMCS link pointer", ("verify", "vmcs", "guest state"), "GUEST_LINK_POINTER",
        _link_params, _lab(),
        "VM entry fails on one processor of {cpus} with a VM exit whose qualification is not 0. The "
        "student's 'no shadow VMCS' constant comes from their own header.",
        ("cpus",),
        (Q_PROCESSOR, Q_CHECK,
         Question("exit_qualification", "Which exit qualification does the failed VM entry report?", "int"),
         Question("link_pointer", "What value does VMCS_LINK_POINTER hold?", "int")),
        lambda p: {"processor": p["fault_cpu"], "check": "guest.link.aligned", "exit_qualification": 4,
                   "link_pointer": p["fault_arg"]},
        _link_solve),
    Exercise(
        "d4-guest-activity", 4, "A guest field nobody wrote", ("verify", "vmcs", "guest state"),
        "GUEST_ACTIVITY_UNWRITTEN", _cpus_and_one, _lab(scenario="poisoned-vmcs"),
        "On the student's own PC hv.sys works. On the lab machine ({cpus} processors, a CPU that leaves "
        "junk in a VMCS after VMCLEAR, as real ones may: SDM 25.11.3) VM entry fails on one processor. "
        "The student 'only removed VMWRITEs of fields that are zero anyway'.",
        ("cpus",),
        (Q_PROCESSOR, Q_EXIT, Q_CHECK,
         Question("field", "Which VMCS field did the driver never write on that processor (its name)?", "name")),
        lambda p: {"processor": p["fault_cpu"], "exit_reason": EXIT_ENTRY_FAILURE_GUEST_STATE,
                   "check": "guest.activity.supported", "field": "GUEST_ACTIVITY_STATE"},
        _activity_solve),
    Exercise(
        "d5-stuck-exit", 5, "The same VM exit forever", ("vmm", "vcpu", "exit handling"), "RIP_NOT_ADVANCED",
        _stuck_params, _lab(timeout=2.0, crashes=True),
        "hv.sys loads on the {cpus}-processor lab machine, and then the machine stops making progress: "
        "the lab gives up after its time limit and keeps the machine's state in lab.hvimg, like a "
        "crash dump taken during the hang.",
        ("cpus",),
        (Question("vcpu", "Which vCPU is stuck?", "int"),
         Question("exit_reason", "Which basic exit reason does it take over and over (a number)?", "int"),
         Question("endless", "Has that vCPU taken more than 1000 VM exits (yes/no)?", "bool")),
        lambda p: {"vcpu": 0, "exit_reason": p["fault_arg"], "endless": True},
        _stuck_solve),
    Exercise(
        "d5-no-secondary", 5, "RDTSCP raises #UD in the guest", ("vmcs", "caps", "secondary controls"),
        "NO_SECONDARY_CONTROLS", _secondary_params, _lab(),
        "hv.sys loads on {cpus} processors, and Windows dies soon after with an invalid-opcode "
        "exception in code that executes RDTSCP. Look at vCPU {vcpu}.",
        ("cpus", "vcpu"),
        (Question("activate_secondary", "Is 'activate secondary controls' set in vCPU {vcpu}'s primary "
                                        "processor-based controls (yes/no)?", "bool"),
         Question("rdtscp_enabled", "Is RDTSCP enabled for the guest on vCPU {vcpu} (yes/no)?", "bool"),
         Question("rdtscp_allowed", "Does this CPU allow 'enable RDTSCP' to be 1 (yes/no)?", "bool")),
        lambda p: {"activate_secondary": p["fault_arg"] == 1, "rdtscp_enabled": False, "rdtscp_allowed": True},
        _secondary_solve),
    Exercise(
        "d5-debug-lost", 5, "Debug state that vanishes", ("vmcs", "VM-exit/VM-entry controls", "DR7", "IA32_DEBUGCTL"),
        "DEBUG_CONTROLS_DROPPED", _debug_params, _lab(scenario="debug-registers"),
        "With hv.sys loaded on the {cpus}-processor lab machine, {symptom}. The student shortened the "
        "control setup: 'Windows does not use the debug controls'.",
        ("cpus", "register", "symptom"),
        (Question("vcpu", "On which vCPU is the guest's {register} lost?", "int"),
         Question("saved", "On that vCPU, does a VM exit save the guest's {register} into the VMCS (yes/no)?", "bool"),
         Question("loaded", "On that vCPU, does VM entry load {register} from the VMCS (yes/no)?", "bool"),
         Question("field", "Which VMCS field holds the guest's {register} between a VM exit and the next "
                           "VM entry (its name)?", "name")),
        _debug_key, _debug_solve),
)


def _host_rip_solve(s: SuiteView) -> Dict[str, object]:
    out = _entry_failure(s, "vm_instruction_error", "check")
    rip = s.field(out["processor"], "HOST_RIP", "failure")
    # canonical (SDM 3.3.7.1): bits 63:48 equal bit 47; the bits that differ from it
    sign = rip >> 47 & 1
    wrong = [b for b in range(48, 64) if (rip >> b & 1) != sign]
    out["host_rip_bit"] = wrong[0] if len(wrong) == 1 else wrong
    return out


def _guest_tr_solve(s: SuiteView) -> Dict[str, object]:
    out = _entry_failure(s, "exit_reason", "check")
    out["tr_access_rights"] = s.field(out["processor"], "GUEST_TR_AR_BYTES", "failure")
    return out


def _guest_cr0_solve(s: SuiteView) -> Dict[str, object]:
    out = _entry_failure(s, "exit_reason", "check")
    cr0 = s.field(out["processor"], "GUEST_CR0", "failure")
    fixed0 = int(s.caps(out["processor"])["msrs"]["0x486"], 16)   # IA32_VMX_CR0_FIXED0 (App. A.7)
    missing = fixed0 & ~cr0
    out["cr0_bit"] = missing.bit_length() - 1 if missing and missing & (missing - 1) == 0 else missing
    return out


BY_ID: Dict[str, Exercise] = {e.id: e for e in EXERCISES}


def params_for(ex: Exercise, seed: int) -> Params:
    """The seed's details: the same seed always gives the same exercise."""
    p = ex.params(random.Random("%s/%d" % (ex.id, seed)))
    p.setdefault("fault_cpu", 0)
    p.setdefault("fault_arg", 0)
    return p


def fault_of(ex: Exercise, p: Params) -> Optional[str]:
    """The fault the seed's driver is built with: the entry's, or one of its other_faults."""
    return str(p["fault"]) if "fault" in p else ex.fault


def shown_params(ex: Exercise, p: Params) -> Params:
    return {k: p[k] for k in ex.shown}


def fault_names(header_text: str) -> List[str]:
    """HV_FAULT_<NAME> ids defined in driver/include/hv_fault.h (without the prefix)."""
    return [n for n in re.findall(r"^#define HV_FAULT_([A-Z0-9_]+) \d+", header_text, re.M)
            if n not in ("CPU", "ARG")]     # the two parameters, not faults
