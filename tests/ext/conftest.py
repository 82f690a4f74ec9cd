"""Fixtures for the suite's front end and target tests (shared ones, e.g. the
pykd stand-in and the front end as a function: tests/conftest.py, tests/support.py)."""
from __future__ import annotations

import pytest

from .images import standard_image


@pytest.fixture(scope="session")
def std_image(tmp_path_factory):
    """The standard image, written once: tests only read it."""
    return standard_image(tmp_path_factory.mktemp("std") / "std.hvimg")
