"""check-debuggee against REAL hive files (built with hivexsh, read with regipy)
and recorded bcdedit output: what an instructor runs on a student's image."""
import json

import pytest

import debuggee_hives as hives
from debuggee import cli, registry


def run(capsys, *argv, on_windows=False):
    rc = cli.main([str(a) for a in argv], on_windows=on_windows)
    out, err = capsys.readouterr()
    return rc, out, err


def statuses(capsys, *argv):
    rc, out, err = run(capsys, "--json", *argv)
    assert err == "", err
    doc = json.loads(out)
    assert doc["exit"] == rc
    return rc, {r["id"]: r for r in doc["results"]}


@pytest.fixture
def image(tmp_path, data):
    """Builds SYSTEM/SOFTWARE/NTUSER hives; returns the argv that names them."""
    def build(system=None, software=None, ntuser=None, enum="enum_ready.txt", dbg="dbg_net_ready.txt"):
        argv = ["--hive", hives.make_hive(str(tmp_path / "SYSTEM"), "SYSTEM", system or hives.system_keys())]
        argv += ["--software-hive", hives.make_hive(str(tmp_path / "SOFTWARE"), "SOFTWARE",
                                                    software or hives.software_keys())]
        if ntuser is not False:
            argv += ["--ntuser-hive", hives.make_hive(str(tmp_path / "NTUSER.DAT"), "NTUSER.DAT", ntuser or {
                "Software\\Sysinternals\\DbgView": {"EulaAccepted": 1}})]
        if enum:
            argv += ["--bcdedit-enum", data(enum)]
        if dbg:
            argv += ["--dbgsettings", data(dbg)]
        return argv
    return build


def test_hivex_built_hive_is_read_by_regipy(tmp_path):
    path = hives.make_hive(str(tmp_path / "h"), "SYSTEM", {"Select": {"Current": 1}, "A\\B C": {"V": "text", "D": 7}})
    reg = registry.HiveRegistry({"SYSTEM": path})
    assert reg.get("HKLM", "SYSTEM", "A\\B C", "V") == ("text", "REG_SZ")
    assert reg.get("HKLM", "SYSTEM", "A\\B C", "d") == (7, "REG_DWORD")  # names are case-insensitive
    assert reg.get("HKLM", "SYSTEM", "A\\B C", "missing") is None
    assert reg.get("HKLM", "SYSTEM", "A\\nope", "V") is None


def test_ready_image_passes_everything_an_image_can_tell(capsys, image):
    rc, r = statuses(capsys, *image())
    assert rc == 0
    live_only = {"vbs_running", "vmx_exposed", "debugview_launcher"}
    for sid, res in r.items():
        if sid in live_only:
            assert res["status"] == "UNKNOWN" and "on the VM" in res["found"], res
        else:
            assert res["status"] == "PASS", res
            assert res["fix"] is None
    assert "0xFFFF" in r["dbgprint_filter"]["found"] and "INFO" in r["dbgprint_filter"]["found"]
    assert "demand" in r["driver_service"]["found"]


def test_fresh_image_fails_with_fix_commands(capsys, image):
    system = hives.system_keys(**{
        "Control\\Session Manager\\Debug Print Filter": None,
        "Control\\DeviceGuard": {"EnableVirtualizationBasedSecurity": 1},
        "Control\\DeviceGuard\\Scenarios\\HypervisorEnforcedCodeIntegrity": {"Enabled": 1},
        "Control\\Lsa": {"LsaCfgFlags": 1},
        "Control\\SecureBoot\\State": {"UEFISecureBootEnabled": 1},
        "Control": {"SystemStartOptions": " NOEXECUTE=OPTIN"},
        "Services\\hv": None,
    })
    software = hives.software_keys(**{
        "Microsoft\\Windows\\CurrentVersion\\Policies\\System": {"EnableLUA": 1},
        "Microsoft\\Windows Defender\\Features": {"TamperProtection": 5},
        "Policies\\Microsoft\\Windows Defender\\Real-Time Protection": None,
    })
    rc, r = statuses(capsys, *image(system, software, ntuser={"Software\\Other": {"X": 1}},
                                    enum="enum_fresh.txt", dbg="dbg_serial.txt"))
    assert rc == 1
    failing = {sid for sid, res in r.items() if res["status"] == "FAIL"}
    assert failing == {"defender_realtime", "defender_tamper", "uac", "vbs_registry", "hvci_registry",
                       "credential_guard", "dbgprint_filter", "testsigning", "secure_boot", "kdnet_debug",
                       "kdnet_type", "kdnet_hostip", "kdnet_port", "kdnet_key", "debugview_eula", "driver_service"}
    # absent bcdedit fields read as their defaults
    assert r["hyperv_launch"]["status"] == "PASS" and "not set (default Off)" in r["hyperv_launch"]["found"]
    assert r["testsigning"]["found"] == "not set (default No)"
    assert r["testsigning"]["fix"] == "bcdedit /set {current} testsigning on"
    assert r["uac"]["fix"].startswith('reg add "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System" '
                                      "/v EnableLUA /t REG_DWORD /d 0")
    assert r["dbgprint_filter"]["found"] == "not set"
    assert "/d 0xFFFF" in r["dbgprint_filter"]["fix"]
    assert r["kdnet_hostip"]["found"].startswith("hostip not set (debugtype Serial")
    assert "<HostIp>" in r["kdnet_hostip"]["fix"]  # no --host-ip: the placeholder says what to fill in
    assert r["driver_service"]["required"] is False and "not registered" in r["driver_service"]["found"]


def test_wrong_bcdedit_values(capsys, image):
    rc, r = statuses(capsys, *image(enum="enum_wrong.txt", dbg="dbg_net_bad.txt"))
    assert rc == 1
    assert r["hyperv_launch"]["status"] == "FAIL" and r["hyperv_launch"]["found"].startswith("Auto; ")
    assert "last boot had Off" in r["hyperv_launch"]["found"]  # SystemStartOptions has no HYPERVISORLAUNCHTYPE
    assert r["testsigning"]["status"] == "FAIL"
    # the hive's SystemStartOptions says the last boot had it: bcdedit's value is pending
    assert "last boot had Yes" in r["testsigning"]["found"]
    assert r["kdnet_type"]["status"] == "PASS"
    assert "not an IPv4" in r["kdnet_hostip"]["found"]
    assert "outside 49152-65535" in r["kdnet_port"]["found"]
    assert "not a w.x.y.z key" in r["kdnet_key"]["found"]


def test_given_parameters_are_compared(capsys, image):
    argv = image(dbg="dbg_net_busparams.txt")
    rc, r = statuses(capsys, *argv, "--host-ip", "10.0.0.2", "--port", "50005", "--key", "1.2.3.4")
    assert rc == 0 and all(r[k]["status"] == "PASS" for k in ("kdnet_hostip", "kdnet_port", "kdnet_key"))
    rc, r = statuses(capsys, *argv, "--host-ip", "10.0.0.9", "--port", "50000", "--key", "5.6.7.8")
    assert rc == 1
    assert r["kdnet_hostip"]["found"] == "10.0.0.2 (wanted 10.0.0.9)"
    assert r["kdnet_port"]["found"] == "50005 (wanted 50000)"
    assert r["kdnet_key"]["status"] == "FAIL"
    assert r["kdnet_hostip"]["fix"] == "bcdedit /dbgsettings net hostip:10.0.0.9 port:50000"
    # without them the values are only validated, and the output says so
    rc, r = statuses(capsys, *argv)
    assert rc == 0 and "not compared: give --host-ip" in r["kdnet_hostip"]["found"]


@pytest.mark.parametrize("mask,status,dropped", [
    (0xFFFF, "PASS", None),
    (0xF, "PASS", None),
    (0x1, "FAIL", "WARNING, TRACE, INFO"),
    (0x8, "FAIL", "WARNING, TRACE"),   # INFO only (bit 3); ERROR passes via Kd_WIN2000_Mask
    (0x0, "FAIL", "WARNING, TRACE, INFO"),
])
def test_debug_print_filter_uses_the_kernel_rule(capsys, image, mask, status, dropped):
    system = hives.system_keys(**{"Control\\Session Manager\\Debug Print Filter": {"IHVDRIVER": mask}})
    rc, r = statuses(capsys, *image(system))
    res = r["dbgprint_filter"]
    assert res["status"] == status, res
    if dropped:
        assert res["found"].endswith("drops " + dropped)
    else:
        assert "drops" not in res["found"]


def test_wanted_mask_is_configurable(capsys, image):
    system = hives.system_keys(**{"Control\\Session Manager\\Debug Print Filter": {"IHVDRIVER": 0xF}})
    rc, r = statuses(capsys, *image(system), "--print-mask", "0xFFFFFFFF")
    assert r["dbgprint_filter"]["status"] == "PASS"
    assert "differs from the wanted 0xFFFFFFFF" in r["dbgprint_filter"]["found"]
    system = hives.system_keys(**{"Control\\Session Manager\\Debug Print Filter": {"IHVDRIVER": 1}})
    rc, r = statuses(capsys, *image(system), "--print-mask", "0xFF")
    assert "/d 0xFF /f" in r["dbgprint_filter"]["fix"]


def test_a_value_of_the_wrong_type_fails(capsys, image):
    system = hives.system_keys(**{"Control\\Session Manager\\Debug Print Filter": {"IHVDRIVER": "0xffff"}})
    rc, r = statuses(capsys, *image(system))
    assert r["dbgprint_filter"]["status"] == "FAIL"
    assert r["dbgprint_filter"]["found"] == "REG_SZ '0xffff' (expected REG_DWORD)"


def test_current_control_set_follows_select_current(capsys, image):
    keys = hives.system_keys("ControlSet002", current=2)
    # a stale ControlSet001 with everything wrong must be ignored
    keys.update({"ControlSet001\\Control\\Lsa": {"LsaCfgFlags": 1},
                 "ControlSet001\\Control\\Session Manager\\Debug Print Filter": {"IHVDRIVER": 0}})
    rc, r = statuses(capsys, *image(keys))
    assert r["credential_guard"]["status"] == "PASS" and r["dbgprint_filter"]["status"] == "PASS"
    keys["Select"] = {"Current": 1}
    rc, r = statuses(capsys, *image(keys))
    assert r["credential_guard"]["status"] == "FAIL" and r["dbgprint_filter"]["status"] == "FAIL"


def test_without_bcdedit_output_the_last_boot_options_answer(capsys, image):
    rc, r = statuses(capsys, *image(enum=None, dbg=None))
    assert r["testsigning"]["status"] == "PASS" and "SystemStartOptions" in r["testsigning"]["found"]
    assert r["kdnet_debug"]["status"] == "PASS"
    # the last boot decides the launch type too, and says the stored setting is unknown and how to give it
    assert r["hyperv_launch"]["status"] == "PASS" and "Off at the last boot" in r["hyperv_launch"]["found"]
    assert "--bcd-hive" in r["hyperv_launch"]["found"] and "--bcdedit-enum" in r["hyperv_launch"]["found"]
    assert r["kdnet_type"]["status"] == "UNKNOWN" and "--dbgsettings" in r["kdnet_type"]["found"]
    system = hives.system_keys(**{"Control": {"SystemStartOptions": " NOEXECUTE=OPTIN  NODEBUG"}})
    rc, r = statuses(capsys, *image(system, enum=None, dbg=None))
    assert r["testsigning"]["status"] == "FAIL" and r["kdnet_debug"]["status"] == "FAIL"


def test_recorded_access_denied_is_unknown_not_an_error(capsys, image):
    rc, r = statuses(capsys, *image(enum="enum_denied.txt"))
    assert r["hyperv_launch"]["status"] == "PASS" and "elevated" in r["hyperv_launch"]["found"]
    assert "at the last boot (SystemStartOptions)" in r["hyperv_launch"]["found"]
    assert r["testsigning"]["status"] == "PASS"  # from SystemStartOptions


def test_only_system_hive_leaves_the_rest_unknown(capsys, image, tmp_path):
    path = hives.make_hive(str(tmp_path / "S"), "SYSTEM", hives.system_keys())
    rc, r = statuses(capsys, "--hive", path)
    assert r["uac"]["status"] == "UNKNOWN" and "--software-hive" in r["uac"]["found"]
    assert r["debugview_eula"]["status"] == "UNKNOWN" and "--ntuser-hive" in r["debugview_eula"]["found"]
    assert r["vbs_registry"]["status"] == "PASS"
    assert rc == 0  # UNKNOWN is not a failure


def test_service_states(capsys, image):
    for values, status, word in [
        ({"Type": 1, "Start": 4, "ImagePath": "x"}, "FAIL", "disabled"),
        ({"Type": 16, "Start": 3, "ImagePath": "x"}, "FAIL", "kernel driver"),
        ({"Type": 1, "Start": 1, "ImagePath": "x"}, "PASS", "system"),
    ]:
        rc, r = statuses(capsys, *image(hives.system_keys(**{"Services\\hv": values})))
        assert r["driver_service"]["status"] == status and word in r["driver_service"]["found"]
        assert rc == 0  # optional: never fails the run


def test_service_name_parameter(capsys, image):
    system = hives.system_keys(**{"Services\\hvlab2": {"Type": 1, "Start": 3, "ImagePath": "y"}})
    rc, r = statuses(capsys, *image(system), "--service", "hvlab2")
    assert r["driver_service"]["status"] == "PASS" and r["driver_service"]["title"].endswith("(Services\\hvlab2)")


def test_text_output_table_and_fixes(capsys, image):
    system = hives.system_keys(**{"Control\\Lsa": {"LsaCfgFlags": 2}})
    rc, out, err = run(capsys, *image(system, enum="enum_wrong.txt"))
    assert rc == 1 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["Status", "Check", "Found"]
    assert any(l.startswith("FAIL") and "Credential Guard" in l and "LsaCfgFlags=2" in l for l in lines)
    assert any(l.startswith("UNKNOWN") and "CPUID.1:ECX.VMX" in l for l in lines)
    assert "To fix (run elevated):" in out
    assert "bcdedit /set {current} hypervisorlaunchtype off   [reboot]" in out
    assert "/v LsaCfgFlags /t REG_DWORD /d 0 /f" in out
    summary = [l for l in lines if " PASS, " in l]
    assert len(summary) == 1
    counts = summary[0].split()
    assert counts[2:4] == ["4", "FAIL,"]  # hyperv_launch, testsigning, kdnet_debug, credential_guard


def test_plain_table_when_tabulate_is_missing(capsys, image, monkeypatch):
    import sys
    rc, with_tabulate, _ = run(capsys, *image(enum="enum_wrong.txt"))
    monkeypatch.setitem(sys.modules, "tabulate", None)  # the VM's Python may not have it
    rc2, plain, err = run(capsys, *image(enum="enum_wrong.txt"))
    assert rc == rc2 == 1 and err == ""
    assert plain.splitlines()[0].split() == ["Status", "Check", "Found"]
    assert set(plain.splitlines()[1]) <= {"-", " "}
    # same rows, same words
    assert [l.split() for l in plain.splitlines()[2:]] == [l.split() for l in with_tabulate.splitlines()[2:]]
    assert "in PowerShell quote it: '{current}'" in plain


def win10_1709_system():
    """The shape of a real exported SYSTEM hive (regipy's SYSTEM_WIN_10_1709): Select with
    Current/Default/Failed/LastKnownGood, one control set, a SystemStartOptions that launched
    Hyper-V, and none of the values a lab VM adds (no DeviceGuard, Debug Print Filter, SecureBoot\\State,
    LsaCfgFlags, driver service)."""
    cs = "ControlSet001"
    return {
        "Select": {"Current": 1, "Default": 1, "Failed": 0, "LastKnownGood": 1},
        cs + "\\Control": {"SystemStartOptions": "FLIGHTSIGNING NOEXECUTE=OPTIN HYPERVISORLAUNCHTYPE=AUTO",
                           "SystemBootDevice": "multi(0)disk(0)rdisk(0)partition(2)",
                           "PreshutdownOrder": ("hex:7", "77,00,75,00,61,00,75,00,73,00,65,00,72,00,76,00,00,00,00,00")},
        cs + "\\Control\\Lsa": {"Bounds": ("hex:3", "00,30,00,00,00,20,00,00"), "LimitBlankPasswordUse": 1},
        cs + "\\Control\\Session Manager": {"ProtectionMode": 1},
        cs + "\\Services\\Tcpip": {"Type": 1, "Start": 1},
    }


def test_real_1709_hive_shape_decides_from_the_last_boot(capsys, tmp_path):
    # issue 15: this hive used to give "UNKNOWN -- no bcdedit output" for Hyper-V although
    # SystemStartOptions proves the last boot launched it
    path = hives.make_hive(str(tmp_path / "SYSTEM"), "SYSTEM", win10_1709_system())
    rc, r = statuses(capsys, "--hive", path)
    assert rc == 1
    assert r["hyperv_launch"]["status"] == "FAIL"
    assert r["hyperv_launch"]["found"].startswith("Auto at the last boot (SystemStartOptions); stored setting unknown")
    assert r["testsigning"]["status"] == "FAIL" and r["kdnet_debug"]["status"] == "FAIL"
    # absent values are Windows' defaults: decided, not unknown
    for sid in ("vbs_registry", "hvci_registry", "credential_guard", "secure_boot"):
        assert r[sid]["status"] == "PASS" and "not set (Windows default" in r[sid]["found"], r[sid]
    assert r["dbgprint_filter"]["status"] == "FAIL" and r["driver_service"]["status"] == "FAIL"
    # what stays UNKNOWN says what would decide it
    assert r["kdnet_type"]["status"] == "UNKNOWN" and "--bcd-hive" in r["kdnet_type"]["found"]
    assert r["uac"]["status"] == "UNKNOWN" and "--software-hive" in r["uac"]["found"]


def test_summary_lines_name_the_sources(capsys, image):
    rc, out, err = run(capsys, *image())
    assert "Boot configuration: bcdedit output" in out
    assert "Last boot (SystemStartOptions): testsigning Yes, debug Yes, hypervisorlaunchtype Off" in out


def test_no_system_start_options_value(capsys, image):
    # an image that never booted has no SystemStartOptions: nothing about the last boot is claimed
    system = hives.system_keys(**{"Control": {"SystemBootDevice": "multi(0)disk(0)rdisk(0)partition(2)"}})
    rc, r = statuses(capsys, *image(system, enum=None, dbg=None))
    assert r["testsigning"]["status"] == "UNKNOWN" and "--bcd-hive" in r["testsigning"]["found"]
    rc, out, err = run(capsys, *image(system, enum=None, dbg=None))
    assert "Last boot (SystemStartOptions): unknown, no SystemStartOptions value in the SYSTEM hive" in out


def test_text_output_fits_120_columns(capsys, image, tmp_path):
    # long findings (a KDNET key, a last-boot note) continue on the next row instead of widening the table
    path = hives.make_hive(str(tmp_path / "SYSTEM"), "SYSTEM", win10_1709_system())
    for argv in (image(enum="enum_wrong.txt"), image(), ["--hive", path]):
        rc, out, err = run(capsys, *argv)
        table = out.split("\n\n")[0].splitlines()
        assert all(len(line) <= 120 for line in table), max(table, key=len)
    assert any(l.split() and l.split()[0] == "PASS" and "2steg4fzbj2sz" in l for l in run(capsys, *image())[1].splitlines())
