"""--bcd-hive: the BCD store itself (a real hive built with hivexsh, read with
regipy), shaped like real exported stores: GUID objects, {bootmgr}'s default,
inheritance down to {dbgsettings}, REG_BINARY booleans and integers,
REG_MULTI_SZ object lists, device blobs."""
import json
import os
import subprocess
import sys

import pytest

import debuggee_hives as hives
from debuggee import bcd_store, cli
from debuggee_hives import SCRIPTS

BOOT_ROWS = ("hyperv_launch", "testsigning", "kdnet_debug", "kdnet_type", "kdnet_hostip", "kdnet_port", "kdnet_key")


def statuses(capsys, *argv):
    rc = cli.main([str(a) for a in argv], on_windows=False)
    out, err = capsys.readouterr()
    assert err == "", err
    doc = json.loads(out)
    assert doc["exit"] == rc
    return rc, {r["id"]: r for r in doc["results"]}, doc


@pytest.fixture
def system(tmp_path):
    def build(start_options=" TESTSIGNING  NOEXECUTE=OPTIN  DEBUG  DEBUGPORT=NET  HOST_IP=192.168.56.1  HOST_PORT=50000"):
        return hives.make_hive(str(tmp_path / "SYSTEM"), "SYSTEM",
                               hives.system_keys(**{"Control": {"SystemStartOptions": start_options}}))
    return build


@pytest.fixture
def bcd(tmp_path):
    return lambda **kw: hives.make_bcd(str(tmp_path / "BCD"), **kw)


def test_ready_store_answers_every_boot_item(capsys, system, bcd):
    rc, r, doc = statuses(capsys, "--json", "--hive", system(), "--bcd-hive", bcd())
    assert rc == 0
    for sid in BOOT_ROWS:
        assert r[sid]["status"] == "PASS", r[sid]
    assert r["hyperv_launch"]["found"] == "Off" and r["testsigning"]["found"] == "Yes"
    assert r["kdnet_type"]["found"] == "NET"
    assert r["kdnet_hostip"]["found"].startswith("192.168.56.1")  # REG_BINARY integer -> dotted quad
    assert r["kdnet_port"]["found"].startswith("50000")
    assert r["kdnet_key"]["found"].startswith("2steg4fzbj2sz.")
    assert hives.LOADER in doc["boot_configuration"] and "{bootmgr}'s default" in doc["boot_configuration"]
    assert doc["last_boot"]["values"]["debugtype"] == "NET"


def test_store_alone_without_a_system_hive(capsys, bcd):
    rc, r, doc = statuses(capsys, "--json", "--bcd-hive", bcd(), "--host-ip", "192.168.56.1", "--port", "50000")
    assert r["kdnet_hostip"]["found"] == "192.168.56.1" and r["kdnet_port"]["found"] == "50000"
    assert r["uac"]["status"] == "UNKNOWN" and doc["last_boot"] is None
    assert rc == 0


def test_fresh_store_fails_with_the_fixes(capsys, system, bcd):
    store = bcd(loader={"16000049": None, "260000a0": None, "250000f0": hives.el_int(1)},
                dbg={"15000011": hives.el_int(0), "1500001a": None, "1500001b": None, "1200001d": None,
                     "15000013": hives.el_int(1), "15000014": hives.el_int(115200)})
    rc, r, _ = statuses(capsys, "--json", "--hive", system(" NOEXECUTE=OPTIN  HYPERVISORLAUNCHTYPE=AUTO"),
                        "--bcd-hive", store)
    assert rc == 1
    assert r["hyperv_launch"]["status"] == "FAIL" and r["hyperv_launch"]["found"] == "Auto"
    assert r["testsigning"]["found"] == "not set (default No)" and r["testsigning"]["status"] == "FAIL"
    assert r["kdnet_type"]["status"] == "FAIL" and r["kdnet_type"]["found"] == "Serial"
    assert r["kdnet_hostip"]["found"] == "hostip not set (debugtype Serial)"


def test_loader_elements_override_dbgsettings(capsys, system, bcd):
    # bcdedit /set {current} hostip ... writes the element on the loader itself
    rc, r, _ = statuses(capsys, "--json", "--hive", system(), "--bcd-hive", bcd(loader={"1500001a": hives.el_ip("10.1.2.3")}),
                        "--host-ip", "10.1.2.3")
    assert r["kdnet_hostip"]["status"] == "PASS"
    assert r["kdnet_hostip"]["found"].startswith("10.1.2.3; the last boot had 192.168.56.1")


def test_store_and_last_boot_disagree(capsys, system, bcd):
    # Hyper-V ran at the last boot; the store has been set to Off since: a reboot is pending
    rc, r, _ = statuses(capsys, "--json", "--hive", system(" TESTSIGNING  DEBUG  HYPERVISORLAUNCHTYPE=AUTO"),
                        "--bcd-hive", bcd())
    assert r["hyperv_launch"]["status"] == "PASS"
    assert r["hyperv_launch"]["found"] == "Off; the last boot had Auto (bcdedit changes apply at the next boot)"


def test_store_is_preferred_to_bcdedit_text(capsys, system, bcd, data):
    rc, r, doc = statuses(capsys, "--json", "--hive", system(), "--bcd-hive", bcd(),
                          "--bcdedit-enum", data("enum_wrong.txt"), "--dbgsettings", data("dbg_net_bad.txt"))
    assert r["hyperv_launch"]["found"] == "Off" and r["kdnet_port"]["status"] == "PASS"
    assert doc["boot_configuration"].startswith("BCD store")


def test_bcd_id_chooses_another_loader(capsys, system, bcd):
    rc, r, doc = statuses(capsys, "--json", "--hive", system(), "--bcd-hive", bcd(), "--bcd-id", hives.OTHER_LOADER)
    assert r["hyperv_launch"]["status"] == "FAIL" and r["hyperv_launch"]["found"].startswith("Auto")
    assert "given by --bcd-id" in doc["boot_configuration"]
    # {current} offline means the default entry, and the output says why
    rc, r, doc = statuses(capsys, "--json", "--hive", system(), "--bcd-hive", bcd(), "--bcd-id", "{current}")
    assert r["hyperv_launch"]["found"] == "Off" and "only known on the running VM" in doc["boot_configuration"]


def test_default_missing_leaves_boot_items_to_the_last_boot(capsys, system, bcd, tmp_path):
    keys = hives.bcd_keys()
    del keys["Objects\\%s\\Elements\\23000003" % hives.BOOTMGR]
    store = hives.make_hive(str(tmp_path / "BCD2"), "BCD", keys)
    rc, r, _ = statuses(capsys, "--json", "--hive", system(), "--bcd-hive", store)
    assert r["testsigning"]["status"] == "PASS" and "no default entry" in r["testsigning"]["found"]
    assert "at the last boot (SystemStartOptions)" in r["testsigning"]["found"]
    assert r["kdnet_key"]["status"] == "UNKNOWN" and "--bcd-id" in r["kdnet_key"]["found"]


def test_element_of_an_unexpected_type_is_not_guessed(capsys, system, bcd):
    rc, r, _ = statuses(capsys, "--json", "--hive", system(), "--bcd-hive", bcd(loader={"16000049": "Yes"}))
    assert "16000049" in r["testsigning"]["found"] and "REG_SZ" in r["testsigning"]["found"]
    assert r["testsigning"]["status"] == "PASS"  # the last boot had TESTSIGNING, and says so
    assert "at the last boot" in r["testsigning"]["found"]
    assert r["hyperv_launch"]["found"] == "Off" and r["kdnet_debug"]["found"] == "Yes"  # the rest still from the store
    # a KDNET field of a wrong type: that row falls back to the last boot, the others stay with the store
    rc, r, _ = statuses(capsys, "--json", "--hive", system(), "--bcd-hive", bcd(dbg={"1500001b": "50000"}))
    assert r["kdnet_port"]["found"].startswith("50000 ") and "REG_SZ" in r["kdnet_port"]["found"]
    assert "(at the last boot, SystemStartOptions; stored setting unreadable" in r["kdnet_port"]["found"]
    assert r["kdnet_hostip"]["found"] == "192.168.56.1 (not compared: give --host-ip)"


def test_inheritance_cycle_ends(tmp_path):
    keys = hives.bcd_keys(loader={"260000a0": None})
    keys["Objects\\%s\\Elements\\14000006" % hives.DBGSETTINGS] = {"Element": hives.el_multi([hives.GLOBALSETTINGS])}
    st = bcd_store.BcdStore(bcd_store.HiveTree(hives.make_hive(str(tmp_path / "B"), "BCD", keys)))
    assert st.element(hives.LOADER, "debug") is None
    assert st.element(hives.LOADER, "port") == ("50000", "{dbgsettings}")


CHECK = os.path.join(SCRIPTS, "check-debuggee")


def one_line_error(argv, *words):
    r = subprocess.run([sys.executable, CHECK] + [str(a) for a in argv], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("check-debuggee: ") and "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_bad_bcd_input(tmp_path, system, bcd):
    one_line_error(["--bcd-hive", tmp_path / "nope"], "no such file", "bcdedit /export")
    text = tmp_path / "t"
    text.write_text("x")
    one_line_error(["--bcd-hive", text], "not a registry hive")
    one_line_error(["--bcd-hive", system()], "not a BCD store")  # a SYSTEM hive given as the store
    store = bcd()
    one_line_error(["--bcd-hive", store, "--bcd-id", "{dbgsettings}"], "not a Windows Boot Loader", hives.LOADER)
    one_line_error(["--bcd-hive", store, "--bcd-id", "{00000000-0000-0000-0000-000000000000}"], "no such object")
    one_line_error(["--bcd-id", hives.LOADER, "--hive", system()], "--bcd-id needs --bcd-hive")


def test_current_on_the_vm_and_an_undocumented_value(system, bcd):
    from debuggee import evaluate, settings
    from debuggee.registry import HiveRegistry
    from debuggee.sources import Sources
    store = bcd_store.BcdStore(bcd_store.HiveTree(bcd(loader={"250000f0": hives.el_int(5)})))
    table = settings.load()
    params = settings.resolve_parameters(table, {})

    def rows(current):
        src = Sources(HiveRegistry({"SYSTEM": system(" TESTSIGNING  DEBUG")}), None, None, live=False,
                      bcd=lambda: store, bcd_id="{current}", current_id=lambda: current)
        return {r["id"]: r for r in evaluate.evaluate(table, params, set(), src)}, src

    # the booted entry (as NtQuerySystemInformation names it on the VM) is the one checked
    r, src = rows(hives.OTHER_LOADER.upper())
    assert "{current}, the entry Windows booted" in src.describe_bcd()
    assert r["hyperv_launch"]["found"].startswith("Auto")  # the recovery entry has launch type Auto
    r, src = rows("{11111111-2222-3333-4444-555555555555}")
    assert "the booted entry {11111111-2222-3333-4444-555555555555} is not in this store" in src.describe_bcd()
    # launch type 5 is no documented value: said so, and the last boot (no HYPERVISORLAUNCHTYPE) answers
    assert r["hyperv_launch"]["status"] == "PASS"
    assert "'unknown (5)'" in r["hyperv_launch"]["found"] and "not a value Microsoft documents" in r["hyperv_launch"]["found"]
