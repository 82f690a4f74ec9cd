"""`make -C driver msvc-check`: the Windows build checked here without MSVC. The sources pass,
and each GNU-only construct MSVC rejects, planted in a copy of the driver, makes the check fail
and name the file; the MASM unwind rules catch a non-leaf PROC without FRAME."""
import os
import shutil
import subprocess
import sys

import pytest

from .support import DRIVER

MASM_FRAMES = os.path.join(DRIVER, "tools", "msvc_check", "masm_frames.py")


def _make_check(driver_dir):
    return subprocess.run(["make", "-s", "-C", driver_dir, "msvc-check"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def test_the_driver_is_msvc_clean():
    p = _make_check(DRIVER)
    assert p.returncode == 0, p.stdout
    assert "C files and platform/windows/hv_asm.asm clean" in p.stdout


@pytest.fixture
def driver_copy(tmp_path):
    """The sources and the check's tools, without the build output."""
    dst = tmp_path / "driver"
    dst.mkdir()
    for part in ("include", "core", "platform", "tools"):
        shutil.copytree(os.path.join(DRIVER, part), str(dst / part))
    shutil.copy(os.path.join(DRIVER, "Makefile"), str(dst / "Makefile"))
    return dst


PLANTED = [
    ("int hv_planted(void) { return ({ int x = 1; x; }); }", "gnu-statement-expression"),
    ("int hv_planted(int a) { switch (a) { case 1 ... 3: return 1; } return 0; }", "gnu-case-range"),
    ("struct hv_planted { int n; int tail[0]; };", "zero-length-array"),
    ("__attribute__((unused)) static int hv_planted;", "GNU-only '__attribute__'"),
    ("__typeof__(1) hv_planted;", "GNU-only '__typeof__'"),
    ("void hv_planted(void) { __asm__ __volatile__(\"nop\"); }", "GNU-only '__asm__'"),
    ("int hv_planted(int a) { return __builtin_expect(a, 0); }", "GNU-only '__builtin_expect'"),
]


@pytest.mark.parametrize("code,expected", PLANTED, ids=[e for _, e in PLANTED])
def test_a_planted_gnu_construct_fails_the_check(driver_copy, code, expected):
    src = driver_copy / "core" / "vmx_logic.c"
    src.write_text(src.read_text() + "\n" + code + "\n")
    p = _make_check(str(driver_copy))
    assert p.returncode != 0, p.stdout
    assert expected in p.stdout and "core/vmx_logic.c" in p.stdout, p.stdout


def test_a_construct_only_the_platform_layer_has_is_checked_too(driver_copy):
    src = driver_copy / "platform" / "windows" / "driver_entry.c"
    src.write_text(src.read_text() + "\nstatic int hv_planted[] = { [0 ... 3] = 1 };\n")
    p = _make_check(str(driver_copy))
    assert p.returncode != 0 and "platform/windows/driver_entry.c" in p.stdout, p.stdout


def _frames(tmp_path, text):
    path = tmp_path / "t.asm"
    path.write_text(text)
    return subprocess.run([sys.executable, MASM_FRAMES, str(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


LEAF = "Leaf PROC\n    mov rax, rcx\n    ret\nLeaf ENDP\n"
FRAMED = ("SAVE MACRO\n    push rbx\n    .pushreg rbx\nENDM\n"
          "Framed PROC FRAME\n    SAVE\n    .endprolog\n    call Leaf\n    pop rbx\n    ret\nFramed ENDP\n")


def test_masm_rules_accept_leaves_and_framed_procs(tmp_path):
    p = _frames(tmp_path, LEAF + FRAMED + "END\n")
    assert p.returncode == 0 and p.stdout == "", p.stdout


@pytest.mark.parametrize("text,expected", [
    ("NoFrame PROC\n    push rbx\n    call Leaf\n    pop rbx\n    ret\nNoFrame ENDP\nEND\n",
     "NoFrame is not a leaf ('push rbx')"),
    ("NoProlog PROC FRAME\n    push rbx\n    .pushreg rbx\n    ret\nNoProlog ENDP\nEND\n",
     "exactly one .ENDPROLOG (found 0)"),
    ("Late PROC FRAME\n    .endprolog\n    push rbx\n    .pushreg rbx\n    ret\nLate ENDP\nEND\n",
     ".pushreg after .ENDPROLOG"),
    ("Open PROC\n    ret\nEND\n", "PROC Open has no ENDP"),
    (LEAF, "does not end with END"),
])
def test_masm_rules_reject(tmp_path, text, expected):
    p = _frames(tmp_path, text)
    assert p.returncode == 1 and expected in p.stdout, p.stdout


def test_masm_rules_on_a_missing_file_say_so_in_one_line(tmp_path):
    p = subprocess.run([sys.executable, MASM_FRAMES, str(tmp_path / "none.asm")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    assert p.returncode == 2 and p.stdout.count("\n") == 1 and "cannot read" in p.stdout, p.stdout
