"""Fixtures for the verify tests: the real hv.sys (built by `make -C driver`)."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def hv_driver():
    path = os.path.join(ROOT, "driver", "out", "hv.sys")
    if not os.path.isfile(path):
        subprocess.run(["make", "-C", os.path.join(ROOT, "driver")], check=True)
    assert os.path.isfile(path), "make -C driver did not produce driver/out/hv.sys"
    return path
