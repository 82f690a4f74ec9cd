"""The kernel-debugger stub of the emulated machine: what a KD session over
KDNET sees of a machine whose processors are all frozen at a break-in.

It is as strict as a real target where the emulator would be kinder:

- **Registers are the guest's.** The debugger runs inside the guest, so on a
  processor hv.sys virtualized the registers are the guest state the CPU
  stored in the VMCS at the freeze (GPRs as the emulator saw them), and CR0/CR4
  read through the read shadows (SDM Vol.3 25.6.6): `r cr4` does not show the
  VMXE that hv.sys hides.
- **MSRs are read on the processor that runs the debugger loop** (RDMSR in
  its guest, so hv.sys's MSR exits apply), whatever register context is
  selected: only a target-side switch (`~Ns`) moves it. A register-context
  switch (`setCurrentThreadId`) does not (ReactOS kd64
  KdpReadMachineSpecificRegister ignores the processor of the request).
- **An active VMCS is not in memory.** A real processor may keep the current
  VMCS on chip in a private format; its page is stale while active (SDM Vol.3
  25.11.1). Reads of the page of any processor's current VMCS return its first
  8 bytes (revision identifier and VMX-abort indicator, SDM 25.2) and
  scrambled bytes after them, never the values.
- **Execution is real.** trace/go run the debugger processor from its register
  context on the emulated CPU (a single step is RFLAGS.TF and the #DB it
  raises); a VMCALL goes to hv.sys like any other.

Ground truth (`truth()`) is what the emulator itself knows: VMREAD of every
catalogue field, RDMSR of the capability MSRs, the real and the guest-visible
CR0/CR4, per processor, at the break-in.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from windbg_ext.arch import capabilities as caps
from windbg_ext.arch.vmcs_fields import FIELDS

from emulated_lab import snippets
from emulated_lab.debugger_view import StaleVmcs, active_vmcs_pages, encoding, guest_context
from emulated_lab.kd.base import GPR_NAMES, KdError, read_register, write_register
from emulated_lab.machine import PAGE, Machine
from emulated_lab.x64 import ERROR_CODE_VECTORS

# driver/include/hv_hypercall.h (the lab sees the suite through its public pieces only;
# tests/kd/test_kd_session.py holds both copies equal to the header)
HYPERCALL_SIGNATURE = 0x4D4D5662616C7668
HYPERCALL_SNAPSHOT = 2
EXIT_REASON_VMCALL = 18                    # SDM Vol.3 App. C
RFLAGS_TF = 1 << 8                         # SDM Vol.1 3.4.3.3: single-step trap after each instruction
VECTOR_DB, VECTOR_BP = 1, 3
# capability MSRs the report records (SDM App. A; 0x3A: Vol.4 Table 2-2)
REPORT_MSRS = (caps.IA32_FEATURE_CONTROL,) + tuple(caps.VMX_MSRS)


class KdStub:
    """The frozen machine as the debugger engine sees it."""

    def __init__(self, m: Machine, symbols: Dict[str, int], msrs_before: List[Dict[int, int]],
                 break_cpu: int = 0, modules: Sequence[Tuple[str, int, int]] = ()) -> None:
        if not 0 <= break_cpu < len(m.processors):
            raise KdError("--break-cpu %d: the machine has processors 0-%d" % (break_cpu, len(m.processors) - 1))
        self.m = m
        self.symbols = dict(symbols)
        self._modules = [(str(n), int(b), int(z)) for n, b, z in modules]   # the kernel's module list (`lm`)
        self.debugger_cpu = break_cpu      # runs the debugger loop: MSR reads and execution happen here
        self.context_cpu = break_cpu       # whose registers reg()/setReg() see
        self.contexts: Dict[int, Dict[str, int]] = {}
        self.refresh_truth: List[Tuple[int, Dict[int, int]]] = []   # VMREAD when hv.sys took a hypercall snapshot
        self.operations: List[str] = []    # what reached the target, in order (benchmarks count them)
        self._stale = StaleVmcs({}, b"hvlab kd %d" % len(m.processors))
        self._truth = self._freeze(msrs_before)

    # -- the break-in ---------------------------------------------------------------
    def _freeze(self, msrs_before: List[Dict[int, int]]) -> dict:
        """Stops every processor where it is (a virtualized one in its guest) and
        records the debugger's register context and the emulator's ground truth."""
        m = self.m
        for k in range(len(m.processors)):
            m.switch_to(k)
            m.park()
        encs = [f.encoding for f in FIELDS]
        truth = []
        for k, p in enumerate(m.processors):
            vmcs = m.vmread_all(k, encs) if p.parked_in_exit else {}
            if vmcs:
                ctx = guest_context(vmcs, p.guest_gprs or {}, m.saved_registers(k))
                real_cr0, real_cr4 = vmcs[encoding("GUEST_CR0")], vmcs[encoding("GUEST_CR4")]
            else:
                ctx = m.saved_registers(k)
                real_cr0, real_cr4 = ctx["cr0"], ctx["cr4"]
            ctx.setdefault("cr2", 0)
            ctx.setdefault("cr8", 0)
            self.contexts[k] = ctx
            truth.append({
                "index": k,
                "vmx": p.vmx,
                "vmcs_pa": m.truth.processors[k].vmcs_pa,   # the CPU's current-VMCS pointer (cpu_truth)
                "vmcs_fields": vmcs,
                "msrs": {msr: v for msr, v in msrs_before[k].items() if msr in REPORT_MSRS},
                "cr0": real_cr0, "cr4": real_cr4,
                "cr0_seen_by_guest": ctx["cr0"], "cr4_seen_by_guest": ctx["cr4"],
            })
        return {"processors": truth, "break_cpu": self.debugger_cpu}

    def truth(self) -> dict:
        return self._truth

    @property
    def processor_count(self) -> int:
        return len(self.m.processors)

    # -- memory ---------------------------------------------------------------------
    def read_physical(self, pa: int, size: int) -> bytes:
        self._stale.update(active_vmcs_pages(self.m))
        out = bytearray()
        while len(out) < size:
            cur = pa + len(out)
            n = min(size - len(out), PAGE - (cur & 0xFFF))
            if not self.m.is_backed(cur):
                raise KdError("Memory exception at 0x%x target physical address" % cur, "memory")
            chunk = self.m.read_phys(cur, n)
            out += self._stale.read(cur, chunk)
        return bytes(out)

    def read_virtual(self, va: int, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            cur = va + len(out)
            pa = self.m.translate(cur & 0xFFFF_FFFF_FFFF_FFFF)
            if pa is None:
                raise KdError("Memory exception at 0x%x target virtual address" % cur, "memory")
            n = min(size - len(out), PAGE - (cur & 0xFFF))
            out += self.read_physical(pa, n)
        return bytes(out)

    def symbol(self, name: str) -> int:
        if name in self.symbols:
            return self.symbols[name]
        low = {k.lower(): v for k, v in self.symbols.items()}
        if name.lower() in low:
            return low[name.lower()]
        raise KdError("%s is not found" % name, "symbol")

    def modules(self) -> List[Tuple[str, int, int]]:
        """(name, base, size) of each loaded module, as the kernel's PsLoadedModuleList has them."""
        return list(self._modules)

    # -- processors -----------------------------------------------------------------
    def switch_processor(self, k: int) -> None:
        """`~Ns`: the debugger loop moves to processor k (and its registers)."""
        if not 0 <= k < self.processor_count:
            raise KdError("Illegal thread error in '~%ds'" % k)
        self.operations.append("switch")
        self.debugger_cpu = self.context_cpu = k

    def set_context(self, k: int) -> None:
        """setCurrentThreadId: the register context only."""
        if not 0 <= k < self.processor_count:
            raise KdError("IDebugSystemObjects::SetCurrentThreadId failed")
        self.context_cpu = k

    def register(self, name: str) -> int:
        return read_register(self.contexts[self.context_cpu], name)

    def set_register(self, name: str, value: int) -> None:
        write_register(self.contexts[self.context_cpu], name, value)

    def rdmsr(self, msr: int) -> int:
        """RDMSR executed by the debugger stub: on the debugger processor, in its guest."""
        self.operations.append("rdmsr")
        r = self.m.run(self.debugger_cpu, self.m.place_code(snippets.RDMSR), regs={"rcx": msr & 0xFFFFFFFF})
        if r.stop != "return":
            raise KdError("ReadMsr failed: MSR 0x%x (%s on processor %d)"
                          % (msr, r.fault or r.stop, self.debugger_cpu), "cpu")
        return r.regs["rax"]

    # -- execution ------------------------------------------------------------------
    def execute(self, single_step: bool) -> str:
        """Runs the debugger processor from its register context until it breaks
        back in (#DB after one instruction, an INT3, another exception) or
        returns to the idle loop. Returns what stopped it."""
        self.operations.append("step" if single_step else "go")
        k = self.debugger_cpu
        ctx = self.contexts[k]
        regs = {r: ctx[r] for r in GPR_NAMES}
        regs.update(rip=ctx["rip"], rflags=ctx["rflags"] | (RFLAGS_TF if single_step else 0))
        m = self.m
        encs = [f.encoding for f in FIELDS]

        def watch(e) -> None:  # ground truth at the snapshot hypercall, before hv.sys runs
            c = m.sess.cpu
            if (not e.lab_induced and e.basic_reason == EXIT_REASON_VMCALL and c.rax == HYPERCALL_SIGNATURE
                    and c.rcx == HYPERCALL_SNAPSHOT):
                m.capture_in_handler(encs, self.refresh_truth)

        m.exit_observers.append(watch)
        try:
            r = m.resume_context(k, regs)
        finally:
            m.exit_observers.remove(watch)
        new = dict(ctx)
        new.update({g: r.regs[g] for g in GPR_NAMES})
        if r.stop == "fault" and r.fault is not None:
            rsp = r.regs["rsp"]
            v = r.fault.vector
            # the IDT stub pushed the vector over the CPU's frame (no error code for #DB/#BP)
            frame = rsp + 8 + (8 if v in ERROR_CODE_VECTORS else 0)
            rip, rflags, old_rsp = m.read_u64(frame), m.read_u64(frame + 16), m.read_u64(frame + 24)
            if v == VECTOR_BP:
                rip -= 1          # KD reports a breakpoint at the INT3 itself
            new.update(rip=rip, rflags=rflags & ~RFLAGS_TF, rsp=old_rsp)
            what = {VECTOR_DB: "single step", VECTOR_BP: "breakpoint"}.get(v, "exception %d" % v)
        else:
            new.update(rip=r.regs["rip"], rsp=r.regs["rsp"], rflags=r.regs["rflags"] & ~RFLAGS_TF)
            what = "idle" if r.stop == "return" else r.stop
        self.contexts[k] = new
        return what
