"""The driver's header and the Python parser agree: the host C compiler lays
out the descriptor, VMM context and vCPUs (from driver/include and the
driver's own descriptor initializer), and the parser reads them back."""
from __future__ import annotations

import struct

from windbg_ext.hv import descriptor as hd
from windbg_ext.hv.model import Record, vcpus_from_array


def _parsed(state):
    dsize = state.facts["sizeof"]["HV_DEBUG_DESCRIPTOR"]
    return hd.parse(state.blob[:dsize], state.va["desc"]), dsize


def test_header_offsets_match_the_compiler(state2):
    ours = hd.header_offsets()
    theirs = state2.facts["header"]
    for name in ours:
        assert tuple(ours[name]) == tuple(theirs[name]), name
    assert hd.HEADER_SIZE == theirs["Members"][0]


def test_member_table_matches_offsetof_and_sizeof(state2):
    d, dsize = _parsed(state2)
    sizes = state2.facts["sizeof"]
    assert d.DescriptorSize == sizes["HV_DEBUG_DESCRIPTOR"] == dsize
    assert d.VmmContextSize == sizes["HV_VMM_CONTEXT"]
    assert d.VcpuSize == sizes["HV_VCPU"]
    assert d.structs["SNAP"].size == sizes["HV_VMCS_SNAPSHOT"]
    assert d.LayoutOffset == state2.facts["header"]["Layout"][0]
    facts = state2.facts["offsetof"]
    assert len(facts) == d.MemberCount
    for full, (off, size) in facts.items():
        prefix, member = full.split(".")
        assert tuple(d.structs[prefix].members[member]) == (off, size), full


def test_values_written_by_c_member_access_read_back(state2):
    d, dsize = _parsed(state2)
    vsize = d.VmmContextSize
    vmm = Record(d.structs["VMM"], state2.blob[dsize:dsize + vsize], state2.va["vmm"])
    assert vmm.u("CapBasic") == state2.basic
    assert vmm.u("Vcpus") == state2.va["vcpus"]
    assert vmm.u("ProcessorCount") == 2
    vcpus = vcpus_from_array(d, state2.blob[dsize + vsize:], state2.va["vcpus"])
    assert len(vcpus) == 2
    for i, v in enumerate(vcpus):
        regions = state2.regions[i]
        assert v.VmcsRegionPa == regions["vmcs_pa"] and v.VmxonRegionPa == regions["vmxon_pa"]
        assert v.MsrBitmapPa == regions["bitmap_pa"] and v.HostStack == regions["stack_va"]
        assert v.ProcessorIndex == i and v.state == "launched"
        assert v.exit_counts() == state2.exit_counts[i]
        snap = v.snapshot()
        assert snap.values == state2.snapshots[i]
        assert snap.reason == "every exit" and snap.exit_reason == 10 and not snap.torn
    # the layout map the C side stored
    assert [tuple(e) for e in d.layout] == [tuple(e) for e in state2.layout]


def test_magic_is_hvlabdbg_in_memory(state2):
    assert state2.blob[:8] == b"HVLABDBG"
    assert struct.unpack_from("<I", state2.blob, 8)[0] in hd.SUPPORTED_VERSIONS


def test_value_tables_cover_every_define_of_the_header():
    """hv_debug.h's state / step / reason / flag values all have a name here (the header grows: keep up)."""
    import os
    import re

    from windbg_ext.hv import model

    from .builder import REPO

    text = open(os.path.join(REPO, "driver", "include", "hv_debug.h")).read()

    def defines(prefix):
        return {int(v, 0) for v in re.findall(r"#define %s\w+ (0x[0-9A-Fa-f]+|\d+)u" % prefix, text)}

    assert defines("HV_VCPU_STATE_") and defines("HV_VCPU_STATE_") <= set(model.VCPU_STATES)
    assert defines("HV_STEP_") <= set(model.FAILED_STEPS)
    assert defines("HV_SNAPSHOT_REASON_") <= set(model.SNAPSHOT_REASONS)
    assert defines("HV_DRIVER_STATE_") <= set(hd.DRIVER_STATES)
    assert defines("HV_LAYOUT_STATUS_") <= set(hd.LAYOUT_STATUSES)
    flags = {hd.LAYOUT_FLAG_FOUND, hd.LAYOUT_FLAG_ROTATED8, hd.LAYOUT_FLAG_UNSUPPORTED, hd.LAYOUT_FLAG_UNMATCHED}
    assert defines("HV_LAYOUT_FLAG_") == flags
    magic = re.search(r"#define HV_DEBUG_MAGIC (0x[0-9A-Fa-f]+)ULL", text).group(1)
    assert int(magic, 16) == hd.MAGIC
