"""Every row the exit decoders show, exactly: name, value and meaning for hand-worked fields.

Each value below is built bit by bit from the SDM's layout (exit qualifications: 28.2.1, Tables
28-1..28-7; instruction information: 28.2.5, Tables 28-9..28-17) and the expected value read off by
hand, never by running the decoder. Bits the SDM leaves undefined next to a field are set on purpose,
so that a decoder reading one bit too many or too few changes a row. The meanings are the words a
user sees (ours, naming the SDM's bit positions), typed in here once more."""
import pytest

from windbg_ext.arch import exits as E


def test_cr_access_rows():  # Table 28-3
    # MOV from CR3 to R12, with undefined bits 7 and 12 set
    assert E.decode_qualification(28, 3 | 1 << 4 | 1 << 7 | 12 << 8 | 1 << 12) == [
        ("cr", 3, "control register number (CR3)"),
        ("access_type", "MOV from CR", "bits 5:4 = 1"),
        ("gpr", "R12", "general-purpose register (bits 11:8)")]
    assert E.decode_qualification(28, 8 | 1 << 7 | 1 << 12) == [
        ("cr", 8, "control register number (CR8)"),
        ("access_type", "MOV to CR", "bits 5:4 = 0"),
        ("gpr", "RAX", "general-purpose register (bits 11:8)")]
    assert E.decode_qualification(28, 2 << 4) == [
        ("cr", 0, "control register number (CR0)"), ("access_type", "CLTS", "bits 5:4 = 2")]
    # LMSW from memory, source data 8001H in bits 31:16, undefined bit 32 set
    assert E.decode_qualification(28, 3 << 4 | 1 << 6 | 0x8001 << 16 | 1 << 32) == [
        ("cr", 0, "control register number (CR0)"),
        ("access_type", "LMSW", "bits 5:4 = 3"),
        ("lmsw_operand", "memory", "LMSW operand type (bit 6)"),
        ("lmsw_source", 0x8001, "LMSW source data (bits 31:16)")]
    assert E.decode_qualification(28, 3 << 4 | 1 << 15)[2:] == [
        ("lmsw_operand", "register", "LMSW operand type (bit 6)"),
        ("lmsw_source", 0, "LMSW source data (bits 31:16)")]


def test_dr_access_rows():  # Table 28-4
    assert E.decode_qualification(29, 7 | 1 << 3 | 1 << 4 | 15 << 8 | 1 << 12) == [
        ("dr", 7, "debug register number (DR7)"),
        ("direction", "MOV from DR", "bit 4"),
        ("gpr", "R15", "general-purpose register (bits 11:8)")]
    assert E.decode_qualification(29, 1 << 5) == [
        ("dr", 0, "debug register number (DR0)"),
        ("direction", "MOV to DR", "bit 4"),
        ("gpr", "RAX", "general-purpose register (bits 11:8)")]


def test_io_rows():  # Table 28-5
    # IN, 4 bytes, REP INS with an immediate port 3F8H; undefined bits 15 and 32 set
    assert E.decode_qualification(30, 3 | 1 << 3 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 15 | 0x3F8 << 16 | 1 << 32) == [
        ("size", 4, "access size in bytes (bits 2:0: 0, 1, 3 = 1, 2, 4)"),
        ("direction", "IN", "bit 3"),
        ("string", True, "string instruction (INS/OUTS)"),
        ("rep", True, "REP prefixed"),
        ("operand", "immediate", "port operand encoding (bit 6)"),
        ("port", "0x3f8", "port number (bits 31:16)")]
    assert E.decode_qualification(30, 2 | 1 << 3)[0] == (
        "size", "not used (2)", "access size in bytes (bits 2:0: 0, 1, 3 = 1, 2, 4)")
    assert E.decode_qualification(30, 2 | 1 << 7) == [
        ("size", "not used (2)", "access size in bytes (bits 2:0: 0, 1, 3 = 1, 2, 4)"),
        ("direction", "OUT", "bit 3"),
        ("string", False, "string instruction (INS/OUTS)"),
        ("rep", False, "REP prefixed"),
        ("operand", "DX", "port operand encoding (bit 6)"),
        ("port", "0x0", "port number (bits 31:16)")]


def test_task_switch_rows():  # Table 28-2
    assert E.decode_qualification(9, 0x1234 | 1 << 16 | 2 << 30 | 1 << 32) == [
        ("selector", "0x1234", "TSS selector of the new task"),
        ("source", "JMP instruction", "bits 31:30 = 2")]
    sources = [E.decode_qualification(9, s << 30)[1][1] for s in range(4)]
    assert sources == ["CALL instruction", "IRET instruction", "JMP instruction", "task gate in IDT"]


@pytest.mark.parametrize("code,meaning", [
    (0, "default (no further information)"), (1, "reserved value"), (2, "failure loading the PDPTEs"),
    (3, "failure to inject an NMI blocked by STI/MOV SS"), (4, "invalid VMCS link pointer"), (5, "reserved value")])
def test_entry_failure_rows(code, meaning):  # 27.8
    assert E.decode_qualification(33, code) == [("failure_code", code, meaning)]


def test_msr_load_failure_and_linear_rows():  # 27.4; linear-address qualifications
    assert E.decode_qualification(34, 3) == [
        ("msr_entry", 3, "1-based index of the VM-entry MSR-load entry that failed")]
    assert E.decode_qualification(14, 0xFFFFF800_00001000) == [
        ("linear_address", "0xfffff80000001000", "linear address operand")]


def test_debug_exception_rows():  # Table 28-1
    assert E.decode_qualification(0, 0b0101 | 1 << 14) == [
        ("b0_b3", "0x5", "#DB: breakpoint conditions met (B3:B0)"),
        ("bd", False, "#DB: debug-register access detected"),
        ("bs", True, "#DB: single step"),
        ("rtm", False, "#DB: in an RTM region"),
        ("pf_linear_address", "0x4005", "#PF: the faulting linear address (CR2)")]


@pytest.mark.parametrize("kind,text", [
    (0, "linear read"), (1, "linear write"), (2, "linear fetch"), (3, "linear access during event delivery"),
    (4, "reserved (4)"), (10, "guest-physical access during event delivery"), (11, "reserved (11)"),
    (15, "guest-physical instruction fetch/execution")])
def test_apic_access_rows(kind, text):  # Table 28-6
    # offset FB0H has bit 11 set, next to the type in 15:12; bit 16 (asynchronous) is next above it
    assert E.decode_qualification(44, 0xFB0 | kind << 12 | 1 << 16) == [
        ("offset", "0xfb0", "offset within the APIC page"),
        ("access_type", text, "bits 15:12"),
        ("async", True, "asynchronous to instruction execution")]
    assert E.decode_qualification(44, kind << 12)[2] == ("async", False, "asynchronous to instruction execution")


def test_instruction_timeout_rows():
    rows = ("context_invalid", "VM context invalid: do not resume the guest"), \
        ("nmi_unblocking", "NMI unblocking due to IRET")
    for q, values in ((1 | 1 << 12, (True, True)), (2 | 1 << 11 | 1 << 13, (False, False)), (1, (True, False))):
        assert E.decode_qualification(75, q) == [(n, v, m) for (n, m), v in zip(rows, values)]


def test_displacement_and_unstructured_rows():
    meaning = "displacement of the memory operand (sign-extended); see VMX_INSTRUCTION_INFO for base/index/scale"
    assert E.decode_qualification(21, 2 ** 64 - 16) == [("displacement", "-16 (0xfffffffffffffff0)", meaning)]
    assert E.decode_qualification(19, 2 ** 63) == [
        ("displacement", "-9223372036854775808 (0x8000000000000000)", meaning)]
    assert E.decode_qualification(64, 2 ** 63 - 1) == [
        ("displacement", "9223372036854775807 (0x7fffffffffffffff)", meaning)]
    assert E.decode_qualification(12, 0x55) == [
        ("qualification", "0x55", "no structured qualification for this exit reason")]
    # the flag bits of an exit-reason value (31: entry failure) do not change the basic reason (28.2.1)
    assert E.decode_qualification(0x8000_001E, 2) == E.decode_qualification(30, 2)
    assert E.decode_qualification(0x1_0000, 2)[0][0] == "b0_b3"


# -- VM-exit instruction information (28.2.5) -------------------------------
# scaling 3 (x8), address size 1 (32-bit), segment 5 (GS), index 11 (R11: bit 18, next to the segment, is
# set), base 10 (R10); bits 2, 10 and 14 set: undefined next to these fields in the memory-operand formats
MEM = 3 | 1 << 2 | 1 << 7 | 1 << 10 | 1 << 14 | 5 << 15 | 11 << 18 | 10 << 23
MEM_ROWS = [("scaling", 8, "index scale factor (bits 1:0)"),
            ("address_size", 32, "address size in bits (9:7)"),
            ("segment", "GS", "segment register (17:15)"),
            ("index", "R11", "index register (21:18; none if bit 22)"),
            ("base", "R10", "base register (26:23; none if bit 27)")]
# no index (bit 22), no base (bit 27), segment 6 and address size 3: both reserved
MEM_NONE = 3 << 7 | 6 << 15 | 1 << 22 | 1 << 27
MEM_NONE_ROWS = [("scaling", 1, "index scale factor (bits 1:0)"),
                 ("address_size", "reserved", "address size in bits (9:7)"),
                 ("segment", "reserved", "segment register (17:15)"),
                 ("index", None, "index register (21:18; none if bit 22)"),
                 ("base", None, "base register (26:23; none if bit 27)")]


@pytest.mark.parametrize("reason", [19, 21, 22, 27, 63, 64])
def test_memory_operand_rows(reason):  # VMCLEAR, VMPTRLD, VMPTRST, VMXON, XSAVES, XRSTORS
    assert E.decode_instruction_info(reason, MEM) == MEM_ROWS
    assert E.decode_instruction_info(reason, MEM_NONE) == MEM_NONE_ROWS
    assert E.decode_instruction_info(reason, 7 << 15)[2] == ("segment", "reserved", "segment register (17:15)")
    assert E.decode_instruction_info(reason, 2 << 7)[1] == ("address_size", 64, "address size in bits (9:7)")


def test_ins_outs_rows():
    assert E.decode_instruction_info(30, 1 << 6 | 2 << 7 | 1 << 10 | 1 << 14 | 2 << 15 | 1 << 18) == [
        ("address_size", 64, "address size in bits (9:7)"),
        ("segment", "SS", "segment register for OUTS (17:15)")]
    assert E.decode_instruction_info(30, 5 << 7 | 6 << 15) == [
        ("address_size", "reserved", "address size in bits (9:7)"),
        ("segment", "reserved", "segment register for OUTS (17:15)")]


@pytest.mark.parametrize("reason", [50, 53, 58])
def test_invept_invpcid_invvpid_rows(reason):
    assert E.decode_instruction_info(reason, MEM | 15 << 28) == MEM_ROWS + [
        ("reg2", "R15", "register holding the type (31:28)")]


def test_descriptor_table_rows():
    assert E.decode_instruction_info(46, MEM | 1 << 11 | 1 << 28 | 1 << 30) == [
        ("instruction", "SIDT", "instruction identity (29:28)"),
        ("operand_size", 32, "operand size (bit 11)")] + MEM_ROWS
    assert E.decode_instruction_info(46, MEM_NONE | 2 << 28)[:2] == [
        ("instruction", "LGDT", "instruction identity (29:28)"),
        ("operand_size", 16, "operand size (bit 11)")]


def test_ldtr_tr_rows():
    # STR to R13: bits 2 and 7 (undefined in the register form) set next to 6:3
    assert E.decode_instruction_info(47, 1 << 2 | 13 << 3 | 1 << 7 | 1 << 10 | 1 << 28 | 1 << 30) == [
        ("instruction", "STR", "instruction identity (29:28)"),
        ("operand", "register R13", "register operand (6:3, bit 10 = 1)")]
    assert E.decode_instruction_info(47, (MEM & ~(1 << 10)) | 2 << 28) == [
        ("instruction", "LLDT", "instruction identity (29:28)"),
        ("operand", "memory", "bit 10 = 0")] + MEM_ROWS
    assert E.decode_instruction_info(47, 0)[0][1] == "SLDT"


@pytest.mark.parametrize("reason", [57, 61])
def test_rdrand_rdseed_rows(reason):
    assert E.decode_instruction_info(reason, 1 << 2 | 5 << 3 | 1 << 7 | 1 << 10 | 1 << 11 | 1 << 13) == [
        ("destination", "RBP", "destination register (6:3)"),
        ("operand_size", 32, "operand size (12:11)")]
    assert E.decode_instruction_info(reason, 3 << 11)[1] == ("operand_size", "reserved", "operand size (12:11)")
    assert E.decode_instruction_info(reason, 0)[1] == ("operand_size", 16, "operand size (12:11)")


@pytest.mark.parametrize("reason", [23, 25])
def test_vmread_vmwrite_rows(reason):
    assert E.decode_instruction_info(reason, 1 << 2 | 9 << 3 | 1 << 7 | 1 << 10 | 1 << 28) == [
        ("reg2", "RCX", "register holding the field encoding (31:28)"),
        ("reg1", "R9", "register operand (6:3, bit 10 = 1)")]
    assert E.decode_instruction_info(reason, (MEM & ~(1 << 10)) | 2 << 28) == [
        ("reg2", "RDX", "register holding the field encoding (31:28)"),
        ("operand", "memory", "bit 10 = 0")] + MEM_ROWS


@pytest.mark.parametrize("reason", [67, 68])
def test_tpause_umwait_rows(reason):
    assert E.decode_instruction_info(reason, 1 << 2 | 14 << 3 | 1 << 7) == [("reg", "R14", "register operand (6:3)")]


def test_loadiwkey_rows():
    assert E.decode_instruction_info(69, 1 << 2 | 3 << 3 | 1 << 7 | 1 << 27 | 7 << 28 | 1 << 32) == [
        ("reg1", "XMM3", "first operand (6:3)"), ("reg2", "XMM7", "second operand (31:28)")]


def test_instruction_info_of_other_exits():
    assert E.decode_instruction_info(12, 5) == [("instruction_info", "0x5", "not defined for this exit reason")]
    # the field is 32 bits; the exit reason's flag bits do not change the format
    assert E.decode_instruction_info(0x8000_0045, 1 << 32 | 3 << 3) == E.decode_instruction_info(69, 3 << 3)
    assert E.decode_instruction_info(0x1_0045, 5) == E.decode_instruction_info(69, 5)


# -- what no processor reports (28.2.1, Tables 28-3, 28-5, 28-6; 27.8), sentence by sentence ----------
def test_exit_reason_problems_sentences():
    assert E.exit_reason_problems(30) == []
    assert E.exit_reason_problems(1 << 30 | 1 << 16 | 30) == [
        "bits 30, 16 set: reserved in the exit-reason field, a processor writes 0 there (SDM 28.2.1)"]
    assert E.exit_reason_problems(1 << 31 | 30) == [
        "bit 31 (VM-entry failure) comes only with basic reasons 33, 34 and 41 (SDM 28.2.1), not 30"]
    assert [E.exit_reason_problems(1 << 31 | r) for r in (33, 34, 41)] == [[], [], []]


def test_qualification_problem_sentences():
    assert E.qualification_problems(28, 1 << 7) == [
        "bit 7 set: the SDM defines no such bits for this exit (Table 28-3)"]
    assert E.qualification_problems(29, 1 << 12 | 1 << 3) == [
        "bits 12, 3 set: the SDM defines no such bits for this exit (Table 28-4)"]
    # MOV to/from CR: CR0, CR3, CR4, CR8 only; CR2 is a MOV-CR exit no processor reports
    assert E.qualification_problems(28, 2) == ["CR2: MOV-CR exits report only CR0, CR3, CR4 or CR8 (Table 28-3)"]
    assert E.qualification_problems(28, 1 << 4 | 9) == [
        "CR9: MOV-CR exits report only CR0, CR3, CR4 or CR8 (Table 28-3)"]
    assert [E.qualification_problems(28, a << 4 | cr) for a in (0, 1) for cr in (0, 3, 4, 8)] == [[]] * 8
    # CLTS (2) and LMSW (3) report CR0; a bit 3:0 value of 1 or 8 is not something a processor writes
    assert E.qualification_problems(28, 2 << 4 | 1) == ["CLTS and LMSW exits report CR0, not CR1 (Table 28-3)"]
    assert E.qualification_problems(28, 3 << 4 | 8) == ["CLTS and LMSW exits report CR0, not CR8 (Table 28-3)"]
    assert E.qualification_problems(28, 2 << 4) == E.qualification_problems(28, 3 << 4) == []
    assert E.qualification_problems(28, 3 << 4 | 1 << 6 | 8) == [    # LMSW from memory: bit 6 is not the type
        "CLTS and LMSW exits report CR0, not CR8 (Table 28-3)"]
    assert E.qualification_problems(30, 2) == [
        "size encoding 2 in bits 2:0: only 0, 1 and 3 (1, 2, 4 bytes) are used (Table 28-5)"]
    assert [E.qualification_problems(30, s) for s in (0, 1, 3)] == [[], [], []]
    assert E.qualification_problems(30, 2 | 1 << 3) == [    # an IN: bit 3 is not the size
        "size encoding 2 in bits 2:0: only 0, 1 and 3 (1, 2, 4 bytes) are used (Table 28-5)"]
    # bit 16 (async) next to the type in 15:12: type 1 stays defined
    assert E.qualification_problems(44, 4 << 12) == ["access type 4 in bits 15:12 is not defined (Table 28-6)"]
    assert E.qualification_problems(44, 1 << 11 | 1 << 12 | 1 << 16) == []
    assert E.qualification_problems(44, 4 << 12 | 1 << 16) == [
        "access type 4 in bits 15:12 is not defined (Table 28-6)"]
    assert [E.qualification_problems(44, t << 12) for t in (0, 1, 2, 3, 10, 15)] == [[]] * 6
    assert E.qualification_problems(45, 4 << 12) == []
    assert E.qualification_problems(33, 1) == ["exit qualification 1 is not defined for a VM-entry failure (SDM 27.8)"]
    assert E.qualification_problems(33, 4) == [] and E.qualification_problems(12, 1 << 40) == []


def test_decode_exit_reason_whole():
    flags = {"shadow_stack_busy": False, "bus_lock": False, "enclave": False, "pending_mtf": False,
             "from_vmx_root": False, "entry_failure": False}
    assert E.decode_exit_reason(1 << 27 | 10) == dict(
        flags, value=0x0800000A, basic=10, name="CPUID", meaning=E.EXIT_REASONS[10].meaning, known=True,
        enclave=True, reserved_bits=0)
    assert E.decode_exit_reason(1 << 32 | 1 << 30 | 35) == dict(
        flags, value=0x40000023, basic=35, name="UNKNOWN_35", meaning="not a basic exit reason in SDM Appendix C",
        known=False, reserved_bits=1 << 30)


@pytest.mark.parametrize("itype,vector,exception", [
    (2, 2, "NMI"), (3, 14, "#PF"), (3, 9, "vector 9"), (5, 1, "#DB"), (6, 3, "#BP"), (0, 14, None), (4, 3, None),
    (7, 0, None)])
def test_interruption_info_whole(itype, vector, exception):  # 25.9.2: types 2, 3, 5, 6 carry an exception
    d = E.decode_interruption_info(1 << 32 | 1 << 31 | 1 << 13 | itype << 8 | vector)
    expected = {"value": 0x80002000 | itype << 8 | vector, "valid": True, "vector": vector,
                "type": E.INTERRUPTION_TYPES[itype], "type_number": itype, "error_code_valid": False,
                "nmi_unblocking": False, "reserved_bits": 1 << 13}
    if exception is not None:
        expected["exception"] = exception
    assert d == expected
