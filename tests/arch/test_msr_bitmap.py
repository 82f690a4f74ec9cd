"""SDM 25.6.9: the MSR bitmap, build <-> decode."""
import pytest
from hypothesis import given, strategies as st

from windbg_ext.arch import msr_bitmap as B
from windbg_ext.arch.msr_names import MSR_NAMES, msr_name

in_range = st.one_of(st.integers(0, 0x1FFF), st.integers(0xC0000000, 0xC0001FFF))
out_of_range = st.one_of(st.integers(0x2000, 0xBFFFFFFF), st.integers(0xC0002000, 0xFFFFFFFF))


@given(st.sets(in_range, max_size=64), st.sets(in_range, max_size=64))
def test_build_decode_round_trip(read, write):
    page = B.build_msr_bitmap(read=read, write=write)
    assert len(page) == 4096
    assert B.decode_msr_bitmap(page) == {"read": sorted(read), "write": sorted(write)}
    for msr in read | write:
        assert B.msr_exits(page, msr) == (msr in read, msr in write)


@given(st.dictionaries(st.integers(0, 4095), st.integers(1, 255), max_size=200), st.booleans())
def test_decode_build_round_trip(bytes_at, full):
    page = bytearray(b"\xff" * 4096 if full else bytes(4096))
    for offset, value in bytes_at.items():
        page[offset] = value
    page = bytes(page)
    d = B.decode_msr_bitmap(page)
    assert B.build_msr_bitmap(**d) == page


@given(in_range)
def test_layout_offsets(msr):
    page = B.build_msr_bitmap(read=[msr])
    high = msr >= 0xC0000000
    n = msr - (0xC0000000 if high else 0)
    assert page[(0x400 if high else 0) + n // 8] == 1 << (n % 8)
    page = B.build_msr_bitmap(write=[msr])
    assert page[(0xC00 if high else 0x800) + n // 8] == 1 << (n % 8)


@given(out_of_range)
def test_outside_both_ranges_always_exits(msr):
    assert B.msr_exits(bytes(4096), msr) == (True, True)
    with pytest.raises(ValueError, match="always exits"):
        B.build_msr_bitmap(read=[msr])


def test_all_zero_means_no_msr_exits_and_wrong_size_is_refused():
    assert B.decode_msr_bitmap(bytes(4096)) == {"read": [], "write": []}
    with pytest.raises(ValueError, match="4096"):
        B.decode_msr_bitmap(bytes(100))


def test_msr_names():
    assert MSR_NAMES[0xC0000080] == "IA32_EFER" and MSR_NAMES[0x3A] == "IA32_FEATURE_CONTROL"
    assert MSR_NAMES[0x480] == "IA32_VMX_BASIC" and msr_name(0x12345) == "MSR_0x12345"
    assert len(set(MSR_NAMES.values())) == len(MSR_NAMES)


def test_build_refuses_msrs_a_bitmap_cannot_select_in_one_line():
    with pytest.raises(ValueError) as e:
        B.build_msr_bitmap(write=[0x40000100])
    assert str(e.value) == ("MSR 0x40000100 is outside 0x0-0x1FFF and 0xC0000000-0xC0001FFF: it always exits, "
                            "a bitmap cannot select it")


def test_wrong_size_message():
    with pytest.raises(ValueError) as e:
        B.msr_exits(bytes(100), 0x10)
    assert str(e.value) == "an MSR bitmap is exactly 4096 bytes, got 100"
