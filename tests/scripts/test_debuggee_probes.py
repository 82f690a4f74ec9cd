"""The live-only items (VBS status, CPUID, service state, DebugView launcher):
their parsers on recorded Windows output, and their verdicts. Live Sources
is subclassed only where Windows would run a program; the parsing and the
verdict are the real code."""
import pytest

import debuggee_hives as hives
from debuggee import evaluate, settings
from debuggee.registry import HiveRegistry, Unavailable
from debuggee.sources import Sources, parse_sc_query, parse_vbs_json

TABLE = settings.load()
PARAMS = settings.resolve_parameters(TABLE, {})

SC_RUNNING = """
SERVICE_NAME: hv
        TYPE               : 1  KERNEL_DRIVER
        STATE              : 4  RUNNING
                                (STOPPABLE, NOT_PAUSABLE, IGNORES_SHUTDOWN)
        WIN32_EXIT_CODE    : 0  (0x0)
        SERVICE_EXIT_CODE  : 0  (0x0)
        CHECKPOINT         : 0x0
        WAIT_HINT          : 0x0
"""
SC_STOPPED = SC_RUNNING.replace("4  RUNNING", "1  STOPPED")
SC_MISSING = "[SC] EnumQueryServicesStatus:OpenService FAILED 1060:\n\nThe specified service does not exist as an installed service.\n"


def test_parse_vbs_json():
    assert parse_vbs_json('{"VirtualizationBasedSecurityStatus":2,"SecurityServicesRunning":[1,2]}') == \
        {"status": 2, "services": [1, 2]}
    assert parse_vbs_json('{"VirtualizationBasedSecurityStatus":0,"SecurityServicesRunning":[0]}') == \
        {"status": 0, "services": []}
    assert parse_vbs_json('{"VirtualizationBasedSecurityStatus":1,"SecurityServicesRunning":2}')["services"] == [2]
    assert parse_vbs_json('[{"VirtualizationBasedSecurityStatus":0,"SecurityServicesRunning":null}]')["status"] == 0
    for bad in ("", "Get-CimInstance : Invalid namespace", '{"Other": 1}'):
        with pytest.raises(Unavailable):
            parse_vbs_json(bad)


def test_parse_sc_query():
    assert parse_sc_query(SC_RUNNING) == "RUNNING"
    assert parse_sc_query(SC_STOPPED) == "STOPPED"
    assert parse_sc_query(SC_MISSING) is None
    with pytest.raises(Unavailable):
        parse_sc_query("something else")


class RecordedVM(Sources):
    """The VM as recorded: hive for the registry, captured tool output for the rest."""

    def __init__(self, system, vbs_json, sc_text, cpu, files):
        super().__init__(HiveRegistry({"SYSTEM": system}), None, None, live=True)
        self._vbs, self._sc, self._cpu, self._files = vbs_json, sc_text, cpu, files

    def vbs_status(self):
        return parse_vbs_json(self._vbs)

    def service_state(self, name):
        return parse_sc_query(self._sc)

    def cpuid(self):
        return self._cpu

    def read_text(self, path):
        return self._files.get(path)


@pytest.fixture
def system(tmp_path):
    return hives.make_hive(str(tmp_path / "SYSTEM"), "SYSTEM", hives.system_keys())


def verdicts(src):
    return {r["id"]: r for r in evaluate.evaluate(TABLE, PARAMS, set(), src)}


LAUNCHER = "%USERPROFILE%\\Desktop\\hvlab-DebugView.cmd"


def test_ready_vm(system):
    r = verdicts(RecordedVM(system, '{"VirtualizationBasedSecurityStatus":0,"SecurityServicesRunning":[]}',
                            SC_RUNNING, ("GenuineIntel", True, True, "VMwareVMware"),
                            {LAUNCHER: '@echo off\r\nstart "" "C:\\Tools\\Dbgview.exe" /accepteula /k /v /f\r\n'}))
    assert r["vmx_exposed"]["status"] == "PASS" and "VMwareVMware" in r["vmx_exposed"]["found"]
    assert r["vbs_running"]["status"] == "PASS" and r["vbs_running"]["found"] == "VBS not enabled"
    assert r["driver_service"]["status"] == "PASS" and r["driver_service"]["found"].endswith("RUNNING")
    assert r["debugview_launcher"]["status"] == "PASS"


def test_vm_with_vbs_running_and_no_nested_vtx(system):
    r = verdicts(RecordedVM(system, '{"VirtualizationBasedSecurityStatus":2,"SecurityServicesRunning":[2]}',
                            SC_MISSING, ("GenuineIntel", False, True, "Microsoft Hv"),
                            {LAUNCHER: "start Dbgview.exe /k"}))
    assert r["vbs_running"]["status"] == "FAIL" and "HVCI" in r["vbs_running"]["found"]
    assert r["vmx_exposed"]["status"] == "FAIL" and "Hyper-V/VBS" in r["vmx_exposed"]["found"]
    assert "ExposeVirtualizationExtensions" in r["vmx_exposed"]["fix"]
    assert r["debugview_launcher"]["status"] == "FAIL" and r["debugview_launcher"]["found"].endswith("lacks /v")
    assert r["driver_service"]["status"] == "PASS"  # registered in the hive, not installed per sc: registry wins
    assert evaluate.exit_code(list(r.values())) == 1


def test_amd_cpu_is_named(system):
    r = verdicts(RecordedVM(system, '{"VirtualizationBasedSecurityStatus":1,"SecurityServicesRunning":[]}',
                            SC_STOPPED, ("AuthenticAMD", False, False, None), {}))
    assert r["vmx_exposed"]["status"] == "FAIL" and "needs Intel VT-x" in r["vmx_exposed"]["found"]
    assert r["vbs_running"]["status"] == "PASS" and "not running" in r["vbs_running"]["found"]
    assert r["debugview_launcher"]["status"] == "FAIL" and "not found" in r["debugview_launcher"]["found"]


def test_offline_sources_say_why_unknown(system):
    src = Sources(HiveRegistry({"SYSTEM": system}), None, None, live=False, offline_reason="not in an image")
    r = verdicts(src)
    for sid in ("vmx_exposed", "vbs_running", "debugview_launcher"):
        assert r[sid]["status"] == "UNKNOWN" and r[sid]["found"] == "not in an image"
        assert r[sid]["fix"] is not None


def test_live_bcdedit_in_german_is_read_and_translated_words_are_not_guessed(system):
    # headings and the identifier label are translated; element names are not (docs/day0.md)
    german = ("Windows-Startladeprogramm\n-------------------------\nBezeichner              {current}\n"
              "testsigning             Ja\nhypervisorlaunchtype    Off\nDer Vorgang wurde erfolgreich beendet.\n")
    src = Sources(HiveRegistry({"SYSTEM": system}), lambda: german, lambda: "debugtype NET\n", live=False)
    r = verdicts(src)
    assert r["hyperv_launch"]["status"] == "PASS" and r["hyperv_launch"]["found"] == "Off"
    # "Ja" is not a word the checker knows: it says so, and the last boot answers instead
    assert r["testsigning"]["status"] == "PASS"
    assert "'Ja'" in r["testsigning"]["found"] and "--bcd-hive" in r["testsigning"]["found"]
    assert "SystemStartOptions" in r["testsigning"]["found"]
    assert r["kdnet_type"]["status"] == "PASS"
    assert src.notes == []  # the translated status line is recognised as the status line
