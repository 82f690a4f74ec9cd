"""Helpers shared by the test directories (their fixtures are in tests/conftest.py):
the offline/live front end as a function, the real hv.sys, the lab's fixture
driver, and lab images written once per scenario."""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STANDIN_DIR = os.path.join(ROOT, "tests", "pykd_standin")
HV_SYS = os.path.join(ROOT, "driver", "out", "hv.sys")
FIXTURE_DRIVERS = os.path.join(ROOT, "tests", "lab", "fixtures")
TESTDRV_SOURCE = os.path.join(FIXTURE_DRIVERS, "testdrv.c")
MINGW = "x86_64-w64-mingw32-gcc"
DDK_INCLUDE = "/usr/share/mingw-w64/include/ddk"


def run_cli(argv: Sequence[str], live: bool = False) -> Tuple[int, str, str]:
    """windbg_ext.cli.run as the front end runs it: (exit code, stdout, stderr)."""
    from windbg_ext import cli

    out: List[str] = []
    err: List[str] = []
    code = cli.run(list(argv), out.append, err.append, live=live)
    return code, "\n".join(out), "\n".join(err)


def hv_sys() -> str:
    """driver/out/hv.sys, built with `make -C driver` when it is missing."""
    if not os.path.isfile(HV_SYS):
        subprocess.run(["make", "-C", os.path.join(ROOT, "driver")], check=True)
    assert os.path.isfile(HV_SYS), "make -C driver did not produce driver/out/hv.sys"
    return HV_SYS


def build_testdrv(out_dir: str) -> str:
    """The lab's small fixture driver (tests/lab/fixtures/testdrv.c), built with mingw."""
    return build_fixture_driver("testdrv", out_dir)


def build_fixture_driver(name: str, out_dir: str) -> str:
    """tests/lab/fixtures/<name>.c built with mingw into <out_dir>/<name>.sys (a WDM driver)."""
    cc = shutil.which(MINGW)
    assert cc, "%s is required (tools/bootstrap.sh installs gcc-mingw-w64-x86-64)" % MINGW
    out = os.path.join(str(out_dir), name + ".sys")
    extra = os.path.join(str(out_dir), "libntoskrnl_extra.a")
    if not os.path.isfile(extra):   # import library for what libntoskrnl.a lacks
        subprocess.run([MINGW.replace("gcc", "dlltool"), "-d", os.path.join(FIXTURE_DRIVERS, "ntoskrnl_extra.def"),
                        "-l", extra], check=True)
    subprocess.run([cc, "-O2", "-Wall", "-Werror", "-I" + DDK_INCLUDE, "-nostdlib", "-Wl,--subsystem,native",
                    "-Wl,--entry,DriverEntry", "-Wl,--wdmdriver", "-mno-stack-arg-probe", "-o", out,
                    os.path.join(FIXTURE_DRIVERS, name + ".c"), "-lntoskrnl", "-lhal", extra], check=True)
    return out


class LabImages:
    """Lab images, each scenario run once: get() returns (image path, ScenarioResult).
    The image files and results are shared: read them, never change them."""

    def __init__(self, directory: str, default_driver) -> None:
        self.directory = str(directory)
        self.default_driver = default_driver      # called on first use (builds hv.sys if needed)
        self._done: Dict[tuple, tuple] = {}

    def get(self, scenario: str, cpus: int = 2, driver: Optional[str] = None, workload: bool = True):
        from emulated_lab.lab import run_scenario

        driver = os.path.abspath(driver or self.default_driver())
        key = (scenario, cpus, driver, workload)
        if key not in self._done:
            name = "%d-%s-%d-%s%s.hvimg" % (len(self._done), scenario.replace(":", "_"), cpus,
                                           os.path.basename(os.path.dirname(driver)),
                                           "" if workload else "-noworkload")
            path = os.path.join(self.directory, name)
            self._done[key] = (path, run_scenario(scenario, cpus=cpus, driver=driver, image=path,
                                                  workload=workload))
        return self._done[key]

    __call__ = get
