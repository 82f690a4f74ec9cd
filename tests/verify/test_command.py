"""`verify --fields F.json --caps C.json` through the real front end (cli.run):
output, --json schema, --all, and one-line errors (exit 2) on bad input.
The fields and caps come from the emulated CPU (the probe's valid baseline)."""
import json

import pytest

from tests.support import run_cli
from windbg_ext.arch import entry_checks as ec
from windbg_ext.arch.vmcs_fields import by_name


@pytest.fixture(scope="module")
def lab_state():
    from emulated_lab.entry_probe import EntryProbe
    with EntryProbe() as p:
        return p.baseline(), p.caps(), p.maxphyaddr()


def _write(tmp_path, fields, caps, maxphy=None, **changes):
    f = dict(fields)
    for name, value in changes.items():
        f[by_name(name).encoding] = value
    fp, cp = tmp_path / "f.json", tmp_path / "c.json"
    fp.write_text(json.dumps({"0x%x" % k: "0x%x" % v for k, v in f.items()}))
    c = {"0x%x" % k: "0x%x" % v for k, v in caps.items()}
    if maxphy is not None:
        c["maxphyaddr"] = maxphy
    cp.write_text(json.dumps(c))
    return str(fp), str(cp)


def test_valid_state_passes(tmp_path, lab_state):
    fp, cp = _write(tmp_path, *lab_state)
    code, out, err = run_cli(["--json", "verify", "--fields", fp, "--caps", cp])
    assert code == 0 and err == ""
    d = json.loads(out)
    assert d["result"] == "success" and d["failures"] == [] and d["exit_reason"] is None
    assert d["vm_instruction_error"] is None and d["maxphyaddr"] == 40 and d["missing_fields"] == []
    assert d["checks_run"] == len(ec.CHECKS)


@pytest.mark.parametrize("change,result,error,reason,first", [
    ({"VM_ENTRY_CONTROLS": 0x200}, "vmfail_valid", 7, None, "control.entry.allowed0"),
    ({"HOST_TR_SELECTOR": 0x43}, "vmfail_valid", 8, None, "host.tr.rpl_ti"),
    ({"GUEST_RFLAGS": 0x8002}, "entry_failure", None, "0x80000021", "guest.rflags.reserved"),
    ({"VMCS_LINK_POINTER": 1 << 45}, "entry_failure", None, "0x80000021", "guest.link.width"),
])
def test_json_schema_per_group(tmp_path, lab_state, change, result, error, reason, first):
    fp, cp = _write(tmp_path, *lab_state, **change)
    code, out, err = run_cli(["--json", "verify", "--fields", fp, "--caps", cp])
    assert code == 1
    d = json.loads(out)
    assert (d["result"], d["vm_instruction_error"], d["exit_reason"]) == (result, error, reason)
    f = d["failures"][0]
    assert set(f) == {"id", "group", "sdm", "message", "fields"} and f["id"] == first
    field = list(change)[0]
    assert field in f["fields"] and f["message"].startswith(field)   # the field the change broke
    assert f["message"].endswith("SDM " + f["sdm"])


def test_text_names_field_value_and_section(tmp_path, lab_state):
    fp, cp = _write(tmp_path, *lab_state, GUEST_TR_AR_BYTES=0x89)
    code, out, _ = run_cli(["--wide", "verify", "--fields", fp, "--caps", cp])
    assert code == 1
    assert "VM entry fails: VM exit 0x80000021 (invalid guest state), exit qualification 0" in out
    assert ("first failure (what the processor reports): GUEST_TR_AR_BYTES = 0x0089: type must be 11 "
            "(busy 64-bit TSS) in IA-32e mode, not 9, SDM 27.3.1.2") in out


def test_all_lists_every_check(tmp_path, lab_state):
    fp, cp = _write(tmp_path, *lab_state, GUEST_IDTR_LIMIT=0x10000)
    code, out, _ = run_cli(["--json", "verify", "--all", "--fields", fp, "--caps", cp])
    d = json.loads(out)
    assert [c["id"] for c in d["checks"]] == [c.id for c in ec.CHECKS]
    by = {c["id"]: c["status"] for c in d["checks"]}
    assert by["guest.idtr.limit"] == "FAIL" and by["guest.gdtr.limit"] == "PASS" and by["host.ss.nonzero"] == "n/a"
    code, out, _ = run_cli(["verify", "--all", "--fields", fp, "--caps", cp])
    assert "all %d checks (" % len(ec.CHECKS) in out and "guest.idtr.limit" in out


def test_field_names_and_high_access_keys(tmp_path, lab_state):
    fields, caps, maxphy = lab_state
    fp, cp = _write(tmp_path, fields, caps, maxphy)
    f = json.loads(open(fp).read())
    f["GUEST_RFLAGS"] = "0x2"                 # a name instead of an encoding
    f["0x%x" % (by_name("VMCS_LINK_POINTER").encoding + 1)] = "0x1"  # high half: bits 63:32
    open(fp, "w").write(json.dumps(f))
    code, out, _ = run_cli(["--json", "verify", "--fields", fp, "--caps", cp])
    d = json.loads(out)
    assert d["failures"][0]["id"] == "guest.link.aligned"
    assert "VMCS_LINK_POINTER = 0x00000001ffffffff" in d["failures"][0]["message"]


def test_maxphyaddr_option_and_default(tmp_path, lab_state):
    fields, caps, _ = lab_state
    fp, cp = _write(tmp_path, fields, caps, None, GUEST_CR3=fields[by_name("GUEST_CR3").encoding] | (1 << 45))
    code, out, _ = run_cli(["verify", "--fields", fp, "--caps", cp])
    assert code == 0 and "assumed 52 bits" in out             # 52-bit default: bit 45 is allowed
    code, out, _ = run_cli(["--json", "verify", "--maxphyaddr", "40", "--fields", fp, "--caps", cp])
    assert code == 1 and json.loads(out)["failures"][0]["id"] == "guest.cr3.width"


@pytest.mark.parametrize("fields_text,caps_text,needle", [
    ("{not json", None, "is not valid JSON"),
    ("[1, 2]", None, "must hold a JSON object"),
    ('{"GUEST_NOPE": "0x1"}', None, "GUEST_NOPE"),
    ('{"0x681e": "zz"}', None, "is not a number"),
    ('{"0x681e": "0x1ffffffffffffffff"}', None, "does not fit in 64 bits"),
    (None, '{"0x480": "0x1"}', "lacks MSR 0x481"),
    (None, '{"0x999": "0x1"}', "not a VMX capability MSR"),
    (None, "", "is not valid JSON"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, lab_state, fields_text, caps_text, needle):
    fp, cp = _write(tmp_path, *lab_state)
    if fields_text is not None:
        open(fp, "w").write(fields_text)
    if caps_text is not None:
        open(cp, "w").write(caps_text)
    code, out, err = run_cli(["verify", "--fields", fp, "--caps", cp])
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "\n" not in err and needle in err, err


def test_true_msrs_required_when_basic_says_so(tmp_path, lab_state):
    fields, caps, _ = lab_state
    fp, cp = _write(tmp_path, fields, {k: v for k, v in caps.items() if k != 0x48E})
    code, _, err = run_cli(["verify", "--fields", fp, "--caps", cp])
    assert code == 2 and "lacks MSR 0x48e" in err and "bit 55" in err


@pytest.mark.parametrize("argv,needle", [
    (["verify"], "say what to check"),
    (["verify", "--fields", "x.json"], "say what to check"),
    (["verify", "1", "--fields", "a", "--caps", "b"], "not both"),
    (["verify", "--fields", "/nonexistent/f.json", "--caps", "/nonexistent/c.json"], "fields file /nonexistent/f.json does not exist"),
    (["verify", "--maxphyaddr", "99", "--fields", "a", "--caps", "b"], "out of range"),
    (["verify", "0"], "give --image FILE or --dump FILE"),
])
def test_usage_errors(argv, needle):
    code, out, err = run_cli(argv)
    assert code == 2 and out == "" and needle in err and "\n" not in err, err


def test_skipped_checks_are_a_distinct_outcome(tmp_path, lab_state):
    """A link pointer of 0 (the classic beginner bug): the revision check needs memory that a fields
    file does not give. Before: "VM entry passes every check" and exit code 0."""
    fp, cp = _write(tmp_path, *lab_state, VMCS_LINK_POINTER=0)
    code, out, err = run_cli(["verify", "--fields", fp, "--caps", cp])
    assert code == 1 and "passes every check" not in out
    assert "UNVERIFIED: no check fails, but 2 checks could not run" in out
    assert "not checked: guest.link.revision (SDM 27.3.1.5): needs memory" in out.replace("\n  ", " ")
    assert "warning: VMCS_LINK_POINTER = 0x0000000000000000 with VMCS shadowing off almost always fails" in out
    code, out, _ = run_cli(["--json", "verify", "--fields", fp, "--caps", cp])
    d = json.loads(out)
    assert code == 1 and d["result"] == "unverified" and d["failures"] == []
    assert [c["id"] for c in d["not_checked"]] == ["guest.link.revision", "guest.link.not_current"]
    assert d["not_checked"][0]["why"].startswith("needs memory") and len(d["warnings"]) == 1


def _image_with_link_pointer(tmp_path, link):
    from tests.arch.bochs_caps import BOCHS_MSRS
    from tests.hv.builder import HvState

    s = HvState(vcpus=2)
    s.region_revision = [4, 5]
    s.snapshots[0][by_name("VMCS_LINK_POINTER").encoding] = link(s)
    s.build()
    return s.write_image(str(tmp_path / "lp.hvimg"), msrs=BOCHS_MSRS)


def test_on_a_target_the_link_pointer_is_read(tmp_path):
    # the link pointer names vCPU 1's VMCS region, whose revision id is 5 (the processor's is 4);
    # the builder lays regions out the same way every time: a first build gives the address
    from tests.hv.builder import HvState
    vmcs1 = HvState(vcpus=2).build().regions[1]["vmcs_pa"]
    path = _image_with_link_pointer(tmp_path, lambda s: vmcs1)
    code, out, _ = run_cli(["--json", "--image", path, "verify", "0", "--all"])
    checks = {c["id"]: c for c in json.loads(out)["checks"]}
    assert checks["guest.link.revision"]["status"] == "FAIL"
    assert "the linked VMCS has revision 0x5, the processor's is 0x4" in checks["guest.link.revision"]["message"]
    path = _image_with_link_pointer(tmp_path, lambda s: 0)  # physical 0 is not in the image
    code, out, _ = run_cli(["--json", "--image", path, "verify", "0"])
    d = json.loads(out)
    assert d["not_checked"][0]["why"] == "needs memory: physical 0x0 (the link pointer) is not in the target"
    assert "shadowing off almost always fails" in d["warnings"][0]


def test_a_forbidden_activate_bit_is_error_7_not_a_missing_msr(tmp_path, lab_state):
    """Primary bit 17 (activate tertiary controls) on a CPU whose capability MSR forbids it: the
    verdict is the primary-control violation, which needs no 0x492. Before: "caps file lacks MSR 0x492"."""
    fields, caps, maxphy = lab_state
    proc = by_name("CPU_BASED_VM_EXEC_CONTROL").encoding
    f = dict(fields)
    f[proc] |= 1 << 17
    assert not (caps[0x48e] >> 32) >> 17 & 1  # the emulated CPU cannot activate tertiary controls
    fp, cp = _write(tmp_path, f, {k: v for k, v in caps.items() if k != 0x492}, maxphy)
    code, out, err = run_cli(["--json", "verify", "--fields", fp, "--caps", cp])
    d = json.loads(out)
    assert code == 1 and d["result"] == "vmfail_valid" and d["vm_instruction_error"] == 7, err
    assert d["failures"][0]["id"].startswith("control.proc")
