"""Byte layout of a device image, v1 (docs/image-format.md): header, section table, sections.

    offset 0          header (80 B): magic, version, sizes, table offset, SHA-256 of header+table
    offset 80         section table: count entries of 120 B each
    then              sections, each starting at the next multiple of 4096 B (zero padding between)

All integers little-endian. This module packs and unpacks those structures and checks the layout
rules that need no section contents; it trusts nothing it reads.
"""

import hashlib
import struct
from dataclasses import dataclass

from hal.errors import ImageError

MAGIC = b"KOSIMG\0\0"
VERSION = 1
SECTION_ALIGN_B = 4096
MAX_SECTIONS = 1 << 16

# magic, version, header_size_B, section_count, reserved, table_offset_B, table_size_B, file_size_B
HEADER_FIXED = struct.Struct("<8sIIIIQQQ")
HEADER_SIZE_B = HEADER_FIXED.size + 32  # + SHA-256 over the fixed header and the table
# kind, flags, offset_B, size_B, name (NUL-padded UTF-8), SHA-256 of the section
ENTRY = struct.Struct("<IIQQ64s32s")
NAME_MAX_B = 64

KIND_MANIFEST, KIND_KERNEL, KIND_WEIGHT, KIND_GOLDEN = 1, 2, 3, 4
KIND_NAMES = {KIND_MANIFEST: "manifest", KIND_KERNEL: "kernel", KIND_WEIGHT: "weight", KIND_GOLDEN: "golden"}


def align_up(n: int, alignment_B: int = SECTION_ALIGN_B) -> int:
    return (n + alignment_B - 1) // alignment_B * alignment_B


@dataclass(frozen=True)
class Section:
    kind: int
    name: str
    offset_B: int
    size_B: int
    sha256: bytes

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, f"kind{self.kind}")


def layout_offsets(sizes_B: list) -> list:
    """Canonical offsets of sections of these sizes: each at the next 4096 B boundary after the
    table (or the previous section). The writer uses it; the reader requires exactly it."""
    pos = HEADER_SIZE_B + ENTRY.size * len(sizes_B)
    out = []
    for size_B in sizes_B:
        pos = align_up(pos)
        out.append(pos)
        pos += size_B
    return out


def pack_table(sections: list) -> bytes:
    out = bytearray()
    for s in sections:
        name = s.name.encode()
        if not 0 < len(name) <= NAME_MAX_B:
            raise ImageError(f"section name {s.name!r} must be 1 to {NAME_MAX_B} bytes of UTF-8")
        out += ENTRY.pack(s.kind, 0, s.offset_B, s.size_B, name, s.sha256)
    return bytes(out)


def pack_header(sections: list, file_size_B: int, version: int = VERSION) -> bytes:
    table = pack_table(sections)
    fixed = HEADER_FIXED.pack(MAGIC, version, HEADER_SIZE_B, len(sections), 0, HEADER_SIZE_B, len(table), file_size_B)
    return fixed + hashlib.sha256(fixed + table).digest() + table


def unpack_header(head: bytes, actual_size_B: int) -> tuple:
    """(section_count, table_size_B) from the first HEADER_SIZE_B bytes, after every check that needs
    only them. The table's hash is checked by unpack_table."""
    if len(head) < HEADER_SIZE_B:
        raise ImageError(f"file is {actual_size_B} B, shorter than the {HEADER_SIZE_B} B image header (truncated?)")
    magic, version, header_size_B, count, reserved, table_off, table_size_B, file_size_B = HEADER_FIXED.unpack_from(head)
    if magic != MAGIC:
        raise ImageError(f"not a kernelos image: magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise ImageError(f"image format version {version} is not supported (this kernelos reads version {VERSION}); "
                         "rebuild the image with a matching kernelos")
    if file_size_B != actual_size_B:
        raise ImageError(f"image says it is {file_size_B} B but the file is {actual_size_B} B (truncated or extended)")
    if header_size_B != HEADER_SIZE_B or reserved != 0 or table_off != HEADER_SIZE_B:
        raise ImageError(f"bad header fields: header_size {header_size_B}, reserved {reserved}, table offset {table_off}")
    if not 1 <= count <= MAX_SECTIONS or table_size_B != count * ENTRY.size:
        raise ImageError(f"bad section table: {count} sections in {table_size_B} B (entries are {ENTRY.size} B)")
    if HEADER_SIZE_B + table_size_B > actual_size_B:
        raise ImageError(f"section table [{HEADER_SIZE_B}, {HEADER_SIZE_B + table_size_B}) runs past the end of "
                         f"the {actual_size_B} B file")
    return count, table_size_B


def unpack_table(head: bytes, table: bytes, file_size_B: int) -> list:
    """Sections from the table bytes, after checking the header+table hash and the layout rules:
    known kinds, zero flags, valid unique names, canonical offsets, every section inside the file."""
    fixed = head[:HEADER_FIXED.size]
    if hashlib.sha256(fixed + table).digest() != head[HEADER_FIXED.size:HEADER_SIZE_B]:
        raise ImageError("header or section table is damaged (SHA-256 mismatch)")
    sections, names = [], set()
    for i in range(len(table) // ENTRY.size):
        kind, flags, off, size_B, raw_name, digest = ENTRY.unpack_from(table, i * ENTRY.size)
        name_bytes = raw_name.rstrip(b"\0")
        try:
            name = name_bytes.decode()
        except UnicodeDecodeError:
            name = ""
        if kind not in KIND_NAMES or flags != 0 or not name or b"\0" in name_bytes or name in names:
            raise ImageError(f"section {i}: bad entry (kind {kind}, flags {flags}, name {raw_name!r})")
        names.add(name)
        sections.append(Section(kind, name, off, size_B, digest))
    expected = layout_offsets([s.size_B for s in sections])
    for s, want in zip(sections, expected):
        if s.offset_B != want or s.offset_B + s.size_B > file_size_B:
            raise ImageError(f"section {s.name!r}: [{s.offset_B}, {s.offset_B + s.size_B}) is not where v1 puts it "
                             f"({want}) or runs past the end of the {file_size_B} B file")
    end = sections[-1].offset_B + sections[-1].size_B
    if end != file_size_B:
        raise ImageError(f"the last section ends at {end} B but the file is {file_size_B} B (trailing bytes)")
    if sections[0].kind != KIND_MANIFEST:
        raise ImageError("the first section must be the manifest")
    return sections


def padding_ranges(sections: list) -> list:
    """[(start, end)] of the zero padding before each section (the reader checks it is zero)."""
    out, pos = [], HEADER_SIZE_B + ENTRY.size * len(sections)
    for s in sections:
        out.append((pos, s.offset_B))
        pos = s.offset_B + s.size_B
    return out
