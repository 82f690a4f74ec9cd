"""Builds hv.sys's run-time state into target images for the hv tests and the
walk benchmark, until/besides the emulated lab's own images.

The driver's structures are laid out by the host C compiler (native/
hv_state_writer.c against driver/include and driver/core/debug_descriptor.c):
this module only decides values, places the bytes in physical memory behind
4-level page tables, and writes an hvlab image (ImageWriter) or a kernel dump
(windbg_ext.target.dump.write_dump).
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import tempfile
from typing import Dict, List, Optional, Tuple

from windbg_ext.arch.paging import ADDR_MASK, P_BIT

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NATIVE_SRC = os.path.join(os.path.dirname(__file__), "native", "hv_state_writer.c")
PAGE = 0x1000
RW = 1 << 1
IA32_VMX_BASIC_BOCHS = 0x00D8100000000004   # measured on the emulator (docs/lab.md): revision id 4
HOST_STACK_PATTERN = 0x214B434154535648      # hv_debug.h HV_HOST_STACK_PATTERN
KERNEL_BASE = 0xFFFFF80000000000

_built: Dict[str, str] = {}


def build_writer(outdir: Optional[str] = None) -> str:
    """Compiles native/hv_state_writer.c once per process; returns the binary's path."""
    if "exe" in _built:
        return _built["exe"]
    outdir = outdir or tempfile.mkdtemp(prefix="hv-state-writer-")
    exe = os.path.join(outdir, "hv_state_writer")
    cmd = ["gcc", "-std=gnu99", "-Wall", "-Wextra", "-Werror", "-O1",
           "-I", os.path.join(REPO, "driver", "include"), "-o", exe, NATIVE_SRC]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError("cannot build hv_state_writer:\n" + res.stderr)
    _built["exe"] = exe
    return exe


class PhysMem:
    """Physical pages handed out bottom-up, contents kept per page."""

    def __init__(self, base: int = 0x100000) -> None:
        self.next = base
        self.pages: Dict[int, bytearray] = {}

    def alloc(self, npages: int = 1) -> int:
        pa = self.next
        self.next += npages * PAGE
        for i in range(npages):
            self.pages[pa + i * PAGE] = bytearray(PAGE)
        return pa

    def write(self, pa: int, data: bytes) -> None:
        off = 0
        while off < len(data):
            page = (pa + off) & ~(PAGE - 1)
            inside = (pa + off) - page
            n = min(len(data) - off, PAGE - inside)
            self.pages.setdefault(page, bytearray(PAGE))[inside:inside + n] = data[off:off + n]
            off += n

    def read(self, pa: int, n: int) -> bytes:
        out = bytearray()
        while n:
            page = pa & ~(PAGE - 1)
            take = min(n, page + PAGE - pa)
            out += self.pages[page][pa - page:pa - page + take]
            pa += take
            n -= take
        return bytes(out)


class AddressSpace:
    """4-level page tables (SDM 4.5) built in PhysMem; 4 KiB pages only."""

    def __init__(self, mem: PhysMem) -> None:
        self.mem = mem
        self.cr3 = mem.alloc()

    def _table(self, table_pa: int, index: int) -> int:
        entry = struct.unpack_from("<Q", self.mem.pages[table_pa], index * 8)[0]
        if entry & P_BIT:
            return entry & ADDR_MASK
        new = self.mem.alloc()
        struct.pack_into("<Q", self.mem.pages[table_pa], index * 8, new | P_BIT | RW)
        return new

    def map(self, va: int, pa: int, size: int) -> None:
        for off in range(0, size, PAGE):
            v = va + off
            t = self.cr3
            for shift in (39, 30, 21):
                t = self._table(t, (v >> shift) & 0x1FF)
            struct.pack_into("<Q", self.mem.pages[t], ((v >> 12) & 0x1FF) * 8, (pa + off) | P_BIT | RW)

    def alloc_mapped(self, va: int, size: int) -> int:
        npages = (size + PAGE - 1) // PAGE
        pa = self.mem.alloc(npages)
        self.map(va, pa, npages * PAGE)
        return pa


def default_layout(fields) -> List[Tuple[int, int, int, int]]:
    """A Bochs-like layout map: every field in its own 8-byte slot after the
    header; access rights stored rotated left by 8 (docs/lab.md, measured)."""
    out = []
    for k, f in enumerate(fields):
        width = {"16": 2, "32": 4, "64": 8, "natural": 8}[f.width]
        flags = 0x01 | (0x02 if f.name.endswith("_AR_BYTES") else 0)
        out.append((f.encoding, 0x10 + 8 * k, width, flags))
    return out


def _rol8(value: int, width: int) -> int:
    """Rotate left by 8 within 32 bits (HV_LAYOUT_FLAG_ROTATED8)."""
    v = value & 0xFFFFFFFF
    return ((v << 8) | (v >> 24)) & 0xFFFFFFFF


def default_snapshot_values(n: int, fields) -> Dict[int, int]:
    """Plausible per-vCPU VMCS values: most alike, a few per-processor ones."""
    vals: Dict[int, int] = {}
    for f in fields:
        if f.name.endswith("_AR_BYTES"):
            v = 0xC09B if "CS" in f.name else (0x8B if "TR" in f.name else (0x10000 if "LDTR" in f.name else 0xC093))
        elif f.name.endswith("_SELECTOR"):
            v = 0x10 if "CS" in f.name else (0x40 if "TR" in f.name else 0x18)
        elif f.name in ("GUEST_RIP", "HOST_RIP"):
            v = KERNEL_BASE + 0x123450 + (0 if f.name == "HOST_RIP" else n * 0x40)
        elif f.name in ("GUEST_RSP", "HOST_RSP"):
            v = KERNEL_BASE + 0x800000 + n * 0x10000
        elif f.name.endswith("_CR0"):
            v = 0x80050033
        elif f.name.endswith("_CR4"):
            v = 0x3726F8
        elif f.name == "PIN_BASED_VM_EXEC_CONTROL":
            v = 0x16
        elif f.name == "CPU_BASED_VM_EXEC_CONTROL":
            v = 0x94006172
        elif f.name == "SECONDARY_VM_EXEC_CONTROL":
            v = 0x1028
        elif f.name == "VM_EXIT_CONTROLS":
            v = 0x36DFF
        elif f.name == "VM_ENTRY_CONTROLS":
            v = 0x13FF
        elif f.name == "VM_EXIT_REASON":
            v = 10  # CPUID
        elif f.name == "VM_INSTRUCTION_ERROR":
            v = 0
        elif f.name == "VMCS_LINK_POINTER":
            v = 0xFFFFFFFFFFFFFFFF
        elif f.name == "GUEST_TR_BASE":
            v = KERNEL_BASE + 0x5000 + n * 0x100
        else:
            v = (f.encoding * 0x10001 + (n if f.type == "guest" else 0)) & (0xFFFF if f.width == "16" else
                                                                            0xFFFFFFFF)
        vals[f.encoding] = v
    return vals


class HvState:
    """One scenario: N vCPUs of a running hv.sys, changed through attributes before build()."""

    def __init__(self, vcpus: int = 2, fields=None) -> None:
        from windbg_ext.arch.vmcs_fields import FIELDS

        self.count = vcpus
        self.fields = list(fields if fields is not None else
                           [f for f in FIELDS if f.name in _DEFAULT_FIELD_NAMES])
        self.layout = default_layout(self.fields)
        self.basic = IA32_VMX_BASIC_BOCHS
        self.snapshots = [default_snapshot_values(i, self.fields) for i in range(vcpus)]
        self.snapshot_meta = [{"Reason": 3, "ExitReason": 10, "Sequence": 2, "VmInstructionError": 0}
                              for _ in range(vcpus)]
        self.vcpu_values: List[Dict[str, int]] = [dict(State=2, ExitCount=100 + i, LastExitReason=10,
                                                        LastExitQualification=0, LastGuestRip=0x1000 + i,
                                                        LastExitInstructionLength=2) for i in range(vcpus)]
        self.exit_counts = [{10: 90 + i, 28: 10} for i in range(vcpus)]
        self.desc_values: Dict[str, int] = {"DriverState": 2, "LayoutStatus": 1, "LayoutRevisionId": 4}
        self.vmm_values: Dict[str, int] = {}
        self.stack_used = [0x800 + 0x100 * i for i in range(vcpus)]
        self.region_revision = [4] * vcpus   # dword 0 of VMXON / VMCS regions
        self.vmcs_abort = [0] * vcpus
        self.msr_bitmap_reads: List[int] = [0x174, 0xC0000080]
        self.failure: Dict[str, int] = {}            # HV_FAILURE_RECORD fields (Valid, FailedStep, ...)
        self.failure_snapshot: Dict[int, int] = {}   # its snapshot entries
        self.failure_snapshot_meta: Dict[str, int] = {}
        self.consistent = True   # snapshot MSR_BITMAP / HOST_RSP agree with the vCPU's pages
        self.desc_va = KERNEL_BASE + 0x10_0000
        self.symbol = True
        # results of build()
        self.mem: Optional[PhysMem] = None
        self.facts: Dict = {}
        self.va: Dict[str, int] = {}

    def build(self) -> "HvState":
        from windbg_ext.arch.msr_bitmap import build_msr_bitmap

        mem = PhysMem()
        aspace = AddressSpace(mem)
        exe = build_writer()
        # Sizes come from the compiler: ask with an empty script first.
        facts = self._run(exe, ["desc VcpuCount 0"])[0]
        dsize, vsize, csize = (facts["sizeof"]["HV_DEBUG_DESCRIPTOR"], facts["sizeof"]["HV_VMM_CONTEXT"],
                               facts["sizeof"]["HV_VCPU"])
        va = {"desc": self.desc_va, "vmm": KERNEL_BASE + 0x20_0000, "vcpus": KERNEL_BASE + 0x30_0000}
        desc_pa = aspace.alloc_mapped(va["desc"], dsize)
        vmm_pa = aspace.alloc_mapped(va["vmm"], vsize)
        vcpus_pa = aspace.alloc_mapped(va["vcpus"], csize * self.count)
        script = ["desc SelfVa %d" % va["desc"], "desc VmmContextVa %d" % va["vmm"],
                  "desc VcpuArrayVa %d" % va["vcpus"], "desc VcpuCount %d" % self.count]
        script += ["desc %s %d" % kv for kv in self.desc_values.items()]
        vmm = dict(ProcessorCount=self.count, VirtualizedCount=self.count, State=2, Status=0, Vcpus=va["vcpus"],
                   FeatureControl=5, CapBasic=self.basic, PinbasedControls=0x16, ProcbasedControls=0x94006172,
                   Procbased2Controls=0x1028, ExitControls=0x36DFF, EntryControls=0x13FF)
        vmm.update(self.vmm_values)
        script += ["vmm %s %d" % kv for kv in vmm.items()]
        for e in self.layout:
            script.append("layout %d %d %d %d" % e)
        bitmap = build_msr_bitmap(read=self.msr_bitmap_reads, write=[])
        self.regions = []
        for i in range(self.count):
            rv: Dict[str, int] = {}
            for name in ("vmxon", "vmcs", "bitmap"):
                rva = KERNEL_BASE + 0x100_0000 + (i * 4 + ("vmxon", "vmcs", "bitmap").index(name)) * PAGE
                rpa = aspace.alloc_mapped(rva, PAGE)
                rv[name + "_va"], rv[name + "_pa"] = rva, rpa
            stack_va = KERNEL_BASE + 0x200_0000 + i * 0x10000
            stack_pa = aspace.alloc_mapped(stack_va, 0x6000)
            rv["stack_va"] = stack_va
            self.regions.append(rv)
            if self.consistent:  # what the driver writes: its own bitmap page and host stack top
                from windbg_ext.arch.vmcs_fields import by_name
                for name, value in (("MSR_BITMAP", rv["bitmap_pa"]), ("HOST_RSP", stack_va + 0x6000 - 0x10)):
                    if by_name(name).encoding in self.snapshots[i]:
                        self.snapshots[i][by_name(name).encoding] = value
            # region contents
            mem.write(rv["vmxon_pa"], struct.pack("<I", self.region_revision[i]))
            mem.write(rv["vmcs_pa"], struct.pack("<II", self.region_revision[i], self.vmcs_abort[i]))
            for enc, off, width, flags in self.layout:
                if flags & 1 and enc in self.snapshots[i]:
                    v = self.snapshots[i][enc]
                    if flags & 2:
                        v = _rol8(v, width)
                    mem.write(rv["vmcs_pa"] + off, (v & ((1 << 8 * width) - 1)).to_bytes(width, "little"))
            mem.write(rv["bitmap_pa"], bitmap)
            used = self.stack_used[i]
            stack = bytearray(struct.pack("<Q", HOST_STACK_PATTERN) * (0x6000 // 8))
            stack[0x6000 - used:] = bytes((k * 7 + 1) & 0xFF or 1 for k in range(used))
            mem.write(stack_pa, bytes(stack))
            values = dict(ProcessorIndex=i, HostStackSize=0x6000, VmxonRegion=rv["vmxon_va"],
                          VmxonRegionPa=rv["vmxon_pa"], VmcsRegion=rv["vmcs_va"], VmcsRegionPa=rv["vmcs_pa"],
                          MsrBitmap=rv["bitmap_va"], MsrBitmapPa=rv["bitmap_pa"], HostStack=stack_va,
                          Vmm=va["vmm"], OriginalCr0=0x80050033, OriginalCr4=0x3506F8)
            values.update(self.vcpu_values[i])
            script += ["vcpu %d %s %d" % (i, k, v) for k, v in values.items()]
            for reason, n in self.exit_counts[i].items():
                script.append("exitcount %d %d %d" % (i, reason, n))
            for enc, v in self.snapshots[i].items():
                script.append("snapentry %d %d %d" % (i, enc, v))
            script += ["snap %d %s %d" % (i, k, v) for k, v in self.snapshot_meta[i].items()]
        script += ["failure %s %d" % kv for kv in self.failure.items()]
        script += ["failsnap %s %d" % kv for kv in self.failure_snapshot_meta.items()]
        script += ["failentry %d %d" % kv for kv in self.failure_snapshot.items()]
        facts, blob = self._run(exe, script)
        mem.write(desc_pa, blob[:dsize])
        mem.write(vmm_pa, blob[dsize:dsize + vsize])
        mem.write(vcpus_pa, blob[dsize + vsize:])
        self.mem, self.aspace, self.facts, self.va = mem, aspace, facts, va
        self.blob = blob
        self.pa = {"desc": desc_pa, "vmm": vmm_pa, "vcpus": vcpus_pa}
        return self

    def _run(self, exe: str, script: List[str]):
        with tempfile.TemporaryDirectory() as d:
            sp, bp = os.path.join(d, "script"), os.path.join(d, "out.bin")
            with open(sp, "w") as f:
                f.write("\n".join(script) + "\n")
            res = subprocess.run([exe, sp, bp], capture_output=True, text=True)
            if res.returncode:
                raise RuntimeError("hv_state_writer failed: " + res.stderr)
            with open(bp, "rb") as f:
                blob = f.read()
        return json.loads(res.stdout), blob

    # -- outputs ----------------------------------------------------------------
    def write_image(self, path: str, meta: Optional[Dict] = None, msrs: Optional[Dict[int, int]] = None) -> str:
        """msrs: every processor's recorded MSRs (default: IA32_VMX_BASIC only)."""
        from windbg_ext.target.image import ImageWriter

        assert self.mem is not None, "build() first"
        w = ImageWriter()
        for pa in sorted(self.mem.pages):
            w.add_memory(pa, bytes(self.mem.pages[pa]))
        if self.symbol:
            w.add_symbol("hv!HvDebugDescriptor", self.va["desc"])
        for _ in range(self.count):
            w.add_cpu({"cr3": self.aspace.cr3, "cr4": 0x3506F8, "cr0": 0x80050033}, msrs or {0x480: self.basic})
        w.meta = meta or {}
        w.write(path)
        return path

    def write_dump(self, path: str, kind: str = "full") -> str:
        from windbg_ext.target.dump import write_dump

        assert self.mem is not None, "build() first"
        write_dump(path, {pa: bytes(p) for pa, p in self.mem.pages.items()}, kind=kind, dtb=self.aspace.cr3,
                   processors=self.count)
        return path


_DEFAULT_FIELD_NAMES = {
    "VIRTUAL_PROCESSOR_ID", "GUEST_ES_SELECTOR", "GUEST_CS_SELECTOR", "GUEST_SS_SELECTOR", "GUEST_DS_SELECTOR",
    "GUEST_FS_SELECTOR", "GUEST_GS_SELECTOR", "GUEST_LDTR_SELECTOR", "GUEST_TR_SELECTOR",
    "HOST_ES_SELECTOR", "HOST_CS_SELECTOR", "HOST_SS_SELECTOR", "HOST_DS_SELECTOR", "HOST_FS_SELECTOR",
    "HOST_GS_SELECTOR", "HOST_TR_SELECTOR", "MSR_BITMAP", "VMCS_LINK_POINTER", "GUEST_IA32_DEBUGCTL",
    "PIN_BASED_VM_EXEC_CONTROL", "CPU_BASED_VM_EXEC_CONTROL", "SECONDARY_VM_EXEC_CONTROL", "VM_EXIT_CONTROLS",
    "VM_ENTRY_CONTROLS", "EXCEPTION_BITMAP", "VM_INSTRUCTION_ERROR", "VM_EXIT_REASON", "VM_EXIT_INTR_INFO",
    "VM_EXIT_INSTRUCTION_LEN", "EXIT_QUALIFICATION", "GUEST_ES_LIMIT", "GUEST_CS_LIMIT", "GUEST_ES_AR_BYTES",
    "GUEST_CS_AR_BYTES", "GUEST_SS_AR_BYTES", "GUEST_DS_AR_BYTES", "GUEST_FS_AR_BYTES", "GUEST_GS_AR_BYTES",
    "GUEST_LDTR_AR_BYTES", "GUEST_TR_AR_BYTES", "GUEST_INTERRUPTIBILITY_INFO", "GUEST_ACTIVITY_STATE",
    "GUEST_SYSENTER_CS", "HOST_IA32_SYSENTER_CS", "CR0_GUEST_HOST_MASK", "CR4_GUEST_HOST_MASK",
    "CR0_READ_SHADOW", "CR4_READ_SHADOW", "GUEST_CR0", "GUEST_CR3", "GUEST_CR4", "GUEST_ES_BASE",
    "GUEST_CS_BASE", "GUEST_TR_BASE", "GUEST_GDTR_BASE", "GUEST_IDTR_BASE", "GUEST_DR7", "GUEST_RSP",
    "GUEST_RIP", "GUEST_RFLAGS", "HOST_CR0", "HOST_CR3", "HOST_CR4", "HOST_FS_BASE", "HOST_GS_BASE",
    "HOST_TR_BASE", "HOST_GDTR_BASE", "HOST_IDTR_BASE", "HOST_RSP", "HOST_RIP",
}
