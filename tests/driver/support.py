"""Shared helpers and fixtures for the driver tests: the built hv.sys images and a host
build of the driver's pure core (compiled with the host compiler)."""
import contextlib
import ctypes
import os
import subprocess

import pytest

from tests.support import HV_SYS, ROOT

DRIVER = os.path.join(ROOT, "driver")
INCLUDE = os.path.join(DRIVER, "include")
HOST_DIR = os.path.join(os.path.dirname(__file__), "host")
IMAGES = {
    "mingw": HV_SYS,
    "clang": os.path.join(DRIVER, "out", "clang", "hv.sys"),
}
PURE_CORE = ["core/vmx_logic.c", "core/segment.c", "core/vmcs_fields.c", "core/hv_status.c"]


def run(cmd, **kw):
    """Runs a command; on failure the assertion shows its output."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    assert p.returncode == 0, "%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stdout)
    return p.stdout


@contextlib.contextmanager
def driver_on_one_cpu(driver):
    """One emulated processor with this hv.sys loaded and its DriverEntry succeeded:
    yields (machine, kernel, image, driver object); the machine is closed after."""
    from emulated_lab.machine import DRIVER_BASE, FC_LOCKED_VMXON_ENABLED, Machine
    from emulated_lab.nt.kernel import NtKernel

    m = Machine(cpus=1, feature_control=FC_LOCKED_VMXON_ENABLED)
    try:
        kern = NtKernel(m)
        if m.current is not None:
            m.park()
        img = kern.load_driver(driver, DRIVER_BASE)
        drv = kern.make_driver_object(img)
        assert kern.call_on_thread(img.entry, (drv, kern.registry_path)).regs["rax"] & 0xFFFFFFFF == 0
        yield m, kern, img, drv
    finally:
        m.close()


@pytest.fixture(scope="session")
def built_driver():
    """Builds both images (a no-op when `make -C driver` already ran)."""
    run(["make", "-s", "-C", DRIVER])
    return IMAGES


@pytest.fixture(scope="session")
def host_core(tmp_path_factory):
    """The pure core as a host shared library, for ctypes."""
    out = str(tmp_path_factory.mktemp("hostcore") / "libhvcore.so")
    run(["gcc", "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror", "-I", INCLUDE, "-o", out]
        + [os.path.join(DRIVER, s) for s in PURE_CORE])
    lib = ctypes.CDLL(out)
    u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64
    lib.HvAdjustCr.restype = u64
    lib.HvAdjustCr.argtypes = [u64, u64, u64]
    lib.HvAdjustControls.restype = u32
    lib.HvAdjustControls.argtypes = [u64, u32]
    lib.HvControlsValid.restype = ctypes.c_int
    lib.HvControlsValid.argtypes = [u64, u32]
    lib.HvControlCapabilityMsr.restype = u32
    lib.HvControlCapabilityMsr.argtypes = [u64, u32]
    lib.HvFeatureControlAction.restype = u32
    lib.HvFeatureControlAction.argtypes = [u64, ctypes.POINTER(u64)]
    lib.HvAccessRightsFromDescriptor.restype = u32
    lib.HvAccessRightsFromDescriptor.argtypes = [u64]
    lib.HvVmxBasicProblem.restype = u32
    lib.HvVmxBasicProblem.argtypes = [u64]
    lib.HvCrAdjustClears.restype = ctypes.c_int
    lib.HvCrAdjustClears.argtypes = [u64, u64, u64]
    lib.HvFeatureControlsCheck.restype = u32
    lib.HvFeatureControlsCheck.argtypes = [u32, u64, u64, ctypes.POINTER(u32)]
    lib.HvChooseFeatureControls.restype = u32
    lib.HvChooseFeatureControls.argtypes = [ctypes.POINTER(HvGuestFeature), u32, u32, u64, u64, ctypes.POINTER(u32)]
    lib.HvStatusMessage.restype = ctypes.c_char_p
    lib.HvStatusMessage.argtypes = [ctypes.c_int]
    lib.HvSegmentFromGdt.restype = ctypes.c_int
    lib.HvSegmentFromGdt.argtypes = [ctypes.c_char_p, u32, u16, ctypes.c_void_p]
    lib.HvLayoutClassify.restype = u8
    lib.HvLayoutClassify.argtypes = [u32, u64, ctypes.POINTER(u16)]
    lib.HvXcr0Valid.restype = ctypes.c_int
    lib.HvXcr0Valid.argtypes = [u64, u64]
    return lib


class HvSegment(ctypes.Structure):
    """HV_SEGMENT from include/hv_core.h."""
    _fields_ = [("Base", ctypes.c_uint64), ("Limit", ctypes.c_uint32),
                ("AccessRights", ctypes.c_uint32), ("Selector", ctypes.c_uint16)]


class HvGuestFeature(ctypes.Structure):
    """HV_GUEST_FEATURE from include/hv_core.h."""
    _fields_ = [("Name", ctypes.c_char_p), ("Leaf", ctypes.c_uint32), ("Subleaf", ctypes.c_uint32),
                ("Register", ctypes.c_uint32), ("Bit", ctypes.c_uint32), ("Control", ctypes.c_uint32),
                ("Unavailable", ctypes.c_uint32)]


class HvFieldInfo(ctypes.Structure):
    """HV_VMCS_FIELD_INFO from include/hv_vmcs.h."""
    _fields_ = [("Encoding", ctypes.c_uint32), ("Name", ctypes.c_char_p)]


@pytest.fixture(scope="session")
def host_program(tmp_path_factory):
    """Compiles tests/driver/host/<name>.c with the host compiler, returns its output."""
    cache = {}

    def build_and_run(name):
        if name not in cache:
            exe = str(tmp_path_factory.mktemp("hostprog") / name)
            run(["gcc", "-O1", "-Wall", "-Wextra", "-Werror", "-I", INCLUDE, "-o", exe,
                 os.path.join(HOST_DIR, name + ".c")] + [os.path.join(DRIVER, s) for s in PURE_CORE])
            cache[name] = run([exe])
        return cache[name]
    return build_and_run
