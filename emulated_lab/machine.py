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

import ctypes
import struct
from typing import Callable, Dict, List, Optional, Tuple

from emulated_lab.asm import assemble
from emulated_lab.native import load_bochscpu

PAGE = 0x1000

# Virtual layout (canonical, kernel half). Every physical page the machine
# allocates is also reachable at DIRECT_MAP + pa (like a kernel direct map).
DIRECT_MAP = 0xFFFF_A000_0000_0000
NT_BASE = 0xFFFF_F800_0000_0000        # the emulated "nt" module: stubs + data
DRIVER_BASE = 0xFFFF_F806_1000_0000    # where a loaded driver image goes
USER_BASE = 0x0000_0000_0001_0000      # ring-3 workload code and stack

# Windows x64 GDT selectors (KGDT64_*).
SEL_R0_CODE, SEL_R0_DATA, SEL_R3_CMCODE, SEL_R3_DATA, SEL_R3_CODE = 0x10, 0x18, 0x23, 0x2B, 0x33
SEL_TSS, SEL_R3_CMTEB = 0x40, 0x53
GDT_LIMIT = 0x6F

# Initial control registers, as a Windows x64 kernel runs (subset the model has).
CR0_INIT = 0x8005_0033          # PG WP AM NE ET MP PE
CR4_INIT = 0x0004_06A0          # OSXSAVE OSXMMEXCPT OSFXSR PGE PAE
EFER_INIT = 0xD01               # NXE LMA LME SCE
CR4_VMXE = 1 << 13
RFLAGS_INIT = 0x202
RFLAGS_CF, RFLAGS_ZF = 1 << 0, 1 << 6

MSR_FEATURE_CONTROL = 0x3A
FC_LOCKED_VMXON_ENABLED = 0x5   # lock | enable VMXON outside SMX
FC_LOCKED_VMXON_DISABLED = 0x1  # lock only: VMXON #GPs

GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
THREAD_REGS = GPRS + ("rip", "rflags")

PTE_P, PTE_RW, PTE_US, PTE_PS = 1, 2, 4, 0x80
PTE_NX = 1 << 63
ADDR_MASK = 0x000F_FFFF_FFFF_F000

EXCEPTION_NAMES = {0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF",
                   10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC", 18: "#MC",
                   19: "#XM"}


class MachineError(Exception):
    """The emulated machine cannot continue (one line for the user)."""


class GuestFault(MachineError):
    def __init__(self, vector: int, error: int, rip: int, cpu: int):
        super().__init__("processor %d: exception %s (vector %d, error 0x%x) at rip 0x%x"
                         % (cpu, EXCEPTION_NAMES.get(vector, "?"), vector, error, rip))
        self.vector, self.error, self.rip, self.cpu = vector, error, rip, cpu


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


class Processor:
    def __init__(self, index: int) -> None:
        self.index = index
        self.state = None            # bochscpu.State saved at park, None before first run
        self.started = False
        self.vmx = "off"             # "off" | "root" | "guest" (VMX non-root)
        self.parked_in_exit = False  # parked inside the driver's VM-exit handler (resume -> guest)
        self.vmcs_pa = 0             # the current VMCS at park time (VMPTRST)
        self.fw_vmxon_pa = 0         # the lab's ("firmware") VMXON region for re-establishment
        self.gdt = self.idt = self.tss = self.kpcr = 0
        self.stack_top = 0           # per-processor stack for calls into code on this processor
        self.idle_stack_top = 0
        self.msrs: Dict[int, int] = {}


class _Stop(Exception):
    pass


class Machine:
    """An emulated x86-64 machine with `cpus` logical processors."""

    def __init__(self, cpus: int = 2, feature_control: int = FC_LOCKED_VMXON_ENABLED,
                 cpuid_override: Optional[Dict[Tuple[int, int], Tuple[int, int, int, int]]] = None) -> None:
        if cpus < 1 or cpus > 64:
            raise MachineError("processor count %d is out of range (1..64)" % cpus)
        self.bochscpu = load_bochscpu()
        self.mem = self.bochscpu.memory
        self.feature_control = feature_control
        self._pages: Dict[int, int] = {}     # gpa -> host address
        self._next_pa = 0x20_0000            # bump allocator: never reuses a page
        self._code_cursor = 0
        self._code_page = 0
        self._code_interned: Dict[bytes, int] = {}
        self._closed = False
        self.pml4 = 0
        self.pml4 = self.alloc_phys(1)
        self.breakpoints: Dict[int, Callable[[int], None]] = {}   # VA -> handler (ucnear_branch target)
        self.exits: List[VmExit] = []
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
        self._cpuid_leaf = None
        self.cpuid_sites = set()
        self._hlt_rip = 0
        self.count_instructions = False   # set before the first run: counts every instruction (slow)
        self.instructions = 0
        self.cpuid_override = dict(cpuid_override or {})
        self._build_shared()
        self.processors = [Processor(i) for i in range(cpus)]
        for p in self.processors:
            self._build_processor(p)

    # -- physical memory ----------------------------------------------------
    def alloc_phys(self, npages: int, align_pages: int = 1) -> int:
        """Allocates zeroed, contiguous physical pages; also maps them at DIRECT_MAP + pa."""
        pa = (self._next_pa + align_pages * PAGE - 1) // (align_pages * PAGE) * (align_pages * PAGE)
        self._next_pa = pa + npages * PAGE
        for i in range(npages):
            hva = self.mem.allocate_host_page()
            if not hva:
                raise MachineError("out of host memory for the emulated machine")
            ctypes.memset(hva, 0, PAGE)
            self.mem.page_insert(pa + i * PAGE, hva)
            self._pages[pa + i * PAGE] = hva
        if self.pml4:
            self.map(DIRECT_MAP + pa, pa, npages * PAGE)
        return pa

    def alloc_page(self) -> Tuple[int, int]:
        """One zeroed page: (virtual address, physical address)."""
        pa = self.alloc_phys(1)
        return DIRECT_MAP + pa, pa

    def _hva(self, pa: int) -> int:
        hva = self._pages.get(pa & ~0xFFF)
        if hva is None:
            raise MachineError("physical address 0x%x is not backed by memory" % pa)
        return hva + (pa & 0xFFF)

    def write_phys(self, pa: int, data: bytes) -> None:
        off = 0
        while off < len(data):
            n = min(len(data) - off, PAGE - ((pa + off) & 0xFFF))
            ctypes.memmove(self._hva(pa + off), bytes(data[off:off + n]), n)
            off += n

    def read_phys(self, pa: int, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            cur = pa + len(out)
            n = min(size - len(out), PAGE - (cur & 0xFFF))
            out += ctypes.string_at(self._hva(cur), n)
        return bytes(out)

    def phys_ranges(self) -> List[Tuple[int, int]]:
        """(pa, size) runs of every backed physical page, merged."""
        runs: List[Tuple[int, int]] = []
        for pa in sorted(self._pages):
            if runs and runs[-1][0] + runs[-1][1] == pa:
                runs[-1] = (runs[-1][0], runs[-1][1] + PAGE)
            else:
                runs.append((pa, PAGE))
        return runs

    # -- paging -------------------------------------------------------------
    def _entry_pa(self, table_pa: int, index: int) -> int:
        return table_pa + index * 8

    def _read_q(self, pa: int) -> int:
        return struct.unpack("<Q", self.read_phys(pa, 8))[0]

    def _write_q(self, pa: int, v: int) -> None:
        self.write_phys(pa, struct.pack("<Q", v))

    def map(self, va: int, pa: int, size: int, user: bool = False, writable: bool = True,
            executable: bool = True) -> None:
        """Maps [va, va+size) to [pa, pa+size) with 4 KiB pages."""
        va &= ~0xFFF
        pa &= ~0xFFF
        for off in range(0, (size + 0xFFF) & ~0xFFF, PAGE):
            self._map_page(va + off, pa + off, user, writable, executable)

    def _map_page(self, va: int, pa: int, user: bool, writable: bool, executable: bool) -> None:
        table = self.pml4
        upper = PTE_P | PTE_RW | (PTE_US if user else 0)
        for shift in (39, 30, 21):
            e_pa = self._entry_pa(table, (va >> shift) & 0x1FF)
            e = self._read_q(e_pa)
            if not e & PTE_P:
                nxt = self._alloc_table()
                e = nxt | upper
                self._write_q(e_pa, e)
            elif user and not e & PTE_US:
                self._write_q(e_pa, e | PTE_US)
            table = e & ADDR_MASK
        leaf = pa | PTE_P | (PTE_RW if writable else 0) | (PTE_US if user else 0) | (0 if executable else PTE_NX)
        self._write_q(self._entry_pa(table, (va >> 12) & 0x1FF), leaf)

    def _alloc_table(self) -> int:
        # page-table pages come from the same allocator but are not direct-mapped
        # recursively (that would recurse into map()); they are reachable physically.
        pa = (self._next_pa + PAGE - 1) & ~0xFFF
        self._next_pa = pa + PAGE
        hva = self.mem.allocate_host_page()
        ctypes.memset(hva, 0, PAGE)
        self.mem.page_insert(pa, hva)
        self._pages[pa] = hva
        return pa

    def unmap(self, va: int, size: int) -> None:
        for off in range(0, (size + 0xFFF) & ~0xFFF, PAGE):
            pte = self._pte_pa(va + off)
            if pte is not None:
                self._write_q(pte, 0)

    def _pte_pa(self, va: int) -> Optional[int]:
        table = self.pml4
        for shift in (39, 30, 21):
            e = self._read_q(self._entry_pa(table, (va >> shift) & 0x1FF))
            if not e & PTE_P:
                return None
            table = e & ADDR_MASK
        return self._entry_pa(table, (va >> 12) & 0x1FF)

    def translate(self, va: int) -> Optional[int]:
        """Walks the 4-level page tables in emulated memory (SDM Vol.3 4.5);
        None when the address is not mapped."""
        pte = self._pte_pa(va)
        if pte is None:
            return None
        e = self._read_q(pte)
        if not e & PTE_P:
            return None
        return (e & ADDR_MASK) | (va & 0xFFF)

    def read_virt(self, va: int, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            cur = va + len(out)
            pa = self.translate(cur)
            if pa is None:
                raise MachineError("virtual address 0x%x is not mapped" % cur)
            n = min(size - len(out), PAGE - (cur & 0xFFF))
            out += self.read_phys(pa, n)
        return bytes(out)

    def write_virt(self, va: int, data: bytes) -> None:
        off = 0
        while off < len(data):
            cur = va + off
            pa = self.translate(cur)
            if pa is None:
                raise MachineError("virtual address 0x%x is not mapped" % cur)
            n = min(len(data) - off, PAGE - (cur & 0xFFF))
            self.write_phys(pa, data[off:off + n])
            off += n

    def read_u64(self, va: int) -> int:
        return struct.unpack("<Q", self.read_virt(va, 8))[0]

    def write_u64(self, va: int, v: int) -> None:
        self.write_virt(va, struct.pack("<Q", v & 0xFFFF_FFFF_FFFF_FFFF))

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
        """Records where CPUID instructions may be (for hide_vmx)."""
        i = code.find(b"\x0f\xa2")
        while i >= 0:
            self.cpuid_sites.add(va + i)
            i = code.find(b"\x0f\xa2", i + 1)

    def hide_vmx(self) -> None:
        """Makes the CPU report no VMX: CPUID.1:ECX[5] reads 0 (SDM Vol.3 24.6).
        Bochs's CPUID cannot be configured, so every CPUID at a known site is
        watched (before/after-execution hooks: slower, use for short runs)."""
        if self._hook_list is not None:
            raise MachineError("hide_vmx() must be called before the first run")
        self._hide_vmx = True

    def _before(self, sess, cpu_id, insn) -> None:
        rip = sess.cpu.rip
        if rip in self.cpuid_sites:
            self._cpuid_leaf = (rip, sess.cpu.rax & 0xFFFFFFFF)

    def _after(self, sess, cpu_id, insn) -> None:
        self.instructions += 1
        if self._cpuid_leaf is not None:
            rip, leaf = self._cpuid_leaf
            c = sess.cpu
            if c.rip == rip + 2:
                self._cpuid_leaf = None
                if leaf == 1:
                    c.rcx = c.rcx & ~(1 << 5)

    # -- layout -------------------------------------------------------------
    def _build_shared(self) -> None:
        # A page of `hlt` bytes: the return sentinel and the IDT handlers point
        # here; reaching one stops the emulator (a clean tripwire).
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
        page = bytearray(b"\xF4" * PAGE)
        for v in range(256):
            at = 8 * v
            rel = self.fault_common - (self.idt_stubs + at + 7)
            page[at:at + 7] = bytes([0x6A, v & 0xFF, 0xE9]) + struct.pack("<i", rel)
        self.write_phys(stubs_pa, bytes(page))
        self.breakpoints[self.fault_common] = self._on_fault_stub
        self.user_code_pa = self.alloc_phys(4)
        self.user_stack_pa = self.alloc_phys(4)
        self.map(USER_BASE, self.user_code_pa, 4 * PAGE, user=True, writable=False)
        self.map(USER_BASE + 0x10000, self.user_stack_pa, 4 * PAGE, user=True, executable=False)
        self.user_stack_top = USER_BASE + 0x10000 + 4 * PAGE - 0x40
        self._user_cursor = 0

    def _build_processor(self, p: Processor) -> None:
        # GDT (Windows x64 layout), TSS, IDT, a KPCR-like page for GS.
        gdt_pa = self.alloc_phys(1)
        tss_pa = self.alloc_phys(1)
        idt_pa = self.alloc_phys(1)
        kpcr_pa = self.alloc_phys(2)
        stack_pa = self.alloc_phys(16)
        idle_pa = self.alloc_phys(2)
        ist_pa = self.alloc_phys(2)
        p.gdt, p.tss, p.idt, p.kpcr = (DIRECT_MAP + x for x in (gdt_pa, tss_pa, idt_pa, kpcr_pa))
        p.stack_top = DIRECT_MAP + stack_pa + 16 * PAGE - 0x100
        p.idle_stack_top = DIRECT_MAP + idle_pa + 2 * PAGE - 0x100
        gdt = bytearray(GDT_LIMIT + 1)

        def seg(sel: int, access: int, flags: int, limit: int = 0xFFFFF) -> None:
            # descriptor: limit 15:0, base 23:0 = 0, access byte, flags|limit 19:16, base 31:24 = 0
            d = (limit & 0xFFFF) | (access << 40) | (((limit >> 16) & 0xF) << 48) | (flags << 52)
            gdt[sel & ~7:(sel & ~7) + 8] = struct.pack("<Q", d)

        seg(SEL_R0_CODE, 0x9B, 0xA)      # 64-bit code, DPL0 (L, G)
        seg(SEL_R0_DATA, 0x93, 0xC)      # data, DPL0 (D/B, G)
        seg(SEL_R3_CMCODE, 0xFB, 0xC)    # 32-bit code, DPL3
        seg(SEL_R3_DATA, 0xF3, 0xC)      # data, DPL3
        seg(SEL_R3_CODE, 0xFB, 0xA)      # 64-bit code, DPL3
        seg(SEL_R3_CMTEB, 0xF3, 0x4, 0x3C00)
        tss_va, tss_limit = p.tss, 0x67
        lo = (tss_limit & 0xFFFF) | ((tss_va & 0xFFFFFF) << 16) | (0x8B << 40) | (((tss_va >> 24) & 0xFF) << 56)
        gdt[SEL_TSS:SEL_TSS + 16] = struct.pack("<QQ", lo, tss_va >> 32)   # busy 64-bit TSS
        self.write_phys(gdt_pa, bytes(gdt))
        # TSS: RSP0 for ring 3 -> 0 transitions, IST1 for faults.
        tss = bytearray(0x68)
        struct.pack_into("<Q", tss, 4, p.stack_top - 0x4000)
        struct.pack_into("<Q", tss, 0x24, DIRECT_MAP + ist_pa + 2 * PAGE - 0x40)
        struct.pack_into("<H", tss, 0x66, 0x68)   # no I/O bitmap
        self.write_phys(tss_pa, bytes(tss))
        idt = bytearray(256 * 16)
        for v in range(256):
            h = self.idt_stubs + 8 * v
            lo = (h & 0xFFFF) | (SEL_R0_CODE << 16) | (0x8E << 40) | (((h >> 16) & 0xFFFF) << 48)
            struct.pack_into("<QQ", idt, v * 16, lo, h >> 32)
        self.write_phys(idt_pa, bytes(idt))
        # KPCR-ish: Self at +0x18, Prcb.Number at +0x184 (what KeGetCurrentProcessorNumber reads).
        struct.pack_into("<Q", bytearray(8), 0, 0)
        self.write_phys(kpcr_pa + 0x18, struct.pack("<Q", p.kpcr))
        self.write_phys(kpcr_pa + 0x184, struct.pack("<I", p.index))
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
        st.xcr0 = 0x3
        st.rflags = RFLAGS_INIT
        st.rsp = p.stack_top
        st.rip = self.sentinel
        st.pat = 0x0007_0106_0007_0106
        # attr = descriptor bits 40..55 (access byte, limit 19:16, AVL L D/B G)
        st.cs = self._segment(SEL_R0_CODE, 0xAF9B)
        st.ss = self._segment(SEL_R0_DATA, 0xCF93)
        st.ds = self._segment(SEL_R3_DATA | 3, 0xCFF3)
        st.es = self._segment(SEL_R3_DATA | 3, 0xCFF3)
        st.fs = self._segment(SEL_R3_CMTEB | 3, 0x40F3, 0, 0x3C00)
        st.gs = self._segment(SEL_R3_DATA | 3, 0xCFF3, p.kpcr)
        st.tr = self._segment(SEL_TSS, 0x008B, p.tss, 0x67)
        ldtr = self.bochscpu.Segment()
        ldtr.present = False
        st.ldtr = ldtr
        g = b.GlobalSegment()
        g.base, g.limit = p.gdt, GDT_LIMIT
        st.gdtr = g
        i = b.GlobalSegment()
        i.base, i.limit = p.idt, 256 * 16 - 1
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
        if self._hide_vmx:
            h.before_execution = self._before
            h.after_execution = self._after
        elif self.count_instructions:
            h.after_execution = self._count
        return [h]

    def _count(self, sess, cpu_id, insn) -> None:
        self.instructions += 1

    def _open_session(self, k: int) -> None:
        """A fresh Session for processor k, state loaded, VMX re-established."""
        self._close_session()
        b = self.bochscpu
        sess = b.Session()
        sess.missing_page_handler = self._missing_page
        p = self.processors[k]
        st = p.state if p.state is not None else self._initial_state(p)
        sess.cpu.state = st
        self.sess, self.current = sess, k
        if self._hook_list is None:
            self._hook_list = self._hooks()   # one Hook set for the machine
        p.started = True
        saved = self._thread_regs()
        # Firmware: lock IA32_FEATURE_CONTROL (and, for a processor parked in
        # VMX root, re-enter VMX operation with the same current VMCS).
        if p.vmx != "off":
            code = self.place_code(_FW_REESTABLISH)
            r = self._call_raw(code, {"rax": self.feature_control, "rdi": p.fw_vmxon_pa,
                                      "rbx": DIRECT_MAP + p.fw_vmxon_pa, "rsi": p.vmcs_pa},
                               p.idle_stack_top)
            if r != "return" or self.sess.cpu.rax != 0:
                raise MachineError("processor %d: re-establishing VMX operation failed (%s, rax=%d)"
                                   % (k, r, self.sess.cpu.rax))
        else:
            code = self.place_code(_FW_LOCK)
            r = self._call_raw(code, {"rax": self.feature_control}, p.idle_stack_top)
            if r != "return":
                raise MachineError("processor %d: firmware start-up failed (%s)" % (k, r))
        self._set_thread_regs(saved)

    def _close_session(self) -> None:
        if self.sess is not None:
            self.sess = None   # keep no reference to the old sess.cpu
            self.current = None

    def _missing_page(self, gpa: int) -> None:
        raise MachineError("the emulated CPU accessed physical address 0x%x, which has no memory" % gpa)

    def _thread_regs(self) -> Dict[str, int]:
        c = self.sess.cpu
        return {r: getattr(c, r) for r in THREAD_REGS}

    def _set_thread_regs(self, regs: Dict[str, int]) -> None:
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
        self._stop_reason = "fault"
        if self._pending_fault is None:   # delivered without the exception hook: vector from the stub
            vec = self.read_u64(self.sess.cpu.rsp) & 0xFF
            self._pending_fault = (vec, 0, self.sess.cpu.rip)
        self.sess.stop()

    def _on_branch(self, sess, cpu_id, what, branch_ip, new_ip) -> None:
        if self._await_root:
            # first branch after a lab-induced VM exit: the CPU is in VMX root.
            self._await_root = False
            self._stop_reason = "root"
            sess.stop()
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
        if self._lab_induced:
            self._await_root = True
        for o in self.exit_observers:
            o(e)

    def _run_session(self) -> str:
        self._stop_reason = ""
        self._pending_fault = None
        self.sess.run(self._hook_list)
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
        self._set_thread_regs({r: getattr(st, r) for r in THREAD_REGS})
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
        k = self.current
        p = self.processors[k]
        saved = self._thread_regs()
        idle = self.place_code(_IDLE)
        self._lab_induced = True
        try:
            r = self._call_raw(idle, {}, p.idle_stack_top)
        finally:
            self._lab_induced = False
            self._await_root = False
        if r == "root":
            # in the driver's exit handler: save it there, find the current VMCS
            root_regs = self._thread_regs()
            st = self.sess.cpu.state
            probe = self.place_code(_VMPTRST)
            r2 = self._call_raw(probe, {}, p.idle_stack_top)
            if r2 != "return":
                raise MachineError("processor %d: VMPTRST in VMX root failed (%s)" % (k, r2))
            p.vmcs_pa = self.sess.cpu.rax
            p.vmx = "guest"
            p.parked_in_exit = True
            self._set_thread_regs(root_regs)
            p.state = st
            self._close_session()
            return
        if r != "return":
            raise MachineError("processor %d could not be parked (%s)" % (k, r))
        # not in VMX non-root: outside VMX operation (VMPTRST raises #UD) or in VMX root
        probe = self.place_code(_VMPTRST)
        r2 = self._call_raw(probe, {}, p.idle_stack_top)
        if r2 == "return":
            p.vmx, p.vmcs_pa = "root", self.sess.cpu.rax
        else:
            p.vmx, p.vmcs_pa = "off", 0
        self._set_thread_regs(saved)
        p.state = self.sess.cpu.state
        self._close_session()

    def run(self, cpu: int, rip: int, regs: Optional[Dict[str, int]] = None, stack_top: Optional[int] = None,
            args: Tuple[int, ...] = ()) -> RunResult:
        """Runs ring-0 code at `rip` on processor `cpu` until it returns (ret to the
        sentinel) or stops at a fault/hlt. MS x64 ABI for `args` (up to 4 in registers,
        the rest on the stack)."""
        if not 0 <= cpu < len(self.processors):
            raise MachineError("processor %d does not exist (this machine has %d)" % (cpu, len(self.processors)))
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

    def _drive(self) -> str:
        """Runs the live session until it returns, faults or halts; services
        requests (processor switches) that hooks leave for outside the run."""
        while True:
            r = self._run_session()
            req = getattr(self, "_request", None)
            if req is not None:
                self._request = None
                req()
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
        if self.current is not None:
            self.park()
        p = self.processors[k]
        if not p.parked_in_exit:
            self._open_session(k)
            return {}
        self._open_session(k)
        saved = self._thread_regs()
        probe = self.place_code(_VMREAD)
        values: Dict[int, int] = {}
        for enc in encodings:
            r = self._call_raw(probe, {"rcx": enc}, p.idle_stack_top)
            if r == "return" and not self.sess.cpu.rflags & (RFLAGS_CF | RFLAGS_ZF):
                values[enc] = self.sess.cpu.rax
        self._set_thread_regs(saved)
        if resume:
            self._resume_guest()
        else:
            self._close_session()   # p.state is still the parked state
        return values

    def read_msrs(self, k: int, msrs) -> Dict[int, int]:
        """RDMSR of each MSR on processor k (ring 0); MSRs that #GP are left out.
        Use before a hypervisor runs: afterwards RDMSR in a guest may exit."""
        probe = self.place_code(_RDMSR)
        out: Dict[int, int] = {}
        for msr in msrs:
            r = self.run(k, probe, regs={"rcx": msr})
            if r.stop == "return":
                out[msr] = r.regs["rax"]
        return out

    def cpuid(self, k: int, leaf: int, subleaf: int = 0) -> Tuple[int, int, int, int]:
        r = self.run(k, self.place_code(_CPUID), regs={"rax": leaf, "rcx": subleaf})
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
        self.breakpoints.clear()
        self.exit_observers.clear()
        for p in self.processors:
            p.state = None
        for gpa, hva in self._pages.items():
            self.mem.page_remove(gpa)
            self.mem.release_host_page(hva)
        self._pages.clear()
        self._closed = True

    def __enter__(self) -> "Machine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# Firmware at Session start: IA32_FEATURE_CONTROL <- rax (SDM Vol.3 24.7).
_FW_LOCK = assemble("""
    mov ecx, 0x3a
    xor edx, edx
    wrmsr
    ret
""")

# Firmware re-establishing VMX operation of a parked processor: lock feature
# control, VMXON [rdi] (lab region), VMPTRLD [rsi] (the processor's VMCS).
# rax = 0 on success, 1 if VMXON failed, 2 if VMPTRLD failed.
_FW_REESTABLISH = assemble("""
    mov ecx, 0x3a
    xor edx, edx
    wrmsr
    mov ecx, 0x480
    rdmsr
    mov [rbx], eax
    mov rax, cr4
    bts rax, 13
    mov cr4, rax
    push rdi
    vmxon [rsp]
    pop rdi
    mov eax, 1
    jbe 1f
    xor eax, eax
    cmp rsi, -1
    je 1f
    push rsi
    vmptrld [rsp]
    pop rsi
    mov eax, 2
    jbe 1f
    xor eax, eax
1:  ret
""")

# The idle loop a parked processor's guest runs: CPUID exits unconditionally
# in VMX non-root (SDM Vol.3 26.1.2), which brings the processor to VMX root.
_IDLE = assemble("""
    xor eax, eax
    xor ecx, ecx
    cpuid
    ret
""")

_VMPTRST = assemble("""
    sub rsp, 8
    vmptrst [rsp]
    pop rax
    ret
""")

_VMREAD = assemble("""
    xor eax, eax
    vmread rax, rcx
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
    cpuid
    mov r8, rbx
    pop rbx
    mov rbx, r8
    ret
""")
