"""The Debug Print Filter helpers' exact output (what a user pastes into WinDbg or a shell)."""
from windbg_ext.arch import dbgprint


def test_fix_commands_by_default_open_every_level_of_ihvdriver():
    assert dbgprint.fix_commands() == [
        "ed nt!Kd_IHVDRIVER_Mask 0xffff",
        'reg add "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Debug Print Filter" '
        '/v IHVDRIVER /t REG_DWORD /d 0xffff /f',
    ]


def test_level_mask_bit_numbers_and_bit_fields():
    assert [dbgprint.level_mask(n) for n in (0, 3, 30, 31)] == [1, 8, 1 << 30, 1 << 31]
    assert [dbgprint.level_mask(n) for n in (32, 33, 0x80000008, 0x1_0000_0003)] == [32, 33, 0x80000008, 8]


def test_which_mask_names_the_mask_that_lets_a_message_through():
    assert dbgprint.which_mask(3, 0x8, 0x8) == "both"
    assert dbgprint.which_mask(3, 0x8, 0x1) == "component"
    assert dbgprint.which_mask(0, 0x8, 0x1) == "WIN2000"
    assert dbgprint.which_mask(3, 0x1, 0x1) == ""
