"""The emulated machine: physical memory, 4-level paging, Windows-x64-like
GDT/IDT/TSS per processor, and N logical processors on the single-core
Bochs CPU model.

Processors are *sequential*: only one bochscpu Session exists at a time
(two live Sessions abort the process). Switching to processor k parks the
current one and opens a new Session loaded with k's saved state. Physical
memory persists across Sessions; VMX operation does not, so a processor that
was in VMX operation is parked in VMX root (after a VM exit the CPU has
stored the guest state in the VMCS) and re-established on resume by a
firmware-like helper: IA32_FEATURE_CONTROL locked, VMXON on a lab-owned
per-processor region (the VMXON region's content is not architectural
beyond the revision id, SDM Vol.3 25.11.5), VMPTRLD of the VMCS that was
current. Every Session starts like firmware left it: IA32_FEATURE_CONTROL
locked (SDM Vol.3 24.7 / MSR 3AH).

Public API used by other parts of the project (e.g. the VM-entry differential
test):

    m = Machine(cpus=2)
    code = m.place_code(assemble("vmxon [rdi]\\n ..."))   # a fresh kernel VA
    page_va, page_pa = m.alloc_page()                      # zeroed, mapped RW
    r = m.run(cpu=1, rip=code, regs={"rdi": ...})          # ring 0, until `ret`
    r.regs["rax"], r.vmx_status, r.exits, r.fault
    m.close()
"""
from __future__ import annotations

import contextlib
import gc
import math
import struct
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

from windbg_ext.arch import capabilities as caps

from emulated_lab import snippets
from emulated_lab.cpu_truth import CpuTruth
from emulated_lab.debugctl import IA32_DEBUGCTL, DebugctlModel
from emulated_lab.errors import MachineError
from emulated_lab.insn import Insn, effective_address, scan
from emulated_lab.memory import DIRECT_MAP, PAGE, GuestMemory
from emulated_lab.bochs_loader import WATCHED_HANDLERS, WatchCallback, Watchdog, load_bochscpu, set_watch
from emulated_lab.records import BoundedLog, ExitLog
from emulated_lab.x64 import (ATTR_R0_CODE, ATTR_R0_DATA, ATTR_R3_CMTEB, ATTR_R3_DATA, ATTR_TSS_BUSY, CMTEB_LIMIT,
                              CR0_INIT, CR4_INIT, CR4_VMXE, EFER_INIT, ERROR_CODE_VECTORS, EXCEPTION_NAMES,
                              FAULT_STUB_SIZE, GDT_LIMIT, GPRS, IDT_LIMIT, PAT_INIT, RFLAGS_CF, RFLAGS_IF,
                              RFLAGS_INIT, RFLAGS_NT, RFLAGS_RF, RFLAGS_TF, RFLAGS_ZF, SEL_R0_CODE, SEL_R0_DATA,
                              SEL_R3_CMCODE, SEL_R3_CMTEB, SEL_R3_CODE, SEL_R3_DATA, SEL_TSS, THREAD_REGS, TSS_LIMIT,
                              XCR0_INIT, fault_stubs_page, gdt_image, idt_image, tss_image)

__all__ = ["Machine", "MachineError", "GuestFault", "RunTimeout", "VmExit", "RunResult", "Processor", "DIRECT_MAP",
           "PAGE", "NT_BASE", "DRIVER_BASE", "USER_BASE", "CR0_INIT", "CR4_INIT", "CR4_VMXE", "EFER_INIT", "GDT_LIMIT",
           "SEL_R0_CODE", "SEL_R0_DATA", "SEL_R3_CMCODE", "SEL_R3_CODE", "SEL_R3_DATA", "SEL_R3_CMTEB", "SEL_TSS",
           "RFLAGS_CF", "RFLAGS_ZF", "FC_LOCKED_VMXON_ENABLED", "FC_LOCKED_VMXON_DISABLED", "GPRS"]

# Virtual layout (canonical, kernel half; pool/contiguous memory is at DIRECT_MAP + pa).
NT_BASE = 0xFFFF_F800_0000_0000        # the emulated "nt" module: stubs + data
DRIVER_BASE = 0xFFFF_F806_1000_0000    # where a loaded driver image goes
USER_BASE = 0x0000_0000_0001_0000      # ring-3 workload code and stack

MSR_FEATURE_CONTROL = caps.IA32_FEATURE_CONTROL
VECTOR_GP = 13                                  # SDM Vol.3 Table 6-1
FC_LOCKED_VMXON_ENABLED = 0x5   # lock | enable VMXON outside SMX (SDM Vol.3 24.7)
FC_LOCKED_VMXON_DISABLED = 0x1  # lock only: VMXON #GPs


class GuestFault(MachineError):
    def __init__(self, vector: int, error: int, rip: int, cpu: int):
        super().__init__("processor %d: exception %s (vector %d, error 0x%x) at rip 0x%x"
                         % (cpu, EXCEPTION_NAMES.get(vector, "?"), vector, error, rip))
        self.vector, self.error, self.rip, self.cpu = vector, error, rip, cpu


class RunTimeout(MachineError):
    """A top-level run (with every run nested in it) exceeded its wall time or
    instruction budget. `activity` says what the driver was doing."""

    def __init__(self, cpu: int, by: str, seconds: float, limit_seconds: float, instructions: int,
                 limit_instructions: int, activity: str) -> None:
        if by == "instructions":
            what = "reached the limit of {:,} instructions without finishing (after {:.1f} s)".format(
                limit_instructions, seconds)
        else:
            what = "ran for %g s without finishing (%s instructions)" % (limit_seconds, "{:,}".format(instructions))
        super().__init__("processor %d %s: %s" % (cpu, what, activity))
        self.cpu, self.by, self.seconds, self.instructions, self.activity = cpu, by, seconds, instructions, activity


class VmExit:
    """One VM exit as the emulator's vmexit hook saw it (before the exit)."""

    __slots__ = ("cpu", "reason", "qualification", "guest_rip", "lab_induced")

    def __init__(self, cpu: int, reason: int, qualification: int, guest_rip: int, lab_induced: bool):
        self.cpu, self.reason, self.qualification = cpu, reason, qualification
        self.guest_rip, self.lab_induced = guest_rip, lab_induced

    @property
    def basic_reason(self) -> int:
        return self.reason & 0xFFFF

    @property
    def entry_failure(self) -> bool:
        return bool(self.reason & 0x8000_0000)  # SDM Vol.3 28.2.1: bit 31

    def __repr__(self) -> str:
        return "VmExit(cpu=%d, reason=0x%x, qual=0x%x, rip=0x%x%s)" % (
            self.cpu, self.reason, self.qualification, self.guest_rip, ", lab" if self.lab_induced else "")


class RunResult:
    """What `Machine.run` observed."""

    def __init__(self, cpu: int, regs: Dict[str, int], exits: List[VmExit], fault: Optional[GuestFault],
                 stop: str):
        self.cpu = cpu
        self.regs = regs
        self.exits = exits
        self.fault = fault
        self.stop = stop  # "return" (reached the sentinel), "fault", "hlt"

    @property
    def vmx_status(self) -> str:
        """The VMX instruction result convention (SDM Vol.3 31.2): CF=1 VMfailInvalid,
        ZF=1 VMfailValid, both clear VMsucceed — of the last instruction that set flags."""
        fl = self.regs.get("rflags", 0)
        if fl & RFLAGS_CF:
            return "fail-invalid"
        if fl & RFLAGS_ZF:
            return "fail-valid"
        return "success"


# The one live Session of the process (bochscpu aborts on a second one). Held
# here so a new Session is only made once nothing else references the old one.
_session_holder: List[object] = []


def _session_referenced() -> bool:
    """True when something besides the holder references the held Session
    (after a garbage collection, for references that are only cycles)."""
    if not _session_holder:
        return False
    if sys.getrefcount(_session_holder[0]) > 2:    # the holder and getrefcount's argument
        gc.collect()
    return sys.getrefcount(_session_holder[0]) > 2


def _new_session(bochscpu):
    if _session_holder:
        if _session_referenced():
            raise MachineError("an earlier emulated CPU session is still referenced (an unclosed Machine, "
                               "or a kept reference to its cpu): close it before starting another")
        _session_holder.clear()
    sess = bochscpu.Session()
    _session_holder.append(sess)
    return sess


def _release_session() -> None:
    """Drops the holder's Session unless something else still references it: a
    Session that outlives the holder would be a second live Session once the
    next one is made (bochscpu aborts), so it stays held and the next
    _new_session reports it instead."""
    if not _session_referenced():
        _session_holder.clear()


def _drop_frames(e: BaseException) -> None:
    """Clears the tracebacks of an exception and of those it chains: the frames of
    emulator hooks (and of services they call) hold the Session and its cpu."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__traceback__ = None
        if e.__cause__ is not None:
            _drop_frames(e.__cause__)
        e = e.__context__


class Processor:
    def __init__(self, index: int) -> None:
        self.index = index
        self.state = None            # bochscpu.State saved at park, None before first run
        self.vmx = "off"             # "off" | "root" | "guest" (VMX non-root)
        self.parked_in_exit = False  # parked inside the driver's VM-exit handler (resume -> guest)
        self.vmcs_pa = 0             # the current VMCS at park time (VMPTRST)
        self.guest_gprs = None       # the guest's GPRs at the lab's exit that parked it (debugger_view.py)
        self.fw_vmxon_pa = 0         # the lab's ("firmware") VMXON region for re-establishment
        self.gdt = self.idt = self.tss = self.kpcr = 0
        self.stack_top = 0           # per-processor stack for calls into code on this processor
        self.idle_stack_top = 0


class Machine(GuestMemory):
    """An emulated x86-64 machine with `cpus` logical processors."""

    def __init__(self, cpus: int = 2, feature_control: int = FC_LOCKED_VMXON_ENABLED,
                 run_timeout: float = 60.0, instruction_limit: int = 0, observe: bool = True) -> None:
        if cpus < 1 or cpus > 64:
            raise MachineError("processor count %d is out of range (1..64)" % cpus)
        self.bochscpu = load_bochscpu()
        GuestMemory.__init__(self, self.bochscpu.memory)
        # The budget of one top-level operation (a run(), a processor switch, a
        # VMREAD probe), shared by every emulator run nested in it: seconds of
        # wall time, and instructions (0: no instruction limit).
        self.run_timeout = run_timeout
        self.instruction_limit = instruction_limit
        self._watchdog = Watchdog()
        self._budget_depth = 0
        self._budget_start = (0.0, 0, 0)    # wall time, instruction count, exits at the outermost start
        self._deadline = 0.0
        self._until_instruction = 0
        self.locate: Optional[Callable[[int], str]] = None   # rip -> "module+offset" (set by the NT kernel)
        self.feature_control = feature_control
        self._code_cursor = 0
        self._code_page = 0
        self._code_interned: Dict[bytes, int] = {}
        self._closed = False
        self.breakpoints: Dict[int, Callable[[int], None]] = {}   # VA -> handler (ucnear_branch target)
        self.exits = ExitLog()           # every exit counted; details of the first and last ones
        self.exit_observers: List[Callable[[VmExit], None]] = []
        self.sess = None
        self.current: Optional[int] = None
        self._stop_reason = ""
        self._pending_fault: Optional[Tuple[int, int]] = None
        self._lab_induced = False
        self._await_root = False
        self._request = None
        self._hook_list = None
        self._hide_vmx = False
        # MSRs this CPU model does not implement: RDMSR/WRMSR of them raise #GP(0) (SDM Vol.2 RDMSR/WRMSR)
        self.absent_msrs: frozenset = frozenset()
        # CR4 bits this machine's IA32_VMX_CR4_FIXED1 reports fixed to 0 beyond the model's own
        # (hardware.forbid_cr4_bit): VMXON with one of them set raises #GP(0)
        self.vmxon_forbidden_cr4 = 0
        self._await_capture = False
        self.capture_on_entry_failure: List[int] = []   # encodings to VMREAD when a VM entry fails
        # (processor, {encoding: value}) at failed VM entries: the first and last ones
        self.failure_vmreads: BoundedLog[Tuple[int, Dict[int, int]]] = BoundedLog(keep=8)
        self._capture_plan: Tuple[List[int], list] = ([], self.failure_vmreads)
        # watched instructions (emulated_lab/insn.py) by address, and the one in flight
        self.sites: Dict[int, Insn] = {}
        # (address past it, kind) -> address of a watched instruction: the interposed handlers
        # (bochs_stubs.cpp) run with RIP already past the instruction
        self._site_ends: Dict[Tuple[int, str], int] = {}
        self._watch_cb = None            # the WatchCallback of this machine, once it runs
        self._watch_error: Optional[BaseException] = None   # raised by a watch callback
        self._pending: Optional[Tuple[int, Insn, int, Dict[str, int]]] = None
        self._firmware = False            # the lab's own firmware steps: not observed
        self._entry_exited = False
        # a CPU model stricter or different than Bochs's own (set before the first run):
        #   cpuid_filter(k, leaf, subleaf, (eax, ebx, ecx, edx)) -> the 4 values the guest sees
        #   rdmsr_filter(k, msr, value) -> value
        #   emulate(k, insn, regs) -> None (execute it) or {register: value} (the lab
        #   executes it: registers set, RIP past it), e.g. MSRs and hypercalls of a
        #   parent; truth.processors[k].vmx says whether it runs in our VMX non-root
        self.cpuid_filter: Optional[Callable[[int, int, int, Tuple[int, int, int, int]],
                                             Tuple[int, int, int, int]]] = None
        self.rdmsr_filter: Optional[Callable[[int, int, int], int]] = None
        self.emulate: Optional[Callable[[int, Insn, Dict[str, int]], Optional[Dict[str, int]]]] = None
        #   after_vmclear(k, pa): software's VMCLEAR of pa completed (emulated_lab/hardware.py)
        self.after_vmclear: Optional[Callable[[int, int], None]] = None
        self.poisoned: List[int] = []
        self._hlt_rip = 0
        self.count_instructions = False   # set before the first run: counts instructions (slow)
        self.count_range = (0, 1 << 64)   # ... whose address is in [lo, hi), e.g. the driver image
        self.instructions = 0
        self._last_counted = -1
        self._build_shared()
        self.processors = [Processor(i) for i in range(cpus)]
        self.vmx_revision = 0      # IA32_VMX_BASIC[30:0], read by the firmware step
        # observe=False: the watched instructions do not reach Python unless a filter
        # needs them, so `truth` is not kept (benchmarks/bench_lab.py)
        self.observe = observe
        self.truth = CpuTruth(cpus, self._cr4_of, lambda: self.vmx_revision)
        # IA32_DEBUGCTL kept per processor by the lab (Bochs drops its writes): emulated_lab/debugctl.py
        self.debugctl = DebugctlModel(cpus)
        for p in self.processors:
            self._build_processor(p)

    # -- code placement -----------------------------------------------------
    def place_code(self, code: bytes) -> int:
        """Puts code at a kernel VA and returns it. Identical code is placed once;
        new code always gets a fresh address (Bochs caches decoded instructions)."""
        va = self._code_interned.get(code)
        if va is not None:
            return va
        size = (len(code) + 15) & ~15
        if not self._code_page or self._code_cursor + size > PAGE * 4:
            self._code_page = DIRECT_MAP + self.alloc_phys(4)
            self._code_cursor = 0
        va = self._code_page + self._code_cursor
        self.write_virt(va, code)
        self.note_code(va, code)
        self._code_cursor += size
        self._code_interned[code] = va
        return va

    def place_user_code(self, code: bytes) -> int:
        """Puts code in the ring-3 (user, read-only, executable) area; returns its VA."""
        size = (len(code) + 15) & ~15
        if self._user_cursor + size > 4 * PAGE:
            raise MachineError("the user code area is full")
        va = USER_BASE + self._user_cursor
        self.write_phys(self.user_code_pa + self._user_cursor, code)
        self._user_cursor += size
        self.note_code(va, code)
        return va

    def note_code(self, va: int, code: bytes) -> None:
        """Records where watched instructions (VMX, CPUID, RDMSR, WRMSR) may be."""
        for at, insn in scan(code, va).items():
            self.sites[at] = insn
            key = (at + insn.length, insn.kind)
            # two decodes of one kind ending at one address differ by a REX byte: the longer one
            if self._site_ends.get(key, at + 1) > at:
                self._site_ends[key] = at

    def hide_vmx(self) -> None:
        """Makes the CPU a processor without VMX: CPUID.1:ECX[5] reads 0 (SDM Vol.3 24.6),
        and the VMX capability MSRs (0x480-0x493) do not exist: they are "available only
        if CPUID.1:ECX.VMX = 1" (SDM Vol.3 App. A.1, Vol.4 Table 2-2), so RDMSR/WRMSR of
        them raise #GP(0) (SDM Vol.2 RDMSR: "#GP(0) if ECX specifies a reserved or
        unimplemented MSR address"). The lab's own firmware steps are not affected."""
        if self._hook_list is not None:
            raise MachineError("hide_vmx() must be called before the first run")
        self._hide_vmx = True
        self.absent_msrs = frozenset(caps.VMX_MSRS)
        # IA32_FEATURE_CONTROL bits 1 and 2 are defined only with VMX or SMX (SDM Vol.4 Table 2-2; this
        # model has no SMX): firmware can lock the MSR but not enable VMXON
        self.feature_control = FC_LOCKED_VMXON_DISABLED

    def _cr4_of(self, k: int) -> int:
        if self.current == k and self.sess is not None:
            return self.sess.cpu.state.cr4
        st = self.processors[k].state
        return st.cr4 if st is not None else CR4_INIT

    def _watch(self, which: int, after: int) -> int:
        """The interposed handler of WATCHED_HANDLERS[which] runs (bochs_stubs.cpp):
        before it (return 1: skip the instruction) or after it returned normally.
        A Python exception cannot cross the native frames: it stops the run and
        _run_session raises it."""
        try:
            if after:
                self._after()
                return 0
            return 1 if self._before(which) else 0
        except BaseException as e:   # noqa: B036 -- re-raised by _run_session
            self._pending = None
            if self._watch_error is None:
                self._watch_error = e
            self.sess.stop()
            return 0 if after else 1

    def _before(self, which: int) -> bool:
        """The watched instruction is about to execute; True: the lab emulated it (skip it)."""
        c = self.sess.cpu
        end = c.rip                       # Bochs advanced RIP before calling the handler
        rip = None
        for kind in WATCHED_HANDLERS[which][1]:
            rip = self._site_ends.get((end, kind))
            if rip is not None:
                break
        if rip is None:
            self._pending = None
            return False
        insn = self.sites[rip]
        regs = {"rax": c.rax, "rcx": c.rcx, "rdx": c.rdx, "r8": c.r8, "r9": c.r9}
        pa = None
        if insn.mem is not None:
            ea = effective_address(insn.mem, lambda r: getattr(c, r), end)
            try:
                pa = self.read_u64(ea)
                rev = int.from_bytes(self.read_phys(pa & ~0xFFF, 4), "little") if self.is_backed(pa) else None
            except MachineError:
                pa = None    # the CPU faults on it; nothing to record
            regs["revision"] = rev if pa is not None else None
        del c
        # an MSR the model lacks: #GP(0). Not at CPL > 0 (the CPU's own #GP), and not in VMX non-root, where
        # the MSR bitmap may turn it into a VM exit first (SDM Vol.3 26.1.1; a no-VMX machine has no guest)
        if (insn.kind in ("rdmsr", "wrmsr") and (regs["rcx"] & 0xFFFFFFFF) in self.absent_msrs
                and not self._firmware and self.truth.processors[self.current].vmx != "guest"
                and self.sess.cpu.state.cs.selector & 3 == 0):
            self._pending = None
            self.request(lambda: self._raise_fault(VECTOR_GP, 0, rip))
            return True
        # no VMX: CR4.VMXE is a reserved bit, and setting a reserved CR4 bit raises #GP(0) (SDM Vol.3 2.5,
        # Vol.2 MOV to CR: "#GP(0) if an attempt is made to write a 1 to any reserved bit in CR4"; 24.7)
        if (insn.kind == "mov_cr4" and self._hide_vmx and not self._firmware
                and getattr(self.sess.cpu, insn.src) & CR4_VMXE and self.sess.cpu.state.cs.selector & 3 == 0):
            self._pending = None
            self.request(lambda: self._raise_fault(VECTOR_GP, 0, rip))
            return True
        # VMXON outside VMX operation with CR4.VMXE set (else #UD) and a CR4 value VMX operation does not
        # support: #GP(0) (SDM Vol.3 31.3 VMXON, 24.8). The CPU model checks its own FIXED1 only.
        if (insn.kind == "vmxon" and self.vmxon_forbidden_cr4 and not self._firmware
                and self.truth.processors[self.current].vmx == "off" and self.sess.cpu.state.cr4 & CR4_VMXE
                and self.sess.cpu.state.cr4 & self.vmxon_forbidden_cr4 and self.sess.cpu.state.cs.selector & 3 == 0):
            self._pending = None
            self.request(lambda: self._raise_fault(VECTOR_GP, 0, rip))
            return True
        self._pending = (rip, insn, pa, regs)
        if insn.kind in ("vmlaunch", "vmresume"):
            self._entry_exited = False
        k = self.current
        if self.emulate is not None:
            out = self.emulate(k, insn, regs)
            if out is not None:
                self._pending = None
                self.request(lambda: self._emulated(rip + insn.length, out))
                return True
        return False

    def _raise_fault(self, vector: int, error: int, rip: int) -> None:
        """Delivers exception `vector` with an error code at `rip` (CPL 0, 64-bit mode) as the CPU
        does (SDM Vol.3 6.14.2): through the IDT gate (6.14.1; IST stack when the gate names one,
        6.14.5), frame SS, RSP, RFLAGS, CS, RIP, error code on a 16-byte aligned stack; an interrupt
        gate clears IF, and TF, NT, RF are cleared (6.12.1.3)."""
        st = self.sess.cpu.state
        lo, hi = struct.unpack("<QQ", self.read_virt(st.idtr.base + 16 * vector, 16))
        handler = (lo & 0xFFFF) | ((lo >> 48) & 0xFFFF) << 16 | (hi & 0xFFFFFFFF) << 32
        ist = (lo >> 32) & 7
        rsp = self.read_u64(st.tr.base + 0x24 + 8 * (ist - 1)) if ist else st.rsp   # TSS.ISTn (7.7)
        rsp &= ~0xF
        frame = (error, rip, st.cs.selector, st.rflags, st.rsp, st.ss.selector)
        rsp -= 8 * len(frame)
        self.write_virt(rsp, struct.pack("<6Q", *frame))
        flags = st.rflags & ~(RFLAGS_TF | RFLAGS_NT | RFLAGS_RF | (RFLAGS_IF if (lo >> 40) & 0xF == 0xE else 0))
        self._pending_fault = (vector, error, rip)
        self.set_thread_regs({"rsp": rsp, "rip": handler, "rflags": flags})

    def _emulated(self, next_rip: int, regs: Dict[str, int]) -> None:
        xmm = {int(r[3:]): v for r, v in regs.items() if r.startswith("xmm")}
        if xmm:
            self.set_xmm(xmm)
        regs = dict(((r, v) for r, v in regs.items() if not r.startswith("xmm")), rip=next_rip)
        self.set_thread_regs(regs)

    def read_xmm(self, count: int = 16) -> List[int]:
        """XMM0..count-1 of the live processor, each a 128-bit int (low qword first in memory)."""
        zmm = self.sess.cpu.state.zmm
        return [zmm[n].q[0] | zmm[n].q[1] << 64 for n in range(count)]

    def set_xmm(self, values: Dict[int, int]) -> None:
        """Writes XMMn = value (128 bits; the upper ZMM lanes are left alone). Not from inside a hook:
        the whole CPU state is written back (Machine.request)."""
        c = self.sess.cpu
        st = c.state
        zmm = st.zmm
        for n, v in values.items():
            q = list(zmm[n].q)
            q[0], q[1] = v & 0xFFFF_FFFF_FFFF_FFFF, v >> 64 & 0xFFFF_FFFF_FFFF_FFFF
            zmm[n].q = q
        st.zmm = zmm
        c.state = st

    def _after(self) -> None:
        """The watched instruction completed (no VM exit, no fault)."""
        pending = self._pending
        if pending is None:
            return
        site, insn, pa, regs = pending
        c = self.sess.cpu
        rip = c.rip
        self._pending = None
        k = self.current
        if rip != site + insn.length:
            # left somewhere else: VMLAUNCH/VMRESUME entered the guest (unless it
            # exited at once)
            if insn.kind in ("vmlaunch", "vmresume") and not self._entry_exited and not self._firmware:
                self.truth.entered_guest(k, insn.kind)
                self.debugctl.vm_entered(k, self.truth.processors[k].vmcs_pa)
            return
        if insn.kind == "cpuid":
            leaf, sub = regs["rax"] & 0xFFFFFFFF, regs["rcx"] & 0xFFFFFFFF
            out = (c.rax & 0xFFFFFFFF, c.rbx & 0xFFFFFFFF, c.rcx & 0xFFFFFFFF, c.rdx & 0xFFFFFFFF)
            new = out
            if self._hide_vmx and leaf == 1:
                new = (new[0], new[1], new[2] & ~(1 << 5), new[3])
            if self.cpuid_filter is not None:
                new = self.cpuid_filter(k, leaf, sub, new)
            if new != out:
                c.rax, c.rbx, c.rcx, c.rdx = new
        elif insn.kind in ("rdmsr", "wrmsr") and regs["rcx"] & 0xFFFFFFFF == IA32_DEBUGCTL:
            if insn.kind == "wrmsr":
                self.debugctl.wrmsr(k, (regs["rdx"] & 0xFFFFFFFF) << 32 | (regs["rax"] & 0xFFFFFFFF))
            else:
                v = self.debugctl.rdmsr(self, k)
                c.rax, c.rdx = v & 0xFFFFFFFF, v >> 32
        elif insn.kind == "rdmsr" and self.rdmsr_filter is not None:
            v = (c.rdx & 0xFFFFFFFF) << 32 | (c.rax & 0xFFFFFFFF)
            nv = self.rdmsr_filter(k, regs["rcx"] & 0xFFFFFFFF, v)
            if nv != v:
                c.rax, c.rdx = nv & 0xFFFFFFFF, nv >> 32
        elif not self._firmware:
            self.truth.executed(k, insn.kind, pa, regs.get("revision"))
            if insn.kind == "vmclear" and self.after_vmclear is not None and pa is not None \
                    and self.truth.processors[k].vmx != "off" and pa != self.truth.processors[k].vmxon_pa:
                self.after_vmclear(k, pa)

    # -- layout -------------------------------------------------------------
    def _build_shared(self) -> None:
        # A page of HLT: the run sentinel is here (a RET to it is seen by the
        # ucnear_branch hook; the HLT is only a tripwire).
        hlt_pa = self.alloc_phys(1)
        self.write_phys(hlt_pa, b"\xF4" * PAGE)
        self.hlt_page = DIRECT_MAP + hlt_pa
        self.sentinel = self.hlt_page + 0x800
        self.breakpoints[self.sentinel] = self._on_sentinel
        # IDT handlers: `push vector; jmp common`. Reaching `common` (a branch the
        # ucnear_branch hook sees) ends the run with the fault. No HLT is executed:
        # a HLT in VMX non-root would leave the guest's activity state HLT, which
        # the next VM exit stores into the VMCS (SDM Vol.3 28.3.4).
        stubs_pa = self.alloc_phys(1)
        self.idt_stubs = DIRECT_MAP + stubs_pa
        self.fault_common = self.idt_stubs + 0x800
        self.write_phys(stubs_pa, fault_stubs_page(self.idt_stubs, self.fault_common))
        self.breakpoints[self.fault_common] = self._on_fault_stub
        self.user_code_pa = self.alloc_phys(4)
        self.user_stack_pa = self.alloc_phys(4)
        self.map(USER_BASE, self.user_code_pa, 4 * PAGE, user=True, writable=False)
        self.map(USER_BASE + 0x10000, self.user_stack_pa, 4 * PAGE, user=True, executable=False)
        self.user_stack_top = USER_BASE + 0x10000 + 4 * PAGE - 0x40
        self._user_cursor = 0

    def _build_processor(self, p: Processor) -> None:
        """Per processor: GDT, TSS, IDT, a KPCR-like page for GS, stacks, and the
        lab's VMXON region for re-establishing VMX operation."""
        p.gdt, p.tss, p.idt = (DIRECT_MAP + self.alloc_phys(1) for _ in range(3))
        p.kpcr = DIRECT_MAP + self.alloc_phys(2)
        p.stack_top = DIRECT_MAP + self.alloc_phys(16) + 16 * PAGE - 0x100
        p.idle_stack_top = DIRECT_MAP + self.alloc_phys(2) + 2 * PAGE - 0x100
        ist1 = DIRECT_MAP + self.alloc_phys(2) + 2 * PAGE - 0x40
        self.write_virt(p.gdt, gdt_image(p.tss))
        self.write_virt(p.tss, tss_image(p.stack_top - 0x4000, ist1))
        self.write_virt(p.idt, idt_image(lambda v: self.idt_stubs + FAULT_STUB_SIZE * v))
        # KPCR: Self at +0x18, Prcb.Number at +0x184 (what KeGetCurrentProcessorNumber reads)
        self.write_u64(p.kpcr + 0x18, p.kpcr)
        self.write_virt(p.kpcr + 0x184, p.index.to_bytes(4, "little"))
        p.fw_vmxon_pa = self.alloc_phys(1)

    def _segment(self, selector: int, attr: int, base: int = 0, limit: int = 0xFFFFFFFF):
        s = self.bochscpu.Segment()
        s.present = True
        s.selector = selector
        s.base = base
        s.limit = limit
        s.attr = attr
        return s

    def _initial_state(self, p: Processor):
        b = self.bochscpu
        st = b.State()
        st.cr0, st.cr4, st.efer, st.cr3 = CR0_INIT, CR4_INIT, EFER_INIT, self.pml4
        st.xcr0 = XCR0_INIT
        st.rflags = RFLAGS_INIT
        st.rsp = p.stack_top
        st.rip = self.sentinel
        st.pat = PAT_INIT
        st.cs = self._segment(SEL_R0_CODE, ATTR_R0_CODE)
        st.ss = self._segment(SEL_R0_DATA, ATTR_R0_DATA)
        st.ds = self._segment(SEL_R3_DATA | 3, ATTR_R3_DATA)
        st.es = self._segment(SEL_R3_DATA | 3, ATTR_R3_DATA)
        st.fs = self._segment(SEL_R3_CMTEB | 3, ATTR_R3_CMTEB, 0, CMTEB_LIMIT)
        st.gs = self._segment(SEL_R3_DATA | 3, ATTR_R3_DATA, p.kpcr)
        st.tr = self._segment(SEL_TSS, ATTR_TSS_BUSY, p.tss, TSS_LIMIT)
        ldtr = self.bochscpu.Segment()
        ldtr.present = False
        st.ldtr = ldtr
        g = b.GlobalSegment()
        g.base, g.limit = p.gdt, GDT_LIMIT
        st.gdtr = g
        i = b.GlobalSegment()
        i.base, i.limit = p.idt, IDT_LIMIT
        st.idtr = i
        st.kernel_gs_base = 0
        st.star = (SEL_R3_CMCODE & ~3) << 48 | SEL_R0_CODE << 32
        return st

    # -- sessions and processors --------------------------------------------
    def _hooks(self):
        h = self.bochscpu.Hook()
        h.ucnear_branch = self._on_branch
        h.hlt = self._on_hlt
        h.exception = self._on_exception
        h.vmexit = self._on_vmexit
        # The watched instructions reach Python through their interposed handlers
        # (_watch), not through a per-instruction hook: only counting instructions
        # needs every one (about 20x slower: benchmarks/bench_watchdog.py).
        if self.count_instructions:
            h.before_execution = self._on_instruction
        if self.observe or self._hide_vmx or self.cpuid_filter or self.rdmsr_filter or self.emulate \
                or self.after_vmclear:
            self._watch_cb = WatchCallback(self._watch)
        return [h]

    def _on_instruction(self, sess, cpu_id, _insn) -> None:
        self._count(sess)

    def _count(self, sess) -> None:
        # before_execution may fire twice for one instruction (after RDMSR/VMXOFF,
        # or on resume after a stop): count each RIP once in a row
        rip = sess.cpu.rip
        if rip == self._last_counted:
            return
        self._last_counted = rip
        lo, hi = self.count_range
        if lo <= rip < hi:
            self.instructions += 1

    def _open_session(self, k: int) -> None:
        """A fresh Session for processor k, state loaded, VMX re-established."""
        self._close_session()
        sess = _new_session(self.bochscpu)
        sess.missing_page_handler = self._missing_page
        p = self.processors[k]
        st = p.state if p.state is not None else self._initial_state(p)
        sess.cpu.state = st
        self.sess, self.current = sess, k
        del sess, st   # an exception below must not keep the Session alive in this frame
        if self._hook_list is None:
            self._hook_list = self._hooks()   # one Hook set for the machine
        saved = self.thread_regs()
        # Firmware: lock IA32_FEATURE_CONTROL (and, for a processor parked in
        # VMX root, re-enter VMX operation with the same current VMCS).
        if p.vmx != "off":
            code = self.place_code(snippets.FW_REESTABLISH)
            self._firmware = True
            try:
                r = self._call_raw(code, {"rax": self.feature_control, "rdi": p.fw_vmxon_pa,
                                          "rbx": DIRECT_MAP + p.fw_vmxon_pa, "rsi": p.vmcs_pa},
                                   p.idle_stack_top)
            finally:
                self._firmware = False
            if r != "return" or self.sess.cpu.rax != 0:
                raise MachineError("processor %d: re-establishing VMX operation failed (%s, rax=%d)"
                                   % (k, r, self.sess.cpu.rax))
        else:
            code = self.place_code(snippets.FW_LOCK)
            self._firmware = True
            try:
                r = self._call_raw(code, {"rax": self.feature_control}, p.idle_stack_top)
            finally:
                self._firmware = False
            if r != "return":
                raise MachineError("processor %d: firmware start-up failed (%s)" % (k, r))
            self.vmx_revision = self.sess.cpu.rax & 0x7FFF_FFFF
        self.set_thread_regs(saved)

    def _close_session(self) -> None:
        if self.sess is not None:
            self.sess = None   # keep no reference to the old sess.cpu
            self.current = None

    # RAM everywhere (below 4 GiB), as on a real machine: a read where nothing was put gives
    # zeros instead of stopping. Off by default (a driver touching such memory is a lab finding);
    # the entry probe turns it on, since a learner's VMCS may point anywhere.
    zero_fill_below = 0

    def _missing_page(self, gpa: int) -> None:
        if gpa < self.zero_fill_below:
            self._new_page(gpa & ~0xFFF)
            return
        raise MachineError("the emulated CPU accessed physical address 0x%x, which has no memory" % gpa)

    def thread_regs(self) -> Dict[str, int]:
        """GPRs, RIP and RFLAGS of the live processor: what moves with a thread."""
        c = self.sess.cpu
        return {r: getattr(c, r) for r in THREAD_REGS}

    def set_thread_regs(self, regs: Dict[str, int]) -> None:
        c = self.sess.cpu
        for r, v in regs.items():
            setattr(c, r, v & 0xFFFF_FFFF_FFFF_FFFF)

    def _save_state(self) -> None:
        p = self.processors[self.current]
        p.state = self.sess.cpu.state

    # -- the run loop -------------------------------------------------------
    def _on_sentinel(self, _ip: int) -> None:
        self._stop_reason = "return"
        self.sess.stop()

    def _on_fault_stub(self, _ip: int) -> None:
        # the stub pushed the vector; the exception hook saw error code and faulting RIP
        self._stop_reason = "fault"
        rsp = self.sess.cpu.rsp
        vec = self.read_u64(rsp) & 0xFF
        pending = self._pending_fault
        if pending is None or pending[0] != vec:
            # frame: vector, [error code,] RIP, ... (SDM Vol.3 6.14.2)
            if vec in ERROR_CODE_VECTORS:
                self._pending_fault = (vec, self.read_u64(rsp + 8) & 0xFFFFFFFF, self.read_u64(rsp + 16))
            else:
                self._pending_fault = (vec, 0, self.read_u64(rsp + 8))
        self.sess.stop()

    def _on_branch(self, sess, cpu_id, what, branch_ip, new_ip) -> None:
        if self.debugctl.save is not None:
            self.debugctl.exit_completed(self)
        if self._await_root:
            # first branch after a lab-induced VM exit: the CPU is in VMX root.
            self._await_root = False
            self._stop_reason = "root"
            sess.stop()
            return
        if self._await_capture:
            # first branch in the VM-exit handler after a failed VM entry: VMREAD
            # the failing VMCS there, before the driver can clear or free it
            self._await_capture = False
            self.request(self._capture_failure)
            return
        h = self.breakpoints.get(new_ip)
        if h is not None:
            h(new_ip)

    def _on_hlt(self, sess, cpu_id) -> None:
        if self._stop_reason:
            return
        rip = sess.cpu.rip
        if rip in (self.sentinel, self.sentinel + 1):
            self._stop_reason = "return"   # reached without a branch (a stub returned to it)
        elif self._pending_fault is not None:
            self._stop_reason = "fault"
        else:
            self._stop_reason = "hlt"
        self._hlt_rip = rip
        sess.stop()

    def _on_exception(self, sess, cpu_id, vector, error) -> None:
        self._pending_fault = (vector, error, sess.cpu.rip)

    def _on_vmexit(self, sess, cpu_id, reason, qual) -> None:
        e = VmExit(self.current, reason, qual, sess.cpu.rip, self._lab_induced)
        self.exits.append(e)
        self._entry_exited = True
        if self._watch_cb is not None:
            self.debugctl.vm_exit(self, self.current, self.truth.processors[self.current].vmcs_pa or 0, reason,
                                  self._lab_induced)
        if not self._lab_induced:
            # the lab's parking exits are invisible on a real machine: the
            # processor keeps running its guest there
            self.truth.vm_exit(self.current)
        if self._lab_induced:
            self._await_root = True
            regs = self.registers()   # the guest's, as the debugger (or a dump) would see them
            self.processors[self.current].guest_gprs = {r: regs[r] for r in GPRS}
        elif e.entry_failure and self.capture_on_entry_failure:
            self.capture_in_handler(self.capture_on_entry_failure, self.failure_vmreads)
        for o in self.exit_observers:
            o(e)

    def capture_in_handler(self, encodings, sink: list) -> None:
        """Called before a VM exit (e.g. by an exit observer): at the first branch
        of the VMM's exit handler -- in VMX root, before the VMM can VMWRITE --
        VMREAD `encodings` and append (processor, {encoding: value}) to sink."""
        self._capture_plan = (list(encodings), sink)
        self._await_capture = True

    # -- the watchdog ---------------------------------------------------------
    @contextlib.contextmanager
    def budget(self):
        """One top-level operation's wall time (run_timeout) and instructions
        (instruction_limit): every emulator run inside it, however deeply nested
        (per-processor broadcasts, processor switches, VMREADs at failed VM
        entries), draws on the same budget, so no nested run restarts the clock."""
        if self._budget_depth == 0:
            now, count = time.monotonic(), self._watchdog.instructions()
            self._budget_start = (now, count, self.exits.total)
            self._deadline = now + self.run_timeout
            self._until_instruction = count + self.instruction_limit if self.instruction_limit else 0
        self._budget_depth += 1
        try:
            yield
        finally:
            self._budget_depth -= 1

    def activity(self) -> str:
        """What the driver is doing, in one phrase, for a run that did not finish."""
        cpu, reason, n = self.exits.streak
        n = min(n, self.exits.total - self._budget_start[2])   # only exits of this operation
        if n >= 2 and reason & 0x8000_0000:    # SDM Vol.3 28.2.1: bit 31, VM-entry failure
            return ("VM entry failed {:,} times in a row on processor {}, exit reason 0x{:x}; "
                    "the exit handler keeps entering the guest again".format(n, cpu, reason))
        if n >= 1000:
            return ("the guest on processor {} made VM exit 0x{:x} {:,} times in a row".format(cpu, reason, n))
        where = ""
        if self.sess is not None:
            rip = self.sess.cpu.rip
            where = "at rip 0x%x%s: " % (rip, " (%s)" % self.locate(rip) if self.locate else "")
        return ("%san endless loop, or a spin-wait for another processor (the lab runs processors one after "
                "another)" % where)

    def _timeout(self, by: str) -> RunTimeout:
        t0, i0, _ = self._budget_start
        return RunTimeout(self.current if self.current is not None else -1, by, time.monotonic() - t0,
                          self.run_timeout, self._watchdog.instructions() - i0, self.instruction_limit,
                          self.activity())

    def _run_session(self) -> str:
        with self.budget():
            self._stop_reason = ""
            self._pending_fault = None
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout("time")
            if self._until_instruction and self._watchdog.instructions() >= self._until_instruction:
                raise self._timeout("instructions")
            self._watchdog.arm(remaining if not math.isinf(remaining) else 0xFFFFFFFF / 1000.0,
                               self._until_instruction)
            self._watch_error = None
            set_watch(self._watch_cb)
            try:
                self.sess.run(self._hook_list)
                if self._watch_error is not None:
                    raise self._watch_error
            except BaseException as e:
                # the traceback's hook frames hold the Session and its cpu: drop them
                # (and those of chained exceptions), or the Session outlives this machine
                self._watch_error = None
                _drop_frames(e)
                raise e
            finally:
                set_watch(None)
                fired = self._watchdog.disarm()
            if fired and not self._stop_reason:
                raise self._timeout(fired)
            return self._stop_reason or "stopped"

    def _call_raw(self, rip: int, regs: Dict[str, int], stack_top: int) -> str:
        """Runs code at rip on the current session until it returns to the sentinel."""
        c = self.sess.cpu
        rsp = (stack_top & ~0xF) - 8
        self.write_u64(rsp, self.sentinel)
        for r, v in regs.items():
            setattr(c, r, v & 0xFFFF_FFFF_FFFF_FFFF)
        c.rsp = rsp
        c.rip = rip
        del c      # no reference to the cpu in this frame while it runs (see run())
        return self._run_session()

    def _fault_from_stop(self) -> Optional[GuestFault]:
        if self._pending_fault is None:
            return None
        v, e, rip = self._pending_fault
        return GuestFault(v, e, rip, self.current if self.current is not None else -1)

    def switch_to(self, k: int) -> None:
        """Makes processor k the one whose Session is live, parking the current one."""
        if self.current == k:
            return
        with self.budget():
            if self.current is not None:
                self.park()
            self._open_session(k)
            p = self.processors[k]
            if p.parked_in_exit:
                self._resume_guest()

    def _resume_guest(self) -> None:
        """After re-establishment the processor is in the driver's VM-exit handler
        (VMX root) where it was parked; let it finish and VMRESUME into the idle guest."""
        p = self.processors[self.current]
        st = p.state
        self.set_thread_regs({r: getattr(st, r) for r in THREAD_REGS})
        r = self._run_session()
        if r != "return":
            raise MachineError("processor %d did not return to its guest after the parked VM exit (%s at 0x%x)"
                               % (self.current, r, self.sess.cpu.rip))
        p.vmx = "guest"
        p.parked_in_exit = False

    def park(self) -> None:
        """Brings the current processor to a state that survives the end of its
        Session: VMX root (through a CPUID VM exit) when it is in VMX non-root,
        and records its VMX state and registers."""
        with self.budget():
            self._park()

    def _park(self) -> None:
        k = self.current
        p = self.processors[k]
        saved = self.thread_regs()
        idle = self.place_code(snippets.IDLE)
        self._lab_induced = True
        try:
            r = self._call_raw(idle, {}, p.idle_stack_top)
        finally:
            self._lab_induced = False
            self._await_root = False
        if r == "root":
            # in the driver's exit handler: save it there, find the current VMCS
            root_regs = self.thread_regs()
            st = self.sess.cpu.state
            probe = self.place_code(snippets.VMPTRST)
            r2 = self._call_raw(probe, {}, p.idle_stack_top)
            if r2 != "return":
                raise MachineError("processor %d: VMPTRST in VMX root failed (%s)" % (k, r2))
            p.vmcs_pa = self.sess.cpu.rax
            p.vmx = "guest"
            p.parked_in_exit = True
            self.set_thread_regs(root_regs)
            p.state = st
            self._close_session()
            return
        if r != "return":
            raise MachineError("processor %d could not be parked (%s)" % (k, r))
        # not in VMX non-root: outside VMX operation (VMPTRST raises #UD) or in VMX root
        probe = self.place_code(snippets.VMPTRST)
        r2 = self._call_raw(probe, {}, p.idle_stack_top)
        if r2 == "return":
            p.vmx, p.vmcs_pa = "root", self.sess.cpu.rax
        else:
            p.vmx, p.vmcs_pa = "off", 0
        self.set_thread_regs(saved)
        p.state = self.sess.cpu.state
        self._close_session()

    def run(self, cpu: int, rip: int, regs: Optional[Dict[str, int]] = None, stack_top: Optional[int] = None,
            args: Tuple[int, ...] = ()) -> RunResult:
        """Runs ring-0 code at `rip` on processor `cpu` until it returns (ret to the
        sentinel) or stops at a fault/hlt. MS x64 ABI for `args` (up to 4 in registers,
        the rest on the stack)."""
        if not 0 <= cpu < len(self.processors):
            raise MachineError("processor %d does not exist (this machine has %d)" % (cpu, len(self.processors)))
        with self.budget():
            return self._run(cpu, rip, regs, stack_top, args)

    def _run(self, cpu: int, rip: int, regs: Optional[Dict[str, int]], stack_top: Optional[int],
             args: Tuple[int, ...]) -> RunResult:
        self.switch_to(cpu)
        p = self.processors[cpu]
        first_exit = len(self.exits)
        top = (stack_top or p.stack_top) & ~0xF
        rsp = top - 0x100
        for i, a in enumerate(args[4:]):
            self.write_u64(rsp + 0x28 + 8 * i, a)
        rsp -= 8       # return address slot: (rsp + 8) % 16 == 0 at entry
        self.write_u64(rsp, self.sentinel)
        c = self.sess.cpu
        for name, a in zip(("rcx", "rdx", "r8", "r9"), args):
            setattr(c, name, a & 0xFFFF_FFFF_FFFF_FFFF)
        for r, v in (regs or {}).items():
            setattr(c, r, v & 0xFFFF_FFFF_FFFF_FFFF)
        c.rsp = rsp
        c.rip = rip
        del c      # no reference to this Session's cpu may outlive a processor switch
        stop = self._drive()
        fault = self._fault_from_stop() if stop == "fault" else None
        return RunResult(self.current, self.registers(), self.exits[first_exit:], fault, stop)

    def resume_context(self, cpu: int, regs: Dict[str, int]) -> RunResult:
        """Continues processor `cpu` from a register context (GPRs, rip, rsp,
        rflags; e.g. a debugger's, with RFLAGS.TF for a single step) until it
        returns to the sentinel, faults or halts. A virtualized processor runs
        in its guest."""
        if not 0 <= cpu < len(self.processors):
            raise MachineError("processor %d does not exist (this machine has %d)" % (cpu, len(self.processors)))
        self.switch_to(cpu)
        first_exit = len(self.exits)
        self.set_thread_regs(regs)
        stop = self._drive()
        fault = self._fault_from_stop() if stop == "fault" else None
        return RunResult(self.current, self.registers(), self.exits[first_exit:], fault, stop)

    def _drive(self) -> str:
        """Runs the live session until it returns, faults or halts; services
        requests (processor switches) that hooks leave for outside the run."""
        while True:
            r = self._run_session()
            req = self._request
            if req is not None:
                self._request = None
                req()
                if self.sess.cpu.rip == self.sentinel:
                    # the serviced call was a tail call returning to the sentinel:
                    # done (running on would execute its HLT, in the guest too)
                    return "return"
                continue
            return r

    def request(self, action: Callable[[], None]) -> None:
        """Called from a hook: stop the emulator and run `action` outside it
        (Session switches cannot happen inside a hook), then continue."""
        self._request = action
        self._stop_reason = "request"
        self.sess.stop()

    def registers(self) -> Dict[str, int]:
        st = self.sess.cpu.state
        regs = {r: getattr(st, r) for r in GPRS}
        regs.update(rip=st.rip, rflags=st.rflags, cr0=st.cr0, cr2=st.cr2, cr3=st.cr3, cr4=st.cr4,
                    cr8=st.cr8, efer=st.efer, dr7=st.dr7,
                    gdtr_base=st.gdtr.base, gdtr_limit=st.gdtr.limit,
                    idtr_base=st.idtr.base, idtr_limit=st.idtr.limit,
                    cs=st.cs.selector, ss=st.ss.selector, ds=st.ds.selector, es=st.es.selector,
                    fs=st.fs.selector, gs=st.gs.selector, tr=st.tr.selector, ldtr=st.ldtr.selector,
                    fs_base=st.fs.base, gs_base=st.gs.base, tr_base=st.tr.base,
                    kernel_gs_base=st.kernel_gs_base)
        return regs

    def saved_registers(self, k: int) -> Dict[str, int]:
        """Registers of processor k (live or as parked)."""
        if self.current == k:
            return self.registers()
        st = self.processors[k].state
        if st is None:
            st = self._initial_state(self.processors[k])
        regs = {r: getattr(st, r) for r in GPRS}
        regs.update(rip=st.rip, rflags=st.rflags, cr0=st.cr0, cr3=st.cr3, cr4=st.cr4, efer=st.efer, dr7=st.dr7,
                    gdtr_base=st.gdtr.base, gdtr_limit=st.gdtr.limit, idtr_base=st.idtr.base,
                    idtr_limit=st.idtr.limit, cs=st.cs.selector, ss=st.ss.selector, ds=st.ds.selector,
                    es=st.es.selector, fs=st.fs.selector, gs=st.gs.selector, tr=st.tr.selector,
                    ldtr=st.ldtr.selector, fs_base=st.fs.base, gs_base=st.gs.base, tr_base=st.tr.base)
        return regs

    def vmread_all(self, k: int, encodings, resume: bool = False) -> Dict[int, int]:
        """VMREADs each encoding from processor k's current VMCS, in VMX root
        (where a parked processor waits inside the driver's VM-exit handler).
        Fields the CPU refuses (VMfail) are left out. With resume=False the
        processor stays parked, so memory (the VMCS region) still holds
        exactly what was read; resume=True lets it return to its guest."""
        with self.budget():
            return self._vmread_all(k, encodings, resume)

    def _vmread_all(self, k: int, encodings, resume: bool) -> Dict[int, int]:
        if self.current is not None:
            self.park()
        p = self.processors[k]
        if not p.parked_in_exit:
            self._open_session(k)
            return {}
        self._open_session(k)
        saved = self.thread_regs()
        probe = self.place_code(snippets.VMREAD)
        values: Dict[int, int] = {}
        for enc in encodings:
            r = self._call_raw(probe, {"rcx": enc}, p.idle_stack_top)
            if r == "return" and not self.sess.cpu.rflags & (RFLAGS_CF | RFLAGS_ZF):
                values[enc] = self.sess.cpu.rax
        self.set_thread_regs(saved)
        if resume:
            self._resume_guest()
        else:
            self._close_session()   # p.state is still the parked state
        return values

    def vmwrite_parked(self, k: int, encoding: int, value: int) -> bool:
        """VMWRITEs one field of processor k's current VMCS while it is parked in
        VMX root (the lab breaking a VMCS from outside the driver). True when the
        write took; the processor stays parked."""
        if self.current is not None:
            self.park()
        p = self.processors[k]
        if not p.parked_in_exit:
            return False
        self._open_session(k)
        saved = self.thread_regs()
        r = self._call_raw(self.place_code(snippets.VMWRITE), {"rcx": encoding, "rdx": value}, p.idle_stack_top)
        ok = r == "return" and self.sess.cpu.rax == 1
        self.set_thread_regs(saved)
        self._close_session()
        return ok

    def lose_vmx_state(self) -> None:
        """A sleep state (S3/S4, fast start-up): every processor resumes from
        firmware with the operating system's context and no VMX operation: no
        VMXON, CR4.VMXE clear, no current VMCS, no guest (SDM Vol.3 25.11.1).
        Memory (VMCS regions included) is kept, as RAM is in S3."""
        if self.current is not None:
            self.park()
        for p in self.processors:
            p.state = self._initial_state(p)
            p.vmx, p.parked_in_exit, p.vmcs_pa = "off", False, 0
            self.truth.lost_vmx(p.index)
        self.debugctl.reset()

    def _capture_failure(self) -> None:
        p = self.processors[self.current]
        saved = self.thread_regs()
        probe = self.place_code(snippets.VMREAD)
        values: Dict[int, int] = {}
        encodings, sink = self._capture_plan
        for enc in encodings:
            r = self._call_raw(probe, {"rcx": enc}, p.idle_stack_top)
            if r == "return" and not self.sess.cpu.rflags & (RFLAGS_CF | RFLAGS_ZF):
                values[enc] = self.sess.cpu.rax
        self.set_thread_regs(saved)
        sink.append((self.current, values))

    def read_msrs(self, k: int, msrs) -> Dict[int, int]:
        """RDMSR of each MSR on processor k (ring 0); MSRs that #GP are left out.
        Use before a hypervisor runs: afterwards RDMSR in a guest may exit."""
        probe = self.place_code(snippets.RDMSR)
        out: Dict[int, int] = {}
        for msr in msrs:
            r = self.run(k, probe, regs={"rcx": msr})
            if r.stop == "return":
                out[msr] = r.regs["rax"]
        return out

    def cpuid(self, k: int, leaf: int, subleaf: int = 0) -> Tuple[int, int, int, int]:
        r = self.run(k, self.place_code(snippets.CPUID), regs={"rax": leaf, "rcx": subleaf})
        g = r.regs
        return (g["rax"] & 0xFFFFFFFF, g["rbx"] & 0xFFFFFFFF, g["rcx"] & 0xFFFFFFFF, g["rdx"] & 0xFFFFFFFF)

    def vmx_state(self, k: int) -> str:
        """'off' | 'root' | 'guest': the processor's VMX operation as the lab left it."""
        return self.processors[k].vmx

    def close(self) -> None:
        """Releases the Session and every host page (memory is process-global in bochscpu)."""
        if self._closed:
            return
        self._close_session()
        self._hook_list = None          # hooks hold bound methods: break the cycle
        self._watch_cb = None
        self.breakpoints.clear()
        self.exit_observers.clear()
        for p in self.processors:
            p.state = None
        _release_session()
        self.release_memory()
        self._closed = True

    def __enter__(self) -> "Machine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
