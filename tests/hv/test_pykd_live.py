"""The hv commands live, through the pykd stand-in (real pykd names only,
backed by an image): same answers as offline, DML links, round trips counted
as pykd calls."""
from __future__ import annotations

import json
from typing import List

from tests.support import run_cli

from .builder import HvState


def _live(argv: List[str]):
    return run_cli(argv, live=True)


def test_vmm_live_matches_offline_and_links_vcpus(standin, image2, state2):
    standin._attach(image2)
    del standin._calls[:]
    code, out, err = _live(["vmm"])
    assert code == 0, err
    assert '<exec cmd="!py -m windbg_ext vcpu 1">1</exec>' in out
    assert "0x%x" % state2.regions[1]["vmcs_pa"] in out
    # whole structures per round trip: header, tables, VMM context, vCPU array
    assert standin._calls.count("loadBytes") <= 3 + 2


def test_vmcs_and_vcpu_live(standin, image2, state2):
    standin._attach(image2)
    code, out, err = _live(["--json", "vmcs", "0", "--all"])
    assert code == 0, err
    got = {int(f["encoding"], 16): int(f["value"], 16) for f in json.loads(out)["fields"]
           if f["value"] is not None}
    assert got == state2.snapshots[0]
    code, out, err = _live(["--json", "vcpu", "1"])
    assert code == 0, err
    assert json.loads(out)["host_stack_used"] == state2.stack_used[1]


def test_no_symbol_live_gives_one_clear_line(standin, tmp_path):
    s = HvState(vcpus=1)
    s.symbol = False
    path = s.build().write_image(str(tmp_path / "nosym.hvimg"))
    standin._attach(path)
    code, out, err = _live(["vmm"])
    assert code == 2 and err.count("\n") == 0
    assert "hv!HvDebugDescriptor" in err and "internal error" not in err


def test_torn_snapshot_is_read_again_live(standin, tmp_path):
    s = HvState(vcpus=1)
    s.snapshot_meta[0]["Sequence"] = 7  # odd: the driver was writing it
    path = s.build().write_image(str(tmp_path / "torn.hvimg"))
    standin._attach(path)
    del standin._calls[:]
    code, out, err = _live(["--json", "vmcs", "0", "GUEST_RIP"])
    assert code == 0, err
    assert standin._calls.count("loadBytes") == 4  # header, tables, vCPU, vCPU again
    assert any("torn" in n for n in json.loads(out)["notes"])
