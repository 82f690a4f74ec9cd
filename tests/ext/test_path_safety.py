"""Data safety (issue 14): images are written only to regular files or new names; anything else
is refused untouched with one line; paths that are read say what is wrong with them (a FIFO
never hangs). Every test works in its own tmp dir with its own FIFO / device node / symlink."""
from __future__ import annotations

import os
import stat

import pytest

from tests.support import changes, make_path_kinds, run_cli, tree_state
from windbg_ext.paths import PathError, readable_file, writable_file
from windbg_ext.target.image import ImageWriter


def _writer() -> ImageWriter:
    w = ImageWriter()
    w.add_memory(0x1000, b"\x90" * 0x1000)
    w.add_cpu({"cr3": 0x1000}, {0x480: 0xd8100000000004})
    return w


@pytest.fixture
def kinds(tmp_path):
    return make_path_kinds(str(tmp_path))


@pytest.mark.parametrize("kind,needle", [
    ("fifo", "is not a regular file (it is a FIFO"),
    ("device", "refusing to replace it"),
    ("symlink", "is a symbolic link"),
    ("readonly", "is read-only"),
    ("directory", "is a directory"),
    ("empty", "no path given"),
])
def test_image_writer_refuses_and_leaves_the_target_untouched(tmp_path, kinds, kind, needle):
    # before: os.replace(temp, path) turned a FIFO, a device node, a symlink or a read-only file
    # into a regular file (as root, --out /dev/null destroyed /dev/null)
    before = tree_state(str(tmp_path))
    with pytest.raises(PathError) as e:
        _writer().write(kinds[kind], "--out")
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and ".hvlab-" not in msg, msg
    assert changes(before, tree_state(str(tmp_path))) == []
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith(".hvlab")]  # no temp file left
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_image_writer_writes_new_and_regular_files(tmp_path, kinds):
    new = str(tmp_path / "new.hvimg")
    _writer().write(new)
    _writer().write(kinds["regular"])
    for p in (new, kinds["regular"]):
        assert stat.S_ISREG(os.lstat(p).st_mode) and open(p, "rb").read(8) == b"HVLABIMG"


def test_writable_file_refuses_a_missing_directory(tmp_path):
    with pytest.raises(PathError) as e:
        writable_file(str(tmp_path / "no" / "x.hvimg"), "--out")
    assert "does not exist" in str(e.value)


@pytest.mark.parametrize("kind,needle", [
    ("missing", "does not exist"),
    ("directory", "is a directory"),
    ("fifo", "is not a regular file (it is a FIFO"),
    ("device", "is not a regular file (it is a character device)"),
    ("empty", "no path given"),
])
def test_readable_file_says_what_is_wrong(kinds, kind, needle):
    with pytest.raises(PathError) as e:
        readable_file(kinds[kind], "--image")
    assert needle in str(e.value)


@pytest.mark.parametrize("option", ["--image", "--dump"])
@pytest.mark.parametrize("kind,needle", [
    ("directory", "is a directory"),
    ("fifo", "FIFO"),  # before: --image FIFO hung forever in open()
    ("device", "character device"),
])
def test_targets_say_which_kind_of_path(kinds, option, kind, needle):
    code, out, err = run_cli([option, kinds[kind], "vmm"])
    assert code == 2 and out == "" and needle in err and "does not exist" not in err, err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("kind", ["directory", "fifo", "device"])
def test_verify_json_inputs_say_which_kind_of_path(kinds, kind):
    code, out, err = run_cli(["verify", "--fields", kinds[kind], "--caps", kinds["regular"]])
    assert code == 2 and "fields file" in err and ("directory" in err or "not a regular file" in err), err


# -- the lab's command line --------------------------------------------------------------------
def _lab(argv, capsys):
    from emulated_lab.__main__ import main
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.mark.parametrize("option", ["--out", "--report"])
@pytest.mark.parametrize("kind,needle", [
    ("fifo", "FIFO"), ("device", "refusing"), ("symlink", "symbolic link"), ("readonly", "read-only"),
    ("directory", "is a directory"), ("empty", "no path given"),
])
def test_lab_run_refuses_bad_output_paths_before_running(tmp_path, kinds, capsys, hv_sys, option, kind, needle):
    before = tree_state(str(tmp_path))
    code, out, err = _lab(["run", "--cpus", "1", "--driver", hv_sys, option, kinds[kind]], capsys)
    # before: --out "" gave rc 0 and wrote nothing; a directory leaked the temp file's name
    assert code == 2 and out == "" and needle in err and ".hvlab-" not in err, (code, out, err)
    assert len(err.strip().splitlines()) == 1
    assert changes(before, tree_state(str(tmp_path))) == []


@pytest.mark.parametrize("kind,needle", [("directory", "is a directory"), ("fifo", "FIFO"),
                                         ("missing", "does not exist"), ("device", "character device")])
def test_lab_run_driver_path_kinds(kinds, capsys, kind, needle):
    code, out, err = _lab(["run", "--driver", kinds[kind]], capsys)
    assert code == 2 and needle in err and "not found" not in err, err


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0", "-5", "soon"])
def test_lab_timeout_must_be_finite_and_positive(capsys, value):
    code, out, err = _lab(["run", "--timeout", value], capsys)  # before: inf -> internal error (OverflowError)
    assert code == 2 and "--timeout" in err and "internal error" not in err, err


def test_demo_images_do_not_collide(capsys, tmp_path, monkeypatch):
    """Two demos at once: each writes its own image (before: one fixed path in the temp folder).
    Only the choice of path is under test here: the scenario run is replaced by a recorder."""
    import tempfile

    from emulated_lab.lab import ScenarioError
    seen = []

    def record(name, cpus, image, driver=None):
        seen.append(image)
        raise ScenarioError("stop after choosing the path")

    monkeypatch.setattr("emulated_lab.lab.run_scenario", record)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for _ in range(2):
        assert _lab(["demo"], capsys)[0] == 2
    assert len(seen) == 2 and seen[0] != seen[1] and all(p.startswith(str(tmp_path)) for p in seen)
