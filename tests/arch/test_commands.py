"""field, exit, vmerror and caps through the real front end (windbg_ext.cli.run):
text, --json, bad input (exit 2, one line, no traceback), images written by
the real ImageWriter, and the pykd stand-in."""
import json

import pytest

from tests.support import run_cli
from windbg_ext.arch import vmcs_fields

from .bochs_caps import BOCHS_MSRS
from .conftest import write_caps_image


def ok(argv, **kw):
    code, out, err = run_cli(argv, **kw)
    assert code == 0, (code, out, err)
    assert "Traceback" not in out + err
    return out


def bad(argv, *needles, **kw):
    code, out, err = run_cli(argv, **kw)
    assert code == 2, (code, out, err)
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err
    for n in needles:
        assert n in err, err
    return err


# -- field ---------------------------------------------------------------------
def test_field_by_name_and_encoding():
    out = ok(["field", "GUEST_RIP", "0x4402", "vmcs_guest_cr0"])
    assert "0x681e" in out and "VM_EXIT_REASON" in out and "0x6800" in out


def test_field_json_per_field():
    data = json.loads(ok(["--json", "field", "guest_rip", "0x2001"]))["fields"]
    assert data[0] == {"name": "GUEST_RIP", "field": "GUEST_RIP", "encoding": "0x681e", "width": 64, "natural_width": True,
                       "type": "guest", "access": "full", "index": 15, "readonly": False, "meaning": "guest RIP",
                       "sdm": "B.4.3"}
    assert data[1]["name"] == "IO_BITMAP_A_HIGH" and data[1]["access"] == "high" and data[1]["encoding"] == "0x2001"
    assert data[1]["width"] == 64 and not data[1]["natural_width"] and data[1]["index"] == 0


def test_field_all_and_filters():
    data = json.loads(ok(["--json", "field", "--all"]))
    assert data["count"] == len(vmcs_fields.FIELDS) == len(data["fields"])
    host = json.loads(ok(["--json", "field", "--all", "--type", "host"]))["fields"]
    assert host and all(f["type"] == "host" for f in host)
    assert len(host) == sum(1 for f in vmcs_fields.FIELDS if f.type == "host")
    text = ok(["field", "--all", "--type", "exit", "--width", "natural"])
    assert "EXIT_QUALIFICATION" in text and "GUEST_RIP" not in text


def test_field_invalid_encoding_is_decoded_as_a_finding():
    code, out, err = run_cli(["field", "0x1234"])
    assert code == 1 and "reserved bit 12" in out and "index" in out and "Traceback" not in out + err
    code, out, _ = run_cli(["--json", "field", "0x6801"])
    d = json.loads(out)["not_fields"][0]
    assert code == 1 and d["valid"] is False and d["natural_width"] and "only for 64-bit" in d["problems"][0]
    code, out, _ = run_cli(["--json", "field", "0x4830"])
    d = json.loads(out)["not_fields"][0]
    assert code == 1 and d["valid"] is True and d["name"] is None and d["index"] == 24


def test_field_numbers_are_hex_as_windbg_shows_encodings():
    # before: 681e failed and 6820 (read as decimal 0x1aa4) printed a table and returned 2
    assert json.loads(ok(["--json", "field", "681e"]))["fields"][0]["name"] == "GUEST_RIP"
    assert json.loads(ok(["--json", "field", "6820"]))["fields"][0]["name"] == "GUEST_RFLAGS"
    assert json.loads(ok(["--json", "field", "0n26654"]))["fields"][0]["name"] == "GUEST_RIP"
    assert json.loads(ok(["--json", "field", "681eh"]))["fields"][0]["name"] == "GUEST_RIP"


def test_field_bad_input():
    bad(["field", "GUEST_RIPP"], "GUEST_RIP", "did you mean")
    bad(["field", "GUEST_RIP", "nonsense_field"], "nonsense_field")
    bad(["field"], "--all")
    bad(["field", "--type", "guest"], "--all")
    bad(["field", "--all", "--type", "bogus"])
    bad(["field", "0x1ffffffff"])


# -- exit ----------------------------------------------------------------------
@pytest.mark.parametrize("reason", ["48", "0x30", "ept_violation", "EXIT_REASON_EPT_VIOLATION"])
def test_exit_reason_spellings(reason):
    data = json.loads(ok(["--json", "exit", reason]))
    assert data["reason"]["basic"] == 48 and data["reason"]["name"] == "EPT_VIOLATION"
    assert data["reason"]["entry_failure"] is False


def test_exit_entry_failure_and_qualification():
    out = ok(["exit", "0x80000021", "--qual", "4"])
    assert "INVALID_GUEST_STATE" in out and "entry_failure" in out and "invalid VMCS link pointer" in out
    data = json.loads(ok(["--json", "exit", "30", "--qual", "0x3f80008"]))
    q = {f["name"]: f["value"] for f in data["qualification"]["fields"]}
    assert q["port"] == "0x3f8" and q["direction"] == "IN" and q["size"] == 1


def test_exit_interruption_info_and_list():
    data = json.loads(ok(["--json", "exit", "0", "--intr-info", "0x80000b0e"]))
    assert data["interruption_info"]["exception"] == "#PF" and data["interruption_info"]["error_code_valid"]
    listing = json.loads(ok(["--json", "exit"]))["exit_reasons"]
    assert [r["basic"] for r in listing][:3] == [0, 1, 2] and listing[-1]["name"] == "WRMSRNS_IMM"


def test_exit_reasons_84_and_85_are_the_immediate_msr_forms():
    assert json.loads(ok(["--json", "exit", "84"]))["reason"]["name"] == "RDMSR_IMM"
    assert json.loads(ok(["--json", "exit", "85"]))["reason"]["name"] == "WRMSRNS_IMM"


@pytest.mark.parametrize("argv,needle", [
    (["exit", "0x8000000a"], "bit 31 (VM-entry failure) comes only with basic reasons 33, 34 and 41"),
    (["exit", "28", "--qual", "0xc"], "CR12: MOV-CR exits report only CR0, CR3, CR4 or CR8"),
    (["exit", "30", "--qual", "0x2"], "size encoding 2 in bits 2:0"),
    (["exit", "28", "--qual", "0x1000"], "bit 12 set: the SDM defines no such bits for this exit (Table 28-3)"),
    (["exit", "0x80000021", "--qual", "9"], "exit qualification 9 is not defined for a VM-entry failure"),
    (["exit", "0x00100030"], "bit 20 set: reserved in the exit-reason field"),
])
def test_exit_says_what_no_processor_reports(argv, needle):
    # before: decoded without a word (and "CR12" printed as if it existed)
    code, out, err = run_cli(argv)
    assert code == 1 and "impossible: " + needle in out.replace("\n  ", " "), out
    code, out, _ = run_cli(["--json"] + argv)
    assert code == 1 and any(needle in p for p in json.loads(out)["problems"])


def test_exit_plausible_values_have_no_problems():
    data = json.loads(ok(["--json", "exit", "30", "--qual", "0x3f80003"]))
    assert data["problems"] == [] and {f["name"]: f["value"] for f in data["qualification"]["fields"]}["size"] == 4
    out = ok(["exit", "30", "--qual", "0x3f80010"])  # booleans read yes/no, not Python's True/False
    assert "True" not in out and "False" not in out and "yes" in out


def test_entry_failures_and_vm_errors_point_at_verify():
    assert "next: verify <n>" in ok(["exit", "0x80000021"])
    for n in ("7", "8"):
        assert "next: verify <n>" in ok(["vmerror", n])


def test_bare_numbers_follow_one_rule_per_kind():
    # before: `exit 00000030` was decimal 30, `exit 1c` hex, `vmerror a` 10, `0n48` refused
    assert json.loads(ok(["--json", "exit", "00000030"]))["reason"]["basic"] == 48  # 8 digits: the field as shown
    assert json.loads(ok(["--json", "exit", "0n48"]))["reason"]["basic"] == 48
    assert json.loads(ok(["--json", "exit", "30h"]))["reason"]["basic"] == 48
    bad(["exit", "1c"], "not a decimal number", "0x1c")
    bad(["vmerror", "a"], "not a decimal number", "0xa")
    bad(["verify", "--maxphyaddr", "abc", "--fields", "f", "--caps", "c"], "not a decimal number")
    out = ok(["exit", "30"])  # both readings are exit reasons: say which one was used
    assert "30 read as decimal 30 (0x1e); as hex (0x30) it would be 48 (EPT_VIOLATION)" in out
    assert "read as" not in ok(["exit", "60"]) and "read as" not in ok(["exit", "9"])  # 0x60 = 96: no reason


def test_exit_bad_input():
    bad(["exit", "35"], "not a basic exit reason")
    bad(["exit", "ept_violaton"], "EPT_VIOLATION")
    bad(["exit", "48", "--qual", "zz"], "qualification")
    bad(["exit", "--qual", "1"], "exit reason")
    bad(["exit", "0x1ffffffff"], "32-bit")


# -- vmerror -------------------------------------------------------------------
def test_vmerror():
    out = ok(["vmerror", "7"])
    assert "ENTRY_INVALID_CONTROL_FIELD" in out and "caps" in out
    assert json.loads(ok(["--json", "vmerror", "0x1c"]))["name"] == "INVALID_INVEPT_INVVPID_OPERAND"
    assert json.loads(ok(["--json", "vmerror", "0"]))["name"] is None
    assert len(json.loads(ok(["--json", "vmerror"]))["errors"]) == 28
    bad(["vmerror", "29"], "1..28")
    bad(["vmerror", "seven"], "not a number")


# -- caps ----------------------------------------------------------------------
def msr_args(msrs):
    out = []
    for m, v in sorted(msrs.items()):
        out += ["--msr", "0x%x=0x%x" % (m, v)]
    return out


def test_caps_offline_values():
    out = ok(["caps"] + msr_args(BOCHS_MSRS))
    assert "IA32_VMX_TRUE_PROCBASED_CTLS (0x48e)" in out
    assert "your driver must set CR0: PE NE PG (0x80000021)" in out
    assert "your driver must set CR4: VMXE (0x2000)" in out
    assert "CR3_LOAD_EXITING CR3_STORE_EXITING" in out  # default1 bits the TRUE MSR frees
    data = json.loads(ok(["--json", "caps"] + msr_args(BOCHS_MSRS)))
    rep = data["cpus"][0]
    assert data["source"] == "given" and rep["basic"]["revision_id"] == 4
    assert rep["controls"]["pin"]["must_be_one"] == "0x16"
    assert rep["controls"]["entry"]["must_be_one"] == "0x11fb"


def test_caps_offline_by_name_and_partial():
    data = json.loads(ok(["--json", "caps", "--msr", "IA32_VMX_BASIC=0x00d8100000000004"]))
    rep = data["cpus"][0]
    assert rep["basic"]["true_controls"] is True and rep["controls"]["pin"]["missing"] == "not given"


def test_caps_bad_input():
    bad(["caps", "--msr", "0x480"], "MSR=VALUE")
    bad(["caps", "--msr", "0x999=1"], "not a VMX capability MSR")
    bad(["caps", "--msr", "0x480=0x1ffffffffffffffff"], "64 bits")
    bad(["caps", "--msr", "0x480=1", "--cpu", "0"], "one or the other")
    bad(["caps"], "--image")


def test_caps_on_image_reads_only_existing_msrs(tmp_path):
    img = write_caps_image(tmp_path / "caps.hvimg", [BOCHS_MSRS, BOCHS_MSRS])
    code, out, err = run_cli(["--wide", "--image", img, "--stats", "caps", "--all"])
    assert code == 0, err
    assert "processor 1: the same capability MSR values as processor 0" in out
    assert "not supported: primary control bit 17 (activate tertiary controls) cannot be 1" in out
    assert "not supported: VM-exit control bit 31 (activate secondary controls) cannot be 1" in out
    # 12 always-present MSRs + 4 TRUE_* + CTLS2 + EPT_VPID_CAP + VMFUNC, per processor; never 0x492/0x493
    assert "38 MSR reads" in err
    data = json.loads(ok(["--json", "--image", img, "caps", "--cpu", "1"]))
    assert [c["cpu"] for c in data["cpus"]] == [1]
    assert data["cpus"][0]["controls"]["proc2"]["msr"] == "0x48b"


def test_caps_image_without_secondary_controls_and_differing_cpus(tmp_path):
    cpu1 = dict(BOCHS_MSRS)
    cpu1[0x482] &= ~(1 << 63)        # primary bit 31 cannot be 1: no PROCBASED_CTLS2
    cpu1[0x48E] &= ~(1 << 63)
    cpu1[0x3A] = 0x1                 # locked, VMXON outside SMX disabled
    img = write_caps_image(tmp_path / "c.hvimg", [BOCHS_MSRS, cpu1])
    out = ok(["--wide", "--image", img, "caps", "--all"])
    assert "processor 1 differs from processor 0 in 0x3a, 0x482, 0x48b, 0x48c, 0x48e, 0x491" in out
    assert "not supported: primary control bit 31 (activate secondary controls) cannot be 1" in out
    assert "VMXON raises #GP" in out
    bad(["--image", img, "caps", "--cpu", "2"], "processor 2 does not exist")
    bad(["--image", img, "caps", "--cpu", "1", "--all"], "not both")


def test_caps_image_without_msrs_says_so(tmp_path):
    img = write_caps_image(tmp_path / "none.hvimg", [{}])
    code, out, err = run_cli(["--image", img, "caps"])  # one line, not a page of "could not be read"
    assert code == 2 and out == "" and "no capability MSRs for processor 0" in err


def test_caps_through_pykd_standin_matches_image(tmp_path, standin):
    img = write_caps_image(tmp_path / "s.hvimg", [BOCHS_MSRS, BOCHS_MSRS])
    standin._attach(img)
    live = json.loads(ok(["--json", "caps", "--cpu", "1"], live=True))
    offline = json.loads(ok(["--json", "--image", img, "caps", "--cpu", "1"]))
    assert live == offline
    assert "rdmsr" in standin._calls and "dbgCommand" in standin._calls   # a target-side ~1s
    assert standin._calls.count("rdmsr") == 19 + 2   # + IA32_GS_BASE: each of its two batches verified


def test_exit_instruction_info():
    data = json.loads(ok(["--json", "exit", "vmwrite", "--qual", "0x10", "--instr-info", "0x10000448"]))
    fields = {f["name"]: f["value"] for f in data["instruction_info"]["fields"]}
    assert fields == {"reg2": "RCX", "reg1": "R9"}
    assert data["qualification"]["fields"][0]["name"] == "displacement"
    bad(["exit", "vmwrite", "--instr-info", "0x100000000"], "32 bits")
