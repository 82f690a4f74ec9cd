"""Fixtures for the hv walker tests: driver state laid out by the host C
compiler from the driver's own headers (builder.py), written as hvlab images
and kernel dumps through the real writers (shared fixtures: tests/conftest.py)."""
from __future__ import annotations

import pytest

from .builder import HvState


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
