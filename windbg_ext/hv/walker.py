"""Finds the driver's debug descriptor on a target and reads the driver's
structures through it, in as few target reads as the structures allow.

Round trips are the cost over KDNET, so each structure (or array of them) is
read whole, once: `vmm` on N vCPUs is 2 reads for the descriptor (header, then
its tables), 1 for the VMM context and 1 for the whole vCPU array.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from windbg_ext.hv import descriptor as hd
from windbg_ext.hv.descriptor import Descriptor, DescriptorError
from windbg_ext.hv.model import Record, Vcpu, Vmm, failure_snapshot, vcpus_from_array
from windbg_ext.hv.state_text import failure_summary
from windbg_ext.target.base import Target, TargetError, TargetMemoryError, TargetSymbolError

DESCRIPTOR_SYMBOL = "hv!HvDebugDescriptor"
SCAN_BLOCK = 1 << 20       # physical bytes per read while scanning for the magic
MAX_ARRAY_BYTES = 64 << 20  # a vCPU array larger than this is corruption


class HvError(TargetError):
    """The driver's state is unusable or absent; one line for the user."""


class HvWalker:
    def __init__(self, target: Target) -> None:
        self.target = target
        self._desc: Optional[Descriptor] = None
        self._vmm: Optional[Vmm] = None
        self._vcpus: Dict[int, Vcpu] = {}
        self.found_by = ""   # for people: "symbol hv!HvDebugDescriptor" or "scan (physical 0x...)"
        self.by_symbol = False  # True when found through DESCRIPTOR_SYMBOL (its pointers are virtual)

    # -- the descriptor -------------------------------------------------------
    def descriptor(self) -> Descriptor:
        if self._desc is None:
            try:
                va = self.target.symbol(DESCRIPTOR_SYMBOL)
            except TargetSymbolError:
                va = None
            if va is not None:
                self._desc = self._read_descriptor(va, virtual=True)
                self.found_by = "symbol %s" % DESCRIPTOR_SYMBOL
                self.by_symbol = True
            else:
                self._desc = self._scan()
        return self._desc

    def _read(self, address: int, size: int, virtual: bool) -> bytes:
        if virtual:
            return self.target.read_virtual(address, size)
        return self.target.read_physical(address, size)

    def _read_descriptor(self, address: int, virtual: bool, head: Optional[bytes] = None) -> Descriptor:
        where = "%s 0x%x" % ("virtual" if virtual else "physical", address)
        if head is None:
            try:
                head = self._read(address, hd.HEADER_SIZE, virtual)
            except TargetMemoryError as e:
                raise HvError("cannot read the hv debug descriptor at %s (%s): %s" % (where, DESCRIPTOR_SYMBOL, e))
        h = hd.parse_header(head, address)
        end = h["DescriptorSize"]  # header, both tables and the last-failure record, in one more read
        rest = b""
        if end > hd.HEADER_SIZE:
            try:
                rest = self._read(address + hd.HEADER_SIZE, end - hd.HEADER_SIZE, virtual)
            except TargetMemoryError as e:
                raise HvError("the hv debug descriptor at %s is cut short (its tables end at +0x%x): %s"
                              % (where, end, e))
        return hd.parse(head[:hd.HEADER_SIZE] + rest, address)

    def _scan(self) -> Descriptor:
        ranges = self.target.memory_ranges()
        if ranges is None:
            raise HvError("symbol %s not found and this target cannot list its physical memory to scan for "
                          "the descriptor: load hv.sys symbols (.reload hv.sys) and retry" % DESCRIPTOR_SYMBOL)
        hits: List[Tuple[int, bytes]] = []
        for start, length in ranges:
            off = 0
            while off < length:
                n = min(SCAN_BLOCK, length - off)
                block = self.target.read_physical(start + off, n)
                at = block.find(hd.MAGIC_BYTES)
                while at >= 0:
                    pa = start + off + at
                    if pa % 8 == 0:
                        head = block[at:at + hd.HEADER_SIZE]
                        if len(head) < hd.HEADER_SIZE:
                            try:
                                head = self.target.read_physical(pa, hd.HEADER_SIZE)
                            except TargetMemoryError:
                                head = b""
                        hits.append((pa, head))
                    at = block.find(hd.MAGIC_BYTES, at + 1)
                off += n
        if not hits:
            raise HvError("no hv debug descriptor in this target: symbol %s not found and no 'HVLABDBG' magic in "
                          "%d bytes of physical memory (was hv.sys loaded?)"
                          % (DESCRIPTOR_SYMBOL, sum(length for _, length in ranges)))
        problems = []
        loaded = []
        for pa, head in hits:
            try:
                h = hd.parse_header(head, pa)
            except DescriptorError as e:
                problems.append(str(e))
                continue
            if h["SelfVa"]:
                loaded.append((pa, head, h))
            else:
                problems.append("the copy at physical 0x%x has SelfVa 0 (hv.sys file image, never loaded)" % pa)
        if not loaded:
            raise HvError("found %d 'HVLABDBG' magic(s) but no loaded descriptor: %s"
                          % (len(hits), problems[0] if problems else "?"))
        # SelfVa pairs a physical hit with its virtual address: prefer the hit it maps to.
        for pa, head, h in loaded:
            try:
                if self.target.read_virtual(h["SelfVa"], hd.HEADER_SIZE) == head:  # type: ignore[arg-type]
                    self.found_by = "scan (physical 0x%x = virtual 0x%x)" % (pa, h["SelfVa"])
                    return self._read_descriptor(pa, virtual=False, head=head)
            except TargetError:
                continue
        pa, head, h = loaded[0]
        self.found_by = "scan (physical 0x%x; SelfVa 0x%x does not map to it)" % (pa, h["SelfVa"])
        return self._read_descriptor(pa, virtual=False, head=head)

    # -- the VMM context and the vCPUs ------------------------------------------
    def _require_loaded(self) -> Descriptor:
        d = self.descriptor()
        if not d.VmmContextVa or not d.VcpuArrayVa:
            # short: one line that fits the console, naming commands that work
            see = ", ".join(["vmm"] + failure_commands(d))
            raise HvError("hv.sys is not running (%s, load status 0x%08x): no vCPUs; see: %s"
                          % (d.driver_state, d.LoadStatus & 0xFFFFFFFF, see))
        for what, va in (("VmmContextVa", d.VmmContextVa), ("VcpuArrayVa", d.VcpuArrayVa)):
            if va % 8:
                raise HvError("hv debug descriptor's %s 0x%x is misaligned (structures are 8-byte aligned): corrupt"
                              % (what, va))
        if d.VcpuCount == 0:
            raise HvError("hv debug descriptor says VcpuCount 0 with a VMM context at 0x%x: corrupt descriptor"
                          % d.VmmContextVa)
        array = (d.VcpuArrayVa, d.VcpuArrayVa + d.VcpuCount * d.VcpuSize)
        vmm = (d.VmmContextVa, d.VmmContextVa + d.VmmContextSize)
        own = (d.address, d.address + d.DescriptorSize)
        if d.VcpuCount * d.VcpuSize > MAX_ARRAY_BYTES:
            raise HvError("hv debug descriptor's vCPU array (%d x %d bytes) is absurd: corrupt descriptor"
                          % (d.VcpuCount, d.VcpuSize))
        if _overlap(array, vmm) or (self.by_symbol and
                                    (_overlap(array, own) or _overlap(vmm, own))):
            raise HvError("hv debug descriptor's pointers overlap (VMM context 0x%x, vCPU array 0x%x, descriptor "
                          "0x%x): cyclic or corrupt" % (d.VmmContextVa, d.VcpuArrayVa, d.address))
        return d

    def vmm(self) -> Vmm:
        if self._vmm is None:
            d = self._require_loaded()
            layout = d.structs.get("VMM")
            if layout is None:
                raise DescriptorError("the driver's member table describes no VMM.* members")
            data = self._read_struct(d.VmmContextVa, d.VmmContextSize, "the VMM context (VmmContextVa)")
            self._vmm = Vmm(Record(layout, data, d.VmmContextVa))
            count = self._vmm.record.get("ProcessorCount")
            if count is not None and count != d.VcpuCount:
                raise HvError("VMM context at 0x%x says %d processors but the descriptor says %d vCPUs: corrupt or "
                              "torn state" % (d.VmmContextVa, count, d.VcpuCount))
            vcpus = self._vmm.record.get("Vcpus")
            if vcpus is not None and vcpus != d.VcpuArrayVa:
                raise HvError("VMM context at 0x%x points at vCPUs 0x%x but the descriptor at 0x%x: corrupt"
                              % (d.VmmContextVa, vcpus, d.VcpuArrayVa))
        return self._vmm

    def _read_struct(self, va: int, size: int, what: str) -> bytes:
        try:
            return self.target.read_virtual(va, size)
        except TargetMemoryError as e:
            raise HvError("cannot read %s at 0x%x (%d bytes): %s" % (what, va, size, e.why))

    def vcpu_count(self) -> int:
        return self._require_loaded().VcpuCount

    def vcpus(self) -> List[Vcpu]:
        """Every vCPU, in one read of the whole array."""
        d = self._require_loaded()
        missing = [i for i in range(d.VcpuCount) if i not in self._vcpus]
        if missing:
            data = self._read_struct(d.VcpuArrayVa, d.VcpuCount * d.VcpuSize,
                                     "the vCPU array (%d x %d bytes)" % (d.VcpuCount, d.VcpuSize))
            for v in vcpus_from_array(d, data, d.VcpuArrayVa):
                self._check_vcpu(v)
                self._vcpus[v.index] = v
        return [self._vcpus[i] for i in range(d.VcpuCount)]

    def vcpu(self, n: int) -> Vcpu:
        d = self._require_loaded()
        if not 0 <= n < d.VcpuCount:
            raise HvError("vCPU %d does not exist: hv.sys has %d (0-%d)" % (n, d.VcpuCount, d.VcpuCount - 1))
        if n not in self._vcpus:
            va = d.VcpuArrayVa + n * d.VcpuSize
            data = self._read_struct(va, d.VcpuSize, "vCPU %d" % n)
            v = vcpus_from_array(d, data, va, first=n)[0]
            if self.target.live and _torn(v):
                # a live system: the driver was writing the snapshot (odd sequence); one more read
                data = self._read_struct(va, d.VcpuSize, "vCPU %d" % n)
                v = vcpus_from_array(d, data, va, first=n)[0]
            self._check_vcpu(v)
            self._vcpus[n] = v
        return self._vcpus[n]

    def reload_vcpu(self, n: int) -> Vcpu:
        """vCPU n read again (e.g. after its snapshot was refreshed)."""
        self._vcpus.pop(n, None)
        return self.vcpu(n)

    def _check_vcpu(self, v: Vcpu) -> None:
        d = self.descriptor()
        rec = v.record
        index = rec.get("ProcessorIndex")
        if index is not None and index != v.index:
            raise HvError("vCPU %d at 0x%x says it is processor %d: the vCPU array is corrupt or VcpuSize is wrong"
                          % (v.index, v.address, index))
        back = rec.get("Vmm")
        if back is not None and back != d.VmmContextVa:
            raise HvError("vCPU %d at 0x%x points back at VMM context 0x%x, not 0x%x: corrupt"
                          % (v.index, v.address, back, d.VmmContextVa))

    def msr_bitmap_pa(self, n: int) -> int:
        """Physical address of vCPU n's MSR bitmap (for `msrbitmap <n>`)."""
        v = self.vcpu(n)
        if not v.MsrBitmapPa:
            raise HvError("vCPU %d has no MSR bitmap (MsrBitmapPa is 0; state: %s)" % (n, v.state))
        return v.MsrBitmapPa

    # -- regions ------------------------------------------------------------------
    def read_page(self, pa: int, what: str) -> bytes:
        try:
            return self.target.read_physical(pa & ~0xFFF, 0x1000)
        except TargetMemoryError as e:
            raise HvError("cannot read %s at physical 0x%x: %s" % (what, pa, e.why))

    def read_host_stack(self, v: Vcpu) -> bytes:
        base, size = v.host_stack()
        return self._read_struct(base, size, "vCPU %d's host stack" % v.index)


def _torn(v: Vcpu) -> bool:
    try:
        return v.snapshot().torn
    except DescriptorError:
        return False


def failure_commands(d: Descriptor) -> List[str]:
    """The commands that show more of the recorded failure, only ones that work: `vmcs N --source
    failure` and `verify N` need a VMCS that was current (fields recorded); a failure before any
    VMCS points at `check` (can these processors enter VMX operation at all?)."""
    summary = failure_summary(d)
    if summary is None:
        return []
    try:
        snap = failure_snapshot(d)
    except DescriptorError:
        snap = None
    if snap is not None and snap.count:
        return ["vmcs %d --source failure" % summary.processor, "verify %d" % summary.processor]
    return ["check"]


def _overlap(a: Tuple[int, int], b: Tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def walker_for(ctx) -> HvWalker:
    """One walker per command run (each !py call starts from nothing)."""
    w = getattr(ctx, "_hv_walker", None)
    if w is None or w.target is not ctx.target:
        w = HvWalker(ctx.target)
        try:
            ctx._hv_walker = w
        except AttributeError:
            pass
    return w
