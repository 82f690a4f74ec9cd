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
from typing import Dict, List, Optional

from windbg_ext.arch import capabilities as caps
from windbg_ext.arch.vmcs_fields import FIELDS
from windbg_ext.target.image import ImageWriter

from emulated_lab.asm import assemble
from emulated_lab.machine import (CR4_VMXE, DRIVER_BASE, FC_LOCKED_VMXON_DISABLED, FC_LOCKED_VMXON_ENABLED, SEL_TSS,
                                  Machine, MachineError)
from emulated_lab.nt.kernel import NtKernel
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
}


class ScenarioError(Exception):
    """Bad scenario input (one line for the user)."""


class ScenarioResult:
    def __init__(self) -> None:
        self.scenario = ""
        self.cpus = 0
        self.load_status: Optional[int] = None
        self.unload_ran = False
        self.messages = []              # DbgMessage list
        self.exits = []                 # VmExit list (emulator-observed)
        self.workload: Dict[int, Dict[str, object]] = {}
        self.vmx_after: List[str] = []  # per processor after the scenario: off | root | guest
        self.cr4_after: List[int] = []
        self.leaks = []
        self.failed_allocations: List[int] = []
        self.allocation_calls = 0
        self.vmreads: Dict[int, Dict[int, int]] = {}    # per processor, read while parked (= the image)
        self.failure_vmreads = []                          # (processor, {encoding: value}) at failed VM entries
        self.image_path: Optional[str] = None
        self.descriptor_va = 0
        self.driver_base = 0

    @property
    def loaded(self) -> bool:
        return self.load_status is not None and self.load_status < 0x8000_0000

    def summary(self) -> List[str]:
        lines = ["scenario %s on %d processors: DriverEntry returned 0x%08x"
                 % (self.scenario, self.cpus, (self.load_status or 0) & 0xFFFFFFFF)]
        real = [e for e in self.exits if not e.lab_induced]
        lines.append("VM exits seen by the emulator: %d (%s)" % (
            len(real), ", ".join("0x%x x%d" % (r, sum(1 for e in real if e.reason == r))
                                 for r in sorted({e.reason for e in real})) or "none"))
        lines.append("after: VMX %s; CR4.VMXE %s; %d allocation(s) leaked"
                     % (", ".join("cpu%d=%s" % (i, v) for i, v in enumerate(self.vmx_after)),
                        ", ".join("cpu%d=%d" % (i, bool(c & CR4_VMXE)) for i, c in enumerate(self.cr4_after)),
                        len(self.leaks)))
        shown = [m for m in self.messages if m.shown]
        lines.append("DbgPrintEx: %d message(s), %d shown under the Kd_*_Mask values (see: windbg_ext dbgfilter)"
                     % (len(self.messages), len(shown)))
        for m in shown:
            lines.append("  [cpu%d] %s" % (m.cpu, m.text.rstrip()))
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
                 run_timeout: float = 60.0, feature_control: Optional[int] = None) -> ScenarioResult:
    """Runs one scenario on a fresh machine. kd_masks presets nt!Kd_<NAME>_Mask
    (e.g. {"IHVDRIVER": 0xF}); by default they are a stock install's. A single
    emulator run (e.g. DriverEntry) longer than run_timeout seconds is an error.
    feature_control: the IA32_FEATURE_CONTROL value firmware leaves (default:
    the scenario's, 0x5 or 0x1 for feature-locked)."""
    kind, k = parse_scenario(name)
    if cpus < 1 or cpus > 16:
        raise ScenarioError("--cpus must be between 1 and 16, got %d" % cpus)
    path = driver or DEFAULT_DRIVER
    if not os.path.isfile(path):
        raise ScenarioError("driver %s not found: build it with 'make -C driver' (or 'make demo')" % path)
    if image:
        where = os.path.dirname(os.path.abspath(image))
        if not os.path.isdir(where) or not os.access(where, os.W_OK):
            raise ScenarioError("cannot write the image %s: directory %s does not exist or is not writable"
                                % (image, where))
    fc = FC_LOCKED_VMXON_DISABLED if kind == "feature-locked" else FC_LOCKED_VMXON_ENABLED
    if feature_control is not None:
        fc = feature_control
    res = ScenarioResult()
    res.scenario, res.cpus = name, cpus
    if not run_timeout > 0:
        raise ScenarioError("the time limit must be a positive number of seconds, got %r" % run_timeout)
    m = Machine(cpus=cpus, feature_control=fc, run_timeout=run_timeout)
    try:
        if kind == "no-vmx":
            m.hide_vmx()
        kern = NtKernel(m, fail_allocation=k if kind == "alloc-fail" else 0, kd_masks=kd_masks)
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
            _lifecycle(m, kern, img, drv, res, encs, workload, image, msrs, cpuid)
        except MachineError as e:
            # a crash (bug check, fault, hang) keeps the machine as it was: like a
            # crash dump, the image lets the suite look at it post mortem
            if image and not res.image_path:
                res.exits, res.messages = list(m.exits), list(kern.messages)
                try:
                    _write_image(image, m, kern, img, res, msrs, cpuid, crash=str(e))
                    e.args = ("%s; the machine's state at the crash is in %s" % (e, image),)
                except Exception:  # the crash report matters more than the image
                    pass
            raise
        res.exits = list(m.exits)
        res.messages = list(kern.messages)
        res.leaks = kern.leaks()
        res.failed_allocations = list(kern.failed_allocations)
        res.allocation_calls = kern.allocation_calls
        return res
    finally:
        m.close()


def _lifecycle(m: Machine, kern: NtKernel, img, drv: int, res: ScenarioResult, encs, workload: bool,
               image: Optional[str], msrs, cpuid) -> None:
    """DriverEntry, workload, VMREAD, image, DriverUnload, the processors afterwards."""
    cpus = len(m.processors)
    r = kern.call_on_thread(img.entry, (drv, kern.registry_path))
    if r.stop != "return":
        raise MachineError("DriverEntry did not return: %s" % (r.fault or r.stop))
    res.load_status = r.regs["rax"] & 0xFFFFFFFF
    if res.loaded and workload:
        for i in range(cpus):
            res.workload[i] = run_workload(m, i)
    if res.loaded:
        for i in range(cpus):
            res.vmreads[i] = m.vmread_all(i, encs)
    res.failure_vmreads = list(m.failure_vmreads)
    if image:
        _write_image(image, m, kern, img, res, msrs, cpuid)
        res.image_path = image
    if res.loaded:
        unload = kern.driver_unload_routine(drv)
        if unload:
            r = kern.call_on_thread(unload, (drv,))
            if r.stop != "return":
                raise MachineError("DriverUnload did not return: %s" % (r.fault or r.stop))
            res.unload_ran = True
    # the emulator's view of every processor afterwards
    for i in range(cpus):
        m.switch_to(i)
        m.park()
        res.vmx_after.append(m.processors[i].vmx)
        res.cr4_after.append(m.processors[i].state.cr4)


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
                 crash: str = "") -> None:
    w = ImageWriter()
    for pa, size in m.phys_ranges():
        w.add_memory(pa, m.read_phys(pa, size))
    for name, va in kern.symbols.items():
        if name.startswith("nt!Kd_"):
            w.add_symbol(name, va)
    w.add_module("nt", kern.module[1], kern.module[2])
    w.add_module(img.name, img.base, img.size)
    for name, va in img.exports.items():
        w.add_symbol("%s!%s" % (img.name, name), va)
    for i in range(len(m.processors)):
        w.add_cpu(m.saved_registers(i), msrs[i], cpuid=cpuid[i])
    w.meta.update({
        "scenario": res.scenario, "driver": os.path.basename(img.name), "driver_base": "0x%x" % img.base,
        "load_status": "0x%08x" % (res.load_status or 0),
        "vmx_state": [p.vmx for p in m.processors],
        # a virtualized processor is parked in VMX root, in the driver's VM-exit
        # handler: its registers are that context; the guest's are in its VMCS
        "register_context": ["vmx-root (driver VM-exit handler)" if p.parked_in_exit else "os"
                             for p in m.processors],
        "vmcs_pa": ["0x%x" % p.vmcs_pa for p in m.processors],
        "vmread": {str(i): {"0x%x" % e: "0x%x" % v for e, v in vals.items()} for i, vals in res.vmreads.items()},
        "vmread_at_entry_failure": [{"cpu": c, "fields": {"0x%x" % e: "0x%x" % v for e, v in vals.items()}}
                                    for c, vals in res.failure_vmreads],
        "exits": [[e.cpu, "0x%x" % e.reason, "0x%x" % e.qualification] for e in m.exits if not e.lab_induced],
        "allocations_live": len(kern.live),
        "crash": crash,
    })
    w.current_cpu = 0
    w.write(path)
