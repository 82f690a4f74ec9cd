"""Maps a kernel-mode PE (a .sys) into the emulated machine the way the
Windows loader does for a driver: sections at their RVAs, DIR64 base
relocations applied for the chosen base, every import bound to its own stub
address. Uses pefile for parsing only.
"""
from __future__ import annotations

import struct
from typing import Callable, Dict, List, Tuple

PAGE = 0x1000
IMAGE_REL_BASED_ABSOLUTE, IMAGE_REL_BASED_DIR64 = 0, 10
IMAGE_SCN_MEM_EXECUTE, IMAGE_SCN_MEM_WRITE = 0x2000_0000, 0x8000_0000


class LoadError(Exception):
    """The image cannot be loaded (one line: what is wrong)."""


class LoadedImage:
    def __init__(self, name: str, base: int, size: int, entry: int, pa: int) -> None:
        self.name = name
        self.base = base
        self.size = size
        self.entry = entry                    # VA of the entry point (DriverEntry)
        self.pa = pa                          # physical address of the first page (image is contiguous)
        self.exports: Dict[str, int] = {}     # name -> VA
        self.imports: List[Tuple[str, str, int]] = []   # (dll, function, IAT slot VA)


def load_pe(path: str, machine, base: int, bind_import: Callable[[str, str], int]) -> LoadedImage:
    """Loads `path` at virtual address `base`. `bind_import(dll, name)` returns the
    address an import resolves to (or raises LoadError for an unknown import)."""
    try:
        import pefile
    except ImportError:
        raise LoadError("pefile is not installed: run tools/bootstrap.sh")
    try:
        pe = pefile.PE(path, fast_load=True)
        pe.parse_data_directories(directories=[
            pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"],
            pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXPORT"],
            pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_BASERELOC"]])
    except (OSError, pefile.PEFormatError) as e:
        raise LoadError("%s is not a loadable PE image (%s)" % (path, e))
    if pe.FILE_HEADER.Machine != 0x8664:
        raise LoadError("%s is not an x64 image (machine 0x%x)" % (path, pe.FILE_HEADER.Machine))
    size = (pe.OPTIONAL_HEADER.SizeOfImage + PAGE - 1) & ~(PAGE - 1)
    image = bytearray(size)
    hdr = pe.OPTIONAL_HEADER.SizeOfHeaders
    image[:hdr] = pe.__data__[:hdr]
    for s in pe.sections:
        raw = s.get_data()[:max(s.Misc_VirtualSize, s.SizeOfRawData)]
        n = min(len(raw), size - s.VirtualAddress)
        image[s.VirtualAddress:s.VirtualAddress + n] = raw[:n]

    delta = (base - pe.OPTIONAL_HEADER.ImageBase) & 0xFFFF_FFFF_FFFF_FFFF
    for block in getattr(pe, "DIRECTORY_ENTRY_BASERELOC", []):
        for r in block.entries:
            if r.type == IMAGE_REL_BASED_ABSOLUTE:
                continue
            if r.type != IMAGE_REL_BASED_DIR64:
                raise LoadError("%s has an unsupported relocation type %d at RVA 0x%x" % (path, r.type, r.rva))
            v = struct.unpack_from("<Q", image, r.rva)[0]
            struct.pack_into("<Q", image, r.rva, (v + delta) & 0xFFFF_FFFF_FFFF_FFFF)

    name = path.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    loaded = LoadedImage(name, base, size, base + pe.OPTIONAL_HEADER.AddressOfEntryPoint, 0)
    for entry in getattr(pe, "DIRECTORY_ENTRY_IMPORT", []):
        dll = entry.dll.decode("ascii", "replace").lower()
        for imp in entry.imports:
            if imp.name is None:
                raise LoadError("%s imports %s by ordinal %d: not supported" % (path, dll, imp.ordinal))
            fn = imp.name.decode("ascii", "replace")
            target = bind_import(dll, fn)
            struct.pack_into("<Q", image, imp.address - pe.OPTIONAL_HEADER.ImageBase, target)
            loaded.imports.append((dll, fn, base + imp.address - pe.OPTIONAL_HEADER.ImageBase))
    exp = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
    if exp is not None:
        for sym in exp.symbols:
            if sym.name:
                loaded.exports[sym.name.decode("ascii", "replace")] = base + sym.address

    pa = machine.alloc_phys(size // PAGE)
    machine.write_phys(pa, bytes(image))
    # one mapping for the whole image; sections keep their own W/X rights
    for s in pe.sections:
        start = s.VirtualAddress & ~(PAGE - 1)
        end = (s.VirtualAddress + max(s.Misc_VirtualSize, 1) + PAGE - 1) & ~(PAGE - 1)
        machine.map(base + start, pa + start, end - start,
                    writable=bool(s.Characteristics & IMAGE_SCN_MEM_WRITE),
                    executable=bool(s.Characteristics & IMAGE_SCN_MEM_EXECUTE))
    machine.map(base, pa, PAGE, writable=False, executable=False)   # headers
    for s in pe.sections:
        if s.Characteristics & IMAGE_SCN_MEM_EXECUTE:
            machine.note_code(base + s.VirtualAddress, bytes(image[s.VirtualAddress:s.VirtualAddress + s.Misc_VirtualSize]))
    loaded.pa = pa
    return loaded
