"""msr_name (issue 16: msr_names.py's mutants): names typed in from SDM Vol. 4 Table 2-2 (and Appendix A.1 for
IA32_VMX_BASIC), and the fallback spelling for a number the table lacks: upper-case hex after "MSR_0x"."""
from __future__ import annotations

from windbg_ext.arch.msr_names import msr_name


def test_known_msrs_by_sdm_number():
    assert msr_name(0x1D9) == "IA32_DEBUGCTL"          # 1D9H
    assert msr_name(0x3A) == "IA32_FEATURE_CONTROL"    # 3AH
    assert msr_name(0x480) == "IA32_VMX_BASIC"         # 480H
    assert msr_name(0xC0000080) == "IA32_EFER"         # C000_0080H


def test_unknown_msrs_spell_their_number():
    assert msr_name(0xABC) == "MSR_0xABC"
    assert msr_name(0x4000_0000) == "MSR_0x40000000"   # the hypervisor range: not architectural
    assert msr_name(0) == "MSR_0x0"
