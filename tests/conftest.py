"""Shared by every test directory: the repository root is importable
(windbg_ext, emulated_lab) without installing the package, and the fixtures
more than one directory uses (helpers behind them: tests/support.py)."""
import importlib
import os
import sys

import pytest
from hypothesis import settings

# `make mutants` runs the tests once per mutant on a loaded machine: no time limit per example, and
# the same examples every run, so that a mutant is killed or not for a reason, not by chance.
settings.register_profile("mutants", deadline=None, derandomize=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests import support  # noqa: E402  (needs ROOT on sys.path)


@pytest.fixture
def standin():
    """The pykd stand-in (only real pykd names) importable as `pykd`, as inside WinDbg; detached after."""
    sys.path.insert(0, support.STANDIN_DIR)
    sys.modules.pop("pykd", None)
    module = importlib.import_module("pykd")
    try:
        yield module
    finally:
        module._attach(None)
        sys.modules.pop("pykd", None)
        sys.path.remove(support.STANDIN_DIR)


@pytest.fixture(scope="session")
def hv_sys():
    """The real driver/out/hv.sys (built by `make -C driver` when missing)."""
    return support.hv_sys()


@pytest.fixture(scope="session")
def testdrv(tmp_path_factory):
    """The lab's fixture driver tests/lab/fixtures/testdrv.c, built once."""
    return support.build_testdrv(str(tmp_path_factory.mktemp("drv")))


@pytest.fixture(scope="session")
def fixture_driver(tmp_path_factory):
    """fixture_driver(name) -> path of tests/lab/fixtures/<name>.c built with mingw (once per session)."""
    out = str(tmp_path_factory.mktemp("fixture-drivers"))
    built = {}

    def get(name):
        if name not in built:
            built[name] = support.build_fixture_driver(name, out)
        return built[name]
    return get


@pytest.fixture(scope="session")
def lab_images(tmp_path_factory):
    """lab_images(scenario, cpus=2, driver=None (hv.sys), workload=True) -> (image, result):
    each scenario runs on the emulated CPU once per session; the files are read-only to tests."""
    return support.LabImages(str(tmp_path_factory.mktemp("lab-images")), support.hv_sys)
