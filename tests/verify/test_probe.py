"""emulated_lab.entry_probe as a tool: writes a valid fields/caps pair that
`verify` accepts, launches a fields file on the emulated CPU, one-line errors."""
import json

from emulated_lab import entry_probe
from windbg_ext import cli


def test_write_baseline_then_verify_and_launch(tmp_path, capsys):
    assert entry_probe.main(["--write-baseline", str(tmp_path)]) == 0
    fields, caps = tmp_path / "fields.json", tmp_path / "caps.json"
    assert json.loads(caps.read_text())["maxphyaddr"] == 40
    out = []
    assert cli.run(["--json", "verify", "--fields", str(fields), "--caps", str(caps)], out.append, out.append) == 0
    assert json.loads(out[0])["result"] == "success" and json.loads(out[0])["missing_fields"] == []
    capsys.readouterr()
    assert entry_probe.main([str(fields)]) == 0
    assert capsys.readouterr().out.strip() == "the emulated CPU: success"
    doc = json.loads(fields.read_text())
    doc["0x4822"] = "0x89"                      # GUEST_TR_AR_BYTES: available TSS
    fields.write_text(json.dumps(doc))
    assert entry_probe.main([str(fields)]) == 0
    assert capsys.readouterr().out.strip() == "the emulated CPU: entry_failure 0x80000021 qual 0"


def test_bad_fields_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "f.json"
    bad.write_text('{"0x4822": "nope"}')
    assert entry_probe.main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "is not a number" in err
    assert entry_probe.main(["--write-baseline", str(bad)]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_write_baseline_creates_its_directory(tmp_path, capsys):
    # before: "... is not a directory" for a directory that did not exist yet
    where = tmp_path / "new" / "baseline"
    assert entry_probe.main(["--write-baseline", str(where)]) == 0
    assert sorted(p.name for p in where.iterdir()) == ["caps.json", "fields.json"]


def _baseline_with(tmp_path, capsys, **changes):
    assert entry_probe.main(["--write-baseline", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "fields.json").read_text())
    for enc, value in changes.items():
        doc[enc.replace("f_", "0x")] = value
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(doc))
    capsys.readouterr()
    code = entry_probe.main([str(path)])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err and "internal error" not in cap.err
    return code, cap.out.strip(), cap.err.strip()


def test_learner_states_get_the_hardware_answer(tmp_path, capsys):
    # before: a traceback ("accessed physical address 0x0, which has no memory"); on hardware a link
    # pointer of 0 reads a page whose first dword is not the revision id: exit qualification 4 (SDM 27.8)
    code, out, _ = _baseline_with(tmp_path, capsys, f_2800="0x0")          # VMCS_LINK_POINTER = 0
    assert code == 0 and out == "the emulated CPU: entry_failure 0x80000021 qual 4"
    code, out, _ = _baseline_with(tmp_path, capsys, f_6802="0xdead000")    # GUEST_CR3 nowhere in particular
    assert code == 0 and out.startswith("the emulated CPU: success")


def test_entry_that_succeeds_without_an_exit_is_a_success(tmp_path, capsys):
    # before: "the previous probe did not return" although VM entry succeeded
    code, out, _ = _baseline_with(tmp_path, capsys, f_4826="0x1")          # GUEST_ACTIVITY_STATE = HLT
    assert code == 0 and out.startswith("the emulated CPU: success (VM entry succeeded; the guest then stopped")
    code, out, _ = _baseline_with(tmp_path, capsys, f_4016="0x80000b0d", f_4018="0x0")  # inject #GP(0)
    assert code == 0 and out.startswith("the emulated CPU: success (VM entry succeeded")


def test_preemption_timer_is_refused_up_front(tmp_path, capsys):
    # before: the emulator aborted the process (Assertion 'false' failed, rc 134)
    assert entry_probe.main(["--write-baseline", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "fields.json").read_text())
    doc["0x4000"] = "0x%x" % (int(doc["0x4000"], 16) | 1 << 6)
    (tmp_path / "t.json").write_text(json.dumps(doc))
    capsys.readouterr()
    assert entry_probe.main([str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err
    assert "ACTIVATE_PREEMPTION_TIMER" in err and err.count("\n") == 1
