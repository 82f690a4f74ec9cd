"""Every field of the capability-MSR decoders at its SDM bit position (Vol. 3 Appendix A), one bit at a
time: the positions below are typed in from the SDM's text, not taken from windbg_ext."""
import pytest

from windbg_ext.arch import capabilities as C
from windbg_ext.arch import controls as K

# A.1 IA32_VMX_BASIC: flag -> bit
BASIC_FLAGS = {"phys_addr_32bit_only": 48, "dual_monitor_smm": 49, "ins_outs_info": 54, "true_controls": 55,
               "no_error_code_check": 56}
# A.6 IA32_VMX_MISC: flag -> bit
MISC_FLAGS = {"stores_lma": 5, "activity_hlt": 6, "activity_shutdown": 7, "activity_wait_sipi": 8,
              "intel_pt_in_vmx": 14, "rdmsr_smbase_in_smm": 15, "smm_monitor_ctl_bit2": 28,
              "vmwrite_any_field": 29, "inject_zero_length": 30}


# every field of a decoder for the value 0 (revision 0, bit 31 clear, region size 0, memory type 0 = UC)
BASIC_ZERO = dict({k: False for k in BASIC_FLAGS}, revision_id=0, bit31_zero=True, region_size=0, memtype=0,
                  memtype_name="UC (uncacheable)")
MISC_ZERO = dict({k: False for k in MISC_FLAGS}, preemption_timer_rate=0, cr3_target_count=0, max_msr_list=512,
                 mseg_revision_id=0)


def _decodes(decoder, zero, v, **changed):
    """decoder(v) is the zero value's decoding with only `changed` different."""
    return decoder(v) == dict(zero, **changed)


def _basic(v, **changed):
    return _decodes(C.decode_basic, BASIC_ZERO, v, **changed)


def _misc(v, **changed):
    return _decodes(C.decode_misc, MISC_ZERO, v, **changed)


@pytest.mark.parametrize("flag", sorted(BASIC_FLAGS))
def test_basic_flags_alone(flag):
    assert _basic(1 << BASIC_FLAGS[flag], **{flag: True})


def test_basic_fields():
    assert _basic(0)
    assert _basic(0x7FFFFFFF | 1 << 31, revision_id=0x7FFFFFFF, bit31_zero=False)
    assert _basic(0x1FFF << 32 | 1 << 45, region_size=0x1FFF)        # bits 44:32
    assert _basic(6 << 50, memtype=6, memtype_name="WB (write-back)")  # bits 53:50
    assert _basic(0xF << 50, memtype=15, memtype_name="reserved (15)")
    assert _basic(2 << 50, memtype=2, memtype_name="reserved (2)")


@pytest.mark.parametrize("flag", sorted(MISC_FLAGS))
def test_misc_flags_alone(flag):
    assert _misc(1 << MISC_FLAGS[flag], **{flag: True})


def test_misc_fields():
    assert _misc(0)
    assert _misc(0x1F, preemption_timer_rate=0x1F)
    assert _misc(0x1FF << 16, cr3_target_count=0x1FF)                  # bits 24:16
    assert _misc(1 << 25, max_msr_list=1024)                           # 512 * (N + 1), N in 27:25
    assert _misc(7 << 25, max_msr_list=4096)
    assert _misc(0xFFFFFFFF << 32, mseg_revision_id=0xFFFFFFFF)        # bits 63:32
    assert _misc(0x12345678 << 32 | 1 << 31, mseg_revision_id=0x12345678)


def test_ept_vpid_cap_hlat_prefix_size():  # A.10: bits 53:48
    assert C.decode_ept_vpid_cap(0)["max HLAT prefix size"] == 0
    assert C.decode_ept_vpid_cap(0x3F << 48 | 1 << 47 | 1 << 54)["max HLAT prefix size"] == 0x3F
    assert C.decode_ept_vpid_cap(5 << 48)["max HLAT prefix size"] == 5
    assert C.decode_ept_vpid_cap(1 << 6) == dict({n: False for n in C.EPT_VPID_CAP_BITS.values()}, **{
        "EPT page-walk length 4": True, "max HLAT prefix size": 0})


def test_vmfunc():  # A.11: bit 0 EPTP switching; the rest listed as a number
    assert C.decode_vmfunc(1) == {"EPTP switching": True, "other functions": "0x0"}
    assert C.decode_vmfunc(0x6) == {"EPTP switching": False, "other functions": "0x6"}
    assert C.decode_vmfunc(1 << 64 | 3) == {"EPTP switching": True, "other functions": "0x2"}


def test_feature_control_senter_local_functions():  # IA32_FEATURE_CONTROL bits 14:8
    assert C.decode_feature_control(0x7F << 8)["senter_local_functions"] == 0x7F
    assert C.decode_feature_control(1 << 7 | 1 << 15)["senter_local_functions"] == 0
    assert C.decode_feature_control(3 << 8)["senter_local_functions"] == 3
    assert C.decode_feature_control(1 << 15) == {"lock": False, "vmx_inside_smx": False, "vmx_outside_smx": False,
                                                 "senter_global": True, "sgx_launch_control": False,
                                                 "sgx_global": False, "lmce": False, "senter_local_functions": 0}


def test_wide_control_msrs_have_no_allowed_0_half():  # A.3.4, A.4.2: 64 bits, all allowed-1
    msr = 1 << 40 | 1 << 3
    assert C.adjust_controls(1 << 40 | 1 << 5, msr, True) == 1 << 40
    assert C.adjust_controls(1 << 40 | 1 << 5, msr, wide=True) == 1 << 40
    assert C.control_problems(1 << 40 | 1 << 5, msr, True) == (0, 1 << 5)
    assert C.control_problems(1 << 41, msr, True) == (0, 1 << 41)
    # a 32-bit control MSR: allowed-0 in 31:0, allowed-1 in 63:32; bits past 31 of the field are not checked
    assert C.control_problems(1 << 41 | 1 << 2, 1 << 3 | (1 << 2 | 1 << 3) << 32) == (1 << 3, 0)


def test_decode_controls_width_and_reserved_bits():
    assert K.decode_controls("pin", 1 << 20 | 1 << 32)[-1] == (20, "RESERVED_20", True)
    assert all(b < 32 for b, _, _ in K.decode_controls("pin", (1 << 64) - 1))
    assert not any(on for _, _, on in K.decode_controls("pin", 1 << 32))
    assert [b for b, _, _ in K.decode_controls("pin", 0)] == sorted(K.CONTROL_BITS["pin"])
    assert K.decode_controls("proc3", 1 << 63 | 1 << 64)[-1] == (63, "RESERVED_63", True)
    assert K.decode_controls("exit2", 1 << 62)[-1] == (62, "RESERVED_62", True)
    assert K.bit_name("pin", 31) == "RESERVED_31"
    with pytest.raises(ValueError) as e:
        K.decode_controls("pinn", 0)
    assert str(e.value) == "unknown control kind 'pinn' (one of pin, proc, proc2, proc3, exit, exit2, entry)"
