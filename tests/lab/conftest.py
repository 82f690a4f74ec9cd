"""Fixtures for the emulated lab's tests: a tiny test driver built with mingw
from tests/lab/fixtures/testdrv.c, and the real hv.sys from `make -C driver`."""
import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MINGW = "x86_64-w64-mingw32-gcc"
DDK_INCLUDE = "/usr/share/mingw-w64/include/ddk"


@pytest.fixture(scope="session")
def testdrv(tmp_path_factory):
    cc = shutil.which(MINGW)
    assert cc, "%s is required (tools/bootstrap.sh installs gcc-mingw-w64-x86-64)" % MINGW
    out = str(tmp_path_factory.mktemp("drv") / "testdrv.sys")
    subprocess.run([cc, "-O2", "-Wall", "-Werror", "-I" + DDK_INCLUDE, "-nostdlib", "-Wl,--subsystem,native",
                    "-Wl,--entry,DriverEntry", "-Wl,--wdmdriver", "-mno-stack-arg-probe", "-o", out,
                    os.path.join(HERE, "fixtures", "testdrv.c"), "-lntoskrnl", "-lhal"], check=True)
    return out


@pytest.fixture(scope="session")
def hv_sys():
    path = os.path.join(ROOT, "driver", "out", "hv.sys")
    if not os.path.isfile(path):
        subprocess.run(["make", "-C", os.path.join(ROOT, "driver")], check=True)
    assert os.path.isfile(path), "make -C driver did not produce driver/out/hv.sys"
    return path
