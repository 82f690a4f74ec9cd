"""The driver's layers, from the built objects (docs/architecture.md "The driver"): core/ calls
nothing outside core/, the MASM stubs and the platform interface (include/hv_platform.h); the
Windows layer enters the core only through include/hv_load.h."""
import os
import re
import subprocess

from .support import DRIVER, INCLUDE

OBJ = os.path.join(DRIVER, "out", "gcc")
NM = "x86_64-w64-mingw32-nm"


def _symbols(paths, kind):
    """Names nm lists with this kind ('U' undefined, 'T'/'D'/'B'/'R' defined) in these objects."""
    out = subprocess.run([NM] + paths, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=True)
    names = set()
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-2] in kind:
            names.add(parts[-1])
    return names


def _declared_functions(header):
    text = open(os.path.join(INCLUDE, header)).read()
    return set(re.findall(r"\b(Hv\w+)\(", text))


def _core_objects():
    core = os.path.join(OBJ, "core")
    return [os.path.join(core, f) for f in sorted(os.listdir(core)) if f.endswith(".o")]


def test_core_calls_only_core_asm_and_the_platform_interface(built_driver):
    objects = _core_objects()
    assert len(objects) >= 11
    defined = _symbols(objects, "TDBRC")
    asm = _symbols([os.path.join(OBJ, "..", "asm", "hv_asm.obj")], "T")
    platform = _declared_functions("hv_platform.h")
    assert {"HvPlatformAllocPage", "HvPlatformRunOn", "HvPlatformLog", "HvPlatformBugCheck"} <= platform
    outside = _symbols(objects, "U") - defined - asm - platform
    assert not outside, "core/ calls outside its layer: %s" % sorted(outside)


def test_windows_layer_enters_the_core_through_hv_load_h_only(built_driver):
    entry = [os.path.join(OBJ, "platform", "windows", "driver_entry.o")]
    load = _declared_functions("hv_load.h")
    assert load == {"HvLoad", "HvUnload", "HvBeforeSleep", "HvAfterResume"}
    core_defined = _symbols(_core_objects(), "TDBRC")
    assert _symbols(entry, "U") & core_defined == load
    # and the platform interface is all there, defined by the Windows layer
    assert _declared_functions("hv_platform.h") <= _symbols(entry, "T")
