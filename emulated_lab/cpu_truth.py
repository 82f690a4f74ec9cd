"""Ground truth of what the emulated CPU did, per processor: the VMX state as
the CPU model holds it, observed at the instructions themselves, never taken
from the driver's own records (a driver that records a wrong address, or
forgets to leave VMX operation, is caught here).

Every `Machine` keeps one, up to date while code runs:

    t = machine.truth                 # CpuTruth
    p = t.processors[k]               # ProcessorTruth of processor k
    p.vmx          "off" | "root" | "guest" (VMX non-root)
    p.vmxon_pa     VMXON region of the current VMX operation (None when off)
    p.vmcs_pa      the current-VMCS pointer (None when no VMCS is current)
    p.cr4_vmxe     CR4.VMXE of the processor (the register, not a guest's read shadow)
    p.vmxon_used   every PA a successful VMXON used, in order
    p.vmptrld_used every PA a successful VMPTRLD made current, in order
    p.launched     VMCS PAs launched (VMLAUNCH) and not VMCLEARed since
    p.vmx_lost     times the processor lost VMX operation without VMXOFF (power)
    t.as_dict()    all of it, JSON-ready (addresses as "0x..." strings)

How it is observed (emulated_lab/insn.py decodes the instructions): before
VMXON/VMPTRLD/VMCLEAR executes, its m64 operand and the revision identifier
in the region it names are read; when it completes (no exit, no fault),
whether the CPU took it follows the instruction's checks (SDM Vol.3 31.3:
4-KiB alignment, revision identifier = IA32_VMX_BASIC[30:0], VMPTRLD/VMCLEAR
not on the VMXON region, VMXON only outside VMX operation). The result flags
are not used: the Bochs model keeps arithmetic flags lazily and the value
its hooks read is stale. VMLAUNCH/VMRESUME that do not fall through enter
VMX non-root; a VM exit returns to root. VMX instructions executed in VMX
non-root cause VM exits (SDM Vol.3 26.1.2) and change nothing here. The lab's
own steps (the VM exit that parks a processor, re-establishing it in a new
emulator Session) are not observed: on a real machine the processor never left.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

CR4_VMXE = 1 << 13


def _hex(v: Optional[int]) -> Optional[str]:
    return None if v is None else "0x%x" % v


class ProcessorTruth:
    def __init__(self, index: int, read_cr4: Callable[[int], int]) -> None:
        self.index = index
        self.vmx = "off"
        self.vmxon_pa: Optional[int] = None
        self.vmcs_pa: Optional[int] = None
        self.vmxon_used: List[int] = []
        self.vmptrld_used: List[int] = []
        self.launched: List[int] = []
        self.vmx_lost = 0
        self._read_cr4 = read_cr4

    @property
    def cr4(self) -> int:
        return self._read_cr4(self.index)

    @property
    def cr4_vmxe(self) -> bool:
        return bool(self.cr4 & CR4_VMXE)

    def as_dict(self) -> Dict[str, object]:
        return {"index": self.index, "vmx": self.vmx, "vmxon_pa": _hex(self.vmxon_pa),
                "vmcs_pa": _hex(self.vmcs_pa), "cr4_vmxe": self.cr4_vmxe,
                "vmxon_used": [_hex(a) for a in self.vmxon_used],
                "vmptrld_used": [_hex(a) for a in self.vmptrld_used],
                "launched": [_hex(a) for a in self.launched], "vmx_lost": self.vmx_lost}


class CpuTruth:
    def __init__(self, cpus: int, read_cr4: Callable[[int], int], revision: Callable[[], int]) -> None:
        self.processors = [ProcessorTruth(i, read_cr4) for i in range(cpus)]
        self._revision = revision

    def as_dict(self) -> Dict[str, object]:
        return {"processors": [p.as_dict() for p in self.processors]}

    # -- what the machine reports (emulated_lab/machine.py) -------------------
    def _region_ok(self, pa: Optional[int], revision: Optional[int]) -> bool:
        """SDM Vol.3 31.3 VMXON/VMPTRLD: 4-KiB aligned, revision identifier matches."""
        return pa is not None and not pa & 0xFFF and revision is not None \
            and revision & 0x7FFF_FFFF == self._revision()

    def executed(self, k: int, kind: str, operand_pa: Optional[int], revision: Optional[int]) -> None:
        """Instruction `kind` completed on processor k (it did not exit or fault);
        operand_pa: its m64 operand, revision: the first dword of that region."""
        p = self.processors[k]
        if kind == "vmxon":
            ok = p.vmx == "off" and self._region_ok(operand_pa, revision)
        elif kind == "vmptrld":
            ok = self._region_ok(operand_pa, revision) and operand_pa != p.vmxon_pa
        elif kind == "vmclear":
            ok = operand_pa is not None and not operand_pa & 0xFFF and operand_pa != p.vmxon_pa
        else:
            ok = p.vmx != "off"
        if kind == "vmxon" and ok:
            p.vmx, p.vmxon_pa, p.vmcs_pa = "root", operand_pa, None
            p.vmxon_used.append(operand_pa)
        elif kind == "vmptrld" and ok:
            p.vmcs_pa = operand_pa
            p.vmptrld_used.append(operand_pa)
        elif kind == "vmclear" and ok:
            if p.vmcs_pa == operand_pa:
                p.vmcs_pa = None
            if operand_pa in p.launched:
                p.launched.remove(operand_pa)
        elif kind == "vmxoff" and ok:
            p.vmx, p.vmxon_pa, p.vmcs_pa = "off", None, None

    def entered_guest(self, k: int, kind: str) -> None:
        """VMLAUNCH/VMRESUME succeeded: processor k runs in VMX non-root."""
        p = self.processors[k]
        p.vmx = "guest"
        if kind == "vmlaunch" and p.vmcs_pa is not None and p.vmcs_pa not in p.launched:
            p.launched.append(p.vmcs_pa)

    def vm_exit(self, k: int) -> None:
        self.processors[k].vmx = "root"

    def lost_vmx(self, k: int) -> None:
        """Processor k lost VMX operation as a real one does across a sleep state:
        no VMXOFF, no VMCLEAR (SDM Vol.3 25.11.1: VMCS data cached on the
        processor may be lost)."""
        p = self.processors[k]
        if p.vmx != "off":
            p.vmx_lost += 1
        p.vmx, p.vmxon_pa, p.vmcs_pa = "off", None, None
        p.launched = []
