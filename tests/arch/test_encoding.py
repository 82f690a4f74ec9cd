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


def test_decode_known_encodings_by_hand():
    """SDM App. B encodings split by hand (bit 0 access, 9:1 index, 11:10 type, 14:13 width)."""
    assert decode_encoding(0x681E) == ("full", 15, "guest", "natural", True, ())      # GUEST_RIP
    assert decode_encoding(0x2001) == ("high", 0, "control", "64", True, ())          # IO_BITMAP_A_HIGH
    assert decode_encoding(0x4402) == ("full", 1, "exit", "32", True, ())             # VM_EXIT_REASON
    assert decode_encoding(0x0C00) == ("full", 0, "host", "16", True, ())             # HOST_ES_SELECTOR
    assert decode_encoding(0x03FE) == ("full", 511, "control", "16", True, ())


def test_decode_problems_word_for_word():
    assert decode_encoding(0x1000).problems == ("reserved bit 12 is set",)
    assert decode_encoding(0x18000).problems == ("reserved bits 31:15 are not zero (0x18000)",)
    assert decode_encoding(0x4401).problems == ("high access (bit 0) is only for 64-bit fields, this is a 32-bit field",)
    assert decode_encoding(0x6801).problems == (
        "high access (bit 0) is only for 64-bit fields, this is a natural-width field",)
    assert decode_encoding(0x0001).problems == ("high access (bit 0) is only for 64-bit fields, this is a 16-bit field",)
    d = decode_encoding(0x1_0000_681E)
    assert d.problems == ("0x10000681e does not fit in 32 bits",) and d.index == 15 and not d.valid
    assert decode_encoding(-1).problems[0] == "-0x1 does not fit in 32 bits"
    assert decode_encoding(0xFFFF9001).problems == (
        "reserved bit 12 is set", "reserved bits 31:15 are not zero (0xffff8000)",
        "high access (bit 0) is only for 64-bit fields, this is a 16-bit field")


def test_encode_by_hand_and_its_refusals():
    assert encode("full", 15, "guest", "natural") == 0x681E
    assert encode("high", 0, "control", "64") == 0x2001
    assert encode("full", 511, "host", "32") == 0x4FFE
    for args, message in ((("half", 0, "guest", "16"), "access must be one of full, high"),
                          (("full", 0, "state", "16"), "type must be one of control, exit, guest, host"),
                          (("full", 0, "guest", "8"), "width must be one of 16, 64, 32, natural"),
                          (("full", 512, "guest", "16"), "index must be 0..511"),
                          (("full", -1, "guest", "16"), "index must be 0..511"),
                          (("high", 0, "guest", "32"), "high access exists only for 64-bit fields")):
        with pytest.raises(ValueError) as e:
            encode(*args)
        assert str(e.value) == message


def test_32_bit_boundary():
    assert "does not fit" not in " ".join(decode_encoding(0xFFFFFFFF).problems)
    assert decode_encoding(0x1_0000_0000).problems[0] == "0x100000000 does not fit in 32 bits"
