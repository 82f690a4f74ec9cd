"""verify reads IA32_VMX_PROCBASED_CTLS3 / EXIT_CTLS2 only where the first batch of capability MSRs says they
exist (a read of an absent MSR faults on real hardware), and then in one extra batch."""
from windbg_ext.arch import capabilities as C
from windbg_ext.commands.verify import TARGET_CAPS, _wide_caps
from windbg_ext.target.image import ImageTarget, ImageWriter

BOCHS_PROCBASED = 0xfff9fffe04006172          # bit 17 (tertiary) cannot be 1 (high half bit 17 clear)
WITH_TERTIARY = BOCHS_PROCBASED | (1 << (32 + 17))


class _Ctx:
    def __init__(self, target):
        self.target = target


def _image(tmp_path, procbased, extra):
    w = ImageWriter()
    w.add_memory(0, b"\0" * 4096)
    msrs = {msr: 0 for msr in TARGET_CAPS}
    msrs[C.IA32_VMX_PROCBASED_CTLS] = procbased
    msrs.update(extra)
    w.add_cpu({"cr3": 0}, msrs)
    path = str(tmp_path / "caps.hvimg")
    w.write(path)
    return ImageTarget(path)


def test_tertiary_caps_are_read_when_the_cpu_has_them(tmp_path):
    t = _image(tmp_path, WITH_TERTIARY, {C.IA32_VMX_PROCBASED_CTLS3: 0x0f})
    caps = t.read_msrs(TARGET_CAPS, 0)
    before = t.stats.msr_reads
    assert _wide_caps(_Ctx(t), caps, 0) == {C.IA32_VMX_PROCBASED_CTLS3: 0x0f}
    assert t.stats.msr_reads == before + 1


def test_absent_wide_caps_are_never_read(tmp_path):
    # The image even holds a value: verify must not ask for an MSR the CPU says it lacks.
    t = _image(tmp_path, BOCHS_PROCBASED, {C.IA32_VMX_PROCBASED_CTLS3: 0x0f})
    caps = t.read_msrs(TARGET_CAPS, 0)
    before = t.stats.msr_reads
    assert _wide_caps(_Ctx(t), caps, 0) == {}
    assert t.stats.msr_reads == before
