"""Launches a VMCS state on the emulated CPU and reports what the CPU did.

The differential test of `verify` (tests/verify/) asks the Bochs CPU model
the same question the checker answers: given these VMCS fields, does
VMLAUNCH succeed, fail with VMfailValid (error 7 / 8 / ...), or end in a
VM-entry failure exit (0x80000021 with a qualification)?

One probe run, on processor 0 of an `emulated_lab.machine.Machine`:
CR4.VMXE, VMXON, VMCLEAR, VMPTRLD, HOST_RSP/HOST_RIP (the probe's own exit
path), a VMWRITE of every (encoding, value) given, VMLAUNCH.
The guest code is one CPUID, which exits unconditionally (SDM 26.1.2): any
ordinary VM exit (reason 10, or 12 for HLT...) means the entry succeeded. The host code at HOST_RIP
records the exit reason and qualification, VMXOFF, and returns.

    probe = EntryProbe()
    state = probe.baseline()            # {encoding: value}, valid on this CPU
    r = probe.launch(state)             # LaunchResult(result="success", ...)
    probe.close()
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from typing import Dict, List, NamedTuple, Optional

from windbg_ext.arch import capabilities as caps
from windbg_ext.arch.controls import bit_name
from windbg_ext.arch.vmcs_fields import by_name
from windbg_ext.paths import PathError, write_atomically
from windbg_ext.state_files import StateFileError, load_fields

from emulated_lab.asm import assemble
from emulated_lab.errors import MachineError
from emulated_lab.machine import Machine
from emulated_lab.memory import DIRECT_MAP
from emulated_lab.x64 import CR0_INIT, CR4_INIT, CR4_VMXE, GDT_LIMIT, SEL_R0_CODE, SEL_R0_DATA, SEL_TSS

VMX_MSRS = caps.VMX_MSRS_BEFORE_WIDE  # IA32_VMX_BASIC .. IA32_VMX_VMFUNC (SDM App. A)
HOST_RSP_ENC, HOST_RIP_ENC = 0x6C14, 0x6C16  # SDM App. B.4.4
PIN_CONTROLS_ENC = by_name("PIN_BASED_VM_EXEC_CONTROL").encoding
GUEST_RIP_ENC = by_name("GUEST_RIP").encoding
_PREEMPTION_TIMER_BIT = 6  # SDM 25.6.1, Table 25-5: activate VMX-preemption timer
MAX_FIELDS = 240

# Parameter block layout (one page): see _PROBE.
P_VMXON, P_VMCS, P_COUNT, P_STATUS, P_ERROR, P_REASON, P_QUAL, P_INDEX, P_TABLE = (
    0x00, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x40, 0x100)
ST_EXITED, ST_VMFAIL_VALID, ST_VMFAIL_INVALID, ST_VMXON_FAILED, ST_VMPTR_FAILED, ST_VMWRITE_FAILED = 1, 2, 3, 4, 5, 6

_PROBE = assemble("""
    push rbx
    push rbp
    mov rax, cr4
    bts rax, 13
    mov cr4, rax
    vmxon [rdi + 0x00]
    jbe 20f
    vmclear [rdi + 0x08]
    jbe 21f
    vmptrld [rdi + 0x08]
    jbe 21f
    push rdi
    mov rax, 0x6c14
    vmwrite rax, rsp
    mov rax, 0x6c16
    lea rbx, [rip + 30f]
    vmwrite rax, rbx
    lea rsi, [rdi + 0x100]
    mov rcx, [rdi + 0x10]
    xor r8, r8
1:  test rcx, rcx
    jz 2f
    mov rax, [rsi]
    mov rbx, [rsi + 8]
    vmwrite rax, rbx
    jbe 22f
    add rsi, 16
    inc r8
    dec rcx
    jmp 1b
2:  vmlaunch
    pop rdi
    jc 23f
    mov qword ptr [rdi + 0x18], 2
    mov rax, 0x4400
    vmread rbx, rax
    mov [rdi + 0x20], rbx
    jmp 40f
23: mov qword ptr [rdi + 0x18], 3
    jmp 40f
22: pop rdi
    mov [rdi + 0x40], r8
    mov qword ptr [rdi + 0x18], 6
    mov rax, 0x4400
    vmread rbx, rax
    mov [rdi + 0x20], rbx
    jmp 40f
30: pop rdi
    mov qword ptr [rdi + 0x18], 1
    mov rax, 0x4402
    vmread rbx, rax
    mov [rdi + 0x28], rbx
    mov rax, 0x6400
    vmread rbx, rax
    mov [rdi + 0x30], rbx
40: vmxoff
    jmp 50f
20: mov qword ptr [rdi + 0x18], 4
    jmp 50f
21: mov qword ptr [rdi + 0x18], 5
    vmxoff
50: mov rax, cr4
    btr rax, 13
    mov cr4, rax
    pop rbp
    pop rbx
    ret
""")

_RDMSR = assemble("""
    rdmsr
    shl rdx, 32
    or rax, rdx
    ret
""")

_CPUID = assemble("""
    push rbx
    mov eax, ecx
    xor ecx, ecx
    cpuid
    mov r8, rbx
    pop rbx
    mov rbx, r8
    ret
""")

_GUEST = assemble("""
    xor eax, eax
    xor ecx, ecx
    cpuid
    hlt
""")


class ProbeError(Exception):
    """The probe could not ask the question (VMXON or a VMWRITE failed)."""


class LaunchResult(NamedTuple):
    result: str                      # success | vmfail_valid | vmfail_invalid | entry_failure
    vm_instruction_error: Optional[int]
    exit_reason: Optional[int]
    qualification: Optional[int]
    note: str = ""                   # e.g. VM entry succeeded but the guest never exited

    def short(self) -> str:
        if self.note:
            return "%s (%s)" % (self.result, self.note)
        if self.result == "vmfail_valid":
            return "vmfail_valid %d" % self.vm_instruction_error
        if self.result == "entry_failure":
            return "entry_failure 0x%x qual %d" % (self.exit_reason, self.qualification)
        return self.result


class EntryProbe:
    """Owns (or borrows) a Machine and asks it VM-entry questions on processor 0."""

    def __init__(self, machine: Optional[Machine] = None) -> None:
        self.m = machine or Machine(cpus=1)
        self._own = machine is None
        if self._own:  # a learner's VMCS may point anywhere: RAM (zeros) below 4 GiB, as on hardware
            self.m.zero_fill_below = 1 << 32
        self.params_va, self.params_pa = self.m.alloc_page()
        self.vmxon_pa = self.m.alloc_phys(1)
        self.vmcs_pa = self.m.alloc_phys(1)
        self.guest_stack_pa = self.m.alloc_phys(2)
        self.scratch_va, self.scratch_pa = self.m.alloc_page()  # a page the mutations may point at
        self._caps: Optional[Dict[int, int]] = None
        self._broken = ""
        basic = self.rdmsr(caps.IA32_VMX_BASIC)
        rev = struct.pack("<I", basic & 0x7FFFFFFF)
        self.m.write_phys(self.vmxon_pa, rev)
        self.m.write_phys(self.vmcs_pa, rev)
        self.revision = basic & 0x7FFFFFFF

    def _launched(self) -> bool:
        """The launch state of the probe's VMCS, which the emulator keeps in the dword at +8
        (docs/lab.md; on hardware the format is implementation-specific, SDM 25.11.1)."""
        return struct.unpack_from("<I", self.m.read_phys(self.vmcs_pa + 8, 4))[0] != 0

    def close(self) -> None:
        if self._own:
            self.m.close()

    def __enter__(self) -> "EntryProbe":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- processor facts -------------------------------------------------------
    def rdmsr(self, msr: int) -> int:
        r = self.m.run(0, self.m.place_code(_RDMSR), regs={"rcx": msr})
        if r.fault is not None:
            raise ProbeError("RDMSR 0x%x faulted on the emulated CPU (%s)" % (msr, r.fault))
        return r.regs["rax"]

    def caps(self) -> Dict[int, int]:
        """The VMX capability MSRs of the emulated processor."""
        if self._caps is None:
            self._caps = {msr: self.rdmsr(msr) for msr in VMX_MSRS}
        return dict(self._caps)

    def cpuid(self, leaf: int) -> Dict[str, int]:
        """CPUID(leaf, subleaf 0) on processor 0: eax, ebx, ecx, edx."""
        r = self.m.run(0, self.m.place_code(_CPUID), regs={"rcx": leaf})
        return {k: r.regs[k] & 0xFFFFFFFF for k in ("rax", "rbx", "rcx", "rdx")}

    def maxphyaddr(self) -> int:
        """CPUID.80000008H:EAX[7:0]: the physical-address width."""
        return self.cpuid(0x80000008)["rax"] & 0xFF

    def sgx(self) -> bool:
        """CPUID.(EAX=07H,ECX=0):EBX[2]."""
        return bool(self.cpuid(7)["rbx"] >> 2 & 1)

    # -- the question -------------------------------------------------------------
    def launch(self, fields: Dict[int, int]) -> LaunchResult:
        if self._broken:
            raise ProbeError("this probe is unusable: %s; create a new EntryProbe" % self._broken)
        # The VM exit must come back to the probe: HOST_RSP (never checked at entry) and a
        # HOST_RIP that passes the host checks are the probe's own. A HOST_RIP that fails
        # them (not canonical, SDM 27.2.4) is launched as given: the entry fails before any exit.
        fields = dict(fields)
        if fields.get(PIN_CONTROLS_ENC, 0) >> _PREEMPTION_TIMER_BIT & 1:
            raise ProbeError("pin-based control bit %d (%s) is set: the emulator aborts the whole process when the "
                             "VMX-preemption timer runs, so the probe refuses it; check the state with verify"
                             % (_PREEMPTION_TIMER_BIT, bit_name("pin", _PREEMPTION_TIMER_BIT)))
        fields.pop(HOST_RSP_ENC, None)
        rip = fields.get(HOST_RIP_ENC)
        if rip is not None and (rip >> 47) in (0, 0x1FFFF):
            del fields[HOST_RIP_ENC]
        items = sorted(fields.items())
        if len(items) > MAX_FIELDS:
            raise ProbeError("too many fields (%d > %d)" % (len(items), MAX_FIELDS))
        block = bytearray(0x1000)
        struct.pack_into("<QQQ", block, 0, self.vmxon_pa, self.vmcs_pa, len(items))
        for i, (enc, value) in enumerate(items):
            struct.pack_into("<QQ", block, P_TABLE + 16 * i, enc, value & 0xFFFFFFFFFFFFFFFF)
        self.m.write_phys(self.params_pa, bytes(block))
        try:
            r = self.m.run(0, self.m.place_code(_PROBE), regs={"rdi": self.params_va})
        except MachineError as e:
            # e.g. a VMCS link pointer or guest CR3 where this lab machine has no memory: a real
            # machine would read RAM (or all ones) there; the emulator stops instead
            self._broken = "the emulated CPU stopped: %s" % e
            raise ProbeError("the emulated CPU stopped (%s): this lab machine has memory only where it put "
                             "something, so the probe cannot answer for this state; check it with verify" % e)
        if r.fault is not None or r.stop != "return":
            # The processor may be left anywhere (even in VMX non-root): never reuse it.
            self._broken = "the previous probe did not return (%s%s)" % (r.stop, ", %s" % r.fault if r.fault else "")
            # (the VMCS is launched, or the processor halted at the guest's RIP: HLT activity state)
            if self._launched() or r.regs.get("rip") == fields.get(GUEST_RIP_ENC, -1):
                # VM entry succeeded (the VMCS is launched) but the guest never exited back to the
                # probe: HLT activity state, an injected #GP / NMI delivered through the guest IDT, ...
                return LaunchResult("success", None, None, None,
                                    "VM entry succeeded; the guest then stopped without a VM exit (%s%s)"
                                    % (r.stop, ": %s" % r.fault if r.fault else ""))
            raise ProbeError(self._broken)
        status, error, reason, qual = struct.unpack_from("<QQQQ", self.m.read_phys(self.params_pa + P_STATUS, 32))
        if status == ST_VMXON_FAILED:
            raise ProbeError("VMXON failed on the emulated CPU")
        if status == ST_VMPTR_FAILED:
            raise ProbeError("VMCLEAR/VMPTRLD failed on the emulated CPU")
        if status == ST_VMWRITE_FAILED:
            index = struct.unpack_from("<Q", self.m.read_phys(self.params_pa + P_INDEX, 8))[0]
            enc = items[index][0] if index < len(items) else -1
            raise ProbeError("VMWRITE of field 0x%x failed (VM-instruction error %d)" % (enc, error))
        if status == ST_VMFAIL_VALID:
            return LaunchResult("vmfail_valid", error, None, None)
        if status == ST_VMFAIL_INVALID:
            return LaunchResult("vmfail_invalid", None, None, None)
        if reason & 0x80000000:
            return LaunchResult("entry_failure", None, reason, qual)
        # Any ordinary VM exit means the entry succeeded and the guest ran (CPUID,
        # or HLT / an exception the guest hit first): report which one.
        return LaunchResult("success", None, reason, qual)

    # -- a valid state ---------------------------------------------------------------
    def baseline(self) -> Dict[int, int]:
        """A VMCS state that passes every VM-entry check on this processor: a 64-bit
        guest that shares the host's address space (no EPT) and runs one CPUID."""
        msrs = self.caps()
        m = self.m
        p = m.processors[0]
        true_ctls = (msrs[caps.IA32_VMX_BASIC] >> 55) & 1

        def adjust(wanted: int, msr: int, true_msr: int) -> int:
            return caps.adjust_controls(wanted, msrs[true_msr if true_ctls else msr])

        guest_rip = m.place_code(_GUEST)
        cr4 = CR4_INIT | CR4_VMXE
        v = {
            "PIN_BASED_VM_EXEC_CONTROL": adjust(0, caps.IA32_VMX_PINBASED_CTLS, caps.IA32_VMX_TRUE_PINBASED_CTLS),
            # HLT exiting (bit 7): a guest that halts (e.g. in an IDT handler after an injected
            # exception) exits instead of sleeping forever.
            "CPU_BASED_VM_EXEC_CONTROL": adjust(1 << 7, caps.IA32_VMX_PROCBASED_CTLS, caps.IA32_VMX_TRUE_PROCBASED_CTLS),
            "VM_EXIT_CONTROLS": adjust(1 << 9, caps.IA32_VMX_EXIT_CTLS, caps.IA32_VMX_TRUE_EXIT_CTLS),      # host 64-bit
            "VM_ENTRY_CONTROLS": adjust(1 << 9, caps.IA32_VMX_ENTRY_CTLS, caps.IA32_VMX_TRUE_ENTRY_CTLS),  # IA-32e guest
            # every guest exception exits: a guest that faults (e.g. at a non-canonical RIP Bochs
            # accepted) leaves through a VM exit instead of running the machine's IDT tripwires
            "EXCEPTION_BITMAP": 0xFFFFFFFF, "CR3_TARGET_COUNT": 0, "VM_ENTRY_INTR_INFO_FIELD": 0,
            "VM_EXIT_MSR_STORE_COUNT": 0, "VM_EXIT_MSR_LOAD_COUNT": 0, "VM_ENTRY_MSR_LOAD_COUNT": 0,
            "HOST_CR0": CR0_INIT, "HOST_CR3": m.pml4, "HOST_CR4": cr4,
            "HOST_CS_SELECTOR": SEL_R0_CODE, "HOST_SS_SELECTOR": SEL_R0_DATA, "HOST_DS_SELECTOR": SEL_R0_DATA,
            "HOST_ES_SELECTOR": SEL_R0_DATA, "HOST_FS_SELECTOR": 0, "HOST_GS_SELECTOR": 0,
            "HOST_TR_SELECTOR": SEL_TSS, "HOST_FS_BASE": 0, "HOST_GS_BASE": p.kpcr, "HOST_TR_BASE": p.tss,
            "HOST_GDTR_BASE": p.gdt, "HOST_IDTR_BASE": p.idt, "HOST_IA32_SYSENTER_CS": 0,
            "HOST_IA32_SYSENTER_ESP": 0, "HOST_IA32_SYSENTER_EIP": 0,
            # placeholders so the state is complete: launch() puts its own exit path here
            "HOST_RSP": p.stack_top, "HOST_RIP": m.place_code(_PROBE),
            "GUEST_CR0": CR0_INIT, "GUEST_CR3": m.pml4, "GUEST_CR4": cr4, "GUEST_DR7": 0x400,
            "GUEST_RSP": DIRECT_MAP + self.guest_stack_pa + 0x1F00, "GUEST_RIP": guest_rip, "GUEST_RFLAGS": 0x2,
            "GUEST_GDTR_BASE": p.gdt, "GUEST_GDTR_LIMIT": GDT_LIMIT, "GUEST_IDTR_BASE": p.idt,
            "GUEST_IDTR_LIMIT": 256 * 16 - 1,
            "GUEST_LDTR_SELECTOR": 0, "GUEST_LDTR_BASE": 0, "GUEST_LDTR_LIMIT": 0, "GUEST_LDTR_AR_BYTES": 1 << 16,
            "GUEST_TR_SELECTOR": SEL_TSS, "GUEST_TR_BASE": p.tss, "GUEST_TR_LIMIT": 0x67, "GUEST_TR_AR_BYTES": 0x8B,
            "GUEST_IA32_DEBUGCTL": 0, "GUEST_SYSENTER_CS": 0, "GUEST_SYSENTER_ESP": 0, "GUEST_SYSENTER_EIP": 0,
            "VMCS_LINK_POINTER": 0xFFFFFFFFFFFFFFFF, "GUEST_ACTIVITY_STATE": 0, "GUEST_INTERRUPTIBILITY_INFO": 0,
            "GUEST_PENDING_DBG_EXCEPTIONS": 0,
        }
        # VMX access rights (25.4.1): 0xA09B = 64-bit code (L, G), DPL 0; 0xC093 = data (D/B, G), DPL 0.
        for seg, sel, ar in (("CS", SEL_R0_CODE, 0xA09B), ("SS", SEL_R0_DATA, 0xC093), ("DS", SEL_R0_DATA, 0xC093),
                             ("ES", SEL_R0_DATA, 0xC093), ("FS", SEL_R0_DATA, 0xC093), ("GS", SEL_R0_DATA, 0xC093)):
            v["GUEST_%s_SELECTOR" % seg] = sel
            v["GUEST_%s_BASE" % seg] = p.kpcr if seg == "GS" else 0
            v["GUEST_%s_LIMIT" % seg] = 0xFFFFFFFF
            v["GUEST_%s_AR_BYTES" % seg] = ar
        return {by_name(k).encoding: val for k, val in v.items()}


def main(argv: Optional[List[str]] = None) -> int:
    """python -m emulated_lab.entry_probe [--write-baseline DIR] [F.json]:
    write a valid fields/caps pair (a starting point for `verify --fields`
    experiments), and/or launch F.json on the emulated CPU."""
    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            sys.stderr.write("error: %s (see: python -m emulated_lab.entry_probe --help)\n" % message)
            raise SystemExit(2)

    p = Parser(prog="python -m emulated_lab.entry_probe", description=main.__doc__)
    p.add_argument("fields", nargs="?", help='F.json as verify reads it: {"0x681e": "0x...", ...}')
    p.add_argument("--write-baseline", metavar="DIR", help="write DIR/fields.json and DIR/caps.json (a valid "
                   "state); DIR is created if missing")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:  # argparse printed usage and its one-line error (or the help)
        return 0 if e.code == 0 else 2
    if args.fields is None and args.write_baseline is None:
        sys.stderr.write("error: give F.json to launch, or --write-baseline DIR (see: python -m "
                         "emulated_lab.entry_probe --help)\n")
        return 2
    try:
        fields = None
        if args.fields:
            try:
                fields = load_fields(args.fields)
            except StateFileError as e:
                raise ProbeError(str(e))
        if args.write_baseline is not None:
            _baseline_directory(args.write_baseline)
        with EntryProbe() as probe:
            if args.write_baseline is not None:
                base = probe.baseline()
                caps_doc = {"0x%x" % k: "0x%x" % v for k, v in probe.caps().items()}
                caps_doc["maxphyaddr"] = probe.maxphyaddr()
                for name, doc in (("fields.json", {"0x%x" % k: "0x%x" % v for k, v in sorted(base.items())}),
                                  ("caps.json", caps_doc)):
                    path = os.path.join(args.write_baseline, name)
                    text = (json.dumps(doc, indent=1) + "\n").encode("utf-8")
                    write_atomically(path, "--write-baseline file", lambda f: f.write(text))  # whole or nothing
                    print("wrote %s" % path)
            if fields is not None:
                print("the emulated CPU: %s" % probe.launch(fields).short())
        return 0
    except (ProbeError, PathError, MachineError) as e:
        sys.stderr.write("error: %s\n" % " ".join(str(e).split()))
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 2
    except Exception as e:  # last resort: one line, never a traceback
        sys.stderr.write("error: internal error (%s: %s); please report it with the command line\n"
                         % (type(e).__name__, e))
        return 2


def _baseline_directory(path: str) -> None:
    """--write-baseline DIR: an existing directory, or one created here (with its parents)."""
    if not path:
        raise ProbeError("--write-baseline: no directory given")
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ProbeError("--write-baseline %s exists and is not a directory: give a directory (it is created "
                         "if missing)" % path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ProbeError("--write-baseline %s: cannot create the directory: %s" % (path, e.strerror or e))


def launch(fields: Dict[int, int]) -> LaunchResult:
    """One-shot convenience: a fresh machine, one launch."""
    with EntryProbe() as p:
        return p.launch(fields)


__all__: List[str] = ["EntryProbe", "LaunchResult", "ProbeError", "launch", "main", "VMX_MSRS"]


if __name__ == "__main__":
    raise SystemExit(main())
