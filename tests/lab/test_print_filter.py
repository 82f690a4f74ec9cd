"""The lab's Debug Print Filter (emulated_lab/nt/print_filter.py) is written
apart from the suite's (windbg_ext/arch/dbgprint.py): here the two are compared
with each other, and both with cases worked out by hand from the WDK rule."""
from __future__ import annotations

import ast
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulated_lab.nt import print_filter as lab
from windbg_ext.arch import dbgprint as suite

COMPONENTS = {lab.IHVDRIVER_ID: "IHVDRIVER", lab.DEFAULT_ID: "DEFAULT"}
levels = st.one_of(st.integers(0, 40), st.sampled_from([31, 32, 0x7FFFFFFF, 0x80000000, 0x80000001, 0xFFFFFFFF]),
                   st.integers(0, 0xFFFFFFFF))
masks = st.one_of(st.sampled_from([0, 1, 0xF, 0xFFFF, 0x80000000, 0xFFFFFFFF]), st.integers(0, 0xFFFFFFFF))


def _lab(component: int, level: int, component_mask: int, win2000: int) -> bool:
    values = {"WIN2000": win2000, COMPONENTS.get(component, "DEFAULT"): component_mask}
    return lab.shown(component, level, lambda name: values.get(name, 0))


@given(component=st.sampled_from(sorted(COMPONENTS)), level=levels, component_mask=masks, win2000=masks)
def test_lab_and_suite_agree(component, level, component_mask, win2000):
    assert _lab(component, level, component_mask, win2000) == suite.is_printed(level, component_mask, win2000)


# (level, component mask, Kd_WIN2000_Mask, shown): worked out from the rule by hand
CASES = [
    (0, 0, 1, True),                    # ERROR passes the default system mask
    (3, 0, 1, False),                   # INFO on a stock install: filtered
    (3, 0x8, 1, True),                  # INFO with bit 3 in the component mask
    (3, 0x7, 0, False),
    (31, 0x80000000, 0, True),          # level 31 is bit 31, not the mask 0x1f
    (31, 0x1F, 0, False),
    (31, 0x7FFFFFFF, 0x7FFFFFFF, False),
    (32, 0x20, 0, True),                # 32 and above: the level is the bit field itself
    (32, 0x1, 0, False),
    (0x80000008, 0x8, 0, True),         # DPFLTR_MASK | 8: a bit field
    (0x80000008, 0x80000000, 0, True),
    (0x80000000, 0, 0x80000000, True),
    (0xFFFFFFFF, 0, 0, False),
    (5, 0, 0x20, True),                 # the system mask alone lets it through
]


@pytest.mark.parametrize("level,component_mask,win2000,expected", CASES)
def test_both_filters_on_hand_worked_cases(level, component_mask, win2000, expected):
    assert suite.is_printed(level, component_mask, win2000) is expected
    assert _lab(lab.IHVDRIVER_ID, level, component_mask, win2000) is expected


def test_components_outside_the_table_use_the_default_mask():
    values = {"WIN2000": 0, "DEFAULT": 0x8, "IHVDRIVER": 0}
    assert lab.shown(500, 3, values.__getitem__)
    assert not lab.shown(lab.IHVDRIVER_ID, 3, values.__getitem__)
    assert not lab.shown(5, 3, values.__getitem__)   # a table slot the lab does not model: its mask is 0


def test_the_lab_filter_is_its_own_code():
    path = os.path.join(os.path.dirname(lab.__file__), "print_filter.py")
    tree = ast.parse(open(path).read())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module] + \
               [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.startswith("windbg_ext")]
