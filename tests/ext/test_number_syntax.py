"""windbg_ext/number_syntax.py: one parser, WinDbg's syntax, one rule per kind of argument."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from windbg_ext.number_syntax import NumberError, parse_number, parse_with_other, reading_note

values = st.integers(min_value=0, max_value=(1 << 64) - 1)


@given(values, st.sampled_from(["hex", "decimal", "reason"]))
def test_explicit_forms_mean_the_same_for_every_kind(v, kind):
    for text in ("0x%x" % v, "0X%X" % v, "%xh" % v, "0n%d" % v):
        assert parse_number(text, kind) == v
    high, low = v >> 32, v & 0xFFFFFFFF
    assert parse_number("%08x`%08x" % (high, low), kind) == v  # WinDbg's 64-bit display


@given(values)
def test_bare_numbers_follow_their_kind(v):
    assert parse_number("%x" % v, "hex") == v
    assert parse_number("%d" % v, "decimal") == v
    assert parse_number("%08x" % (v & 0xFFFFFFFF), "reason") == v & 0xFFFFFFFF  # 8 digits: the field as shown


@pytest.mark.parametrize("text,kind", [("abc", "decimal"), ("1c", "reason"), ("0x", "hex"), ("0n", "hex"),
                                       ("0nff", "decimal"), ("`", "hex"), ("12`", "hex"), ("", "hex"),
                                       ("zz", "hex"), ("-1", "hex"), ("1e3", "decimal"), ("0xg", "hex")])
def test_what_is_not_a_number_says_the_syntax(text, kind):
    with pytest.raises(NumberError) as e:
        parse_number(text, kind, "thing")
    msg = str(e.value)
    assert msg.startswith("thing") and "\n" not in msg
    assert "0x" in msg or "0n28" in msg or "negative" in msg


def test_the_other_reading_is_reported_only_when_it_differs():
    assert parse_with_other("30", "reason") == (30, 48, "decimal")
    assert parse_with_other("9", "reason") == (9, None, "decimal")
    assert parse_with_other("10", "hex") == (16, 10, "hex")
    assert parse_with_other("0x10", "hex") == (16, None, "hex")
    assert reading_note("30", 30, 48, "decimal") == "30 read as decimal 30 (0x1e); as hex (0x30) it would be 48"
    assert reading_note("10", 16, 10, "hex") == "10 read as hex 0x10 (16); as decimal (0n10) it would be 10 (0xa)"
