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

    def get(self, scenario: str, cpus: int = 2, driver: Optional[str] = None, workload: bool = True,
            crash_ok: bool = False):
        """crash_ok: a scenario that ends in a bugcheck (resume-failure) gives the image written at the crash."""
        from emulated_lab.lab import run_scenario

        driver = os.path.abspath(driver or self.default_driver())
        key = (scenario, cpus, driver, workload, crash_ok)
        if key not in self._done:
            name = "%d-%s-%d-%s%s.hvimg" % (len(self._done), scenario.replace(":", "_"), cpus,
                                           os.path.basename(os.path.dirname(driver)),
                                           "" if workload else "-noworkload")
            path = os.path.join(self.directory, name)
            self._done[key] = (path, run_scenario(scenario, cpus=cpus, driver=driver, image=path,
                                                  workload=workload, raise_on_crash=not crash_ok))
        return self._done[key]

    __call__ = get


# -- path kinds: what a user may pass where a file is expected -----------------------------------
PATH_KINDS = ("regular", "missing", "directory", "fifo", "device", "symlink", "readonly", "empty")


def make_path_kinds(directory: str) -> Dict[str, str]:
    """One path of each kind in `directory` (a tmp dir). "device" is a character device node of
    our own (the null device, made with mknod) when allowed, else a symlink to /dev/null:
    tests never touch the real /dev nodes by name."""
    import stat

    d = str(directory)
    paths = {k: os.path.join(d, k) for k in PATH_KINDS}
    with open(paths["regular"], "wb") as f:
        f.write(b"not an image\n" * 8)
    os.mkdir(paths["directory"])
    os.mkfifo(paths["fifo"])
    try:
        os.mknod(paths["device"], 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (OSError, AttributeError):
        os.symlink("/dev/null", paths["device"])
    target = os.path.join(d, "symlink-target")
    with open(target, "wb") as f:
        f.write(b"the file a symlink points to\n")
    os.symlink(target, paths["symlink"])
    with open(paths["readonly"], "wb") as f:
        f.write(b"read-only contents\n")
    os.chmod(paths["readonly"], 0o444)
    paths["empty"] = ""
    return paths


def tree_state(directory: str) -> Dict[str, tuple]:
    """{name: (kind, content or link target)} of every entry under `directory` (not following links)."""
    import hashlib
    import stat

    out: Dict[str, tuple] = {}
    for root, dirs, files in os.walk(str(directory)):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[p] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    out[p] = ("file", hashlib.sha256(f.read()).hexdigest(), stat.S_IMODE(st.st_mode))
            else:
                out[p] = (stat.S_IFMT(st.st_mode),)
    return out


def changes(before: Dict[str, tuple], after: Dict[str, tuple]) -> List[str]:
    """What a command did to a tree that it must not: an entry removed, or changed into another kind,
    a read-only file changed, a new entry that is not a regular file. (Writing a regular file is fine.)"""
    bad = []
    for p, was in before.items():
        now = after.get(p)
        rewritten = now is not None and was[0] == now[0] == "file" and os.path.basename(p) != "readonly"
        if now != was and not rewritten:
            bad.append("%s: %r -> %r" % (p, was, now))
    for p, now in after.items():
        if p not in before and now[0] != "file":
            bad.append("%s: new non-regular entry %r" % (p, now))
    return bad


def build_reverted_hv(name: str) -> str:
    """driver/out/revert/<name>/hv.sys: hv.sys with one real-machine fix undone (-DHV_REVERT_<name>,
    `make -C driver revert`), for tests that show the lab catching the old behaviour."""
    subprocess.run(["make", "-s", "--no-print-directory", "-C", os.path.join(ROOT, "driver"), "revert",
                    "REVERT=" + name], check=True)
    path = os.path.join(ROOT, "driver", "out", "revert", name, "hv.sys")
    assert os.path.isfile(path), "make -C driver revert REVERT=%s did not produce %s" % (name, path)
    return path
