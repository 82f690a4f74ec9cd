"""Catalogue decode throughput: how fast the pure knowledge base answers.

Run on demand: `.venv/bin/python benchmarks/bench_catalogue.py [--json]`.
Each line: operation, calls per second, microseconds per call (best of 5).
These numbers bound the cost of decoding a whole VMCS snapshot (~200 fields)
or an MSR bitmap page, which the `vmcs`/`msrbitmap` commands do per call.
"""
from __future__ import annotations

import json
import os
import random
import sys
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from windbg_ext.arch import controls, exits, msr_bitmap, vmcs_fields  # noqa: E402
from windbg_ext.arch.encoding import decode_encoding, encode  # noqa: E402


def cases():
    fields = vmcs_fields.FIELDS
    encodings = [f.encoding for f in fields]
    names = [f.name.lower() for f in fields]
    hexes = ["0x%x" % e for e in encodings]
    rng = random.Random(1)
    page = msr_bitmap.build_msr_bitmap(read=rng.sample(range(0x2000), 300),
                                       write=[0xC0000000 + n for n in rng.sample(range(0x2000), 300)])
    return [
        ("decode_encoding, whole catalogue", len(encodings), lambda: [decode_encoding(e) for e in encodings]),
        ("encode, whole catalogue", len(fields),
         lambda: [encode("full", (e >> 1) & 0x1FF, f.type, f.width) for e, f in zip(encodings, fields)]),
        ("lookup by encoding (int), whole catalogue", len(encodings), lambda: [vmcs_fields.lookup(e) for e in encodings]),
        ("lookup by hex string, whole catalogue", len(hexes), lambda: [vmcs_fields.lookup(h) for h in hexes]),
        ("lookup by lower-case name, whole catalogue", len(names), lambda: [vmcs_fields.lookup(n) for n in names]),
        ("decode_exit_reason + qualification (EPT violation)", 1,
         lambda: (exits.decode_exit_reason(48), exits.decode_qualification(48, 0x181))),
        ("decode_controls (primary, all bits)", 1, lambda: controls.decode_controls("proc", 0xFFFFFFFF)),
        ("decode_msr_bitmap (600 MSRs set)", 1, lambda: msr_bitmap.decode_msr_bitmap(page)),
        ("decode_msr_bitmap (empty page)", 1, lambda: msr_bitmap.decode_msr_bitmap(bytes(4096))),
    ]


def main(argv) -> int:
    results = []
    for label, per_call, fn in cases():
        number = 200
        best = min(timeit.repeat(fn, number=number, repeat=5)) / number
        results.append({"operation": label, "items_per_call": per_call,
                        "items_per_second": per_call / best, "us_per_item": best / per_call * 1e6})
    if "--json" in argv:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print("%-52s %12.0f items/s  %8.2f us/item" % (r["operation"], r["items_per_second"], r["us_per_item"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
