"""IA32_DEBUGCTL (MSR 0x1D9), per processor, as hardware keeps it.

The Bochs CPU model drops writes to IA32_DEBUGCTL (RDMSR reads 0), so nothing a
VMM does to it -- or fails to do -- could be seen. The machine keeps the MSR
here instead (`Machine` calls in at its watched RDMSR/WRMSR and at VM exits and
entries) with what VMX does to it:
- VM exit: with the "save debug controls" exit control (bit 2) the MSR is saved
  into the guest IA32_DEBUGCTL field (SDM Vol.3 28.3.1); then it is cleared to 0
  whatever the controls (28.5.1: "IA32_DEBUGCTL MSR is cleared to 00000000H").
- VM entry: with the "load debug controls" entry control (bit 2) the MSR is
  loaded from the guest IA32_DEBUGCTL field (27.3.2.1); else it keeps its value.
- A sleep state comes back with it 0 (power-on value, Vol.4 Table 2-2).

The VMCS fields are read and written in the VMCS region's memory, at the offsets
the Bochs model uses for them (BOCHS_VMCS_OFFSETS: measured here and pinned by
tests/lab/test_machine.py), since a hook cannot execute VMREAD/VMWRITE.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from windbg_ext.arch.controls import CONTROL_BITS
from windbg_ext.arch.registers import bit_of
from windbg_ext.arch.vmcs_fields import by_name

IA32_DEBUGCTL = 0x1D9
# encodings (SDM Vol.3 App. B) and control bits (Tables 25-13, 25-15) from the suite's tables
VMCS_GUEST_IA32_DEBUGCTL, VMCS_EXIT_CONTROLS, VMCS_ENTRY_CONTROLS = (
    by_name(n).encoding for n in ("GUEST_IA32_DEBUGCTL", "VM_EXIT_CONTROLS", "VM_ENTRY_CONTROLS"))
SAVE_DEBUG_CONTROLS = 1 << bit_of(CONTROL_BITS["exit"], "SAVE_DEBUG_CONTROLS")
LOAD_DEBUG_CONTROLS = 1 << bit_of(CONTROL_BITS["entry"], "LOAD_DEBUG_CONTROLS")
# where bochscpu 0.3.1 keeps these fields in a VMCS region (bytes from its start)
BOCHS_VMCS_OFFSETS = {VMCS_GUEST_IA32_DEBUGCTL: 0x498, VMCS_EXIT_CONTROLS: 0x740, VMCS_ENTRY_CONTROLS: 0x758}


class DebugctlModel:
    def __init__(self, cpus: int) -> None:
        self.value: List[int] = [0] * cpus
        # an exit the lab induced (parking) is invisible: the next entry loads nothing
        self._invisible: List[bool] = [False] * cpus
        # the VMCS of the last VM entry, until what it loaded is worked out (at the next RDMSR, WRMSR or
        # exit on that processor: nothing in between can change the fields, so entries stay cheap)
        self._entered: List[int] = [0] * cpus
        # (field PA, value) to store once the exit completed; Machine._on_branch tests it at every branch
        self.save: Optional[Tuple[int, int]] = None

    def _field(self, m, vmcs_pa: int, encoding: int) -> int:
        v = m.read_phys_u64(vmcs_pa + BOCHS_VMCS_OFFSETS[encoding])    # each field has an 8-byte slot
        return v if encoding == VMCS_GUEST_IA32_DEBUGCTL else v & 0xFFFFFFFF

    def _resolve(self, m, k: int) -> None:
        vmcs_pa, self._entered[k] = self._entered[k], 0
        if vmcs_pa:
            field = self._field(m, vmcs_pa, VMCS_GUEST_IA32_DEBUGCTL)
            if (field or self.value[k]) and self._field(m, vmcs_pa, VMCS_ENTRY_CONTROLS) & LOAD_DEBUG_CONTROLS:
                self.value[k] = field

    def rdmsr(self, m, k: int) -> int:
        self._resolve(m, k)
        return self.value[k]

    def wrmsr(self, k: int, value: int) -> None:
        self._entered[k] = 0
        self.value[k] = value

    def vm_exit(self, m, k: int, vmcs_pa: int, reason: int, lab_induced: bool) -> None:
        """Before the CPU model's VM exit (its hook fires first)."""
        self._resolve(m, k)
        if not vmcs_pa or reason & 0x8000_0000:
            return      # a failed VM entry saves no guest state (SDM Vol.3 27.8)
        # a saved 0 is what the CPU model stores itself (it keeps no DEBUGCTL): nothing to read or write
        if self.value[k] and self._field(m, vmcs_pa, VMCS_EXIT_CONTROLS) & SAVE_DEBUG_CONTROLS:
            self.save = (vmcs_pa + BOCHS_VMCS_OFFSETS[VMCS_GUEST_IA32_DEBUGCTL], self.value[k])
        if lab_induced:
            self._invisible[k] = True     # on a real machine the guest kept running
        else:
            self.value[k] = 0

    def exit_completed(self, m) -> None:
        """At the first branch in VMX root: the CPU model has written its own (0) value."""
        pa, v = self.save
        self.save = None
        m.write_phys(pa, v.to_bytes(8, "little"))

    def vm_entered(self, k: int, vmcs_pa: Optional[int]) -> None:
        if self._invisible[k]:
            self._invisible[k] = False
        else:
            self._entered[k] = vmcs_pa or 0

    def reset(self) -> None:
        self.value = [0] * len(self.value)
        self._invisible = [False] * len(self.value)
        self._entered = [0] * len(self.value)
