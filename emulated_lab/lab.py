"""Scenarios: the built driver's whole life on the emulated machine.

    load -> DriverEntry (every processor virtualized) -> guest workload on every
    processor -> image -> DriverUnload -> every processor out of VMX operation

Faults are injected from outside the driver: a CPU without VMX (CPUID.1:ECX.VMX
clear), IA32_FEATURE_CONTROL locked with VMXON disabled, the k-th allocation
failing, a guest state that makes VM entry fail. What the tests assert comes
from the emulator (VM exits seen by its hook, VMX state per processor, CR4,
the allocation tracker), not from the driver's log.
"""
from __future__ import annotations

import os
import textwrap
from typing import Callable, Dict, List, Optional

from windbg_ext.arch import capabilities as caps
from windbg_ext.arch.vmcs_fields import FIELDS
from windbg_ext.paths import PathError, readable_file, writable_file
from windbg_ext.target.image import ImageWriter

from emulated_lab import guest_checks as gc
from emulated_lab import hardware
from emulated_lab.asm import assemble
from emulated_lab.debugger_view import StaleVmcs, active_vmcs_pages, guest_context
from emulated_lab.machine import (CR4_VMXE, DRIVER_BASE, FC_LOCKED_VMXON_DISABLED, FC_LOCKED_VMXON_ENABLED, SEL_TSS,
                                  Machine, MachineError)
from emulated_lab.nt.callbacks import PO_CB_SYSTEM_STATE_LOCK, POWER_STATE
from emulated_lab.nt.kernel import BugCheck, NtKernel
from emulated_lab.nt.pe_loader import LoadError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DRIVER = os.path.join(ROOT, "driver", "out", "hv.sys")
DESCRIPTOR_EXPORT = "HvDebugDescriptor"

CAPABILITY_MSRS = (caps.IA32_FEATURE_CONTROL,) + caps.VMX_MSRS_BEFORE_WIDE   # SDM App. A
CPUID_LEAVES = ((0, 0), (1, 0), (7, 0))
# recorded when the maximum (extended) leaf covers them: the address widths
# (0x80000008: EAX[7:0] MAXPHYADDR, [15:8] linear) and the XSAVE area (0xD)
CPUID_OPTIONAL_LEAVES = ((0xD, 0), (0xD, 1), (0x80000008, 0))


def record_cpuid(m: Machine, k: int) -> dict:
    """The CPUID leaves an image records for processor k: {(leaf, subleaf): (eax, ebx, ecx, edx)}."""
    out = {leaf: m.cpuid(k, *leaf) for leaf in CPUID_LEAVES + ((0x80000000, 0),)}
    max_basic, max_ext = out[(0, 0)][0], out[(0x80000000, 0)][0]
    for leaf in CPUID_OPTIONAL_LEAVES:
        top = max_ext if leaf[0] & 0x80000000 else max_basic
        if leaf[0] <= top:
            out[leaf] = m.cpuid(k, *leaf)
    return out

SCENARIOS = {
    "baseline": "full lifecycle; the image is taken while every processor is virtualized",
    "launch-failure": "the last processor's TSS descriptor says 'available': the guest TR state the driver copies "
                      "fails the VM-entry checks (exit 0x80000021); DriverEntry undoes every processor",
    "no-vmx": "the CPU reports no VMX (CPUID.1:ECX[5] = 0); DriverEntry refuses to load",
    "feature-locked": "firmware locked IA32_FEATURE_CONTROL with VMXON disabled; DriverEntry refuses to load",
    "alloc-fail:K": "the K-th memory allocation fails (K = 1, 2, ...); DriverEntry fails cleanly, nothing leaked",
    "hyperv-parent": "the machine runs under a Hyper-V-compatible parent (\"Microsoft Hv\", CPUID.1:ECX[31], "
                     "synthetic MSRs, hypercalls); the guest uses them while hv.sys runs",
    "sleep": "\\Callback\\PowerState is notified, every processor loses VMX state as in S3, resume is "
             "notified; hv.sys must run again and unload cleanly",
    "debug-registers": "the guest arms DR7 and IA32_DEBUGCTL, which must survive VM exits; with RFLAGS.TF "
                       "set, the #DB must come right after CPUID",
    "modern-guest": "the guest executes RDTSCP, RDPID, INVPCID, XSAVES/XRSTORS (TPAUSE if WAITPKG) "
                    "wherever CPUID advertises them",
    "missing-control": "IA32_VMX_PROCBASED_CTLS2 forbids 'enable RDTSCP' while CPUID advertises RDTSCP; "
                       "DriverEntry must refuse and name the feature",
    "cr4-fixed1": "IA32_VMX_CR4_FIXED1 says CR4.OSXSAVE, which the OS set, must be 0 in VMX operation; "
                  "DriverEntry must refuse rather than clear it",
    "poisoned-vmcs": "after each VMCLEAR every VMCS field the driver does not VMWRITE holds junk; the guest "
                     "takes a #PF and uses XSAVES",
    "devirt-failure": "the last processor's devirtualize hypercall is answered 'unknown function' before it "
                      "reaches hv.sys; unload must keep what that processor's VM exits still use",
    "init-signal": "the last processor receives INIT while in VMX non-root (VM exit, reason 3); hv.sys cannot "
                   "emulate a reset and must end in its own bugcheck naming INIT",
    "resume-failure": "a parked processor's HOST_CS_SELECTOR is broken, so VMRESUME fails; the run must end "
                      "in hv.sys's bugcheck carrying VM-instruction error 8",
}
# the driver's own bugcheck (driver/include/hv_platform.h)
HV_BUGCHECK_CODE = 0x48564C42
HV_BUGCHECK_VMRESUME_FAILED = 4
HV_BUGCHECK_INIT_SIGNAL = 5
SECONDARY_ENABLE_RDTSCP = 3          # SDM Vol.3 Table 25-7
CR4_OSXSAVE_BIT = 18                 # SDM Vol.3 2.5
HOST_CS_SELECTOR = 0x0C02
HV_HYPERCALL_DEVIRTUALIZE, HV_HCSTATUS_UNKNOWN_FUNCTION = 3, 1      # driver/include/hv_hypercall.h


class ScenarioError(Exception):
    """Bad scenario input (one line for the user)."""


class ScenarioResult:
    def __init__(self) -> None:
        self.scenario = ""
        self.cpus = 0
        self.load_status: Optional[int] = None
        self.unload_ran = False
        self.messages = []              # DbgMessage list
        self.exits = []                 # VmExit list (emulator-observed): the first and last ones kept
        self.exit_counts: Dict[int, int] = {}   # exit reason -> count, every exit the driver caused
        self.workload: Dict[int, Dict[str, object]] = {}
        self.vmx_after: List[str] = []  # per processor after the scenario: off | root | guest
        self.cr4_after: List[int] = []
        self.leaks = []
        self.failed_allocations: List[int] = []
        self.allocation_calls = 0
        self.vmreads: Dict[int, Dict[int, int]] = {}    # per processor, read while parked (= the image)
        # per processor, its VMCS page as the emulator holds it then (exact; the image's copy is stale)
        self.vmcs_pages: Dict[int, bytes] = {}
        self.failure_vmreads = []                          # (processor, {encoding: value}) at failed VM entries
        self.failure_vmreads_total = 0                     # failed VM entries read (the first and last are kept)
        self.image_path: Optional[str] = None
        self.descriptor_va = 0
        self.driver_base = 0
        self.truth: Dict[str, object] = {}   # emulated_lab.cpu_truth, as the scenario left it
        self.checks = []                      # guest_checks.Check list
        self.bugcheck = None                  # (code, [params]) when the run ended in KeBugCheckEx
        self.crash = ""                       # what ended the run early (bugcheck, fault, hang)
        self.held_objects: List[str] = []     # kernel objects still held after unload

    @property
    def loaded(self) -> bool:
        return self.load_status is not None and self.load_status < 0x8000_0000

    def summary(self) -> List[str]:
        lines = ["scenario %s on %d processor%s: DriverEntry returned 0x%08x"
                 % (self.scenario, self.cpus, "" if self.cpus == 1 else "s", (self.load_status or 0) & 0xFFFFFFFF)]
        kind, k = parse_scenario(self.scenario)
        n = self.allocation_calls
        if kind == "alloc-fail" and k not in self.failed_allocations:
            lines.append("alloc-fail:%d: allocation %d never happened (the driver made %d): a plain baseline run; "
                         "use alloc-fail:1..%d" % (k, k, n, max(n, 1)))
        elif kind == "alloc-fail":
            lines.append("alloc-fail:%d: the driver's allocation %d failed, as asked" % (k, k))
        else:
            lines.append("allocations by the driver: %d (alloc-fail:K, K = 1..%d, makes the K-th one fail)"
                         % (n, max(n, 1)))
        counts = self.exit_counts
        lines.append("VM exits seen by the emulator: %d (%s)" % (
            sum(counts.values()), ", ".join("0x%x x%d" % (r, counts[r]) for r in sorted(counts)) or "none"))
        if self.vmx_after:
            lines.append("after: VMX %s; CR4.VMXE %s; %d allocation(s) leaked"
                         % (", ".join("cpu%d=%s" % (i, v) for i, v in enumerate(self.vmx_after)),
                            ", ".join("cpu%d=%d" % (i, bool(c & CR4_VMXE)) for i, c in enumerate(self.cr4_after)),
                            len(self.leaks)))
        elif self.truth:     # the run ended early: what the CPU was in then
            lines.append("at the end: VMX %s; %d allocation(s) live"
                         % (", ".join("cpu%d=%s" % (p["index"], p["vmx"]) for p in self.truth["processors"]),
                            len(self.leaks)))
        shown = [m for m in self.messages if m.shown]
        lines.append("DbgPrintEx: %d message(s), %d shown under the Kd_*_Mask values (see: windbg_ext dbgfilter)"
                     % (len(self.messages), len(shown)))
        for m in shown:
            lines.append("  [cpu%d] %s" % (m.cpu, m.text.rstrip()))
        if self.checks:
            bad = [c for c in self.checks if not c.ok]
            lines.append("guest checks: %d, %d failed" % (len(self.checks), len(bad)))
            for c in bad:    # the default output fits 120 columns; the report has it whole
                lines.extend(textwrap.wrap("FAILED %s: %s" % (c.name, c.detail), 120,
                                           initial_indent="  ", subsequent_indent="      "))
        if self.held_objects:
            lines.append("kernel objects still held: %s" % "; ".join(self.held_objects))
        if self.crash:
            lines.extend(textwrap.wrap("crash: %s" % self.crash, 120, subsequent_indent="    "))
        if self.image_path:
            lines.append("image: %s" % self.image_path)
        return lines


def parse_scenario(name: str):
    """-> (kind, k). Raises ScenarioError with what to do."""
    if name.startswith("alloc-fail:"):
        try:
            k = int(name.split(":", 1)[1])
        except ValueError:
            k = 0
        if k < 1:
            raise ScenarioError("alloc-fail:K needs K >= 1 (the K-th allocation fails), got %r" % name)
        return "alloc-fail", k
    if name not in SCENARIOS:
        raise ScenarioError("unknown scenario %r; run 'python -m emulated_lab scenarios' for the list" % name)
    return name, 0


# -- the guest workload ---------------------------------------------------------
# Runs in VMX non-root on each processor after DriverEntry. Each item is
# (name, assembly, registers in); results are the registers out and the exits.
WORKLOAD_CPL0 = [
    ("cpuid-vendor", "cpuid\nret", {"rax": 0x40000000, "rcx": 0}),
    ("cpuid-1", "cpuid\nret", {"rax": 1, "rcx": 0}),
    ("rdmsr-efer", "rdmsr\nshl rdx, 32\nor rax, rdx\nret", {"rcx": 0xC0000080}),
    ("wrmsr-lstar", "rdmsr\nwrmsr\nret", {"rcx": 0xC0000082}),
    # outside both MSR-bitmap ranges RDMSR/WRMSR exit unconditionally (SDM Vol.3 25.6.9)
    ("rdmsr-outside-bitmap", "rdmsr\nret", {"rcx": 0x40000100}),
    ("wrmsr-outside-bitmap", "xor eax, eax\nxor edx, edx\nwrmsr\nret", {"rcx": 0x40000100}),
    ("xsetbv", "xor ecx, ecx\nxgetbv\nxsetbv\nret", {}),
    ("invd", "invd\nret", {}),
    # with "enable RDTSCP" (secondary controls, SDM 25.6.2) no exit; without it #UD
    ("rdtscp", "rdtscp\nret", {}),
    ("vmcall-ping", "vmcall\nret", {"rax": 0x4D4D5662616C7668, "rcx": 1}),
    ("vmcall-snapshot", "vmcall\nret", {"rax": 0x4D4D5662616C7668, "rcx": 2}),
    ("vmxon-in-guest", "push rax\nvmxon [rsp]\npop rax\nret", {"rax": 0}),
]

# CPL 3: iretq to user code that runs the instruction, then `hlt` (privileged
# at CPL 3: #GP through the guest IDT ends the run).
USER_PROLOGUE = """
    mov r10, rsp
    push 0x2B
    push r11
    push 0x202
    push 0x33
    push r12
    iretq
"""
WORKLOAD_CPL3 = [
    ("cpl3-cpuid", "cpuid\nhlt", {"rax": 0x40000000, "rcx": 0}),
    ("cpl3-vmcall", "vmcall\nhlt", {"rax": 0x4D4D5662616C7668, "rcx": 1}),
]


def run_workload(m: Machine, k: int) -> Dict[str, object]:
    out: Dict[str, object] = {}
    for name, text, regs in WORKLOAD_CPL0:
        r = m.run(k, m.place_code(assemble(text)), regs=dict(regs))
        out[name] = {"regs": r.regs, "exits": [(e.reason, e.qualification) for e in r.exits],
                     "stop": r.stop, "fault": (r.fault.vector if r.fault else None)}
    for name, text, regs in WORKLOAD_CPL3:
        user_va = m.place_user_code(assemble(text))
        kern = m.place_code(assemble(USER_PROLOGUE))
        rr = dict(regs)
        rr.update(r11=m.user_stack_top, r12=user_va)
        r = m.run(k, kern, regs=rr)
        out[name] = {"regs": r.regs, "exits": [(e.reason, e.qualification) for e in r.exits],
                     "stop": r.stop, "fault": (r.fault.vector if r.fault else None)}
    return out


# -- the scenario ---------------------------------------------------------------------
def run_scenario(name: str, cpus: int = 2, driver: Optional[str] = None, image: Optional[str] = None,
                 workload: bool = True, kd_masks: Optional[Dict[str, int]] = None,
                 run_timeout: float = 60.0, instruction_limit: int = 0, nodes: int = 1,
                 raise_on_crash: bool = True, on_break: Optional[Callable[..., None]] = None,
                 feature_control: Optional[int] = None) -> ScenarioResult:
    """Runs one scenario on a fresh machine. kd_masks presets nt!Kd_<NAME>_Mask
    (e.g. {"IHVDRIVER": 0xF}); by default they are a stock install's. A step of
    the scenario (e.g. DriverEntry, with every run nested in it) that takes longer
    than run_timeout seconds, or executes more than instruction_limit instructions
    (0: no limit), is stopped: a RunTimeout naming what the driver was doing.
    nodes: NUMA nodes the processors are split into (each with its own memory).
    A crash (bugcheck, fault, hang) raises MachineError, or with
    raise_on_crash=False is recorded in the result (crash, bugcheck).
    on_break(machine, kernel, image, result, msrs, cpuid) is called once
    DriverEntry returned and the workload and the scenario's own events ran,
    before the image and the unload (a kernel debugger breaking in:
    `python -m emulated_lab kd`). feature_control: the IA32_FEATURE_CONTROL
    value firmware leaves (default: the scenario's, 0x5 or 0x1 for feature-locked)."""
    kind, k = parse_scenario(name)
    if cpus < 1 or cpus > 16:
        raise ScenarioError("--cpus must be between 1 and 16, got %d" % cpus)
    if not 1 <= nodes <= cpus:
        raise ScenarioError("--nodes must be between 1 and the processor count (%d), got %d" % (cpus, nodes))
    path = driver or DEFAULT_DRIVER
    if driver is None and not os.path.exists(path):
        raise ScenarioError("driver %s not found: build it with 'make -C driver' (or 'make demo')" % path)
    try:
        readable_file(path, "--driver")
        if image is not None:  # checked before the run; written whole, or not at all, after it
            writable_file(image, "--out")
    except PathError as e:
        raise ScenarioError(str(e))
    fc = FC_LOCKED_VMXON_DISABLED if kind == "feature-locked" else FC_LOCKED_VMXON_ENABLED
    if feature_control is not None:
        fc = feature_control
    res = ScenarioResult()
    res.scenario, res.cpus = name, cpus
    if not run_timeout > 0:
        raise ScenarioError("the time limit must be a positive number of seconds, got %r" % run_timeout)
    if instruction_limit < 0:
        raise ScenarioError("--max-instructions must be 0 (no limit) or a positive count, got %r" % instruction_limit)
    m = Machine(cpus=cpus, feature_control=fc, run_timeout=run_timeout, instruction_limit=instruction_limit)
    try:
        if kind == "no-vmx":
            m.hide_vmx()
        kern = NtKernel(m, fail_allocation=k if kind == "alloc-fail" else 0, kd_masks=kd_masks, nodes=nodes)
        setup = _real_machine(kind, m)
        # what a debugger would see: capability MSRs and CPUID, read before any VMM runs
        msrs = [m.read_msrs(i, CAPABILITY_MSRS) for i in range(cpus)]
        cpuid = [record_cpuid(m, i) for i in range(cpus)]
        if m.current is not None:
            m.park()
        try:
            img = kern.load_driver(path, DRIVER_BASE)
        except LoadError as e:
            raise ScenarioError(str(e))
        res.driver_base = img.base
        res.descriptor_va = img.exports.get(DESCRIPTOR_EXPORT, 0)
        encs = [f.encoding for f in FIELDS]
        m.capture_on_entry_failure = encs
        if kind == "launch-failure":
            _arm_launch_failure(m, img)
        m.exits.clear()
        drv = kern.make_driver_object(img)
        try:
            _lifecycle(m, kern, img, drv, res, encs, workload, image, msrs, cpuid, kind, setup, on_break)
        except MachineError as e:
            # a crash (bug check, fault, hang) keeps the machine as it was: like a
            # crash dump, the image lets the suite look at it post mortem
            _collect(m, kern, res)
            res.truth = m.truth.as_dict()
            if isinstance(e, BugCheck):
                res.bugcheck = (e.code, list(e.params))
            if image is not None and not res.image_path:
                try:
                    _write_image(image, m, kern, img, res, msrs, cpuid, crash=str(e))
                    e.args = ("%s; the machine's state at the crash is in %s" % (e, image),)
                    res.image_path = image
                except Exception:  # the crash report matters more than the image
                    pass
            res.crash = str(e)
            res.leaks = kern.leaks()
            if raise_on_crash:
                raise
            return res
        _collect(m, kern, res)
        res.truth = m.truth.as_dict()
        res.leaks = kern.leaks()
        res.held_objects = kern.held_objects()
        res.failed_allocations = list(kern.failed_allocations)
        res.allocation_calls = kern.allocation_calls
        return res
    finally:
        m.close()


def _real_machine(kind: str, m: Machine) -> Dict[str, object]:
    """What a real machine does that this scenario models (emulated_lab/hardware.py),
    installed before anything runs; returns what the checks need later."""
    setup: Dict[str, object] = {}
    if kind == "hyperv-parent":
        parent = hardware.ParentHypervisor(len(m.processors))
        parent.install(m)
        setup["parent"] = parent
    elif kind == "missing-control":
        hardware.forbid_secondary_control(m, SECONDARY_ENABLE_RDTSCP)
    elif kind == "cr4-fixed1":
        hardware.forbid_cr4_bit(m, CR4_OSXSAVE_BIT)
    elif kind == "poisoned-vmcs":
        hardware.poison_after_vmclear(m)
    if kind in ("modern-guest", "poisoned-vmcs"):
        setup["features"] = gc.advertised(m, 0)        # before any VMM runs
    return setup


def _scenario_checks(m: Machine, kern: NtKernel, res: ScenarioResult, kind: str, setup) -> None:
    """The scenario's own guest checks and events, while hv.sys runs."""
    cpus = len(m.processors)
    checks = res.checks
    if kind == "hyperv-parent":
        for i in range(cpus):
            checks.extend(gc.parent_checks(m, i, setup["parent"]))
    elif kind == "debug-registers":
        for i in range(cpus):
            checks.extend(gc.debug_checks(m, i))
    elif kind in ("modern-guest", "poisoned-vmcs"):
        for i in range(cpus):
            checks.extend(gc.modern_checks(m, i, setup["features"]))
            if kind == "poisoned-vmcs":
                checks.append(gc.page_fault_check(m, i))
                checks.append(gc.ping(m, i))
        if kind == "poisoned-vmcs":
            checks.append(gc.Check("vmcs-regions-poisoned", bool(m.poisoned),
                                   "%d VMCLEARed region(s) filled with junk" % len(m.poisoned)))
    elif kind == "sleep":
        kern.notify_callback(POWER_STATE, PO_CB_SYSTEM_STATE_LOCK, 0)
        left = [p.index for p in m.truth.processors if p.vmx == "off"]
        checks.append(gc.Check("left-vmx-before-sleep", len(left) == cpus,
                               "processors out of VMX when the transition began: %s" % left))
        m.lose_vmx_state()
        kern.notify_callback(POWER_STATE, PO_CB_SYSTEM_STATE_LOCK, 1)
        for i in range(cpus):
            checks.append(gc.ping(m, i))
    elif kind == "cr4-fixed1":          # a driver that loaded anyway: what the OS lost
        for i in range(cpus):
            checks.append(gc.cr4_bit_kept(m, i, CR4_OSXSAVE_BIT, "OSXSAVE"))
    elif kind == "resume-failure":
        k = cpus - 1
        if not hardware.break_host_state(m, k, HOST_CS_SELECTOR, 0):
            raise MachineError("processor %d: the lab could not break HOST_CS_SELECTOR" % k)
        checks.append(gc.ping(m, k))     # its VMRESUME fails on the way back to the guest
    elif kind == "init-signal":
        k = cpus - 1
        hardware.send_init(m, k)
        checks.append(gc.init_check(m, k))   # only if the driver survives INIT (it must not)


def _lifecycle(m: Machine, kern: NtKernel, img, drv: int, res: ScenarioResult, encs, workload: bool,
               image: Optional[str], msrs, cpuid, kind: str = "baseline", setup=None, on_break=None) -> None:
    """DriverEntry, workload, VMREAD, image, DriverUnload, the processors afterwards."""
    cpus = len(m.processors)
    r = kern.call_on_thread(img.entry, (drv, kern.registry_path))
    if r.stop != "return":
        raise MachineError("DriverEntry did not return: %s" % (r.fault or r.stop))
    res.load_status = r.regs["rax"] & 0xFFFFFFFF
    refusals = {"missing-control": ("refused-naming-the-feature", "RDTSCP"),
                "cr4-fixed1": ("refused-keeping-cr4", "CR0/CR4 bit")}
    if kind in refusals:
        check, word = refusals[kind]
        named = [msg.text.strip() for msg in kern.messages if word in msg.text]
        res.checks.append(gc.Check(check, not res.loaded and bool(named),
                                   named[-1] if named else "DriverEntry returned 0x%08x and said nothing about %s"
                                   % (res.load_status, word)))
    if res.loaded and workload:
        for i in range(cpus):
            res.workload[i] = run_workload(m, i)
    if res.loaded:
        _scenario_checks(m, kern, res, kind, setup or {})
    if on_break is not None:   # after the scenario's own events (e.g. a sleep and resume)
        on_break(m, kern, img, res, msrs, cpuid)
    if res.loaded:
        for i in range(cpus):
            res.vmreads[i] = m.vmread_all(i, encs)
            if m.processors[i].parked_in_exit:
                res.vmcs_pages[i] = m.read_phys(m.processors[i].vmcs_pa & ~0xFFF, 0x1000)
    _collect(m, kern, res)
    if image is not None:
        _write_image(image, m, kern, img, res, msrs, cpuid, guest_vmcs=res.vmreads)
        res.image_path = image
    if res.loaded:
        if kind == "devirt-failure":
            hardware.intercept_devirtualize(m, cpus - 1, gc.SIGNATURE, HV_HYPERCALL_DEVIRTUALIZE,
                                            HV_HCSTATUS_UNKNOWN_FUNCTION)
        unload = kern.driver_unload_routine(drv)
        if unload:
            r = kern.call_on_thread(unload, (drv,))
            if r.stop != "return":
                raise MachineError("DriverUnload did not return: %s" % (r.fault or r.stop))
            res.unload_ran = True
        if kind == "devirt-failure":
            # the stuck processor keeps running under hv.sys: its next VM exits
            # must find their VMCS, host stack and vCPU (freed memory faults here)
            res.checks.append(gc.ping(m, cpus - 1))
            res.checks.append(gc.Check("others-left-vmx", all(p.vmx == "off" for p in m.truth.processors[:-1]),
                                       "processors out of VMX: %s" % [p.index for p in m.truth.processors
                                                                       if p.vmx == "off"]))
    # the emulator's view of every processor afterwards
    for i in range(cpus):
        m.switch_to(i)
        m.park()
        res.vmx_after.append(m.processors[i].vmx)
        res.cr4_after.append(m.processors[i].state.cr4)


def _collect(m: Machine, kern: NtKernel, res: ScenarioResult) -> None:
    """The machine's bounded records into the result."""
    res.exits = list(m.exits)
    res.exit_counts = m.exits.counts()
    res.failure_vmreads = list(m.failure_vmreads)
    res.failure_vmreads_total = m.failure_vmreads.total
    res.messages = list(kern.messages)


def _arm_launch_failure(m: Machine, img) -> None:
    """Breaks the guest state the driver will copy from the last processor,
    without the driver's help: that processor's TSS descriptor in its GDT says
    "available" (type 9) instead of "busy" (type 11). A driver that takes the
    guest TR access rights from the GDT (LAR) writes type 9, and VM entry
    fails its guest-state check (SDM Vol.3 27.3.1.2: TR type must be 11 in
    IA-32e mode) with exit reason 33 | bit 31."""
    p = m.processors[-1]
    m.write_virt(p.gdt + SEL_TSS + 5, bytes([0x89]))


def _write_image(path: str, m: Machine, kern: NtKernel, img, res: ScenarioResult, msrs, cpuid,
                 crash: str = "", guest_vmcs: Optional[Dict[int, Dict[int, int]]] = None) -> None:
    """The machine as a crash dump would hold it (debugger_view.py): active VMCS pages stale, a
    virtualized processor's registers the guest's. `guest_vmcs` (processor -> VMREAD values taken
    now) gives the guest state; a parked processor without it keeps its VMX-root registers, labelled."""
    w = ImageWriter()
    stale = StaleVmcs(active_vmcs_pages(m), b"hvlab image")
    for pa, size in m.phys_ranges():
        w.add_memory(pa, stale.range(pa, m.read_phys(pa, size)))
    for name, va in kern.symbols.items():
        if name.startswith("nt!Kd_"):
            w.add_symbol(name, va)
    w.add_module("nt", kern.module[1], kern.module[2])
    w.add_module(img.name, img.base, img.size)
    for name, va in img.exports.items():
        w.add_symbol("%s!%s" % (img.name, name), va)
    contexts = []
    for i, p in enumerate(m.processors):
        saved = m.saved_registers(i)
        vmcs = (guest_vmcs or {}).get(i) if p.parked_in_exit else None
        if vmcs:
            regs = dict(saved)
            regs.update(guest_context(vmcs, p.guest_gprs or {}, saved))
            contexts.append("guest (VMCS guest state; CR0/CR4 through the read shadows)")
        else:
            regs = saved
            contexts.append("vmx-root (driver VM-exit handler)" if p.parked_in_exit else "os")
        w.add_cpu(regs, msrs[i], cpuid=cpuid[i])
    w.meta.update({
        "scenario": res.scenario, "driver": os.path.basename(img.name), "driver_base": "0x%x" % img.base,
        "load_status": "0x%08x" % (res.load_status or 0),
        "vmx_state": [p.vmx for p in m.processors],
        # whose registers each processor's context holds (a crash image may keep VMX-root ones)
        "register_context": contexts,
        "stale_vmcs_pages": ["0x%x" % pa for pa in sorted(stale.active_pages)],
        "vmcs_pa": ["0x%x" % p.vmcs_pa for p in m.processors],
        "vmread": {str(i): {"0x%x" % e: "0x%x" % v for e, v in vals.items()} for i, vals in res.vmreads.items()},
        "vmread_at_entry_failure": [{"cpu": c, "fields": {"0x%x" % e: "0x%x" % v for e, v in vals.items()}}
                                    for c, vals in res.failure_vmreads],
        # the first and last exits in detail (a looping driver makes millions), every one counted
        "exits": [[e.cpu, "0x%x" % e.reason, "0x%x" % e.qualification] for e in m.exits if not e.lab_induced],
        "exit_counts": [[cpu, "0x%x" % reason, n] for (cpu, reason), n in sorted(m.exits.counts_by_cpu().items())],
        "exits_not_kept": m.exits.dropped,
        "entry_failures_read": m.failure_vmreads.total,
        "allocations_live": len(kern.live),
        "crash": crash,
    })
    w.current_cpu = 0
    w.write(path, "--out")
