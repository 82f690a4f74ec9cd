"""The check table itself (pure): shape, order, verdict mapping, and the
rules that need memory. States start from the emulated CPU's valid
baseline (built live by emulated_lab.entry_probe) and its measured caps."""
import re

import pytest

from tests.arch.bochs_caps import BOCHS_MSRS
from windbg_ext.arch import entry_checks as ec
from windbg_ext.arch.vmcs_fields import by_name


def test_table_shape():
    ids = [c.id for c in ec.CHECKS]
    assert len(ids) == len(set(ids)) and len(ids) >= 190
    groups = [c.group for c in ec.CHECKS]
    # the processor's order: every control check, then host, then guest (SDM 27.1)
    assert groups == sorted(groups, key=ec.GROUP_ORDER.index)
    for c in ec.CHECKS:
        assert c.id.startswith(c.group + "."), c.id
        want = {"control": r"27\.2\.1\.[123]$", "host": r"27\.2\.[234]$", "guest": r"27\.3\.1\.[1-6]$"}[c.group]
        assert re.match(want, c.sdm), (c.id, c.sdm)
        assert c.explain[:1].isupper() and c.explain.endswith("."), c.id
        assert c.fields, c.id
        for f in c.fields:
            by_name(f)  # every field a check reads is in the one catalogue
        assert c.qualification in (0, 2, 3, 4)
        if c.group != "guest":
            assert c.qualification == 0


def test_every_sdm_subsection_is_covered():
    sections = {c.sdm for c in ec.CHECKS}
    assert sections >= {"27.2.1.1", "27.2.1.2", "27.2.1.3", "27.2.2", "27.2.3", "27.2.4",
                        "27.3.1.1", "27.3.1.2", "27.3.1.3", "27.3.1.4", "27.3.1.5", "27.3.1.6"}


def _baseline():
    """The probe's valid 64-bit state and the processor's capability MSRs."""
    from emulated_lab.entry_probe import EntryProbe
    with EntryProbe() as p:
        return p.baseline(), p.caps()


@pytest.fixture(scope="module")
def base():
    fields, caps = _baseline()
    assert caps == {k: v for k, v in BOCHS_MSRS.items() if 0x480 <= k <= 0x491}
    return fields, caps


def _eval(fields, caps, **kw):
    return ec.evaluate(ec.EntryState(fields, caps, maxphyaddr=40, **kw))


def _set(fields, **kv):
    out = dict(fields)
    for name, value in kv.items():
        out[by_name(name).encoding] = value
    return out


def test_groups_map_to_what_the_processor_reports(base):
    fields, caps = base
    bad_ctl = _set(fields, CR3_TARGET_COUNT=9)
    bad_host = _set(fields, HOST_CS_SELECTOR=0)
    bad_guest = _set(fields, GUEST_TR_SELECTOR=0x44)
    v = _eval(_set(bad_ctl, HOST_CS_SELECTOR=0, GUEST_TR_SELECTOR=0x44), caps)
    assert (v.result, v.vm_instruction_error, v.exit_reason) == ("vmfail_valid", 7, None)
    assert [o.check.group for o in v.failures] == ["control", "host", "guest"]   # all named, CPU's first first
    v = _eval(_set(bad_host, GUEST_TR_SELECTOR=0x44), caps)
    assert (v.result, v.vm_instruction_error) == ("vmfail_valid", 8)
    v = _eval(bad_guest, caps)
    assert (v.result, v.exit_reason, v.exit_qualification) == ("entry_failure", 0x80000021, 0)
    v = _eval(_set(fields, VMCS_LINK_POINTER=0x1234), caps)
    assert (v.result, v.exit_qualification) == ("entry_failure", 4)


def test_failure_message_shows_value_rule_and_section(base):
    fields, caps = base
    v = _eval(_set(fields, GUEST_TR_AR_BYTES=0x89), caps)
    assert v.failures[0].message == ("GUEST_TR_AR_BYTES = 0x0089: type must be 11 (busy 64-bit TSS) in IA-32e mode, "
                                     "not 9, SDM 27.3.1.2")
    v = _eval(_set(fields, PIN_BASED_VM_EXEC_CONTROL=0), caps)
    m = v.failures[0].message
    assert "PIN_BASED_VM_EXEC_CONTROL = 0x00000000" in m and "bits 4, 2, 1 must be 1" in m
    assert "IA32_VMX_TRUE_PINBASED_CTLS" in m and m.endswith("SDM 27.2.1.1")


def test_true_controls_only_when_basic_bit_55(base):
    fields, caps = base
    # TRUE_PROCBASED lets CR3-load/store exiting (bits 15, 16) be 0; the old MSR does not
    assert not _eval(fields, caps).failures
    old = dict(caps)
    old[0x480] &= ~(1 << 55)
    v = _eval(fields, old)
    assert v.failures[0].check.id == "control.proc.allowed0" and "bits 16, 15 must be 1" in v.failures[0].message


def test_memory_rules_say_not_checked_without_memory(base):
    fields, caps = base
    linked = _set(fields, VMCS_LINK_POINTER=0x5000)
    v = _eval(linked, caps)
    # before: "success" although two checks never ran (issue 14): a distinct outcome, with a warning
    assert v.result == "unverified" and not v.failures
    assert [o.check.id for o in v.not_checked] == ["guest.link.revision", "guest.link.not_current"]
    assert "shadowing off almost always fails" in v.not_checked[0].warning
    status = {o.check.id: o.status for o in v.outcomes}
    assert status["guest.link.revision"] == ec.NOT_CHECKED and status["guest.link.not_current"] == ec.NOT_CHECKED
    page = {0x5000: b"\x04\x00\x00\x00"}
    v = _eval(linked, caps, read_physical=lambda a, n: page[a][:n], vmcs_address=0x6000)
    assert v.result == "success" and not [o for o in v.outcomes if o.status == ec.NOT_CHECKED]
    v = _eval(linked, caps, read_physical=lambda a, n: page[a][:n], vmcs_address=0x5000)
    assert v.failures[0].check.id == "guest.link.not_current"
    v = _eval(linked, caps, read_physical=lambda a, n: b"\x05\x00\x00\x00", vmcs_address=0x6000)
    assert v.failures[0].check.id == "guest.link.revision" and "revision 0x5" in v.failures[0].message


def test_absent_fields_read_as_zero_and_are_reported(base):
    fields, caps = base
    partial = dict(fields)
    del partial[by_name("GUEST_TR_AR_BYTES").encoding]
    v = _eval(partial, caps)
    assert "GUEST_TR_AR_BYTES" in v.missing_fields
    assert v.failures[0].check.id == "guest.tr.type_ia32e"


def test_unrestricted_guest_relaxes_pe_pg(base):
    fields, caps = base
    real = _set(fields, GUEST_CR0=fields[by_name("GUEST_CR0").encoding] & ~0x80000001)
    assert _eval(real, caps).failures[0].check.id == "guest.cr0.fixed0"
    proc = fields[by_name("CPU_BASED_VM_EXEC_CONTROL").encoding] | (1 << 31)
    ug = _set(real, CPU_BASED_VM_EXEC_CONTROL=proc, SECONDARY_VM_EXEC_CONTROL=(1 << 7) | (1 << 1),
              EPT_POINTER=0x7000 | 0x1E)
    ids = [o.check.id for o in _eval(ug, caps).failures]
    assert "guest.cr0.fixed0" not in ids and "guest.ia32e.pg" in ids  # IA-32e still needs paging
