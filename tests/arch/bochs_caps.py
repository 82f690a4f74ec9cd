"""VMX capability MSRs of the Bochs CPU model (bochscpu-python 0.3.1),
measured with RDMSR on processor 0 of emulated_lab.Machine (2026-11-25).
0x492 and 0x493 raise #GP there: the primary control bit 17 and the exit
control bit 31 cannot be 1, so those MSRs do not exist (SDM A.3.4, A.4.2).
test_caps_lab.py re-measures them, so these stay true to the model."""
BOCHS_MSRS = {
    0x03A: 0x5,
    0x480: 0x00D8100000000004,
    0x481: 0x000000FF00000016,
    0x482: 0xFFF9FFFE0401E172,
    0x483: 0x407FFFFF00036DFF,
    0x484: 0x0000FFFF000011FF,
    0x485: 0x00000000600401E0,
    0x486: 0x0000000080000021,
    0x487: 0x00000000FFFFFFFF,
    0x488: 0x0000000000002000,
    0x489: 0x0000000000372FFF,
    0x48A: 0x0000000000000050,
    0x48B: 0x02D77FFF00000000,
    0x48C: 0x00000F0106734141,
    0x48D: 0x000000FF00000016,
    0x48E: 0xFFF9FFFE04006172,
    0x48F: 0x407FFFFF00036DFB,
    0x490: 0x0000FFFF000011FB,
    0x491: 0x0000000000000001,
}
ABSENT = (0x492, 0x493)
