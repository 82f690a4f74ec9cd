"""Assembles small x86-64 snippets (Intel syntax) with GNU as.

The lab's own code (firmware helpers, guest workload, probes) is written as
readable assembly and assembled on first use; results are cached per
process. Snippets must be position independent (relative jumps only).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Dict


class AsmError(Exception):
    pass


_cache: Dict[str, bytes] = {}


def assemble(text: str) -> bytes:
    """Returns the machine code of `text` (Intel syntax, 64-bit)."""
    code = _cache.get(text)
    if code is not None:
        return code
    gas = shutil.which("as")
    objcopy = shutil.which("objcopy")
    if not gas or not objcopy:
        raise AsmError("GNU as/objcopy not found: install binutils (tools/bootstrap.sh installs gcc, which has them)")
    with tempfile.TemporaryDirectory(prefix="hvlab-asm-") as d:
        src, obj, binf = (os.path.join(d, n) for n in ("s.S", "s.o", "s.bin"))
        with open(src, "w") as f:
            f.write(".intel_syntax noprefix\n.code64\n.text\n" + text + "\n")
        p = subprocess.run([gas, "--64", "-o", obj, src], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True)
        if p.returncode != 0:
            raise AsmError("assembling failed: %s" % (p.stdout.strip().splitlines() or ["?"])[0])
        p = subprocess.run([objcopy, "-O", "binary", "-j", ".text", obj, binf], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True)
        if p.returncode != 0:
            raise AsmError("objcopy failed: %s" % p.stdout.strip())
        with open(binf, "rb") as f:
            code = f.read()
    _cache[text] = code
    return code
