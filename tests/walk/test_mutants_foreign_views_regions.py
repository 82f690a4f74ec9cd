"""hv/foreign_views.py: what the region checks take from the target besides the pages (MAXPHYADDR from
CPUID), how much of each page they read, and the default of region_consistency (issue 16: kills the
survivors of the first mutation run of foreign_views). Values worked out by hand from the hand-made driver
(tests/walk/handmade.py) and SDM 4.1.4 (CPUID.80000008H:EAX[7:0] is MAXPHYADDR) and Appendix A.1."""
from __future__ import annotations

import struct

from windbg_ext.hv import foreign_views as views
from windbg_ext.hv.foreign import ForeignWalker
from windbg_ext.hv.rolemap import BUILTIN_MAPS, resolve

from .handmade import BASE, Memory, sevendays_memory, table

IA32_VMX_BASIC = 0x480                    # SDM Appendix A.1
HIGH = 1 << 36                            # the first physical address a 36-bit processor cannot reach
VMXON_PA, VMCS_PA, BITMAP_PA = HIGH + 0x5000, HIGH + 0x6000, HIGH + 0x7000
STACK = 0xFFFFA00000100000


class Cpu36(Memory):
    """A target that recorded CPUID.80000008H: EAX = 0x3024, MAXPHYADDR 36 (bits 7:0), 48 linear bits."""

    def cpuid(self, leaf, subleaf=0, cpu=0):
        return (0x3024, 0, 0, 0) if (leaf, subleaf, cpu) == (0x80000008, 0, 0) else None


class Logged(Memory):
    """Remembers each physical read (address, size)."""

    def _read_physical(self, address, size):
        self.log = getattr(self, "log", []) + [(address, size)]
        return super()._read_physical(address, size)


def walker(vcpu, target_class=Memory):
    t = table()
    mem, _ = sevendays_memory([vcpu])
    mem.__class__ = target_class
    return ForeignWalker(mem, t, resolve(BUILTIN_MAPS["7days"], t, "7days"), BASE, "--module-base"), mem


def region_page(dword0):
    return struct.pack("<II", dword0, 0) + bytes(0x1000 - 8)


def test_region_checks_use_the_targets_maxphyaddr():
    w, mem = walker({"vmxon_physical": VMXON_PA, "vmcs_physical": VMCS_PA, "msr_bitmap_physical": BITMAP_PA},
                    Cpu36)
    mem.physical = {VMXON_PA: region_page(4), VMCS_PA: region_page(4), BITMAP_PA: bytes(0x1000)}
    mem.msrs = {IA32_VMX_BASIC: 4}                    # bit 48 clear: the width is MAXPHYADDR (A.1)
    checks, _, _ = views.region_checks(mem, w.vcpu(0))
    width = [(c.region, c.ok, c.detail) for c in checks if c.name == "within address width"]
    # each page lies at 2^36 + something: beyond 36 bits
    assert width == [("VMXON", False, "0x1000005000 vs 36 bits (MAXPHYADDR 36)"),
                     ("VMCS", False, "0x1000006000 vs 36 bits (MAXPHYADDR 36)"),
                     ("MSR bitmap", False, "0x1000007000 vs 36 bits (MAXPHYADDR 36)")]


def test_region_checks_read_only_the_eight_bytes_they_check():
    # a target holding just the first 8 bytes of the VMXON and VMCS regions: enough for every check (25.2)
    w, mem = walker({"vmxon_physical": 0x5000, "vmcs_physical": 0x6000})
    mem.physical = {0x5000: struct.pack("<II", 4, 0), 0x6000: struct.pack("<II", 4, 0)}
    mem.msrs = {IA32_VMX_BASIC: 4}
    checks, _, _ = views.region_checks(mem, w.vcpu(0))
    ok = {(c.region, c.name): c.ok for c in checks}
    assert ok[("VMXON", "revision id")] is True and ok[("VMCS", "revision id")] is True
    assert ("VMXON", "readable") not in ok and ("VMCS", "readable") not in ok


def test_an_unaligned_msr_bitmap_is_not_read():
    # 0x7010 is not a page (25.6.9): the page is not read even where 4 KiB from there are readable
    w, mem = walker({"vmxon_physical": 0x5000, "vmcs_physical": 0x6000, "msr_bitmap_physical": 0x7010}, Logged)
    mem.physical = {0x5000: region_page(4), 0x6000: region_page(4), 0x7000: bytes(0x2000)}
    mem.msrs = {IA32_VMX_BASIC: 4}
    checks, _, _ = views.region_checks(mem, w.vcpu(0))
    bitmap = [(c.name, c.ok) for c in checks if c.region == "MSR bitmap"]
    assert bitmap == [("allocated", True), ("4 KiB aligned", False), ("within address width", True),
                      ("readable", False)]
    assert mem.log == [(0x5000, 8), (0x6000, 8)]          # the VMXON and VMCS heads, no bitmap page


def test_region_consistency_is_not_live_by_default():
    # a dump's VMCS page in use (link ~0, host CR4.VMXE, host CR3 aligned): decided, not "stale"
    w, _ = walker({"msr_bitmap_physical": 0x7000, "stack": STACK})
    values = {0x2800: 0xFFFFFFFFFFFFFFFF, 0x6C04: 0x2000, 0x6C02: 0x1AD000, 0x2004: 0x7000, 0x6C14: STACK + 8}
    assert [(c.region, c.ok) for c in views.region_consistency(w.vcpu(0), values)] == [("MSR bitmap", True),
                                                                                     ("host stack", True)]


class TwoCpus(Memory):
    """IA32_VMX_BASIC differs by processor (revision id 4 on processor 0, 5 on processor 1)."""

    def _read_msr(self, msr, cpu):
        return {(IA32_VMX_BASIC, 0): 4, (IA32_VMX_BASIC, 1): 5}[(msr, cpu)]


def test_basic_is_processor_0s():
    assert views._basic(TwoCpus(), None) == (4, "IA32_VMX_BASIC of processor 0")
