"""RtlCaptureContext and RtlRestoreContext: the AMD64 CONTEXT record.

Hypervisors capture the context of the thread that virtualizes a processor and
resume the guest in it (SimpleVisor, Hypervisor From Scratch), or restore it to
get back from the VM-exit stack (gbhv). Offsets are those of winnt.h's AMD64
CONTEXT: ContextFlags +0x30, SegCs..SegSs +0x38, EFlags +0x44, Rax..R15 and
Rip from +0x78 (Rsp is the fifth of them).
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from emulated_lab.errors import MachineError
from emulated_lab.nt.services import service

if TYPE_CHECKING:
    from emulated_lab.nt.kernel import Call, NtKernel

CONTEXT_AMD64 = 0x100000
CONTEXT_CONTROL = CONTEXT_AMD64 | 0x1    # SegSs, Rsp, SegCs, Rip, EFlags
CONTEXT_INTEGER = CONTEXT_AMD64 | 0x2    # Rax..R15 but Rsp
CONTEXT_SEGMENTS = CONTEXT_AMD64 | 0x4
CONTEXT_FLAGS_OFFSET, SEGMENTS_OFFSET, EFLAGS_OFFSET, GPRS_OFFSET = 0x30, 0x38, 0x44, 0x78
GPRS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip")


@service("RtlCaptureContext")
def _capture(self: "NtKernel", c: "Call") -> int:
    ctx, cpu = c.arg(0), self.m.sess.cpu
    st = cpu.state
    buf = bytearray(self.m.read_virt(ctx, 0x100))
    struct.pack_into("<I", buf, CONTEXT_FLAGS_OFFSET, CONTEXT_CONTROL | CONTEXT_INTEGER | CONTEXT_SEGMENTS)
    struct.pack_into("<HHHHHHI", buf, SEGMENTS_OFFSET, st.cs.selector, st.ds.selector, st.es.selector,
                     st.fs.selector, st.gs.selector, st.ss.selector, cpu.rflags & 0xFFFFFFFF)
    # as the caller sees it after the call returns: RSP above the return address, RIP = that address
    values = {r: getattr(cpu, r) for r in GPRS[:-1]}
    values.update(rsp=c.rsp + 8, rip=self.m.read_u64(c.rsp))
    struct.pack_into("<17Q", buf, GPRS_OFFSET, *(values[r] for r in GPRS))
    self.m.write_virt(ctx, bytes(buf))
    return 0


@service("RtlRestoreContext")
def _restore(self: "NtKernel", c: "Call") -> int:
    # (PCONTEXT ContextRecord, PEXCEPTION_RECORD ExceptionRecord): continues in the
    # context instead of returning: the integer registers (CONTEXT_INTEGER) and
    # RSP, RIP, EFLAGS (CONTEXT_CONTROL); segment selectors stay (the lab runs
    # every thread on the same flat ring-0 segments), floating-point state is not
    # modelled. An exception record (unwind consolidation) is not supported.
    if c.arg(1):
        raise MachineError("RtlRestoreContext with an exception record (unwind consolidation) is not modelled "
                           "by the emulated kernel")
    raw = self.m.read_virt(c.arg(0), GPRS_OFFSET + 8 * len(GPRS))
    flags = struct.unpack_from("<I", raw, CONTEXT_FLAGS_OFFSET)[0]
    values = dict(zip(GPRS, struct.unpack_from("<17Q", raw, GPRS_OFFSET)))
    regs = {}
    if flags & CONTEXT_INTEGER == CONTEXT_INTEGER:
        regs.update((r, v) for r, v in values.items() if r not in ("rsp", "rip"))
    if flags & CONTEXT_CONTROL == CONTEXT_CONTROL:
        regs.update(rsp=values["rsp"], rip=values["rip"])
        regs["rflags"] = struct.unpack_from("<I", raw, EFLAGS_OFFSET)[0] | 0x2
    else:
        raise MachineError("RtlRestoreContext of a context without CONTEXT_CONTROL (flags 0x%x): nowhere to "
                           "continue" % flags)
    self.m.set_thread_regs(regs)
    c.returns = False
    return 0
