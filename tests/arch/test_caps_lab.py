"""The capability MSRs of the real emulated CPU: RDMSR on the Bochs model
(emulated_lab.Machine) must give the values the caps tests use, and caps
must decode an image carrying them. Real over mock: no value is assumed."""
import json

from tests.support import run_cli
from emulated_lab.asm import assemble
from emulated_lab.machine import Machine

from windbg_ext.arch.capability_report import FIRST_READ, dependent_msrs

from .bochs_caps import ABSENT, BOCHS_MSRS
from .conftest import write_caps_image

RDMSR = """
    rdmsr
    shl rdx, 32
    or rax, rdx
    ret
"""


def measure():
    m = Machine(cpus=1)
    try:
        code = m.place_code(assemble(RDMSR))
        values, faults = {}, {}
        for msr in list(FIRST_READ) + sorted(dependent_msrs({})) + [0x48B, 0x48C, 0x491]:
            if msr in values or msr in faults:
                continue
            r = m.run(0, code, regs={"rcx": msr})
            if r.fault is None:
                values[msr] = r.regs["rax"]
            else:
                faults[msr] = r.fault.vector
        return values, faults
    finally:
        m.close()


def test_bochs_capability_msrs_measured(tmp_path):
    values, faults = measure()
    assert values == BOCHS_MSRS
    assert faults == {msr: 13 for msr in ABSENT}  # #GP: the MSR does not exist
    # what the measured values say about existence agrees with what RDMSR did
    for msr, (exists, _) in dependent_msrs(values).items():
        assert exists == (msr in values), hex(msr)
    img = write_caps_image(tmp_path / "bochs.hvimg", [values])
    code, out, err = run_cli(["--json", "--image", img, "caps"])
    assert code == 0, err
    rep = json.loads(out)["cpus"][0]
    assert rep["basic"]["revision_id"] == 4 and rep["basic"]["region_size"] == 4096
    assert rep["feature_control"]["lock"] and rep["feature_control"]["vmx_outside_smx"]
