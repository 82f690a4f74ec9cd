"""hv/vcpu_checks.py, exactly: the checks `vcpu` and `regions` show for one vCPU, on
driver state the builder wrote and the walker read back from an image."""
from __future__ import annotations

from windbg_ext.arch.vmcs_fields import by_name
from windbg_ext.hv.regions import Check
from windbg_ext.hv.vcpu_checks import region_checks, snapshot_consistency
from windbg_ext.hv.walker import HvWalker
from windbg_ext.target.image import ImageTarget

from .builder import HvState


def _open(state, tmp_path, name):
    t = ImageTarget(state.write_image(str(tmp_path / name)))
    return HvWalker(t), t


def test_region_checks_of_a_healthy_vcpu(state2, image2):
    t = ImageTarget(image2)
    try:
        w = HvWalker(t)
        v = w.vcpu(0)
        r = state2.regions[0]
        checks = region_checks(w, v, state2.basic, 39)
    finally:
        t.close()
    vmxon, vmcs, bitmap = r["vmxon_pa"], r["vmcs_pa"], r["bitmap_pa"]
    assert checks == [
        Check("VMXON", "allocated", True, "physical 0x%x" % vmxon, "25.11.5"),
        Check("VMXON", "4 KiB aligned", True, "0x%x is page aligned" % vmxon, "25.11.5"),
        Check("VMXON", "within address width", True, "0x%x vs 39 bits (MAXPHYADDR 39)" % vmxon, "A.1"),
        Check("VMXON", "revision id", True, "region 0x4, IA32_VMX_BASIC[30:0] 0x4", "25.11.5"),
        Check("VMXON", "bit 31 clear", True, "bit 31 of dword 0 is 0 (VMXON fails if set)", "31.3"),
        Check("VMCS", "allocated", True, "physical 0x%x" % vmcs, "25.2"),
        Check("VMCS", "4 KiB aligned", True, "0x%x is page aligned" % vmcs, "25.2"),
        Check("VMCS", "within address width", True, "0x%x vs 39 bits (MAXPHYADDR 39)" % vmcs, "A.1"),
        Check("VMCS", "revision id", True, "region 0x4, IA32_VMX_BASIC[30:0] 0x4", "25.2"),
        Check("VMCS", "shadow-VMCS indicator", True, "bit 31 is 0: ordinary VMCS", "25.2"),
        Check("VMCS", "VMX-abort indicator", True, "0 (no VMX abort)", "28.7"),
        Check("MSR bitmap", "allocated", True, "physical 0x%x" % bitmap, "27.2.1.1"),
        Check("MSR bitmap", "4 KiB aligned", True, "0x%x is page aligned" % bitmap, "27.2.1.1"),
        Check("MSR bitmap", "within address width", True, "0x%x vs 39 bits (MAXPHYADDR 39)" % bitmap, "A.1"),
        Check("MSR bitmap", "content", None, "2 read / 0 write intercepts", "25.6.9"),   # builder: 0x174, EFER
    ]


def test_region_checks_see_bad_pages(tmp_path):
    s = HvState(vcpus=1)
    s.region_revision = [0x80000005]
    s.vmm_values = {"ProcbasedControls": 0x84006172}          # "use MSR bitmaps" (bit 28) off
    s.vcpu_values[0].update(MsrBitmapPa=0)
    w, t = _open(s.build(), tmp_path, "bad.hvimg")
    try:
        checks = {(c.region, c.name): c for c in region_checks(w, w.vcpu(0), s.basic, None)}
    finally:
        t.close()
    assert checks[("VMXON", "revision id")].ok is False and checks[("VMXON", "bit 31 clear")].ok is False
    assert checks[("VMCS", "shadow-VMCS indicator")].ok is False
    assert checks[("MSR bitmap", "allocated")] == Check("MSR bitmap", "allocated", False, "physical 0x0", "27.2.1.1")
    assert checks[("MSR bitmap", "readable")] == Check("MSR bitmap", "readable", False,
                                                       "the page at 0x0 is not in the target", "25.6.9")


def test_bitmap_content_says_when_the_bitmap_is_off(tmp_path):
    s = HvState(vcpus=1)
    s.vmm_values = {"ProcbasedControls": 0x84006172}          # bit 28 clear
    w, t = _open(s.build(), tmp_path, "off.hvimg")
    try:
        content = region_checks(w, w.vcpu(0), s.basic, 39)[-1]
    finally:
        t.close()
    assert content.detail == '2 read / 0 write intercepts ("use MSR bitmaps" is off: every RDMSR/WRMSR exits)'


def test_snapshot_consistency(state2, image2, tmp_path):
    t = ImageTarget(image2)
    try:
        v = HvWalker(t).vcpu(1)
        got = snapshot_consistency(v)
    finally:
        t.close()
    r = state2.regions[1]
    top = r["stack_va"] + 0x6000
    assert got == [
        Check("MSR bitmap", "VMCS MSR_BITMAP field", True,
              "snapshot 0x%x, vCPU MsrBitmapPa 0x%x" % (r["bitmap_pa"], r["bitmap_pa"]), "25.6.9"),
        Check("host stack", "VMCS HOST_RSP inside", True,
              "HOST_RSP 0x%x, stack 0x%x-0x%x" % (top - 0x10, r["stack_va"], top), "25.5"),
    ]
    s = HvState(vcpus=1)
    s.consistent = False                                      # the snapshot holds other values
    s.snapshots[0][by_name("HOST_RSP").encoding] = 0x1000
    w, t = _open(s.build(), tmp_path, "inconsistent.hvimg")
    try:
        bad = snapshot_consistency(w.vcpu(0))
    finally:
        t.close()
    assert [c.ok for c in bad] == [False, False]
    assert bad[1].detail.startswith("HOST_RSP 0x1000, stack ")


def test_a_misaligned_bitmap_is_not_read(tmp_path):
    s = HvState(vcpus=1)
    s.build()
    s.vcpu_values[0].update(MsrBitmapPa=s.regions[0]["bitmap_pa"] + 8)
    w, t = _open(s.build(), tmp_path, "misaligned.hvimg")
    try:
        checks = region_checks(w, w.vcpu(0), s.basic, 39)
    finally:
        t.close()
    assert checks[-3].name == "4 KiB aligned" and checks[-3].ok is False
    assert checks[-1] == Check("MSR bitmap", "readable", False,
                               "the page at 0x%x is not in the target" % (s.regions[0]["bitmap_pa"] + 8), "25.6.9")


def test_snapshot_without_the_fields_checks_nothing(tmp_path):
    from .builder import _DEFAULT_FIELD_NAMES
    from windbg_ext.arch.vmcs_fields import FIELDS

    fields = [f for f in FIELDS if f.name in _DEFAULT_FIELD_NAMES and f.name not in ("MSR_BITMAP", "HOST_RSP")]
    w, t = _open(HvState(vcpus=1, fields=fields).build(), tmp_path, "nofields.hvimg")
    try:
        assert snapshot_consistency(w.vcpu(0)) == []
    finally:
        t.close()


def test_host_rsp_inside_means_above_the_base_up_to_the_top(tmp_path):
    results = []
    for name, at in (("base", 0), ("top", 0x6000)):
        s = HvState(vcpus=1)
        s.build()
        s.consistent = False
        s.snapshots[0][by_name("HOST_RSP").encoding] = s.regions[0]["stack_va"] + at
        w, t = _open(s.build(), tmp_path, name + ".hvimg")
        try:
            results.append(snapshot_consistency(w.vcpu(0))[-1].ok)
        finally:
            t.close()
    assert results == [False, True]    # RSP = base: nothing left to push; RSP = top: an empty stack
