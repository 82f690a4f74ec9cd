"""SDM 25.11.2: the VMCS component encoding, encode <-> decode."""
import pytest
from hypothesis import given, strategies as st

from windbg_ext.arch.encoding import ACCESS_NAMES, TYPE_NAMES, WIDTH_NAMES, decode_encoding, encode

parts = st.tuples(st.sampled_from(TYPE_NAMES), st.sampled_from(WIDTH_NAMES), st.integers(0, 511))


@given(parts, st.booleans())
def test_encode_decode_round_trip(p, high):
    ftype, width, index = p
    access = "high" if (high and width == "64") else "full"
    value = encode(access, index, ftype, width)
    d = decode_encoding(value)
    assert d.valid and not d.problems
    assert (d.access, d.index, d.type, d.width) == (access, index, ftype, width)
    assert value < 0x8000 and not value & (1 << 12)


@given(st.integers(0, 0xFFFFFFFF))
def test_decode_then_encode_gives_back_every_valid_value(value):
    d = decode_encoding(value)
    if d.valid:
        assert encode(d.access, d.index, d.type, d.width) == value
    else:
        reserved = value & 0xFFFF8000 or value & (1 << 12)
        bad_high = value & 1 and d.width != "64"
        assert reserved or bad_high
        assert d.problems


@given(st.integers(0, 0x7FFF).filter(lambda v: v & 1 and ((v >> 13) & 3) != 1 and not v & 0x1000))
def test_high_access_is_only_for_64_bit_fields(value):
    d = decode_encoding(value)
    assert not d.valid
    assert any("only for 64-bit" in p for p in d.problems)


def test_reserved_bits_are_named():
    assert "bit 12" in decode_encoding(0x1000).problems[0]
    assert "31:15" in decode_encoding(0x10000).problems[0]
    assert not decode_encoding(0x2001).problems  # 64-bit high access is fine


@pytest.mark.parametrize("args", [("high", 0, "guest", "natural"), ("full", 512, "guest", "16"),
                                  ("full", 0, "state", "16"), ("full", 0, "guest", "8"), ("both", 0, "guest", "16")])
def test_encode_rejects_what_the_sdm_forbids(args):
    with pytest.raises(ValueError):
        encode(*args)


def test_names_match_sdm_order():
    # 25.11.2: type 0 control, 1 VM-exit information, 2 guest state, 3 host state;
    # width 0 16-bit, 1 64-bit, 2 32-bit, 3 natural width
    assert TYPE_NAMES == ("control", "exit", "guest", "host")
    assert WIDTH_NAMES == ("16", "64", "32", "natural")
    assert ACCESS_NAMES == ("full", "high")
