"""The settings table: valid, self-consistent (each fix command does what the
entry says), and refused with one line when broken."""
import copy
import json

import pytest

from debuggee import settings

TABLE = settings.load()
DEFAULTS = settings.resolve_parameters(TABLE, {})


def entries(kind):
    return [s for s in TABLE["settings"] if s["kind"] == kind]


def test_covers_every_item_of_the_issue():
    ids = {s["id"] for s in TABLE["settings"]}
    assert {"defender_realtime", "defender_tamper", "uac", "hyperv_launch", "vbs_registry", "hvci_registry",
            "vbs_running", "dbgprint_filter", "testsigning", "kdnet_debug", "kdnet_type", "kdnet_hostip",
            "kdnet_port", "kdnet_key", "debugview_launcher", "vmx_exposed", "driver_service"} <= ids


@pytest.mark.parametrize("s", entries("registry"), ids=lambda s: s["id"])
def test_registry_fix_is_the_matching_reg_add(s):
    if s["apply"] == "manual":
        assert not s["fix"].startswith("reg add")  # nothing a script may set: the fix says where to click
        return
    wanted = settings.fill(str(s["wanted"]), DEFAULTS)
    assert settings.fill_fix(s["fix"], DEFAULTS) == 'reg add "%s" /v %s /t %s /d %s /f' % (
        settings.registry_path(s), s["value"], s["type"], wanted)


@pytest.mark.parametrize("s", entries("bcdedit"), ids=lambda s: s["id"])
def test_bcdedit_fix_sets_the_option(s):
    assert s["fix"] == "bcdedit /set {current} %s %s" % (s["option"], s["set"])
    assert s["reboot"] is True  # boot options are read by the boot loader


def test_dbgsettings_share_one_command():
    fixes = {s["fix"] for s in entries("dbgsettings")}
    assert fixes == {"bcdedit /dbgsettings net hostip:{HostIp} port:{Port}"}
    assert {s["field"] for s in entries("dbgsettings")} == {"debugtype", "hostip", "port", "key"}


def test_dbgprint_default_is_the_suites_recommendation():
    from windbg_ext.arch import dbgprint
    assert int(TABLE["parameters"]["DebugPrintMask"]["default"], 16) == dbgprint.RECOMMENDED_MASK
    s = [s for s in TABLE["settings"] if s["id"] == "dbgprint_filter"][0]
    assert settings.registry_path(s) == dbgprint.REGISTRY_KEY
    assert dbgprint.fix_commands("IHVDRIVER", 0xFFFF)[1] == settings.fill_fix(s["fix"], DEFAULTS).replace("0xFFFF", "0xffff")


def test_parameters():
    assert DEFAULTS == {"DebugPrintMask": "0xFFFF", "HostIp": None, "Port": "50000", "Key": None, "ServiceName": "hv"}
    got = settings.resolve_parameters(TABLE, {"HostIp": " 10.1.2.3 ", "Key": "A.b.C.d", "DebugPrintMask": "255"})
    assert got["HostIp"] == "10.1.2.3" and got["Key"] == "a.b.c.d" and got["DebugPrintMask"] == "0xFF"


@pytest.mark.parametrize("kind,value", [("dword", "-1"), ("dword", "0x100000000"), ("dword", "ff"),
                                        ("ipv4", "256.1.1.1"), ("ipv4", "::1"), ("port", "49151"),
                                        ("port", "65536"), ("port", "5e4"), ("kdnet_key", "1.2.3"),
                                        ("kdnet_key", "1.2.3.4.5"), ("kdnet_key", "a_b.c.d.e"), ("name", "")])
def test_bad_parameter_values(kind, value):
    with pytest.raises(settings.SettingsError):
        settings.check_parameter(kind, "X", value)


def test_fill():
    p = {"A": "1", "B": None}
    assert settings.fill("x{A}y", p) == "x1y"
    assert settings.fill("x{B}", p) is None
    assert settings.fill(5, p) == 5
    assert settings.fill("bcdedit /set {current} x", p) == "bcdedit /set {current} x"
    assert settings.fill_fix("h:{B} {A}", p) == "h:<B> 1"


def _broken(mutate):
    t = copy.deepcopy(TABLE)
    mutate(t)
    return t


@pytest.mark.parametrize("mutate,word", [
    (lambda t: t.update(format="other"), "not an hvlab"),
    (lambda t: t.update(version=2), "version"),
    (lambda t: t["settings"][0].update(kind="magic"), "kind"),
    (lambda t: t["settings"][0].pop("fix"), "lacks fix"),
    (lambda t: t["settings"][0].update(apply="sometimes"), "apply"),
    (lambda t: t["settings"][0].update(hive="NTUSER"), "not under HKLM"),
    (lambda t: t["settings"].append(dict(t["settings"][0])), "twice"),
    (lambda t: t["settings"][0].update(fix="reg add {Nope}"), "unknown parameter {Nope}"),
    (lambda t: t.update(settings=[]), "no settings"),
    (lambda t: t["settings"][0].update(type="REG_SZ"), "not REG_DWORD"),
    (lambda t: [s.update(probe="x") for s in t["settings"] if s["kind"] == "probe"], "unknown probe"),
])
def test_validation_refuses_broken_tables(mutate, word):
    with pytest.raises(settings.SettingsError, match=word.replace("{", r"\{").replace("}", r"\}")):
        settings.validate(_broken(mutate))


def test_load_errors_are_one_line(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"format": "hvlab-debuggee-settings", "version": 1, "parameters": {}, "settings": []}))
    with pytest.raises(settings.SettingsError, match="no settings"):
        settings.load(str(p))
    with pytest.raises(settings.SettingsError, match="cannot read"):
        settings.load(str(tmp_path / "missing.json"))
