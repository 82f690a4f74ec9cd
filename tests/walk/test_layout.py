"""layout save / load / list: hv.sys's discovered VMCS layout map as a file;
the shipped lab layout is what hv.sys discovers on the emulated CPU."""
from __future__ import annotations

import json
import os

from tests.support import run_cli


def test_shipped_layout_is_what_hv_sys_discovers(lab_images, hv_sys, tmp_path):
    from windbg_ext.hv import layouts

    image, res = lab_images("baseline", cpus=2, driver=hv_sys)
    path = str(tmp_path / "saved.json")
    code, out, err = run_cli(["--image", image, "layout", "save", path])
    assert code == 0, err
    rev, saved, _ = layouts.read_file(path)
    shipped = os.path.join(layouts.SHIPPED_DIR, "bochs-revision-0x4.json")
    rev2, ours, _ = layouts.read_file(shipped)
    assert (rev, saved) == (rev2, ours)
    # and it decodes the region as the CPU reads it: every field the lab VMREAD on processor 1 (from the
    # emulator's own copy of the page; the image's is stale, as a dump's)
    from windbg_ext.hv.regions import region_values

    values = region_values(res.vmcs_pages[1], ours)
    vmread = res.vmreads[1]
    assert values and all(values[e] == vmread[e] for e in values if e in vmread)


def test_load_installs_and_list_shows_it(tmp_path):
    from windbg_ext.hv import layouts

    shipped = os.path.join(layouts.SHIPPED_DIR, "bochs-revision-0x4.json")
    doc = json.load(open(shipped))
    doc["revision_id"] = "0x1234"
    mine = str(tmp_path / "mine.json")
    with open(mine, "w") as f:
        json.dump(doc, f)
    code, out, err = run_cli(["layout", "load", mine])
    assert code == 0, err
    assert os.path.isfile(os.path.join(layouts.user_dir(), "revision-0x1234.json"))
    code, out, err = run_cli(["--json", "layout", "list"])
    revs = [l["revision_id"] for l in json.loads(out)["layouts"]]
    assert "0x1234" in revs and "0x4" in revs
    assert layouts.find(0x1234) is not None


def test_bad_layout_files_one_line_nothing_installed(tmp_path):
    from windbg_ext.hv import layouts

    before = sorted(os.listdir(layouts.user_dir())) if os.path.isdir(layouts.user_dir()) else []
    cases = {"notjson.json": "{", "other.json": json.dumps({"format": "x"}),
             "outside.json": json.dumps({"format": layouts.FORMAT, "revision_id": "0x9",
                                         "fields": [{"encoding": "0x681e", "offset": "0xffc", "width": 8,
                                                     "flags": 1}]})}
    for name, text in cases.items():
        p = str(tmp_path / name)
        with open(p, "w") as f:
            f.write(text)
        code, out, err = run_cli(["layout", "load", p])
        assert code == 2 and err.count("\n") == 0 and "Traceback" not in err, err
    code, out, err = run_cli(["layout", "load"])
    assert code == 2 and "needs a FILE" in err
    after = sorted(os.listdir(layouts.user_dir())) if os.path.isdir(layouts.user_dir()) else []
    assert before == after


def test_save_needs_hv_sys(lab_images, sevendays, tmp_path):
    image, res = lab_images("baseline", cpus=1, driver=sevendays["clang"])
    path = str(tmp_path / "x.json")
    code, out, err = run_cli(["--image", image, "layout", "save", path])
    assert code == 2 and err.count("\n") == 0 and not os.path.exists(path)
