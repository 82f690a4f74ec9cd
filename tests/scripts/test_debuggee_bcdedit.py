"""Parsing recorded English bcdedit output: fields present, absent, set the wrong way."""
import pytest

from debuggee import bcdedit


def read(data, name):
    with open(data(name), "rb") as f:
        return bcdedit.decode(f.read())


def test_ready_entry_has_every_field(data):
    e = bcdedit.parse_enum(read(data, "enum_ready.txt"))
    assert e["identifier"] == "{current}"
    assert (e["testsigning"], e["debug"], e["hypervisorlaunchtype"]) == ("Yes", "Yes", "Off")
    # a 23-character name leaves one space before its value
    assert e["allowedinmemorysettings"] == "0x15000075"
    assert e["path"] == "\\WINDOWS\\system32\\winload.efi"


def test_fresh_entry_lacks_the_fields(data):
    e = bcdedit.parse_enum(read(data, "enum_fresh.txt"))
    assert "testsigning" not in e and "debug" not in e and "hypervisorlaunchtype" not in e
    assert e["nx"] == "OptIn"


def test_wrong_values_are_kept_verbatim(data):
    e = bcdedit.parse_enum(read(data, "enum_wrong.txt"))
    assert (e["testsigning"], e["debug"], e["hypervisorlaunchtype"]) == ("No", "No", "Auto")


def test_enum_all_picks_current_and_joins_continuations(data):
    text = read(data, "enum_all.txt")
    e = bcdedit.parse_enum(text)
    assert e["description"] == "Windows 11 (hvlab)"
    assert e["testsigning"] == "Yes"
    # the boot manager's two-line displayorder must not leak into the loader entry
    assert "displayorder" not in e


def test_enum_all_without_current_falls_back_to_first(data):
    text = read(data, "enum_all.txt").replace("identifier              {current}", "identifier              {abc}")
    assert bcdedit.parse_enum(text)["identifier"] == "{bootmgr}"


def test_continuation_lines_are_joined():
    text = ("Windows Boot Manager\n--------------------\nidentifier              {bootmgr}\n"
            "displayorder            {current}\n                        {memdiag}\n")
    assert bcdedit.parse_enum(text)["displayorder"] == "{current} {memdiag}"


def test_access_denied_is_its_own_error(data):
    with pytest.raises(bcdedit.BcdAccessDenied, match="elevated"):
        bcdedit.parse_enum(read(data, "enum_denied.txt"))
    with pytest.raises(bcdedit.BcdAccessDenied):
        bcdedit.parse_dbgsettings(read(data, "enum_denied.txt"))


def test_other_text_is_refused(data):
    with pytest.raises(bcdedit.BcdOutputError, match="identifier"):
        bcdedit.parse_enum(read(data, "not_bcdedit.txt"))
    with pytest.raises(bcdedit.BcdOutputError, match="debugtype"):
        bcdedit.parse_dbgsettings(read(data, "enum_ready.txt"))


@pytest.mark.parametrize("name,expected", [
    ("dbg_net_ready.txt", {"debugtype": "NET", "hostip": "192.168.56.1", "port": "50000", "dhcp": "Yes"}),
    ("dbg_net_busparams.txt", {"debugtype": "NET", "hostip": "10.0.0.2", "port": "50005", "key": "1.2.3.4",
                               "busparams": "0.25.0"}),
    ("dbg_serial.txt", {"debugtype": "Serial", "debugport": "1", "baudrate": "115200"}),
    ("dbg_local.txt", {"debugtype": "Local"}),
])
def test_dbgsettings(data, name, expected):
    d = bcdedit.parse_dbgsettings(read(data, name))
    for k, v in expected.items():
        assert d[k] == v
    assert not any(k.startswith("the") for k in d)  # the success line is not a field
    if name == "dbg_serial.txt":
        assert "hostip" not in d and "key" not in d


def test_decode_utf16_from_powershell_and_oem_from_cmd(data):
    text = read(data, "enum_ready.txt")
    ps = b"\xff\xfe" + text.replace("\n", "\r\n").encode("utf-16-le")  # PowerShell 5 `>` writes this
    assert bcdedit.parse_enum(bcdedit.decode(ps))["testsigning"] == "Yes"
    no_bom = text.encode("utf-16-le")
    assert bcdedit.parse_enum(bcdedit.decode(no_bom))["debug"] == "Yes"
    oem = text.replace("Windows 11", "Windows 11 \xc7").encode("cp437")  # not UTF-8
    assert bcdedit.decode(oem).count("\xc7") == 1


def test_german_output_keys_on_structure_not_words(data):
    # German Windows: translated headings and identifier label, English element names (docs/day0.md)
    e = bcdedit.parse_enum(read(data, "enum_de.txt"))
    assert e["identifier"] == "{current}"
    assert (e["testsigning"], e["debug"], e["hypervisorlaunchtype"]) == ("Yes", "Yes", "Off")
    assert e.unread == []  # the translated status line is the status line, not an element


def test_french_output_follows_bootmgr_default_and_keeps_words_verbatim(data):
    e = bcdedit.parse_enum(read(data, "enum_fr.txt"))  # OEM code page 850/437, CRLF
    assert e["identifier"] == "{5e6a2f31-0a4b-11ef-9c2d-7c8ae1f0b411}"  # no {current}: {bootmgr}'s default
    assert e["testsigning"] == "Oui" and e["debug"] == "Non"  # not translated back: evaluate says it cannot read them
    assert e["hypervisorlaunchtype"] == "Auto"
    assert e.unread == ["!! ligne inattendue"]


def test_translated_yes_no_is_reported_not_guessed(capsys, data, tmp_path):
    import json

    import debuggee_hives as hives
    from debuggee import cli
    system = hives.make_hive(str(tmp_path / "S"), "SYSTEM", hives.system_keys(**{"Control": {"SystemStartOptions": ""}}))
    rc = cli.main(["--json", "--hive", system, "--bcdedit-enum", data("enum_fr.txt")], on_windows=False)
    doc = json.loads(capsys.readouterr()[0])
    r = {x["id"]: x for x in doc["results"]}
    # 'Oui' is not guessed to be Yes: the last boot (no TESTSIGNING) answers, and the row says why
    assert r["testsigning"]["status"] == "FAIL"
    assert "'Oui'" in r["testsigning"]["found"] and "--bcd-hive" in r["testsigning"]["found"]
    assert r["hyperv_launch"]["status"] == "FAIL" and r["hyperv_launch"]["found"].startswith("Auto")
    assert doc["notes"] == ["--bcdedit-enum: line not understood, ignored: '!! ligne inattendue'"]
    assert rc == 1


def test_translated_yes_no_without_a_last_boot_is_unknown():
    from debuggee import evaluate
    from debuggee.registry import NoRegistry
    from debuggee.sources import Sources
    text = "Chargeur\n--------\nidentificateur  {current}\ntestsigning     Oui\n"
    src = Sources(NoRegistry("no registry"), lambda: text, None, live=False)
    row = {"option": "testsigning", "wanted": "Yes", "absent": "No", "start_option": "TESTSIGNING"}
    with pytest.raises(evaluate.Unavailable, match="'Oui', a word this checker does not know"):
        evaluate.check_bcdedit(row, src)
