"""The built hv.sys images (mingw-w64 gcc + ld, clang + lld) are real WDM
drivers: checked with pefile, independently of the build scripts."""
import glob
import os
import re
import subprocess

import pefile
import pytest

from .support import DRIVER, IMAGES, ROOT

# The driver's documented import list (docs/driver.md); the lab implements each.
DOCUMENTED_IMPORTS_DOC = os.path.join(ROOT, "docs", "driver.md")
IMAGE_DLLCHARACTERISTICS_WDM_DRIVER = 0x2000
IMAGE_SUBSYSTEM_NATIVE = 1
IMAGE_REL_BASED_DIR64 = 10


@pytest.fixture(scope="module", params=sorted(IMAGES))
def image(request, built_driver):
    path = built_driver[request.param]
    return request.param, path, pefile.PE(path)


def test_native_subsystem_and_wdm_flag(image):
    _, _, pe = image
    assert pe.FILE_HEADER.Machine == 0x8664
    assert pe.OPTIONAL_HEADER.Subsystem == IMAGE_SUBSYSTEM_NATIVE
    assert pe.OPTIONAL_HEADER.DllCharacteristics & IMAGE_DLLCHARACTERISTICS_WDM_DRIVER
    assert not pe.FILE_HEADER.Characteristics & 0x2000, "a driver is not a DLL"


def _driver_entry_rva(kind, path):
    if kind == "mingw":
        out = subprocess.run(["x86_64-w64-mingw32-nm", path], stdout=subprocess.PIPE, text=True, check=True).stdout
        m = re.search(r"^([0-9a-f]+) T DriverEntry$", out, re.M)
        assert m, "DriverEntry not in the symbol table"
        return int(m.group(1), 16) - pefile.PE(path, fast_load=True).OPTIONAL_HEADER.ImageBase
    pdb = os.path.join(os.path.dirname(path), "hv.pdb")
    pdbutil = sorted(glob.glob("/usr/lib/llvm-*/bin/llvm-pdbutil"))
    assert pdbutil, "llvm-pdbutil not found (Debian package llvm)"
    out = subprocess.run([pdbutil[0], "dump", "-publics", pdb], stdout=subprocess.PIPE, text=True, check=True).stdout
    m = re.search(r"`DriverEntry`\s*\n\s*flags = function, addr = (\d+):(\d+)", out)
    assert m, "DriverEntry not in hv.pdb publics"
    pe = pefile.PE(path, fast_load=True)
    return pe.sections[int(m.group(1)) - 1].VirtualAddress + int(m.group(2))


def test_entry_point_is_driver_entry(image):
    kind, path, pe = image
    assert pe.OPTIONAL_HEADER.AddressOfEntryPoint == _driver_entry_rva(kind, path)


def test_imports_only_ntoskrnl_and_hal_and_documented(image):
    _, _, pe = image
    doc = open(DOCUMENTED_IMPORTS_DOC).read()
    names = []
    for entry in pe.DIRECTORY_ENTRY_IMPORT:
        assert entry.dll.decode().lower() in ("ntoskrnl.exe", "hal.dll"), entry.dll
        names += [imp.name.decode() for imp in entry.imports]
    assert "vDbgPrintEx" in names and "MmGetPhysicalAddress" in names
    undocumented = [n for n in names if "`%s`" % n not in doc]
    assert not undocumented, "imports missing from docs/driver.md: %s" % undocumented
    assert len(names) <= 16, "keep the import list small (the lab implements each)"


def test_no_forbidden_apis(image):
    """IPIs/DPC barriers would hang the sequential emulated lab."""
    _, _, pe = image
    names = {imp.name.decode() for e in pe.DIRECTORY_ENTRY_IMPORT for imp in e.imports}
    assert not names & {"KeGenericCallDpc", "KeSignalCallDpcSynchronize", "KeIpiGenericCall"}


def test_relocations_present(image):
    _, _, pe = image
    relocs = [e.type for block in pe.DIRECTORY_ENTRY_BASERELOC for e in block.entries]
    assert relocs.count(IMAGE_REL_BASED_DIR64) > 10


def test_checksum_correct(image):
    _, _, pe = image
    assert pe.OPTIONAL_HEADER.CheckSum != 0
    assert pe.OPTIONAL_HEADER.CheckSum == pe.generate_checksum()


def test_descriptor_exported_in_writable_data(image):
    _, _, pe = image
    rva = [s.address for s in pe.DIRECTORY_ENTRY_EXPORT.symbols if s.name == b"HvDebugDescriptor"]
    assert len(rva) == 1
    section = pe.get_section_by_rva(rva[0])
    assert section.Characteristics & 0x80000000, "the debugger writes SnapshotOnEveryExit: must be writable"
    assert pe.get_data(rva[0], 8) == b"HVLABDBG"


def test_snapshot_gadget_exported_as_vmcall_int3(image):
    """hv!HvSnapshotGadget: VMCALL (0F 01 C1, SDM Vol.2 VMCALL) then INT3 (CC), executable."""
    _, _, pe = image
    rva = [s.address for s in pe.DIRECTORY_ENTRY_EXPORT.symbols if s.name == b"HvSnapshotGadget"]
    assert len(rva) == 1
    assert pe.get_section_by_rva(rva[0]).Characteristics & 0x20000000   # IMAGE_SCN_MEM_EXECUTE
    assert pe.get_data(rva[0], 4) == b"\x0f\x01\xc1\xcc"


def _jump_tables(lines, text_lo, text_hi, read32):
    """[start, end) of the switch jump tables clang puts in .text for COFF: `lea T(%rip), %r` then
    `movslq (%r,%i,4)`; entries are int32 offsets from T to code in .text. Their bytes are data, and
    a disassembler decodes them as anything (e.g. 0xEE as OUT)."""
    out = []
    for i, line in enumerate(lines[:-1]):
        m = re.search(r"lea\s+0x[0-9a-f]+\(%rip\),(%\w+)\s+# 0x([0-9a-f]+)", line)
        if not m or "movslq (%s," % m.group(1) not in lines[i + 1]:
            continue
        start = end = int(m.group(2), 16)
        while text_lo <= end < text_hi and text_lo <= start + read32(end) < text_hi:
            end += 4
        out.append((start, end))
    return out


def test_no_in_out_instructions(image):
    """IN/OUT crash the emulator: none anywhere in .text's code (jump tables are data)."""
    kind, path, pe = image
    out = subprocess.run(["x86_64-w64-mingw32-objdump", "-d", "--section=.text", path],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    lines = out.splitlines()
    text = [s for s in pe.sections if s.Name.rstrip(b"\0") == b".text"][0]
    lo = pe.OPTIONAL_HEADER.ImageBase + text.VirtualAddress
    data = text.get_data()
    tables = _jump_tables(lines, lo, lo + len(data),
                          lambda va: int.from_bytes(data[va - lo:va - lo + 4], "little", signed=True))

    def in_table(line):
        va = int(line.split(":")[0], 16)
        return any(a <= va < b for a, b in tables)
    bad = [l for l in lines if re.search(r"\t(in|out|ins[bwd]?|outs[bwd]?)\s", l) and not in_table(l)]
    assert not bad, bad[:5]
    assert "vmlaunch" in out and "vmresume" in out and "vmcall" in out


def test_checksum_tool_rejects_garbage(tmp_path):
    bad = tmp_path / "x.sys"
    bad.write_bytes(b"not a pe")
    p = subprocess.run(["python3", os.path.join(DRIVER, "tools", "pe_checksum.py"), str(bad)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "not a PE file" in p.stderr
    assert bad.read_bytes() == b"not a pe", "nothing written on bad input"


def test_masm_procedures_have_unwind_data(built_driver):
    """HvAsmLaunch, HvAsmVmExit and HvAsmVmResumeFailed are PROC FRAME: each has a
    RUNTIME_FUNCTION in .pdata with a prolog in its UNWIND_INFO (x64 exception
    handling), so a debugger can walk a stack through them."""
    path = built_driver["mingw"]
    pe = pefile.PE(path)
    base = pe.OPTIONAL_HEADER.ImageBase
    out = subprocess.run(["x86_64-w64-mingw32-nm", path], stdout=subprocess.PIPE, text=True, check=True).stdout
    rva = {n: int(a, 16) - base for a, t, n in re.findall(r"^([0-9a-f]+) (\w) (HvAsm\w+)$", out, re.M)}
    pdata = next(s for s in pe.sections if s.Name.rstrip(b"\0") == b".pdata").get_data()
    funcs = {}
    for i in range(0, len(pdata) - 11, 12):
        begin, end, info = (int.from_bytes(pdata[i + j:i + j + 4], "little") for j in (0, 4, 8))
        if begin:
            funcs[begin] = (end, info)
    for name in ("HvAsmLaunch", "HvAsmVmExit", "HvAsmVmResumeFailed"):
        assert rva[name] in funcs, "%s has no RUNTIME_FUNCTION" % name
        _end, info = funcs[rva[name]]
        version_flags, prolog, codes = pe.get_data(info, 3)
        assert version_flags & 7 == 1 and prolog > 0 and codes > 8, name
