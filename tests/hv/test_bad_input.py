"""Bad input ends as one clear line naming what and where, exit code 2, never
a traceback: corrupt descriptors, absurd counts, bad pointers, truncated files."""
from __future__ import annotations

import pytest

from tests.support import run_cli

from .builder import KERNEL_BASE, HvState


def _fails(argv, *needles):
    code, out, err = run_cli(argv)
    assert code == 2, (code, out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "internal error" not in err and "Traceback" not in err
    for n in needles:
        assert n in err, (n, err)
    return err


def _image(tmp_path, name="bad.hvimg", vcpus=2, **desc):
    s = HvState(vcpus=vcpus)
    s.desc_values.update(desc)
    s.build()
    return s.write_image(str(tmp_path / name)), s


@pytest.mark.parametrize("cmd", [["vmm"], ["vcpu", "0"], ["vmcs", "0"], ["regions"], ["msrbitmap", "0"]])
def test_wrong_magic(tmp_path, cmd):
    path, s = _image(tmp_path, Magic=0x4141414141414141)
    _fails(["--image", path] + cmd, "no hv debug descriptor at 0x%x" % s.va["desc"], "HVLABDBG")


def test_unknown_version(tmp_path):
    path, _ = _image(tmp_path, Version=7)
    _fails(["--image", path, "vmm"], "version 7", "reads version 1")


@pytest.mark.parametrize("count,needle", [(0, "VcpuCount 0"), (100000, "VcpuCount 100000 is absurd")])
def test_absurd_vcpu_counts(tmp_path, count, needle):
    path, _ = _image(tmp_path, VcpuCount=count)
    _fails(["--image", path, "vmm"], needle)


def test_processor_count_disagreeing_with_descriptor(tmp_path):
    path, _ = _image(tmp_path, VcpuCount=1)
    _fails(["--image", path, "vmm"], "says 2 processors but the descriptor says 1")


def test_unmapped_vmm_pointer(tmp_path):
    path, _ = _image(tmp_path, VmmContextVa=KERNEL_BASE + 0x7770000)
    _fails(["--image", path, "vmm"], "cannot read the VMM context (VmmContextVa) at 0x%x" % (KERNEL_BASE + 0x7770000))


def test_misaligned_vcpu_array(tmp_path):
    path, s = _image(tmp_path, VcpuArrayVa=KERNEL_BASE + 0x300004)
    _fails(["--image", path, "vcpu", "0"], "VcpuArrayVa 0x%x is misaligned" % (KERNEL_BASE + 0x300004))


def test_cyclic_pointer_back_into_the_descriptor(tmp_path):
    path, s = _image(tmp_path, VcpuArrayVa=KERNEL_BASE + 0x100000)
    _fails(["--image", path, "vmm"], "overlap")


def test_vcpu_array_pointing_at_the_vmm_context(tmp_path):
    path, s = _image(tmp_path, VcpuArrayVa=KERNEL_BASE + 0x200000)
    _fails(["--image", path, "vmm"], "overlap")


def test_descriptor_of_unloaded_driver(tmp_path):
    path, _ = _image(tmp_path, VmmContextVa=0, VcpuArrayVa=0, DriverState=4)
    _fails(["--image", path, "vcpu", "0"], "hv.sys is not running", "unloaded")


def test_vcpu_index_out_of_range(image2):
    _fails(["--image", image2, "vcpu", "2"], "vCPU 2 does not exist: hv.sys has 2 (0-1)")
    _fails(["--image", image2, "vmcs", "0", "--diff", "9"], "vCPU 9 does not exist")


def test_unknown_field_and_bad_arguments(image2):
    _fails(["--image", image2, "vmcs", "0", "GUEST_RIPP"], "unknown VMCS field", "GUEST_RIP")
    _fails(["--image", image2, "vmcs", "zero"], "not a number")
    _fails(["--image", image2, "vmcs", "0", "--diff", "0"], "with itself")
    _fails(["--image", image2, "vmcs", "0", "--group", "cpu"], "invalid choice")


def test_truncated_image(image2, tmp_path):
    data = open(image2, "rb").read()
    cut = tmp_path / "cut.hvimg"
    cut.write_bytes(data[:len(data) // 2])
    _fails(["--image", str(cut), "vmm"], "truncated")


@pytest.mark.parametrize("kind", ["full", "bitmap"])
def test_truncated_dump(dumps2, tmp_path, kind):
    data = open(dumps2[kind], "rb").read()
    cut = tmp_path / "cut.dmp"
    cut.write_bytes(data[:len(data) - 0x1800])
    _fails(["--dump", str(cut), "vmm"], "truncated dump", str(cut))


def test_not_a_dump(tmp_path):
    p = tmp_path / "x.dmp"
    p.write_bytes(b"MDMP" + bytes(0x3000))
    _fails(["--dump", str(p), "vmm"], "not a 64-bit Windows kernel dump")
    _fails(["--dump", str(tmp_path / "missing.dmp"), "vmm"], "does not exist")


def test_dump_without_the_driver(tmp_path):
    from windbg_ext.target.dump import write_dump

    p = str(tmp_path / "empty.dmp")
    write_dump(p, {0x1000: bytes(0x1000), 0x2000: b"HVLABDBX" * 512})
    _fails(["--dump", p, "vmm"], "no hv debug descriptor in this target", "was hv.sys loaded")


def test_dump_with_only_the_file_image_of_the_driver(tmp_path):
    """A descriptor copy with SelfVa 0 (hv.sys's file image in memory) is not the live one."""
    from windbg_ext.target.dump import write_dump

    s = HvState(vcpus=1).build()
    page = bytearray(0x1000)
    blob = s.blob[:0xA0]
    page[0x40:0x40 + len(blob)] = blob
    page[0x40 + 0x20:0x40 + 0x28] = bytes(8)  # SelfVa = 0
    p = str(tmp_path / "fileimage.dmp")
    write_dump(p, {0x5000: bytes(page)})
    _fails(["--dump", p, "vmm"], "no loaded descriptor", "SelfVa 0")
