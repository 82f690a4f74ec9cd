"""hv/vmcs_values.py on values decoded by hand (issue 16: kills the mutants the walk and command tests
let live). Control bits from SDM Vol. 3 Tables 25-5 (pin-based: bit 0 external-interrupt exiting, 3
NMI exiting, 5 virtual NMIs; 1, 2 and 4 are default1 reserved bits, A.3.1), 25-6 and 25-7; access
rights from 25.4.1 Table 25-2 and the type names of Vol. 3 Tables 3-1 and 3-2; interruption
information from Table 25-17 (vector 7:0, type 10:8, error code 11, valid 31); the CR-access exit
qualification from Table 28-3; CR0/CR4/EFER/RFLAGS bit names from Vol. 3 2.5, 2.2.1 and Vol. 1 3.4.3.
The 64-bit "high" access reads bits 63:32 (25.11.2)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from windbg_ext.hv import vmcs_values as vv


def test_field_value_high_access_reads_bits_63_32():
    assert vv.field_value(0x1122334455667788, "high") == 0x11223344
    assert vv.field_value(0x1122334455667788, "full") == 0x1122334455667788
    assert vv.field_value(0x1122334455667788, "HIGH") == 0x1122334455667788


@pytest.mark.parametrize("name,kind", [("PIN_BASED_VM_EXEC_CONTROL", "pin"), ("CPU_BASED_VM_EXEC_CONTROL", "proc"),
                                       ("SECONDARY_VM_EXEC_CONTROL", "proc2"), ("TERTIARY_VM_EXEC_CONTROL", "proc3"),
                                       ("VM_EXIT_CONTROLS", "exit"), ("SECONDARY_VM_EXIT_CONTROLS", "exit2"),
                                       ("VM_ENTRY_CONTROLS", "entry"), ("GUEST_RIP", None), ("EXCEPTION_BITMAP", None)])
def test_control_kind_of_a_field(name, kind):
    assert vv._control_kind(name) == kind


def test_controls_name_their_set_bits():
    assert vv.decode("PIN_BASED_VM_EXEC_CONTROL", 0x29) == "EXTERNAL_INTERRUPT_EXITING NMI_EXITING VIRTUAL_NMIS"
    assert vv.decode("PIN_BASED_VM_EXEC_CONTROL", 0x16) == "(no named control) + reserved bits 1,2,4"
    assert vv.decode("PIN_BASED_VM_EXEC_CONTROL", 0x3F) == (
        "EXTERNAL_INTERRUPT_EXITING NMI_EXITING VIRTUAL_NMIS + reserved bits 1,2,4")
    assert vv.decode("PIN_BASED_VM_EXEC_CONTROL", 0x8) == "NMI_EXITING"
    assert vv.decode("PIN_BASED_VM_EXEC_CONTROL", 0) == "(none)"
    assert vv.decode("VM_ENTRY_CONTROLS", (1 << 9) | 1) == "IA32E_MODE_GUEST + reserved bits 0"  # bit 0: default1 (A.5)
    assert vv.decode("VM_ENTRY_CONTROLS", (1 << 9) | (1 << 2)) == "LOAD_DEBUG_CONTROLS IA32E_MODE_GUEST"
    assert vv.decode("TERTIARY_VM_EXEC_CONTROL", 1 << 63) == "(no named control) + reserved bits 63"


@pytest.mark.parametrize("value,text", [
    (0xF0F3, "read/write, accessed, S DPL3 P L DB G AVL"),
    (0x209B, "execute/read, accessed, S DPL0 P L"),
    (0x4093, "read/write, accessed, S DPL0 P DB"),
    (0x8093, "read/write, accessed, S DPL0 P G"),
    (0x1093, "read/write, accessed, S DPL0 P AVL"),
    (0x0013, "read/write, accessed, S DPL0 not-present"),
    (0x00CB, "64/32-bit TSS (busy), system DPL2 P"),
    (0x10082, "unusable"),
    (0x1F0FF, "unusable")])
def test_access_rights(value, text):
    assert vv.decode("GUEST_ES_AR_BYTES", value) == text
    assert vv.decode("GUEST_TR_AR_BYTES", value) == text


def test_exit_reason_and_instruction_error():
    assert vv.decode("VM_EXIT_REASON", 10) == "CPUID (10)"
    assert vv.decode("VM_EXIT_REASON", 0x80000021) == "entry failure: INVALID_GUEST_STATE (33)"
    assert vv.decode("VM_INSTRUCTION_ERROR", 7) == "7 ENTRY_INVALID_CONTROL_FIELD"   # SDM 31.4
    assert vv.decode("VM_INSTRUCTION_ERROR", 0) == "none"


def test_exit_qualification_decoded_with_the_exit_reason():
    # CR access (reason 28): bits 3:0 = 3 (CR3), 5:4 = 0 (MOV to CR), 11:8 = 3 (RBX); bit 27 of the reason is
    # "exit from enclave", not part of the basic reason
    assert vv.decode("EXIT_QUALIFICATION", 0x303, {"VM_EXIT_REASON": (1 << 27) | 28}) == (
        "cr=3; access_type=MOV to CR; gpr=RBX")
    assert vv.decode("EXIT_QUALIFICATION", 0xFFFFF000, {"VM_EXIT_REASON": 14}) == "linear_address=0xfffff000"
    assert vv.decode("EXIT_QUALIFICATION", 5, {"VM_EXIT_REASON": 10}) == ""      # CPUID: no qualification
    assert vv.decode("EXIT_QUALIFICATION", 0x303, {"GUEST_RIP": 28}) == ""
    assert vv.decode("EXIT_QUALIFICATION", 0x303, {}) == ""
    assert vv.decode("EXIT_QUALIFICATION", 0x303) == ""


@pytest.mark.parametrize("name", ["VM_EXIT_INTR_INFO", "IDT_VECTORING_INFO_FIELD", "VM_ENTRY_INTR_INFO_FIELD",
                                  "IDT_VECTORING_INFO", "VM_ENTRY_INTR_INFO"])
def test_interruption_information(name):
    assert vv.decode(name, 0x80000B0E) == "hardware exception #PF, error code"
    assert vv.decode(name, 0x80000302) == "hardware exception NMI"
    assert vv.decode(name, 0x80000202) == "NMI NMI"
    assert vv.decode(name, 0x80000030) == "external interrupt vector 48"
    assert vv.decode(name, 0x80000830) == "external interrupt vector 48, error code"
    assert vv.decode(name, 0x7FFFFB0E) == "not valid"


def test_cr0_cr4_efer_rflags_bit_names():
    assert vv.decode("GUEST_CR0", 0x80000031) == "PE ET NE PG"
    assert vv.decode("HOST_CR0", 0x80000001) == "PE PG"
    assert vv.decode("CR0_GUEST_HOST_MASK", 0x20) == "NE"
    assert vv.decode("CR0_READ_SHADOW", 1) == "PE"
    assert vv.decode("GUEST_CR4", 0x2020) == "PAE VMXE"
    assert vv.decode("HOST_CR4", 0x1000) == "LA57"
    assert vv.decode("CR4_GUEST_HOST_MASK", 0x2000) == "VMXE"
    assert vv.decode("CR4_READ_SHADOW", 0x20) == "PAE"
    assert vv.decode("GUEST_CR4", 0) == "-"
    assert vv.decode("GUEST_IA32_EFER", 0xD01) == "SCE LME LMA NXE"
    assert vv.decode("HOST_IA32_EFER", 0x500) == "LME LMA"
    assert vv.decode("GUEST_RFLAGS", 0x202) == "RESERVED1 IF"


@pytest.mark.parametrize("name", ["GUEST_CR3", "HOST_CR3", "GUEST_RIP", "CR3_TARGET_COUNT", "GUEST_CR0X",
                                  "CR0_GUEST_HOST_MASKX", "EXCEPTION_BITMAP", "HOST_RFLAGS"])
def test_other_fields_have_no_decoding(name):
    assert vv.decode(name, 0x80000031) == ""


def test_format_value_at_the_field_width():
    f = lambda width: SimpleNamespace(width=width)
    assert vv.format_value(f("16"), 0x10) == "0x0010"
    assert vv.format_value(f("32"), 0x10) == "0x00000010"
    assert vv.format_value(f("64"), 0x10) == "0x0000000000000010"
    assert vv.format_value(f("natural"), 0x10) == "0x0000000000000010"
    assert vv.format_value(f("64"), 0x10, "high") == "0x00000010"
    assert vv.format_value(f("64"), 0x10, "full") == "0x0000000000000010"
    with pytest.raises(KeyError):
        vv.format_value(f("8"), 0x10)


def test_diff_lists_every_differing_encoding_in_order():
    a = {0x6820: 2, 0x4002: 5, 0x681E: 1, 0x800: 0}
    b = {0x6820: 2, 0x4002: 6, 0x2800: 7, 0x800: 0}
    assert vv.diff(a, b) == [(0x800 + 0x2000, None, 7), (0x4002, 5, 6), (0x681E, 1, None)]
    assert vv.diff(a, dict(a)) == []
    assert vv.diff({}, {}) == []
    assert vv.diff({1: 0}, {}) == [(1, 0, None)]
