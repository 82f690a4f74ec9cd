"""windbg_ext.arch.entry_checks (its __init__): run_check and evaluate on checks made up here
(issue 16, mutation testing).

The verdict mapping is the SDM's: a failed control check is VMfailValid with VM-instruction error 7,
a failed host-state check error 8 (Vol. 3 31.4), a failed guest-state check a VM exit with reason
0x80000021 (basic reason 33 with bit 31 set, 28.2.1 / App. C) and the check's exit qualification."""
import pytest

from windbg_ext.arch import entry_checks as ec
from windbg_ext.arch.entry_checks.model import NOT_APPLICABLE, Check, EntryState, NotChecked, hexv
from windbg_ext.arch.vmcs_fields import by_name


def _check(id, group, result, fields=("GUEST_CR0",), qualification=0, sdm="1.2.3"):
    def test(s):
        return result(s) if callable(result) else result
    return Check(id, group, sdm, tuple(fields), "Made up.", test, qualification)


def _state(**named):
    return EntryState({by_name(k).encoding: v for k, v in named.items()}, {})


def test_constants():
    assert ec.VM_ERROR_BY_GROUP == {"control": 7, "host": 8}
    assert ec.ENTRY_FAILURE_GUEST_STATE == 0x80000021
    assert (ec.PASS, ec.FAIL, ec.NA, ec.NOT_CHECKED) == ("PASS", "FAIL", "n/a", "not checked")


def test_run_check_pass_na_not_checked():
    s = _state()
    c = _check("x.pass", "guest", None)
    assert ec.run_check(c, s) == ec.Outcome(c, "PASS", "", "", "")
    c = _check("x.na", "guest", NOT_APPLICABLE)
    assert ec.run_check(c, s) == ec.Outcome(c, "n/a", "", "", "")
    c = _check("x.nc", "guest", NotChecked("needs memory", warning="almost always fails"))
    assert ec.run_check(c, s) == ec.Outcome(c, "not checked", "needs memory", "", "almost always fails")
    c = _check("x.nc2", "guest", NotChecked("needs memory"))
    assert ec.run_check(c, s) == ec.Outcome(c, "not checked", "needs memory", "", "")


def test_run_check_failure_message_and_named_field():
    s = _state(GUEST_CR0=0x21, GUEST_CR4=0x2000)

    def names_cr4_then_cr0(s):
        return "%s and %s: wrong" % (hexv(s, "GUEST_CR4"), hexv(s, "GUEST_CR0"))
    # GUEST_CR4 is named first but is not one of the check's fields: the field is GUEST_CR0
    c = _check("x.fail", "guest", names_cr4_then_cr0, fields=("GUEST_CR0", "GUEST_CR3"), sdm="27.3.1.1")
    o = ec.run_check(c, s)
    assert o == ec.Outcome(c, "FAIL", "GUEST_CR4 = 0x0000000000002000 and GUEST_CR0 = 0x0000000000000021: wrong, "
                           "SDM 27.3.1.1", "GUEST_CR0", "")
    # both named and both the check's: the first named
    c = _check("x.fail2", "guest", names_cr4_then_cr0, fields=("GUEST_CR0", "GUEST_CR4"))
    assert ec.run_check(c, s).field == "GUEST_CR4"
    # a message naming no field: "" (what an earlier check named is forgotten)
    s.named = ["GUEST_CR0"]
    c = _check("x.fail3", "guest", "no field named")
    o = ec.run_check(c, s)
    assert o == ec.Outcome(c, "FAIL", "no field named, SDM 1.2.3", "", "")
    assert s.named == []


def test_run_check_clears_named_before_the_check():
    s = _state(GUEST_CR0=1)
    s.named = ["GUEST_CR4"]
    seen = []

    def test(s):
        seen.append(list(s.named))
        return None
    assert ec.run_check(Check("x", "guest", "1", ("GUEST_CR0",), "M.", test), s).status == "PASS"
    assert seen == [[]]


@pytest.fixture
def table(monkeypatch):
    def use(*checks):
        monkeypatch.setattr(ec, "CHECKS", list(checks))
    return use


def test_evaluate_success_and_missing_fields(table):
    def reads(s):
        s.f("GUEST_CR4")
        s.f("GUEST_CR3")
        s.f("GUEST_CR0")
        return None
    a = _check("guest.a", "guest", reads)
    b = _check("guest.b", "guest", NOT_APPLICABLE)
    table(a, b)
    s = _state(GUEST_CR0=1)
    s.missing.append("GUEST_CR3")  # a name twice: listed once
    v = ec.evaluate(s)
    assert v == ec.Verdict("success", None, None, None, [ec.Outcome(a, "PASS", ""), ec.Outcome(b, "n/a", "")],
                           ["GUEST_CR3", "GUEST_CR4"])
    assert v.failures == [] and v.not_checked == []


def test_evaluate_unverified(table):
    a = _check("guest.a", "guest", None)
    n = _check("guest.n", "guest", NotChecked("no memory"))
    table(a, n)
    v = ec.evaluate(_state())
    assert (v.result, v.vm_instruction_error, v.exit_reason, v.exit_qualification) == ("unverified", None, None, None)
    assert v.outcomes == [ec.Outcome(a, "PASS", ""), ec.Outcome(n, "not checked", "no memory")]
    assert v.not_checked == [v.outcomes[1]] and v.failures == []
    assert v.missing_fields == []


@pytest.mark.parametrize("group,error", [("control", 7), ("host", 8)])
def test_evaluate_vmfail_valid(table, group, error):
    n = _check("x.n", "guest", NotChecked("no memory"))
    f1 = _check("x.f1", group, "first", qualification=3)
    f2 = _check("x.f2", "guest", "second", qualification=4)
    table(n, f1, f2)
    v = ec.evaluate(_state())
    assert (v.result, v.vm_instruction_error, v.exit_reason, v.exit_qualification) == ("vmfail_valid", error, None, None)
    assert [o.message for o in v.failures] == ["first, SDM 1.2.3", "second, SDM 1.2.3"]
    assert [o.status for o in v.outcomes] == ["not checked", "FAIL", "FAIL"]
    assert v.missing_fields == []


@pytest.mark.parametrize("qualification", [0, 2, 3, 4])
def test_evaluate_entry_failure(table, qualification):
    p = _check("guest.p", "guest", None)
    f1 = _check("guest.f1", "guest", "first", qualification=qualification)
    f2 = _check("guest.f2", "guest", "second", qualification=5)
    table(p, f1, f2)
    v = ec.evaluate(_state())
    assert v == ec.Verdict("entry_failure", None, 0x80000021, qualification,
                           [ec.Outcome(p, "PASS", ""), ec.Outcome(f1, "FAIL", "first, SDM 1.2.3"),
                            ec.Outcome(f2, "FAIL", "second, SDM 1.2.3")], [])


def test_evaluate_missing_fields_sorted_with_a_failure(table):
    def reads(s):
        s.f("GUEST_RSP")
        s.f("GUEST_CR4")
        return "bad"
    table(_check("guest.r", "guest", reads), _check("guest.r2", "guest", reads))
    v = ec.evaluate(_state())
    assert v.missing_fields == ["GUEST_CR4", "GUEST_RSP"]
    assert v.result == "entry_failure"


def test_real_table_order_and_lookup():
    assert ec.BY_ID["host.cs.nonzero"].group == "host"
    groups = [c.group for c in ec.CHECKS]
    assert groups.index("host") > groups.index("control") and groups.index("guest") > groups.index("host")
