"""Runs every benchmarks/bench_*.py (or those named on the command line), each
in its own fresh interpreter so one benchmark cannot warm up another.

    python -m benchmarks                 # all
    python -m benchmarks startup walk    # bench_startup.py, bench_walk.py
"""
import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main(argv):
    scripts = sorted(glob.glob(os.path.join(HERE, "bench_*.py")))
    if argv:
        wanted = {"bench_%s.py" % a.replace("bench_", "").replace(".py", "") for a in argv}
        unknown = wanted - {os.path.basename(s) for s in scripts}
        if unknown:
            sys.stderr.write("error: no such benchmark: %s (have: %s)\n" % (
                ", ".join(sorted(unknown)), ", ".join(os.path.basename(s)[6:-3] for s in scripts)))
            return 2
        scripts = [s for s in scripts if os.path.basename(s) in wanted]
    failed = []
    for script in scripts:
        name = os.path.basename(script)
        print("== %s" % name, flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, script], cwd=ROOT)
        print("== %s: %s in %.1f s\n" % (name, "ok" if rc == 0 else "FAILED (exit %d)" % rc,
                                          time.perf_counter() - t0), flush=True)
        if rc:
            failed.append(name)
    if failed:
        print("failed: %s" % ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
