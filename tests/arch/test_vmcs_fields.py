"""The field catalogue: complete, consistent, and found the ways people type it."""
import pytest
from hypothesis import given, strategies as st

from windbg_ext.arch import vmcs_fields as V
from windbg_ext.arch.encoding import decode_encoding

FIELD = st.sampled_from(V.FIELDS)


def test_no_duplicate_names_or_encodings():
    assert len({f.name for f in V.FIELDS}) == len(V.FIELDS)
    assert len({f.encoding for f in V.FIELDS}) == len(V.FIELDS)
    assert len(V.BY_ENCODING) == len(V.BY_NAME) == len(V.FIELDS)


def test_every_entry_decodes_to_its_declared_width_and_type():
    for f in V.FIELDS:
        d = decode_encoding(f.encoding)
        assert d.valid, f
        assert (d.access, d.width, d.type) == ("full", f.width, f.type), f
        assert f.readonly == (f.type == "exit")
        assert f.sdm.startswith("B.") and f.meaning and f.name == f.name.upper()


def test_every_64_bit_field_has_a_high_encoding_that_resolves():
    wide = [f for f in V.FIELDS if f.width == "64"]
    assert len(wide) > 60
    for f in wide:
        assert V.high_encoding(f) == f.encoding | 1
        assert V.lookup(f.encoding | 1) == (f, "high")
        assert V.lookup(f.name + "_HIGH") == (f, "high")
        assert (f.encoding | 1) not in V.BY_ENCODING


def test_non_64_bit_fields_have_no_high_access():
    for f in V.FIELDS:
        if f.width != "64":
            with pytest.raises(V.FieldLookupError, match="only for 64-bit"):
                V.lookup(f.encoding | 1)
            with pytest.raises(ValueError):
                V.high_encoding(f)


# Cross-checked facts: encodings of the newer Appendix B fields (KVM vmx.h, Bochs vmx.h).
NEWER = {
    "TERTIARY_VM_EXEC_CONTROL": 0x2034, "HLAT_PREFIX_SIZE": 0x0006, "HLAT_POINTER": 0x2040,
    "PCONFIG_EXITING_BITMAP": 0x203E, "ENCLS_EXITING_BITMAP": 0x202E, "ENCLV_EXITING_BITMAP": 0x2036,
    "GUEST_IA32_PKRS": 0x2818, "HOST_IA32_PKRS": 0x2C06, "GUEST_S_CET": 0x6828, "GUEST_SSP": 0x682A,
    "GUEST_INTR_SSP_TABLE": 0x682C, "HOST_S_CET": 0x6C18, "HOST_SSP": 0x6C1A, "HOST_INTR_SSP_TABLE": 0x6C1C,
    "GUEST_IA32_PERF_GLOBAL_CTRL": 0x2808, "HOST_IA32_PERF_GLOBAL_CTRL": 0x2C04, "GUEST_IA32_RTIT_CTL": 0x2814,
    "GUEST_IA32_LBR_CTL": 0x2816, "GUEST_BNDCFGS": 0x2812, "SPP_TABLE_POINTER": 0x2030, "GUEST_PML_INDEX": 0x0812,
    "PML_ADDRESS": 0x200E, "EPTP_LIST_ADDRESS": 0x2024, "VMREAD_BITMAP": 0x2026, "VMWRITE_BITMAP": 0x2028,
    "VE_INFORMATION_ADDRESS": 0x202A, "XSS_EXIT_BITMAP": 0x202C, "TSC_MULTIPLIER": 0x2032,
    "SHARED_EPT_POINTER": 0x203C, "INSTRUCTION_TIMEOUT_CONTROL": 0x4024, "SECONDARY_VM_EXIT_CONTROLS": 0x2044,
    "LOW_PASID_DIRECTORY": 0x2038, "HIGH_PASID_DIRECTORY": 0x203A, "PID_POINTER_TABLE": 0x2042,
    "LAST_PID_POINTER_INDEX": 0x0008, "IA32_SPEC_CTRL_MASK": 0x204A, "IA32_SPEC_CTRL_SHADOW": 0x204C,
    "GUEST_UINV": 0x0814, "GUEST_IA32_FRED_CONFIG": 0x281A, "HOST_IA32_FRED_SSP3": 0x2C16,
    "INJECTED_EVENT_DATA": 0x2052, "ORIGINAL_EVENT_DATA": 0x2404, "MSR_DATA": 0x2402,
    # the classic ones the driver uses
    "GUEST_RIP": 0x681E, "HOST_RIP": 0x6C16, "VMCS_LINK_POINTER": 0x2800, "VM_INSTRUCTION_ERROR": 0x4400,
    "VM_EXIT_REASON": 0x4402, "EXIT_QUALIFICATION": 0x6400, "GUEST_ES_AR_BYTES": 0x4814,
    "GUEST_TR_AR_BYTES": 0x4822, "GUEST_IDTR_BASE": 0x6818, "HOST_TR_SELECTOR": 0x0C0C, "MSR_BITMAP": 0x2004,
}


@pytest.mark.parametrize("name,encoding", sorted(NEWER.items()))
def test_known_encodings(name, encoding):
    assert V.by_name(name).encoding == encoding


def test_catalogue_counts_per_section():
    from collections import Counter
    c = Counter(f.sdm for f in V.FIELDS)
    assert c["B.1.2"] == 11 and c["B.1.3"] == 7 and c["B.3.3"] == 23 and c["B.4.2"] == 6
    assert c["B.4.3"] == 23 and c["B.4.4"] == 15 and c["B.3.2"] == 8


@given(FIELD, st.sampled_from(["{}", "{lower}", "VMCS_{}", "vmcs_{lower}", "  {} ", "{dash}"]))
def test_lookup_accepts_spellings(f, pattern):
    text = pattern.format(f.name, lower=f.name.lower(), dash=f.name.lower().replace("_", "-"))
    assert V.lookup(text) == (f, "full")


@given(FIELD)
def test_lookup_by_number_in_any_notation(f):
    for text in (f.encoding, "0x%x" % f.encoding, "0x%08X" % f.encoding, "%x" % f.encoding, "%xh" % f.encoding,
                 "0n%d" % f.encoding):
        assert V.lookup(text) == (f, "full")


@pytest.mark.parametrize("alias,name", [("GUEST_ES_ACCESS_RIGHTS", "GUEST_ES_AR_BYTES"), ("eptp", "EPT_POINTER"),
                                        ("exit_reason", "VM_EXIT_REASON"), ("GUEST_PDPTE2", "GUEST_PDPTR2"),
                                        ("notify_window", "INSTRUCTION_TIMEOUT_CONTROL")])
def test_aliases(alias, name):
    assert V.lookup(alias)[0].name == name


def test_typo_suggests_nearest_names_in_one_line():
    with pytest.raises(V.FieldLookupError) as e:
        V.lookup("GUEST_RIPP")
    msg = str(e.value)
    assert "GUEST_RIP" in msg and "\n" not in msg and "field --all" in msg
    with pytest.raises(V.FieldLookupError) as e:
        V.lookup("rip")
    assert "GUEST_RIP" in str(e.value) and "HOST_RIP" in str(e.value)


def test_unknown_but_well_formed_encoding_says_so():
    with pytest.raises(V.FieldLookupError, match="well-formed"):
        V.lookup(0x482C)
    with pytest.raises(V.FieldLookupError, match="bit 12"):
        V.lookup("0x1000")
    assert isinstance(V.FieldLookupError("x"), LookupError)


def test_loose_spellings_never_collide():
    seen = {}
    for alias, name in list(V.ALIASES.items()) + [(f.name, f.name) for f in V.FIELDS]:
        key = V.loose_key(alias)
        assert seen.setdefault(key, name) == name, (alias, name, seen[key])


@pytest.mark.parametrize("text,name", [("VMEXIT_INTERRUPTION_INFORMATION", "VM_EXIT_INTR_INFO"),
                                       ("EOI_EXIT_BITMAP_3", "EOI_EXIT_BITMAP3"),
                                       ("xss_exiting_bitmap", "XSS_EXIT_BITMAP"),
                                       ("GUEST_PENDING_DEBUG_EXCEPTIONS", "GUEST_PENDING_DBG_EXCEPTIONS"),
                                       ("VMENTRY_INTERRUPTION_INFORMATION", "VM_ENTRY_INTR_INFO_FIELD")])
def test_loose_spellings(text, name):
    assert V.lookup(text)[0].name == name


def test_driver_catalogue_agrees_with_this_one():
    """hv.sys has its own X-macro field list (driver/include/hv_vmcs.h): every
    entry must be an App. B field here, same width and type, and its name must
    resolve to that field (the suite reads what the driver names)."""
    import os
    import re

    from windbg_ext.arch.encoding import encode
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "driver", "include", "hv_vmcs.h")) as f:
        text = f.read()
    rows = re.findall(r"X\((\w+),\s*(W16|W32|W64|WNAT),\s*(TCTL|TEXIT|TGUEST|THOST),\s*(\d+)\)", text)
    assert len(rows) > 100
    widths = {"W16": "16", "W32": "32", "W64": "64", "WNAT": "natural"}
    types = {"TCTL": "control", "TEXIT": "exit", "TGUEST": "guest", "THOST": "host"}
    for name, w, t, index in rows:
        enc = encode("full", int(index), types[t], widths[w])
        field = V.BY_ENCODING.get(enc)
        assert field is not None, "driver field %s (0x%x) is not in App. B" % (name, enc)
        assert (field.width, field.type) == (widths[w], types[t])
        assert V.lookup(name) == (field, "full"), name


# -- lookup's messages and spellings, word for word ------------------------------------------------------
def _lookup_error(text):
    with pytest.raises(V.FieldLookupError) as e:
        V.lookup(text)
    return str(e.value)


def test_lookup_spellings_with_spaces_and_high_suffixes():
    assert V.lookup(" guest rip ") == (V.by_name("GUEST_RIP"), "full")
    assert V.lookup("io bitmap a hi") == (V.by_name("IO_BITMAP_A"), "high")
    assert V.lookup("IO_BITMAP_A_HIGH") == (V.by_name("IO_BITMAP_A"), "high")
    assert V.lookup(0x2001) == (V.by_name("IO_BITMAP_A"), "high")    # 25.11.2: bit 0 = 1 is the high half


def test_lookup_messages():
    assert _lookup_error("ZZZZZZZZ") == "unknown VMCS field 'ZZZZZZZZ'; list them with: field --all"
    assert _lookup_error("NO_SUCH_FIELD_HIGH").startswith("unknown VMCS field 'NO_SUCH_FIELD_HIGH'")
    assert _lookup_error("GUEST_RIP_HIGH").startswith("unknown VMCS field 'GUEST_RIP_HIGH'")  # natural width
    # 0x6C3C: bit 0 = 0 (full), index 9:1 = 30, type 11:10 = 3 (host), width 14:13 = 3 (natural)
    assert _lookup_error(0x6C3C) == ("0x6c3c is a well-formed encoding (host natural-bit, index 30, full access) "
                                     "but no SDM Appendix B field has it")
    # 0x8001: bit 15 reserved, and high access to a 16-bit field: both problems, in one line
    assert _lookup_error(0x8001) == ("0x8001 is not a valid VMCS field encoding: reserved bits 31:15 are not zero "
                                     "(0x8000); high access (bit 0) is only for 64-bit fields, this is a 16-bit field")
    assert _lookup_error(0x3) == ("0x3 is not a valid VMCS field encoding: high access (bit 0) is only for "
                                  "64-bit fields, this is a 16-bit field")
    with pytest.raises(V.FieldLookupError) as e:
        V.by_name("GUEST_RIPP")
    assert str(e.value).startswith("unknown VMCS field 'GUEST_RIPP' (did you mean GUEST_RIP")
    with pytest.raises(ValueError) as e:
        V.high_encoding(V.by_name("GUEST_RIP"))
    assert str(e.value) == "GUEST_RIP is not a 64-bit field: it has no high access"


def _hints(message):
    return message.split(" (did you mean ", 1)[1].split("?)", 1)[0].split(", ")


def test_lookup_hints():
    # a prefix is dropped before looking for close names; at most four names, canonical ones (not aliases)
    assert _hints(_lookup_error("VMCS_GUEST_RIPP"))[0] == "GUEST_RIP"
    # difflib's three nearest when no name contains the text
    near = _hints(_lookup_error("GUEST_ES_BASX"))
    assert len(near) == 3 and near[0] == "GUEST_ES_BASE" and all(n.startswith("GUEST_") and n.endswith("S_BASE")
                                                                   for n in near)
    two = _hints(_lookup_error("CR"))          # two letters are enough for substring hints
    assert len(two) == 4 and all("CR" in n for n in two)
    assert "VIRTUAL_PROCESSOR_ID" in _hints(_lookup_error("VPIDD")) and "VPID" not in _hints(_lookup_error("VPIDD"))


def test_loose_names_from_a_fresh_table():
    """The loose-spelling table is built on first use; build it again from nothing."""
    V._loose.clear()
    assert V.lookup("VMCS_CTRL_VMEXIT_CONTROLS")[0] == V.lookup("VM_EXIT_CONTROLS")[0]
    assert V.lookup("virtualization exception information address")[0] == V.by_name("VE_INFORMATION_ADDRESS")
    assert V.lookup("vpid")[0] == V.by_name("VIRTUAL_PROCESSOR_ID")
