"""Runs `python -m emulated_lab kd` sessions in-process: the real hv.sys on the
emulated CPU, the suite run as pykd-ext runs it, against the kd report's
ground truth."""
from __future__ import annotations

import io
import json
import re
from typing import Dict, List, Optional

import pytest

PROMPT = re.compile(r"^\d+: kd> ")


class KdRun:
    """One session: the report (ground truth), the output of each command line, the operations."""

    def __init__(self, out: dict, lines: List[str]) -> None:
        self.report = out["report"]
        self.operations = out["operations"]
        self.crash = out["crash"]   # the scenario after the session (e.g. DriverUnload), "" when fine
        from emulated_lab.kd.session import dml_to_text

        pieces: List[List[tuple]] = []
        for text, dml in out["transcript"]:
            if PROMPT.match(text):
                pieces.append([])
            elif pieces:
                pieces[-1].append((text, dml))
        self.raw = ["".join(t for t, _ in p) for p in pieces]   # DML as the suite printed it
        self.outputs = ["".join(dml_to_text(t) if d else t for t, d in p) for p in pieces]   # as kd shows it
        assert len(self.outputs) == len(lines), (self.outputs, lines)
        self.lines = lines

    def json(self, i: int) -> dict:
        text = self.outputs[i]
        assert "error" not in text.split("\n", 1)[0], (self.lines[i], text)
        return json.loads(text)

    def processor(self, k: int) -> dict:
        return self.report["processors"][k]


def hexmap(d: Dict[str, str]) -> Dict[int, int]:
    return {int(k, 16): int(v, 16) for k, v in d.items()}


@pytest.fixture(scope="session")
def kd(hv_sys):
    """kd(scenario, cpus, lines, break_cpu=0, image=None) -> KdRun."""
    from emulated_lab.kd.session import kd_session

    def run(scenario: str, cpus: int, lines: List[str], break_cpu: int = 0, image: Optional[str] = None) -> KdRun:
        out = kd_session(scenario, cpus, hv_sys, break_cpu, None, list(lines), interactive=False,
                         stream=io.StringIO(), image=image)
        return KdRun(out, list(lines))
    return run
