"""Fixtures for the suite's front end and target tests."""
from __future__ import annotations

import importlib
import os
import sys
from typing import List, Tuple

import pytest

from windbg_ext import cli

from .images import standard_image

STANDIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pykd_standin")


@pytest.fixture
def std_image(tmp_path):
    return standard_image(tmp_path / "std.hvimg")


def run_offline(argv: List[str]) -> Tuple[int, str, str]:
    """windbg_ext.cli.run as the offline front end runs it: (exit code, stdout, stderr)."""
    out: List[str] = []
    err: List[str] = []
    code = cli.run(list(argv), out.append, err.append)
    return code, "\n".join(out), "\n".join(err)


@pytest.fixture
def offline():
    return run_offline


@pytest.fixture
def standin():
    """The pykd stand-in importable as `pykd` (as inside WinDbg); detached after."""
    sys.path.insert(0, STANDIN_DIR)
    sys.modules.pop("pykd", None)
    module = importlib.import_module("pykd")
    try:
        yield module
    finally:
        module._attach(None)
        sys.modules.pop("pykd", None)
        sys.path.remove(STANDIN_DIR)
