"""The exercise commands of `python -m emulated_lab`:

    exercises [--json]                                      list them
    exercise make ID [--seed S] --out DIR [--key FILE]      the student folder (+ the key elsewhere)
    exercise check ID --seed S ANSWERS.json [--json]        grade: exit 0 only when every answer is right
    exercise selftest [ID...] [--seeds 1,2] [--json]        solve each with the suite alone, check against the key
"""
from __future__ import annotations

import argparse
import json
from typing import Callable, List

from emulated_lab.exercises import kit
from emulated_lab.exercises.catalogue import EXERCISES


def add_parsers(sub) -> None:
    ls = sub.add_parser("exercises", help="list the lab exercises")
    ls.add_argument("--json", action="store_true", help="machine-readable list")
    ex = sub.add_parser("exercise", help="make, check or selftest a lab exercise (docs/exercises.md)")
    esub = ex.add_subparsers(dest="action")
    mk = esub.add_parser("make", help="write the student folder (and the key elsewhere)")
    mk.add_argument("id")
    mk.add_argument("--seed", type=int, default=0, help="per-student variant (default 0)")
    mk.add_argument("--out", required=True, metavar="DIR", help="the student folder (new or empty)")
    mk.add_argument("--key", metavar="FILE", help="write the answer key here (outside the student folder)")
    ck = esub.add_parser("check", help="grade an ANSWERS.json")
    ck.add_argument("id")
    ck.add_argument("--seed", type=int, required=True, help="the seed the folder was made with")
    ck.add_argument("answers", metavar="ANSWERS.json")
    ck.add_argument("--json", action="store_true")
    st = esub.add_parser("selftest", help="solve every exercise with the suite alone and check against the key")
    st.add_argument("ids", nargs="*", metavar="ID")
    st.add_argument("--seeds", default="1,2", help="comma-separated seeds (default 1,2)")
    st.add_argument("--json", action="store_true")


def _seeds(text: str) -> List[int]:
    try:
        seeds = [int(s, 0) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        raise kit.ExerciseError("--seeds takes comma-separated numbers, e.g. --seeds 1,2,3; got %r" % text)
    return [kit.check_seed(s) for s in seeds]


def main(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """Runs `exercises` / `exercise ...`; raises ExerciseError for bad input."""
    if args.cmd == "exercises":
        rows = [{"id": e.id, "day": e.day, "title": e.title, "skills": list(e.skills), "fault": e.fault}
                for e in EXERCISES]
        if args.json:
            out(json.dumps(rows, indent=2))
        else:
            for r in rows:
                out("%-24s day %d  %-42s %s" % (r["id"], r["day"], r["title"], ", ".join(r["skills"])))
        return 0
    if args.action == "make":
        for path in kit.make_exercise(args.id, args.seed, args.out, args.key):
            out("wrote %s" % path)
        return 0
    if args.action == "check":
        verdicts = kit.check_answers(args.id, args.seed, args.answers)
        if args.json:
            out(json.dumps({"exercise": args.id, "seed": args.seed, "all_right": all(v.right for v in verdicts),
                            "questions": [v._asdict() for v in verdicts]}, indent=2, default=str))
        else:
            for v in verdicts:
                out("%-22s %s" % (v.question, "right" if v.right else
                                  "WRONG: you answered %s, expected %s" % (json.dumps(v.given), json.dumps(v.expected))))
            out("%d of %d right" % (sum(v.right for v in verdicts), len(verdicts)))
        return 0 if all(v.right for v in verdicts) else 1
    if args.action == "selftest":
        results = kit.selftest(args.ids, _seeds(args.seeds))
        if args.json:
            out(json.dumps([{"exercise": r.ex_id, "seed": r.seed, "ok": r.ok, "error": r.error,
                             "commands": r.commands, "questions": [v._asdict() for v in r.verdicts]}
                            for r in results], indent=2, default=str))
        else:
            for r in results:
                wrong = [v for v in r.verdicts if not v.right]
                what = r.error or "; ".join("%s: suite says %s, key %s" % (v.question, json.dumps(v.given, default=str),
                                                                          json.dumps(v.expected)) for v in wrong)
                out("%-24s seed %-4d %s%s" % (r.ex_id, r.seed, "ok" if r.ok else "FAIL", "" if r.ok else ": " + what))
            out("%d of %d solved from the suite's output" % (sum(r.ok for r in results), len(results)))
        return 0 if all(r.ok for r in results) else 1
    raise kit.ExerciseError("exercise needs an action: make, check or selftest (see: python -m emulated_lab "
                            "exercise --help)")
