"""GNU-only keywords in the driver's own code, as the preprocessor leaves it.

    clang <msvc-check flags> -E file.c | python3 gnu_tokens.py file.c

clang in MSVC mode accepts __attribute__, __asm__ and __typeof__ without a
warning, but MSVC rejects them (and has no inline assembly on x64 at all), so
the preprocessed text is searched for them. Only lines that come from the
driver's sources count (the line markers say which file a line is from): the
shim's and clang's own headers are not the driver's. `__builtin_*` counts
only where the source line spells it: clang's offsetof and va_start expand to
built-ins that MSVC's own macros replace. Exit 1 with one line per finding.
"""
import functools
import os
import re
import sys

# GNU keywords MSVC does not know; `__builtin_*` are GCC/clang built-ins.
GNU_ONLY = re.compile(r"\b(__attribute__|__attribute|__asm__|__asm|asm|__typeof__|__typeof|typeof|"
                      r"__extension__|__label__|__auto_type|__int128|__builtin_\w+)\b")
MARKER = re.compile(r'^#\s*(\d+)\s+"([^"]*)"')
STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')


@functools.lru_cache(maxsize=None)
def _source_lines(path):
    with open(path, errors="replace") as f:
        return tuple(f.read().splitlines())


def _source_line(path, number):
    lines = _source_lines(path)
    return lines[number - 1] if 0 < number <= len(lines) else ""


def findings(text, driver_root):
    """(file, line, token) for each GNU-only keyword on a line from a file under driver_root."""
    root = os.path.realpath(driver_root) + os.sep
    shim = os.path.realpath(os.path.dirname(os.path.abspath(__file__))) + os.sep
    path, line = "", 0
    for raw in text.splitlines():
        m = MARKER.match(raw)
        if m:
            line, path = int(m.group(1)), m.group(2)
            continue
        real = os.path.realpath(path) if path else ""
        if real.startswith(root) and not real.startswith(shim):
            for tok in GNU_ONLY.findall(STRING.sub('""', raw)):
                if not tok.startswith("__builtin_") or tok in _source_line(real, line):
                    yield os.path.relpath(real, driver_root), line, tok
        line += 1


def main(argv):
    if len(argv) != 2:
        print("usage: clang -E ... FILE.c | gnu_tokens.py FILE.c", file=sys.stderr)
        return 2
    driver_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    found = sorted(set(findings(sys.stdin.read(), driver_root)))
    for path, line, tok in found:
        print("%s:%d: GNU-only '%s': MSVC rejects it (use the HV_* macros in include/, or MASM for assembly)"
              % (path, line, tok), file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
