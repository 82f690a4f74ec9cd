"""Answers and their grading: a question has a kind, an answer is normalised
by that kind before it is compared with the key. Pure: no I/O.

ANSWERS.json (what a student hands in, and what `exercise make --key` writes):
    {"exercise": "d4-host-tr", "seed": 7, "answers": {"processor": 2, "check": "host.tr.nonzero"}}
Numbers may be given as JSON numbers or strings in windbg_ext's number syntax ("0x10",
"10h", "0n16", "16"); choices and names are compared case-insensitively;
yes/no questions take true/false/"yes"/"no".
"""
from __future__ import annotations

import json
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from windbg_ext.number_syntax import NumberError, parse_number


class AnswerError(Exception):
    """An answers file that cannot be graded (one line for the user)."""


class Question(NamedTuple):
    id: str
    text: str
    kind: str                       # int | choice | bool | set | name
    choices: Tuple[str, ...] = ()   # for choice / set: the allowed words


def parse_int(value: object) -> Optional[int]:
    """8, "8", "0x8", "8h", "0n8", "0x8000`0021" -> the number (windbg_ext's number syntax, a bare
    number is decimal); None when it is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return None
    try:
        return parse_number(value.strip(), "decimal", "answer")
    except NumberError:
        return None


def _word(value: object) -> Optional[str]:
    if not isinstance(value, str):
        return None
    return " ".join(value.strip().lower().replace("_", " ").replace("-", " ").split())


def normalise(q: Question, value: object):
    """The comparable form of an answer, or None when it is not an answer of that kind."""
    if value is None:
        return None
    if q.kind == "int":
        return parse_int(value)
    if q.kind == "bool":
        if isinstance(value, bool):
            return value
        w = _word(value)
        return {"yes": True, "true": True, "y": True, "no": False, "false": False, "n": False}.get(w or "")
    if q.kind == "set":
        items = value if isinstance(value, list) else str(value).replace(",", " ").split()
        words = [_word(v) for v in items]
        return None if any(w is None for w in words) else frozenset(words)
    if q.kind == "name":   # identifiers such as check ids: dots kept, case ignored
        return value.strip().lower() if isinstance(value, str) else None
    return _word(value)   # choice


class Verdict(NamedTuple):
    question: str
    right: bool
    given: object
    expected: object


def grade(questions: Sequence[Question], key: Dict[str, object], answers: Dict[str, object]) -> List[Verdict]:
    out = []
    for q in questions:
        want = normalise(q, key[q.id])
        got = normalise(q, answers.get(q.id))
        out.append(Verdict(q.id, got is not None and got == want, answers.get(q.id), key[q.id]))
    return out


def read_answers(text: str, where: str, exercise: str, seed: int) -> Dict[str, object]:
    """The answers dict of an ANSWERS.json text; refuses another exercise's or seed's file."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise AnswerError("%s is not JSON (%s): hand in the ANSWERS.json of the exercise folder, filled in"
                          % (where, e))
    if not isinstance(doc, dict) or not isinstance(doc.get("answers"), dict):
        raise AnswerError('%s: expected {"exercise": ..., "seed": ..., "answers": {...}} as in the '
                          "exercise folder's ANSWERS.json" % where)
    if doc.get("exercise") not in (None, exercise):
        raise AnswerError("%s answers exercise %r, not %r" % (where, doc.get("exercise"), exercise))
    if doc.get("seed") is not None and parse_int(doc.get("seed")) != seed:
        raise AnswerError("%s was made for seed %s, not %d: grade it with --seed %s"
                          % (where, doc.get("seed"), seed, doc.get("seed")))
    return doc["answers"]
