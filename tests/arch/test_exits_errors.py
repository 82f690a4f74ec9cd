"""Exit reasons (App. C), qualifications (28.2.1), interruption info, VM-instruction errors (31.4)."""
import pytest
from hypothesis import given, strategies as st

from windbg_ext.arch import exits as E
from windbg_ext.arch.vm_errors import VM_INSTRUCTION_ERRORS, vm_error_meaning


def test_exit_reason_table_covers_appendix_c():
    # App. C numbers 0..81 with 35, 38, 42 and 71 unassigned, then 84 and 85 (RDMSR / WRMSRNS with an
    # immediate MSR index)
    assert set(E.EXIT_REASONS) == (set(range(82)) - {35, 38, 42, 71}) | {84, 85}
    names = [r.name for r in E.EXIT_REASONS.values()]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("n,name", [(0, "EXCEPTION_NMI"), (10, "CPUID"), (18, "VMCALL"), (28, "CR_ACCESS"),
                                    (31, "MSR_READ"), (33, "INVALID_GUEST_STATE"), (48, "EPT_VIOLATION"),
                                    (55, "XSETBV"), (69, "LOADIWKEY"), (70, "ENCLV"), (74, "BUS_LOCK"),
                                    (75, "INSTRUCTION_TIMEOUT"), (76, "SEAMCALL"), (77, "TDCALL"),
                                    (78, "RDMSRLIST"), (79, "WRMSRLIST")])
def test_reason_numbers(n, name):
    assert E.EXIT_REASONS[n].name == name


@given(st.sampled_from(sorted(E.EXIT_REASONS)), st.booleans(), st.booleans())
def test_decode_exit_reason_splits_basic_and_flags(basic, failed, enclave):
    value = basic | (failed << 31) | (enclave << 27)
    d = E.decode_exit_reason(value)
    assert d["basic"] == basic and d["name"] == E.EXIT_REASONS[basic].name
    assert d["entry_failure"] == failed and d["enclave"] == enclave and d["known"]
    assert d["reserved_bits"] == 0


def test_unknown_and_reserved():
    d = E.decode_exit_reason(35 | (1 << 20))
    assert not d["known"] and d["reserved_bits"] == 1 << 20


def test_cr_access_qualification():
    q = dict((n, v) for n, v, _ in E.decode_qualification(28, (0 << 4) | 4 | (1 << 8)))
    assert q == {"cr": 4, "access_type": "MOV to CR", "gpr": "RCX"}
    q = dict((n, v) for n, v, _ in E.decode_qualification(28, 3 | (1 << 4) | (12 << 8)))
    assert q["access_type"] == "MOV from CR" and q["cr"] == 3 and q["gpr"] == "R12"
    q = dict((n, v) for n, v, _ in E.decode_qualification(28, (3 << 4) | (1 << 6) | (0x8001 << 16)))
    assert q["access_type"] == "LMSW" and q["lmsw_operand"] == "memory" and q["lmsw_source"] == 0x8001


@given(st.integers(0, 7), st.booleans(), st.integers(0, 15))
def test_mov_dr_qualification(dr, from_dr, gpr):
    q = dict((n, v) for n, v, _ in E.decode_qualification(29, dr | (from_dr << 4) | (gpr << 8)))
    assert q["dr"] == dr and q["gpr"] == E.GPR_NAMES[gpr]
    assert q["direction"] == ("MOV from DR" if from_dr else "MOV to DR")


@given(st.sampled_from([0, 1, 3]), st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.integers(0, 0xFFFF))
def test_io_qualification(size, into, string, rep, imm, port):
    q = dict((n, v) for n, v, _ in E.decode_qualification(
        30, size | (into << 3) | (string << 4) | (rep << 5) | (imm << 6) | (port << 16)))
    assert q["size"] == size + 1 and q["direction"] == ("IN" if into else "OUT")
    assert q["string"] == string and q["rep"] == rep and q["port"] == "0x%x" % port
    assert q["operand"] == ("immediate" if imm else "DX")


@given(st.integers(0, (1 << 17) - 1))
def test_ept_violation_bits(q):
    d = dict((n, v) for n, v, _ in E.decode_qualification(48, q))
    assert d["read"] == bool(q & 1) and d["write"] == bool(q & 2) and d["fetch"] == bool(q & 4)
    assert d["linear_valid"] == bool(q & 0x80) and d["nmi_unblocking"] == bool(q & 0x1000)
    assert sum(bool(v) for v in d.values()) == bin(q).count("1")


def test_task_switch_and_entry_failure():
    d = dict((n, v) for n, v, _ in E.decode_qualification(9, (3 << 30) | 0x28))
    assert d == {"selector": "0x28", "source": "task gate in IDT"}
    assert E.decode_qualification(33, 4)[0][2] == "invalid VMCS link pointer"
    assert E.decode_qualification(34, 3)[0][1] == 3
    assert E.decode_qualification(12, 0x55)[0][0] == "qualification"


@given(st.integers(0, 255), st.integers(0, 7), st.booleans(), st.booleans(), st.booleans())
def test_interruption_info(vector, itype, ecv, nmi, valid):
    v = vector | (itype << 8) | (ecv << 11) | (nmi << 12) | (valid << 31)
    d = E.decode_interruption_info(v)
    assert (d["vector"], d["type_number"], d["error_code_valid"], d["nmi_unblocking"], d["valid"]) == \
        (vector, itype, ecv, nmi, valid)
    assert d["type"] == E.INTERRUPTION_TYPES[itype] and d["reserved_bits"] == 0
    if itype == 3 and vector == 14:
        assert d["exception"] == "#PF"


def test_vm_instruction_errors_1_to_28():
    assert set(VM_INSTRUCTION_ERRORS) == set(range(1, 29))
    assert VM_INSTRUCTION_ERRORS[7][0] == "ENTRY_INVALID_CONTROL_FIELD"
    assert VM_INSTRUCTION_ERRORS[8][0] == "ENTRY_INVALID_HOST_STATE_FIELD"
    assert "revision" in VM_INSTRUCTION_ERRORS[11][1]
    assert "INVEPT" in VM_INSTRUCTION_ERRORS[28][1]
    assert all(VM_INSTRUCTION_ERRORS[n][1] == "(not assigned)" for n in (14, 21, 27))


def test_vm_error_meaning_is_the_sdm_text_with_advice_where_there_is_some():
    # descriptions typed in from SDM Vol. 3 Table 31-1 (31.4); the advice in parentheses is ours
    assert vm_error_meaning(1) == "VMCALL executed in VMX root operation"
    assert vm_error_meaning(28) == "invalid operand to INVEPT/INVVPID"
    assert vm_error_meaning(7) == ("VM entry with invalid control field(s) "
                                   "(SDM 27.2.1: check controls against the capability MSRs)")
    assert vm_error_meaning(11) == ("VMPTRLD with incorrect VMCS revision identifier "
                                    "(write IA32_VMX_BASIC[30:0] into the region's first dword)")


def _rows(rows):
    return {n: v for n, v, _ in rows}


def test_instruction_info_vmread_vmwrite():
    reg = _rows(E.decode_instruction_info(23, (1 << 28) | (1 << 10) | (9 << 3)))
    assert reg == {"reg2": "RCX", "reg1": "R9"}
    mem = _rows(E.decode_instruction_info(25, (2 << 28) | (2 << 7) | (3 << 15) | (1 << 22) | (5 << 23) | 2))
    assert mem["reg2"] == "RDX" and mem["operand"] == "memory" and mem["address_size"] == 64
    assert mem["segment"] == "DS" and mem["index"] is None and mem["base"] == "RBP" and mem["scaling"] == 4


@given(st.integers(0, 3), st.booleans(), st.integers(0, 15), st.integers(0, 15))
def test_instruction_info_descriptor_tables(ident, op32, index, base):
    v = (ident << 28) | (op32 << 11) | (index << 18) | (base << 23) | (1 << 7)
    d = _rows(E.decode_instruction_info(46, v))
    assert d["instruction"] == ("SGDT", "SIDT", "LGDT", "LIDT")[ident]
    assert d["operand_size"] == (32 if op32 else 16) and d["address_size"] == 32
    assert d["index"] == E.GPR_NAMES[index] and d["base"] == E.GPR_NAMES[base]


def test_instruction_info_other_formats():
    assert _rows(E.decode_instruction_info(47, (3 << 28) | (1 << 10) | (2 << 3))) == \
        {"instruction": "LTR", "operand": "register RDX"}
    assert _rows(E.decode_instruction_info(57, (2 << 11) | (8 << 3))) == {"destination": "R8", "operand_size": 64}
    assert _rows(E.decode_instruction_info(50, (3 << 28) | (1 << 27) | (1 << 22)))["reg2"] == "RBX"
    assert _rows(E.decode_instruction_info(30, (1 << 7) | (3 << 15))) == {"address_size": 32, "segment": "DS"}
    assert E.decode_instruction_info(12, 5)[0][0] == "instruction_info"


def test_displacement_qualification_is_signed():
    assert E.decode_qualification(21, 2 ** 64 - 16)[0][1].startswith("-16 ")
    assert E.decode_qualification(50, 0x20)[0][1] == "32 (0x20)"


def test_debug_exception_qualification_bits():
    """SDM Table 28-1 (#DB): B3:B0 in bits 3:0, BD bit 13, BS bit 14, RTM bit 16; each bit alone."""
    def q(value):
        return dict((n, v) for n, v, _ in E.decode_qualification(0, value))
    flags = ("bd", "bs", "rtm")
    assert [q(0)[f] for f in flags] == [False, False, False] and q(0)["b0_b3"] == "0x0"
    assert [q(1 << 13)[f] for f in flags] == [True, False, False]
    assert [q(1 << 14)[f] for f in flags] == [False, True, False]
    assert [q(1 << 16)[f] for f in flags] == [False, False, True]
    assert [q(1 << 12 | 1 << 15)[f] for f in flags] == [False, False, False]   # neighbours of BD/BS mean nothing
    assert q(0b1010)["b0_b3"] == "0xa" and q(1 << 4)["b0_b3"] == "0x0"
    assert q(0xFFFFF800_00001000)["pf_linear_address"] == "0xfffff80000001000"
