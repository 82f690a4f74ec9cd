"""SystemStartOptions -> the last boot's options, in bcdedit's names and words.
The strings are shaped like real ones: the Windows 10 1709 SYSTEM hive of
regipy's test corpus, a Kernel-Boot event's LoadOptions, a KDNET debuggee."""
import pytest

from debuggee import start_options


def test_win10_1709_hive_launched_hyper_v():
    lb = start_options.parse("FLIGHTSIGNING NOEXECUTE=OPTIN HYPERVISORLAUNCHTYPE=AUTO")
    assert lb.get("hypervisorlaunchtype") == "Auto"
    assert lb.get("flightsigning") == "Yes"
    assert (lb.get("testsigning"), lb.get("debug"), lb.get("nointegritychecks")) == ("No", "No", "No")
    assert lb.other == ["NOEXECUTE=OPTIN"]
    assert "hypervisorlaunchtype Auto" in lb.summary() and "flightsigning Yes" in lb.summary()


def test_absent_switches_are_answers():
    lb = start_options.parse(" NOEXECUTE=OPTIN")
    assert lb.get("hypervisorlaunchtype") == "Off" and lb.get("testsigning") == "No" and lb.get("debug") == "No"
    assert lb.get("debugtype") is None and lb.get("hostip") is None  # no DEBUGPORT: nothing known


def test_kdnet_debuggee():
    lb = start_options.parse(" TESTSIGNING  NOEXECUTE=OPTIN  DEBUG  DEBUGPORT=NET  HOST_IP=192.168.56.1  HOST_PORT=50000")
    assert (lb.get("testsigning"), lb.get("debug"), lb.get("debugtype")) == ("Yes", "Yes", "NET")
    assert (lb.get("hostip"), lb.get("port")) == ("192.168.56.1", "50000")
    assert "debugtype NET 192.168.56.1:50000" in lb.summary()


@pytest.mark.parametrize("text,option,value", [
    (" DEBUG=AUTOENABLE,NOUMEX  DEBUGPORT=COM1  BAUDRATE=115200", "debug", "Yes"),
    (" DEBUGPORT=COM1  BAUDRATE=115200", "debugtype", "Serial"),
    (" DEBUGPORT=COM2", "debugport", "2"),
    (" NODEBUG", "debug", "No"),
    (" DISABLE_INTEGRITY_CHECKS", "nointegritychecks", "Yes"),
    (" hypervisorlaunchtype=off", "hypervisorlaunchtype", "Off"),  # case does not matter
    (" DEBUGPORT=LOCAL", "debugtype", "Local"),
])
def test_switches(text, option, value):
    assert start_options.parse(text).get(option) == value


def test_absent_value_is_none():
    assert start_options.parse(None) is None
    assert start_options.parse("").get("testsigning") == "No"
