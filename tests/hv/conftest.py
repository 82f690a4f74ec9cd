"""Fixtures for the hv walker tests: driver state laid out by the host C
compiler from the driver's own headers (builder.py), written as hvlab images
and kernel dumps through the real writers."""
from __future__ import annotations

import importlib
import os
import sys
from typing import List, Tuple

import pytest

from windbg_ext import cli

from .builder import HvState


def run_cli(argv: List[str]) -> Tuple[int, str, str]:
    out: List[str] = []
    err: List[str] = []
    code = cli.run(list(argv), out.append, err.append)
    return code, "\n".join(out), "\n".join(err)


@pytest.fixture(scope="session")
def state2():
    return HvState(vcpus=2).build()


@pytest.fixture(scope="session")
def image2(state2, tmp_path_factory):
    return state2.write_image(str(tmp_path_factory.mktemp("hv") / "two.hvimg"))


@pytest.fixture(scope="session")
def dumps2(state2, tmp_path_factory):
    d = tmp_path_factory.mktemp("dumps")
    return {kind: state2.write_dump(str(d / ("%s.dmp" % kind)), kind) for kind in ("full", "bitmap")}


STANDIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pykd_standin")


@pytest.fixture
def standin():
    """The pykd stand-in (only real pykd names) importable as `pykd`; detached after."""
    sys.path.insert(0, STANDIN_DIR)
    sys.modules.pop("pykd", None)
    module = importlib.import_module("pykd")
    try:
        yield module
    finally:
        module._attach(None)
        sys.modules.pop("pykd", None)
        sys.path.remove(STANDIN_DIR)
