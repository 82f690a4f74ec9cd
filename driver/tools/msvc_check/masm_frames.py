"""Unwind-data rules of an x64 MASM file that llvm-ml does not enforce.

    python3 masm_frames.py FILE.asm

The MS x64 ABI ("x64 exception handling", "x64 prolog and epilog" in the
Microsoft docs) lets only a leaf function go without unwind data: one that
calls nothing, pushes nothing and leaves RSP alone. Anything else must be a
PROC FRAME whose prolog ends in .ENDPROLOG, with every unwind directive
(.PUSHREG, .ALLOCSTACK, .SAVEREG, .SAVEXMM128, .SETFRAME, .PUSHFRAME) inside
that prolog. Also: each PROC closed by its ENDP, and END last. Macros
(MACRO ... ENDM) are expanded where a PROC uses them.

Not checked here (ml64 is not available on Linux; CMakeLists.txt assembles
with it on Windows): ml64's own syntax differences from llvm-ml, the 255-byte
prolog limit, and that each unwind directive describes the instruction
before it. Exit 1 with one line per problem.
"""
import re
import sys

UNWIND = {".pushreg", ".allocstack", ".savereg", ".savexmm128", ".setframe", ".pushframe"}
# Instructions that make a function non-leaf (call) or move RSP.
NON_LEAF = re.compile(r"^(call|push\w*|pop\w*|enter|leave)\b|^(sub|add|mov|lea|and)\s+rsp\s*,", re.I)


def _code(line):
    return line.split(";", 1)[0].strip()


def _macros(lines):
    """name (lower case) -> body lines."""
    macros, name = {}, None
    for raw in lines:
        words = _code(raw).split()
        if len(words) >= 2 and words[1].lower() == "macro":
            name = words[0].lower()
            macros[name] = []
        elif words and words[0].lower() == "endm":
            name = None
        elif name is not None:
            macros[name].append(raw)
    return macros


def _expand(body, macros, depth=0):
    for raw in body:
        words = _code(raw).split()
        if words and words[0].lower() in macros and depth < 8:
            yield from _expand(macros[words[0].lower()], macros, depth + 1)
        else:
            yield raw


def problems(text):
    lines = text.splitlines()
    macros = _macros(lines)
    out, proc, frame, body, start = [], None, False, [], 0
    in_macro = False
    for n, raw in enumerate(lines, 1):
        code = _code(raw)
        words = code.split()
        low = [w.lower() for w in words]
        if len(low) >= 2 and low[1] == "macro":
            in_macro = True
            continue
        if in_macro:
            in_macro = low[:1] != ["endm"]
            continue
        if len(low) >= 2 and low[1] == "proc":
            if proc:
                out.append("%d: PROC %s inside PROC %s" % (n, words[0], proc))
            proc, frame, body, start = words[0], "frame" in low[2:], [], n
            continue
        if len(low) >= 2 and low[1] == "endp":
            if words[0] != proc:
                out.append("%d: ENDP %s without its PROC" % (n, words[0]))
            else:
                out += _check_proc(proc, frame, list(_expand(body, macros)), start)
            proc = None
            continue
        if proc:
            body.append(raw)
        elif low and (low[0] in UNWIND or low[0] == ".endprolog"):
            out.append("%d: %s outside a PROC FRAME" % (n, words[0]))
    if proc:
        out.append("%d: PROC %s has no ENDP" % (start, proc))
    codes = [_code(raw).lower() for raw in lines if _code(raw)]
    if not codes or codes[-1] != "end":
        out.append("the file does not end with END")
    return out


def _check_proc(name, frame, body, start):
    out, prolog_ends, leaf = [], 0, True
    for raw in body:
        low = _code(raw).lower()
        op = low.split()[0] if low else ""
        if op == ".endprolog":
            prolog_ends += 1
        elif op in UNWIND:
            if not frame:
                out.append("%d: %s: %s needs PROC FRAME" % (start, name, op))
            elif prolog_ends:
                out.append("%d: %s: %s after .ENDPROLOG" % (start, name, op))
        elif not frame and leaf and NON_LEAF.match(low):
            leaf = False  # the first such instruction says enough
            out.append("%d: %s is not a leaf ('%s'): it needs PROC FRAME and .ENDPROLOG (MS x64 ABI)"
                       % (start, name, low))
    if frame and prolog_ends != 1:
        out.append("%d: %s: PROC FRAME needs exactly one .ENDPROLOG (found %d)" % (start, name, prolog_ends))
    if not frame and prolog_ends:
        out.append("%d: %s: .ENDPROLOG without PROC FRAME" % (start, name))
    return out


def main(argv):
    if len(argv) != 2:
        print("usage: masm_frames.py FILE.asm", file=sys.stderr)
        return 2
    try:
        with open(argv[1]) as f:
            text = f.read()
    except OSError as e:
        print("masm_frames: cannot read %s: %s" % (argv[1], e.strerror), file=sys.stderr)
        return 2
    found = problems(text)
    for p in found:
        print("%s:%s" % (argv[1], p), file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
