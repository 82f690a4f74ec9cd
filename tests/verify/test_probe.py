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
    assert entry_probe.main(["--write-baseline", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
