"""hv/regions.py's checks, exactly: every Check (region, name, verdict, detail, SDM section)
for hand-worked inputs. The details are what `vcpu` and `regions` show a user."""
from __future__ import annotations

import struct

from windbg_ext.hv.descriptor import LayoutEntry
from windbg_ext.hv.regions import (Check, Page, distinct_pages, msr_bitmap_checks, region_value, region_values,
                                   stack_high_water, verdict, vmx_region_checks)

BASIC = 0x00D8100000000004          # revision id 4, bit 55 (docs/lab.md)
BASIC_32BIT = BASIC | 1 << 48       # A.1: VMXON/VMCS/bitmap addresses limited to 32 bits


def test_verdict_words():
    assert [verdict(True), verdict(False), verdict(None)] == ["PASS", "FAIL", "n/a"]


def test_vmxon_region_all_good():
    assert vmx_region_checks("VMXON", 0x5000, struct.pack("<II", 4, 0), BASIC, 39) == [
        Check("VMXON", "allocated", True, "physical 0x5000", "25.11.5"),
        Check("VMXON", "4 KiB aligned", True, "0x5000 is page aligned", "25.11.5"),
        Check("VMXON", "within address width", True, "0x5000 vs 39 bits (MAXPHYADDR 39)", "A.1"),
        Check("VMXON", "revision id", True, "region 0x4, IA32_VMX_BASIC[30:0] 0x4", "25.11.5"),
        Check("VMXON", "bit 31 clear", True, "bit 31 of dword 0 is 0 (VMXON fails if set)", "31.3"),
    ]


def test_vmxon_region_every_failure():
    assert vmx_region_checks("VMXON", 0x80_0000_0010, struct.pack("<II", 0x80000005, 0), BASIC, 39) == [
        Check("VMXON", "allocated", True, "physical 0x8000000010", "25.11.5"),
        Check("VMXON", "4 KiB aligned", False, "0x8000000010 has low bits 0x10", "25.11.5"),
        Check("VMXON", "within address width", False, "0x8000000010 vs 39 bits (MAXPHYADDR 39)", "A.1"),
        Check("VMXON", "revision id", False, "region 0x5, IA32_VMX_BASIC[30:0] 0x4", "25.11.5"),
        Check("VMXON", "bit 31 clear", False, "bit 31 of dword 0 is 1 (VMXON fails if set)", "31.3"),
    ]


def test_vmcs_region_shadow_and_abort():
    good = vmx_region_checks("VMCS", 0x6000, struct.pack("<II", 4, 0), BASIC)
    assert good[2:] == [
        Check("VMCS", "within address width", True,
              "0x6000 vs 52 bits (MAXPHYADDR unknown: the architectural maximum)", "A.1"),
        Check("VMCS", "revision id", True, "region 0x4, IA32_VMX_BASIC[30:0] 0x4", "25.2"),
        Check("VMCS", "shadow-VMCS indicator", True, "bit 31 is 0: ordinary VMCS", "25.2"),
        Check("VMCS", "VMX-abort indicator", True, "0 (no VMX abort)", "28.7"),
    ]
    bad = vmx_region_checks("VMCS", 0x6000, struct.pack("<II", 0x80000004, 3), BASIC)
    assert bad[-2:] == [
        Check("VMCS", "shadow-VMCS indicator", False, "bit 31 is 1: a shadow VMCS cannot be launched", "25.2"),
        Check("VMCS", "VMX-abort indicator", False, "3: the current VMCS has been corrupted", "28.7"),
    ]
    assert vmx_region_checks("VMCS", 0x6000, struct.pack("<II", 4, 99), BASIC)[-1].detail == \
        "99: unknown abort code"


def test_unreadable_and_unallocated_regions():
    assert vmx_region_checks("VMCS", 0, None, BASIC, 39) == [
        Check("VMCS", "allocated", False, "physical 0x0", "25.2"),
        Check("VMCS", "4 KiB aligned", True, "0x0 is page aligned", "25.2"),
        Check("VMCS", "within address width", True, "0x0 vs 39 bits (MAXPHYADDR 39)", "A.1"),
        Check("VMCS", "readable", False, "the page at 0x0 is not in the target", "25.2"),
    ]
    short = vmx_region_checks("VMXON", 0x5000, b"\x04\x00\x00\x00\x00\x00\x00", BASIC, 39)   # 7 bytes
    assert short[-1] == Check("VMXON", "readable", False, "the page at 0x5000 is not in the target", "25.11.5")


def test_address_width_follows_basic_bit_48_then_maxphyaddr():
    at_4g = vmx_region_checks("VMXON", 1 << 32, None, BASIC_32BIT, 39)[2]
    assert at_4g == Check("VMXON", "within address width", False,
                          "0x100000000 vs 32 bits (IA32_VMX_BASIC[48]=1)", "A.1")
    below_4g = vmx_region_checks("VMXON", (1 << 32) - 0x1000, None, BASIC_32BIT, 39)[2]
    assert below_4g.ok is True
    assert vmx_region_checks("VMXON", 1 << 39, None, BASIC, 39)[2].ok is False
    assert vmx_region_checks("VMXON", (1 << 39) - 0x1000, None, BASIC, 39)[2].ok is True
    assert vmx_region_checks("VMXON", 1 << 51, None, BASIC, None)[2].ok is True
    assert vmx_region_checks("VMXON", 1 << 52, None, BASIC, None)[2].ok is False


def test_msr_bitmap_checks():
    page = bytearray(4096)
    page[0x174 // 8] |= 1 << (0x174 % 8)            # read-low: RDMSR 0x174 exits
    page[2048 + 0x80 // 8] |= 1 << (0x80 % 8)       # write-low: WRMSR 0x80 exits
    page[2048 + 1024 + 0x80 // 8] |= 1 << 0         # write-high: WRMSR 0xC0000080 exits
    checks = msr_bitmap_checks(0x7000, bytes(page), BASIC, 39, True)
    assert checks == [
        Check("MSR bitmap", "allocated", True, "physical 0x7000", "27.2.1.1"),
        Check("MSR bitmap", "4 KiB aligned", True, "0x7000 is page aligned", "27.2.1.1"),
        Check("MSR bitmap", "within address width", True, "0x7000 vs 39 bits (MAXPHYADDR 39)", "A.1"),
        Check("MSR bitmap", "content", None, "1 read / 2 write intercepts", "25.6.9"),
    ]
    off = msr_bitmap_checks(0x7000, bytes(page), BASIC, 39, False)[-1]
    assert off.detail == '1 read / 2 write intercepts ("use MSR bitmaps" is off: every RDMSR/WRMSR exits)'
    assert msr_bitmap_checks(0x7000, bytes(page), BASIC, 39, None)[-1].detail == "1 read / 2 write intercepts"
    assert msr_bitmap_checks(0x7008, None, BASIC, 39)[-1] == \
        Check("MSR bitmap", "readable", False, "the page at 0x7008 is not in the target", "25.6.9")


def test_distinct_pages_names_each_shared_page_once():
    pages = [Page("vCPU 0 VMXON", "VMXON", 0x5000), Page("vCPU 0 VMCS", "VMCS", 0x6000),
             Page("vCPU 1 VMXON", "VMXON", 0x5000), Page("vCPU 1 VMCS", "VMCS", 0x6010),
             Page("vCPU 1 MSR bitmap", "MSR bitmap", 0), Page("vCPU 2 MSR bitmap", "MSR bitmap", 0)]
    assert distinct_pages(pages) == [
        Check("VMXON", "distinct page", False, "vCPU 1 VMXON shares page 0x5000 with vCPU 0 VMXON", "31.3"),
        Check("VMCS", "distinct page", False, "vCPU 1 VMCS shares page 0x6000 with vCPU 0 VMCS", "31.3"),
    ]
    assert distinct_pages(pages[:2]) == []


def test_region_values_by_layout():
    page = bytearray(4096)
    page[0x10:0x18] = (0x1122334455667788).to_bytes(8, "little")
    page[0x20:0x24] = (0x0000A09B << 8 | 0x0000A09B >> 24).to_bytes(4, "little")   # stored rotated left by 8
    page[0x30:0x32] = (0x10).to_bytes(2, "little")
    page[0xFFE:0x1000] = b"\x01\x02"
    layout = [LayoutEntry(0x681E, 0x10, 8, 0x01), LayoutEntry(0x4816, 0x20, 4, 0x03),
              LayoutEntry(0x0802, 0x30, 2, 0x01), LayoutEntry(0x0804, 0x40, 2, 0x00),   # not found
              LayoutEntry(0x0806, 0x40, 3, 0x01),                                       # odd width
              LayoutEntry(0x6820, 0xFFE, 4, 0x01), LayoutEntry(0x0808, 0xFFE, 2, 0x01)]  # past / at the end
    assert region_values(bytes(page), layout) == {0x681E: 0x1122334455667788, 0x4816: 0xA09B, 0x0802: 0x10,
                                                   0x0808: 0x0201}
    assert region_value(bytes(page), LayoutEntry(0x4816, 0x20, 4, 0x01)) == 0x00A09B00 | 0  # not rotated back
    assert region_value(bytes(page), LayoutEntry(0x0800, 0x0, 1, 0x01)) == 0


def test_stack_high_water():
    pattern = 0x4856535441434B21
    fill = struct.pack("<Q", pattern)
    stack = bytearray(fill * 64)                    # 512 bytes, untouched
    assert stack_high_water(bytes(stack), pattern) == 16
    stack[512 - 40:512 - 32] = b"\x00" * 8          # something wrote 40 bytes below the top
    assert stack_high_water(bytes(stack), pattern) == 40
    stack[8:16] = b"\xff" * 8                       # nearly overflowed
    assert stack_high_water(bytes(stack), pattern) == 504
    stack[0:8] = b"\xff" * 8
    assert stack_high_water(bytes(stack), pattern) == 512
    assert stack_high_water(bytes(fill * 64), pattern, reserved_top=32) == 32


def test_abort_indicator_is_unsigned():
    detail = vmx_region_checks("VMCS", 0x6000, struct.pack("<II", 4, 0x80000001), BASIC)[-1].detail
    assert detail == "2147483649: unknown abort code"


def test_pages_are_compared_by_4k_frame():
    pages = [Page("vCPU 0 VMCS", "VMCS", 0x6000), Page("vCPU 1 VMCS", "VMCS", 0x6001)]
    assert [c.detail for c in distinct_pages(pages)] == ["vCPU 1 VMCS shares page 0x6000 with vCPU 0 VMCS"]


def test_rotated_fields_rotate_back_right_by_8():
    page = bytearray(4096)
    page[0x20:0x24] = (0x12345678).to_bytes(4, "little")
    assert region_value(bytes(page), LayoutEntry(0x4816, 0x20, 4, 0x03)) == 0x78123456


def test_stack_high_water_with_a_high_pattern_and_odd_sizes():
    pattern = 0xCCCCCCCCCCCCCCCC                  # bit 63 set: an unsigned qword
    fill = struct.pack("<Q", pattern)
    assert stack_high_water(fill * 64, pattern) == 16
    odd = fill * 60 + b"\x01" * 20                # 500 bytes: the top 20 never held the pattern
    assert stack_high_water(odd, pattern) == 16
    stack = bytearray(fill * 12)                  # 96 bytes, 80 usable
    stack[72:80] = b"\x00" * 8                    # the last usable qword was used
    assert stack_high_water(bytes(stack), pattern) == 24
