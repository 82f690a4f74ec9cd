"""hv/processor.py: processor facts from the CPUID values a target recorded."""
from __future__ import annotations

from windbg_ext.hv.processor import linear_address_bits, maxphyaddr, sgx_supported
from windbg_ext.target.base import Target, TargetError


class Recorded(Target):
    """A target that recorded some CPUID leaves, per processor; processor 9 does not exist."""

    name = "recorded"

    def __init__(self, leaves):
        super().__init__()
        self.leaves = leaves
        self.asked = []

    def cpuid(self, leaf, subleaf=0, cpu=0):
        self.asked.append((leaf, subleaf, cpu))
        if cpu == 9:
            raise TargetError("processor 9 does not exist")
        return self.leaves.get((cpu, leaf))


def test_maxphyaddr_is_eax_bits_7_0_of_leaf_80000008():
    t = Recorded({(0, 0x80000008): (0x3027, 0, 0, 0), (1, 0x80000008): (0x30, 0, 0, 0)})
    assert maxphyaddr(t) == 39 and maxphyaddr(t, 1) == 48
    assert t.asked == [(0x80000008, 0, 0), (0x80000008, 0, 1)]


def test_maxphyaddr_outside_32_52_or_unknown_is_none():
    widths = {32: 32, 52: 52, 31: None, 53: None, 0: None}
    for eax, want in widths.items():
        assert maxphyaddr(Recorded({(0, 0x80000008): (eax, 0, 0, 0)})) == want, eax
    assert maxphyaddr(Recorded({})) is None
    assert maxphyaddr(Recorded({}), 9) is None


def test_sgx_is_leaf_7_ebx_bit_2():
    assert sgx_supported(Recorded({(0, 7): (0, 1 << 2, 0, 0)})) is True
    assert sgx_supported(Recorded({(0, 7): (0, ~(1 << 2) & 0xFFFFFFFF, 0, 0)})) is False
    assert sgx_supported(Recorded({(2, 7): (0, 4, 0, 0)}), 2) is True
    assert sgx_supported(Recorded({})) is None
    assert sgx_supported(Recorded({}), 9) is None
    t = Recorded({})
    sgx_supported(t, 3)
    assert t.asked == [(7, 0, 3)]


def test_linear_address_bits_is_eax_bits_15_8_of_leaf_80000008():
    # SDM Vol. 2A CPUID 80000008H: EAX[7:0] physical, EAX[15:8] linear address bits, EAX[23:16] guest
    # physical; the neighbours are set so that a field read one bit off or unmasked shows.
    t = Recorded({(0, 0x80000008): (0xFF30FF, 0, 0, 0), (1, 0x80000008): (0x3927, 0, 0, 0),
                  (2, 0x80000008): (0x4000, 0, 0, 0)})
    assert (linear_address_bits(t), linear_address_bits(t, 1), linear_address_bits(t, 2)) == (48, 57, 64)
    assert t.asked == [(0x80000008, 0, 0), (0x80000008, 0, 1), (0x80000008, 0, 2)]


def test_linear_address_bits_other_widths_or_unknown_are_none():
    for eax in (0x2F00, 0x3100, 0x3800, 0x3A00, 0x3F00, 0x4100, 0x0030, 0x3000 >> 1, 0):
        assert linear_address_bits(Recorded({(0, 0x80000008): (eax, 0, 0, 0)})) is None, hex(eax)
    assert linear_address_bits(Recorded({})) is None
    assert linear_address_bits(Recorded({}), 9) is None
