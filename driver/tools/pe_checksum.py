#!/usr/bin/env python3
"""Sets the PE optional-header CheckSum of a driver image in place.

Windows verifies CheckSum for kernel drivers (boot drivers are refused with a
wrong one); mingw ld leaves it 0. The algorithm (imagehlp CheckSumMappedFile):
one's-complement-style 16-bit sum of the file with the CheckSum field taken as
zero, folded to 16 bits, plus the file length. Standard library only.
Usage: pe_checksum.py FILE
"""
import struct
import sys


def checksum_offset(data):
    if data[:2] != b"MZ":
        raise ValueError("not a PE file (no MZ header)")
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if data[pe:pe + 4] != b"PE\0\0":
        raise ValueError("not a PE file (no PE signature)")
    return pe + 4 + 20 + 64  # signature, file header, CheckSum in the optional header


def pe_checksum(data, offset):
    padded = data + b"\0" * (len(data) & 1)
    total = 0
    for i in range(0, len(padded), 2):
        if offset <= i < offset + 4:
            continue
        total += padded[i] | (padded[i + 1] << 8)
        total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return (total + len(data)) & 0xFFFFFFFF


def main(argv):
    if len(argv) != 2:
        print("usage: pe_checksum.py FILE", file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as f:
            data = f.read()
        off = checksum_offset(data)
    except (OSError, ValueError, struct.error) as e:
        print("pe_checksum: %s: %s" % (argv[1], e), file=sys.stderr)
        return 1
    value = pe_checksum(data, off)
    out = data[:off] + struct.pack("<I", value) + data[off + 4:]
    with open(argv[1], "wb") as f:
        f.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
