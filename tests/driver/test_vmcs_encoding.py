"""The driver's VMCS encodings, built by its one VMCS_ENCODE macro
(include/hv_vmcs.h, SDM 25.11.2), agree with windbg_ext's catalogue
(windbg_ext.arch.vmcs_fields, written independently from App. B)."""
import pytest

from windbg_ext.arch import vmcs_fields

WIDTHS = {0: "16", 1: "64", 2: "32", 3: "natural"}
TYPES = {0: "control", 1: "exit", 2: "guest", 3: "host"}


@pytest.fixture(scope="module")
def driver_fields(host_program):
    rows = []
    for line in host_program("print_vmcs_fields").splitlines():
        name, enc, access, index, typ, width = line.split()
        rows.append((name, int(enc), int(access), int(index), int(typ), int(width)))
    return rows


def test_macro_reassembles_its_parts(driver_fields):
    assert len(driver_fields) > 150
    for name, enc, access, index, typ, width in driver_fields:
        assert access == 0, name  # the catalogue holds full-access encodings
        assert enc == access | (index << 1) | (typ << 10) | (width << 13), name
        assert enc & 0xFFFF9000 == 0, name  # bit 12 and bits 31:15 reserved (25.11.2)


def test_every_driver_field_is_in_the_suite_catalogue(driver_fields):
    for name, enc, _, _, typ, width in driver_fields:
        assert enc in vmcs_fields.BY_ENCODING, "%s 0x%04x unknown to windbg_ext" % (name, enc)
        f = vmcs_fields.BY_ENCODING[enc]
        assert f.width == WIDTHS[width], name
        assert f.type == TYPES[typ], name
        # the driver's name resolves (aliases: Intel vs KVM naming) to the same field
        assert vmcs_fields.lookup(name) == (f, "full"), name


def test_well_known_encodings(driver_fields):
    """Spot values from SDM App. B."""
    enc = {name: e for name, e, *_ in driver_fields}
    assert enc["GUEST_RIP"] == 0x681E
    assert enc["HOST_RIP"] == 0x6C16
    assert enc["VM_INSTRUCTION_ERROR"] == 0x4400
    assert enc["EXIT_REASON"] == 0x4402
    assert enc["VMCS_LINK_POINTER"] == 0x2800
    assert enc["GUEST_TR_ACCESS_RIGHTS"] == 0x4822
    assert enc["SECONDARY_PROCESSOR_BASED_VM_EXECUTION_CONTROLS"] == 0x401E
    assert enc["GUEST_IA32_SYSENTER_CS"] == 0x482A
    assert len(set(enc.values())) == len(enc)
