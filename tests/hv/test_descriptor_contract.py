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
