"""Fixtures for the knowledge-base tests: the offline front end, images
written through the real ImageWriter, and the pykd stand-in."""
from __future__ import annotations

import importlib
import os
import sys
from typing import Dict, List, Sequence, Tuple

import pytest

from windbg_ext import cli
from windbg_ext.target.image import ImageWriter

STANDIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pykd_standin")


def run_cli(argv: Sequence[str], live: bool = False) -> Tuple[int, str, str]:
    out: List[str] = []
    err: List[str] = []
    code = cli.run(list(argv), out.append, err.append, live=live)
    return code, "\n".join(out), "\n".join(err)


def write_caps_image(path, cpus_msrs: Sequence[Dict[int, int]]) -> str:
    """An image whose processors carry exactly these MSRs (and one page of memory)."""
    w = ImageWriter()
    w.add_memory(0x1000, bytes(0x1000))
    for msrs in cpus_msrs:
        w.add_cpu({"rip": 0xFFFFF80000001000, "cr0": 0x80050033, "cr3": 0x1000, "cr4": 0x406A0}, dict(msrs))
    w.write(str(path))
    return str(path)


@pytest.fixture
def cli_run():
    return run_cli


@pytest.fixture
def standin():
    """The pykd stand-in importable as `pykd`, as inside WinDbg; detached after."""
    sys.path.insert(0, STANDIN_DIR)
    sys.modules.pop("pykd", None)
    module = importlib.import_module("pykd")
    try:
        yield module
    finally:
        module._attach(None)
        sys.modules.pop("pykd", None)
        sys.path.remove(STANDIN_DIR)
