"""Static checks over the driver sources, as tests: cppcheck and gcc's
-fanalyzer (with the kernel build's own flags, from driver/Makefile)."""
import subprocess

from .support import DRIVER


def _make(target):
    return subprocess.run(["make", "-s", "-C", DRIVER, target], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def test_cppcheck_clean():
    p = _make("cppcheck")
    assert p.returncode == 0 and p.stdout.strip() == "", p.stdout


def test_gcc_fanalyzer_clean():
    p = _make("analyze")
    assert p.returncode == 0 and "warning" not in p.stdout, p.stdout


BAD_C = """
#include <stdlib.h>
int f(int n)
{
    char *p = malloc(4);
    int x;
    if (n) free(p);
    free(p);
    return x;
}
"""


def test_the_checkers_do_find_bugs(tmp_path):
    """The two checks are live: a planted double free / uninitialised read fails both."""
    src = tmp_path / "bad.c"
    src.write_text(BAD_C)
    cpp = subprocess.run(["cppcheck", "--error-exitcode=1", "-q", str(src)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    assert cpp.returncode == 1
    gcc = subprocess.run(["x86_64-w64-mingw32-gcc", "-fanalyzer", "-Werror", "-c", str(src), "-o", "/dev/null"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert gcc.returncode != 0 and "double-free" in gcc.stdout

