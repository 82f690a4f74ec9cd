"""A minimal NT kernel personality: what a VT-x driver imports from
ntoskrnl, implemented in Python over the emulated machine.

Each import is bound to its own stub address in the emulated "nt" module (a
`hlt` byte as tripwire). The machine's ucnear_branch hook recognises a call
or jump to a stub, the handler below services it (arguments per the MS x64
ABI), sets RAX, pops the return address and continues. Services that must
switch processors (affinity, IPI/DPC broadcast) are finished outside the
emulator run, because a Session cannot be swapped inside a hook.

Importing a function this module does not implement fails at load, by name.
"""
from __future__ import annotations

import struct
from typing import Callable, Dict, List, Optional

from emulated_lab.machine import DIRECT_MAP, NT_BASE, PAGE, Machine, MachineError
from emulated_lab.nt.allocation import Allocation
from emulated_lab.nt.callbacks import Callbacks, notify
from emulated_lab.nt.pe_loader import LoadError, LoadedImage, load_pe
from emulated_lab.nt.printf import format_message
from emulated_lab.nt import print_filter
from emulated_lab.nt.services import SERVICES, STATUS_SUCCESS
from emulated_lab.records import BoundedLog

STUB_AREA = NT_BASE + 0x1000          # 16 bytes per stub
DATA_AREA = NT_BASE + 0x20000         # nt's global variables (Kd_*_Mask)
KD_MASKS = ("WIN2000", "DEFAULT", "IHVDRIVER")
KD_MASK_DEFAULTS = {"WIN2000": 1, "DEFAULT": 0, "IHVDRIVER": 0}   # a stock Windows install


class BugCheck(MachineError):
    def __init__(self, code: int, params: List[int], cpu: int):
        super().__init__("KeBugCheckEx(0x%x, %s) on processor %d" % (code, ", ".join("0x%x" % p for p in params), cpu))
        self.code, self.params, self.cpu = code, params, cpu


class DbgMessage:
    __slots__ = ("cpu", "component", "level", "text", "shown")

    def __init__(self, cpu: int, component: int, level: int, text: str, shown: bool) -> None:
        self.cpu, self.component, self.level, self.text, self.shown = cpu, component, level, text, shown

    def __repr__(self) -> str:
        return "DbgMessage(cpu=%d, %s%r)" % (self.cpu, "" if self.shown else "filtered ", self.text)


class Call:
    """Arguments of one stub call (MS x64 ABI) and how to finish it."""

    def __init__(self, kernel: "NtKernel") -> None:
        self.k = kernel
        c = kernel.m.sess.cpu
        self.rsp = c.rsp
        self._regs = (c.rcx, c.rdx, c.r8, c.r9)
        self.then: Optional[Callable[[], None]] = None   # work to do outside the emulator run
        self.returns = True    # False: the service set every register itself (RtlRestoreContext)

    def arg(self, i: int) -> int:
        if i < 4:
            return self._regs[i]
        return self.k.m.read_u64(self.rsp + 0x28 + 8 * (i - 4))


class NtKernel:
    def __init__(self, machine: Machine, fail_allocation: int = 0,
                 kd_masks: Optional[Dict[str, int]] = None, nodes: int = 1) -> None:
        if not 1 <= nodes <= len(machine.processors):
            raise MachineError("%d NUMA nodes cannot be made of %d processors (1..%d nodes)"
                               % (nodes, len(machine.processors), len(machine.processors)))
        self.m = machine
        self.nodes = nodes    # NUMA nodes: processors split in order, each node with its own memory
        self.fail_allocation = fail_allocation      # 1-based index of the allocation to fail; 0 = none
        self.allocation_calls = 0
        self.failed_allocations: List[int] = []
        self.live: Dict[int, Allocation] = {}
        self.freed: List[Allocation] = []
        # DbgPrint output: the first and last ones (a driver may print in an endless loop)
        self.messages: BoundedLog[DbgMessage] = BoundedLog(keep=512)
        self.calls: Dict[str, int] = {}
        self.bugcheck: Optional[BugCheck] = None
        self.symbols: Dict[str, int] = {}
        self._stubs: Dict[str, int] = {}
        self._by_va: Dict[int, str] = {}
        self._impl = dict(SERVICES)      # name -> service(kernel, call); tests may remove one
        self.thread_cpu = 0
        self.affinity = (1 << len(machine.processors)) - 1
        self.dpc_done = 0
        self.images: List[LoadedImage] = []
        self.last_service = ""                     # the most recent service a driver called
        self.mapping_cursor = 0                    # next free offset in nt/mappings.MAPPING_AREA
        self.dpc_targets: Dict[int, int] = {}      # KDPC address -> target processor (nt/dpc.py)
        machine.locate = self.locate
        # the nt "module": stub pages (hlt) and a data page
        stub_pa = machine.alloc_phys(8)
        machine.write_phys(stub_pa, b"\xF4" * (8 * PAGE))
        machine.map(STUB_AREA, stub_pa, 8 * PAGE)
        data_pa = machine.alloc_phys(1)
        machine.map(DATA_AREA, data_pa, PAGE, executable=False)
        masks = dict(KD_MASK_DEFAULTS)
        masks.update(kd_masks or {})
        for i, name in enumerate(KD_MASKS):
            va = DATA_AREA + 4 * i
            self.symbols["nt!Kd_%s_Mask" % name] = va
            machine.write_virt(va, struct.pack("<I", masks[name] & 0xFFFFFFFF))
        self.module = ("nt", NT_BASE, 0x21000)
        stack_pa = machine.alloc_phys(16)
        self.thread_stack_top = DIRECT_MAP + stack_pa + 16 * PAGE - 0x100
        self.callbacks = Callbacks(self)     # \Callback\PowerState & co. (emulated_lab/nt/callbacks.py)

    # -- loading ------------------------------------------------------------
    def _bind(self, dll: str, name: str) -> int:
        if dll not in ("ntoskrnl.exe", "hal.dll"):
            raise LoadError("imports from %s are not provided by the emulated kernel (%s!%s)" % (dll, dll, name))
        if name not in self._impl:
            self._missing.append(name)
            return 0
        return self.stub(name)

    def stub(self, name: str) -> int:
        va = self._stubs.get(name)
        if va is None:
            va = STUB_AREA + 16 * len(self._stubs)
            self._stubs[name] = va
            self._by_va[va] = name
            self.m.breakpoints[va] = self._dispatch
            self.symbols["nt!" + name] = va
        return va

    def load_driver(self, path: str, base: int) -> LoadedImage:
        self._missing: List[str] = []
        img = load_pe(path, self.m, base, self._bind)
        if self._missing:
            raise LoadError("%s imports %s, which the emulated kernel does not implement"
                            % (path, ", ".join(sorted(set(self._missing)))))
        self.images.append(img)
        return img

    # -- dispatch -----------------------------------------------------------
    def locate(self, va: int) -> str:
        """Where a code address is: "<driver>+0x<offset>" or "nt!<service>" ("" if neither)."""
        for img in self.images:
            if img.base <= va < img.base + img.size:
                return "%s+0x%x" % (img.name, va - img.base)
        name = self._by_va.get(va & ~0xF)
        return "nt!" + name if name else ""

    def _dispatch(self, va: int) -> None:
        name = self._by_va[va]
        self.calls[name] = self.calls.get(name, 0) + 1
        self.last_service = name
        call = Call(self)
        result = self._impl[name](self, call)
        c = self.m.sess.cpu
        if call.returns:
            c.rax = (result or 0) & 0xFFFF_FFFF_FFFF_FFFF
            ret = self.m.read_u64(call.rsp)
            c.rip = ret
            c.rsp = call.rsp + 8
        else:
            ret = c.rip
        del c
        if call.then is not None:
            self.m.request(call.then)
        else:
            # a tail call (jmp to the stub) returns straight to a breakpoint such as
            # the sentinel: no branch will be seen, so hand it over now
            bp = self.m.breakpoints.get(ret)
            if bp is not None:
                bp(ret)

    @property
    def cpu(self) -> int:
        return self.m.current if self.m.current is not None else -1

    # -- NUMA topology --------------------------------------------------------
    def node_of(self, cpu: int) -> int:
        """The NUMA node of a processor: processors are split into nodes in order."""
        return cpu * self.nodes // len(self.m.processors)

    def node_processors(self, node: int) -> List[int]:
        return [k for k in range(len(self.m.processors)) if self.node_of(k) == node]

    def nodes_from(self, preferred: int) -> List[int]:
        """Nodes to allocate from: the preferred one first, then the others in order."""
        return [preferred] + [n for n in range(self.nodes) if n != preferred]

    # -- memory -------------------------------------------------------------
    def _place(self, npages: int, nodes: List[int], lowest: int, highest: int, boundary: int):
        """(pa, node) for npages contiguous pages in the first of `nodes` that can hold
        them in [lowest, highest] without crossing a multiple of `boundary`; or None."""
        size = npages * PAGE
        if boundary and size > boundary:
            return None
        for node in nodes:
            pa = self.m.next_phys(npages, 1, node, lowest)
            if pa is not None and boundary and pa // boundary != (pa + size - 1) // boundary:
                pa = self.m.next_phys(npages, 1, node, (pa // boundary + 1) * boundary)
            if pa is not None and pa + size - 1 <= highest:
                return pa, node
        return None

    def _allocate(self, size: int, kind: str, tag: int = 0, zero: bool = True, nodes: Optional[List[int]] = None,
                  lowest: int = 0, highest: int = (1 << 64) - 1, boundary: int = 0) -> int:
        """A nonpaged allocation (pool or contiguous), in the first of `nodes` (default:
        the current processor's node, then the others) that satisfies the physical
        address constraints; 0 when none can, or when this is the allocation to fail."""
        self.allocation_calls += 1
        if self.fail_allocation and self.allocation_calls == self.fail_allocation:
            self.failed_allocations.append(self.allocation_calls)
            return 0
        if size == 0 or size > 64 * 1024 * 1024:
            return 0
        npages = (size + PAGE - 1) // PAGE
        if nodes is None:
            nodes = self.nodes_from(self.node_of(max(self.cpu, 0)))
        place = self._place(npages, nodes, lowest, highest, boundary)
        if place is None:
            return 0
        pa = self.m.alloc_phys(npages, 1, place[1], place[0])
        va = DIRECT_MAP + pa
        if not zero:
            self.m.write_phys(pa, b"\xCD" * (npages * PAGE))   # uninitialised pool is not zero
        self.live[va] = Allocation(va, pa, size, kind, tag, npages, place[1])
        return va

    def _free(self, va: int, kind: str, what: str) -> int:
        a = self.live.pop(va, None)
        if a is None or a.kind != kind:
            if a is not None:
                self.live[va] = a
            # BAD_POOL_CALLER (0xC2) / freeing what was never allocated
            raise self._bugcheck(0xC2, [0x7, 0, va, 0], "%s(0x%x): not a live %s allocation" % (what, va, kind))
        self.freed.append(a)
        self.m.unmap(a.va, a.npages * PAGE)   # a use after free faults
        return 0

    def _bugcheck(self, code: int, params: List[int], why: str = "") -> BugCheck:
        b = BugCheck(code, params, self.cpu)
        if why:
            b.args = (str(b) + ": " + why,)
        self.bugcheck = b
        return b

    def read_cstring(self, va: int, limit: int = 4096) -> str:
        out = bytearray()
        while len(out) < limit:
            chunk = self.m.read_virt(va + len(out), min(64, PAGE - ((va + len(out)) & 0xFFF)))
            z = chunk.find(b"\0")
            if z >= 0:
                out += chunk[:z]
                break
            out += chunk
        return out.decode("latin-1")

    def read_wstring(self, va: int, limit: int = 4096) -> str:
        out = []
        while len(out) < limit:
            ch = struct.unpack("<H", self.m.read_virt(va + 2 * len(out), 2))[0]
            if ch == 0:
                break
            out.append(chr(ch))
        return "".join(out)

    def read_unicode_string(self, va: int) -> str:
        length, _max, buf = struct.unpack("<HHxxxxQ", self.m.read_virt(va, 16))
        return self.m.read_virt(buf, length).decode("utf-16-le", "replace") if buf else ""

    def kd_mask(self, name: str) -> int:
        return struct.unpack("<I", self.m.read_virt(self.symbols["nt!Kd_%s_Mask" % name], 4))[0]

    def _print(self, component: int, level: int, fmt_va: int, next_arg: Callable[[], int]) -> int:
        fmt = self.read_cstring(fmt_va)
        text = format_message(fmt, next_arg, self.read_cstring, self.read_wstring, self.read_unicode_string)
        shown = print_filter.shown(component, level, self.kd_mask)
        self.messages.append(DbgMessage(self.cpu, component, level, text, shown))
        return STATUS_SUCCESS

    # -- processors ---------------------------------------------------------
    def _move_thread(self, call: Call, k: int) -> None:
        """The calling thread continues on processor k (after the stub returns)."""
        if k == self.m.current:
            return

        def move() -> None:
            regs = self.m.thread_regs()
            self.m.switch_to(k)
            self.m.set_thread_regs(regs)
            self.thread_cpu = k
        call.then = move

    def _broadcast(self, call: Call, routine: int, make_args: Callable[[int], tuple], result_from_caller: bool,
                   caller_last: bool = False, only: Optional[List[int]] = None):
        """Runs `routine` on every processor (or those in `only`), one after another
        (in index order; with caller_last, the calling processor after all others),
        then resumes the calling thread on its own processor, with RAX = the
        caller's result when result_from_caller."""
        me = self.m.current
        order = list(range(len(self.m.processors))) if only is None else list(only)
        if caller_last:
            order = [k for k in order if k != me] + [me]

        def run_all() -> None:
            regs = self.m.thread_regs()
            results = {}
            for k in order:
                r = self.m.run(k, routine, args=make_args(k))
                if r.stop != "return":
                    raise MachineError("per-processor routine 0x%x on processor %d stopped: %s"
                                       % (routine, k, r.fault or r.stop))
                results[k] = r.regs["rax"]
            self.m.switch_to(me)
            if result_from_caller:
                regs["rax"] = results[me]
            self.m.set_thread_regs(regs)
        call.then = run_all

    def _processor_number(self, ptr: int, index: int) -> None:
        if ptr:
            self.m.write_virt(ptr, struct.pack("<HBB", 0, index, 0))   # PROCESSOR_NUMBER

    # -- driver lifecycle helpers ---------------------------------------------
    def make_driver_object(self, image: LoadedImage) -> int:
        """A DRIVER_OBJECT (x64 layout: DriverStart +0x18, DriverSize +0x20,
        DriverName +0x38, DriverInit +0x58, DriverUnload +0x68) and its name."""
        va, _ = self.m.alloc_page()
        name = ("\\Driver\\" + image.name).encode("utf-16-le")
        reg = ("\\Registry\\Machine\\System\\CurrentControlSet\\Services\\" + image.name).encode("utf-16-le")
        self.m.write_virt(va + 0x800, name + b"\0\0")
        self.m.write_virt(va + 0xA00, reg + b"\0\0")
        self.m.write_virt(va, struct.pack("<HH", 4, 0x150))
        self.m.write_u64(va + 0x18, image.base)
        self.m.write_virt(va + 0x20, struct.pack("<I", image.size))
        self.m.write_virt(va + 0x38, struct.pack("<HHxxxxQ", len(name), len(name) + 2, va + 0x800))
        self.m.write_u64(va + 0x58, image.entry)
        self.m.write_virt(va + 0x100, struct.pack("<HHxxxxQ", len(reg), len(reg) + 2, va + 0xA00))
        self.registry_path = va + 0x100
        return va

    def driver_unload_routine(self, driver_object: int) -> int:
        return self.m.read_u64(driver_object + 0x68)

    def call_on_thread(self, va: int, args: tuple):
        """Calls driver code on the system thread (its own stack), on the processor
        the thread is on; returns the machine's RunResult."""
        return self.m.run(self.thread_cpu, va, args=args, stack_top=self.thread_stack_top)

    def leaks(self) -> List[Allocation]:
        return sorted(self.live.values(), key=lambda a: a.va)

    def held_objects(self) -> List[str]:
        """Kernel objects drivers still hold: callback registrations, references."""
        return self.callbacks.held()

    def notify_callback(self, name: str, argument1: int, argument2: int) -> List[int]:
        """ExNotifyCallback by the kernel itself (e.g. the power manager): runs each
        routine registered on callback object `name`; returns the routines run."""
        return notify(self, name, argument1, argument2)
