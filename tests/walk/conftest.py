"""Walking drivers that are not hv.sys: the sevendays example built for real,
run on the emulated CPU, walked from its PDB (converted by volatility3 here)."""
from __future__ import annotations

import os
import subprocess

import pytest

from tests.support import ROOT

SEVENDAYS_DIR = os.path.join(ROOT, "driver", "examples", "sevendays")
OUT = os.path.join(ROOT, "driver", "out")


@pytest.fixture(scope="session", autouse=True)
def isolated_caches(tmp_path_factory):
    """Converted PDBs and installed layouts go to fresh directories: every session converts for real."""
    old = {k: os.environ.get(k) for k in ("HVLAB_CACHE", "HVLAB_LAYOUTS")}
    os.environ["HVLAB_CACHE"] = str(tmp_path_factory.mktemp("hvlab-cache"))
    os.environ["HVLAB_LAYOUTS"] = str(tmp_path_factory.mktemp("hvlab-layouts"))
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def sevendays():
    """{"gcc": sevendays.sys (mingw), "clang": sevendays.sys (clang/lld), "pdb": sevendays.pdb}, built by make."""
    subprocess.run(["make", "-s", "-C", SEVENDAYS_DIR], check=True)
    paths = {"gcc": os.path.join(OUT, "sevendays.sys"), "clang": os.path.join(OUT, "clang", "sevendays.sys"),
             "pdb": os.path.join(OUT, "clang", "sevendays.pdb")}
    for p in paths.values():
        assert os.path.isfile(p), p
    return paths


def truth(result):
    """[(VMXON PA, VMCS PA)] per processor as the emulated CPU used them (emulated_lab/cpu_truth.py
    through run --report's `processors`), never the driver's own record."""
    from emulated_lab.report import build

    return [(p["vmxon_pa"], p["vmcs_pa"]) for p in build(result)["processors"]]


FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def build_fixture_driver(name: str, out_dir: str):
    """tests/walk/fixtures/<name>.c built like sevendays' clang build (-g -gcodeview, lld, PDB):
    (driver path, pdb path)."""
    sys_path, pdb = os.path.join(out_dir, name + ".sys"), os.path.join(out_dir, name + ".pdb")
    subprocess.run(["clang", "--target=x86_64-w64-mingw32", "-isystem", "/usr/share/mingw-w64/include/ddk", "-O2",
                    "-Wall", "-Werror", "-ffreestanding", "-fno-builtin", "-mno-stack-arg-probe", "-D_AMD64_",
                    "-DNTDDI_VERSION=0x0A000000", "-D_WIN32_WINNT=0x0A00", "-g", "-gcodeview", "-fuse-ld=lld",
                    "-nostdlib", "-Wl,--subsystem,native", "-Wl,--entry,DriverEntry", "-Wl,--image-base,0x140000000",
                    "-Wl,--Xlink=-driver:wdm", "-Wl,--pdb=" + pdb, "-o", sys_path,
                    os.path.join(FIXTURES, name + ".c"), "-lntoskrnl", "-lhal"], check=True)
    return sys_path, pdb
