"""Corruption suite: every class of damage to an image is refused with ImageError, never a crash
(any other exception) and never accepted.

Classes: byte damage in the header, the section table, the padding, the manifest, a kernel, the
weights and the golden pair; truncation at many points; extension; and semantic tampering where
the hashes are recomputed so only the reader's meaning checks can catch it (version bump, sizes,
missing/extra sections, a manifest that lies about the DAG, the plan or the tensors).
"""

import hashlib
import json
import random

import pytest

from hal.errors import ImageError
from kernelos.image import layout, read_image

from .models import write_mlp_image


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "good.kimg"
    write_mlp_image(path, batch=4)
    with read_image(path) as im:
        sections = im.sections
    return path.read_bytes(), sections


class Verdicts:
    """Counts how reading each damaged image ended; the test asserts no crash and no acceptance."""

    def __init__(self, tmp_path):
        self.path, self.refused, self.crashed, self.accepted = tmp_path / "damaged.kimg", 0, [], []

    def check(self, data: bytes, what: str):
        self.path.write_bytes(data)
        try:
            read_image(self.path).close()
        except ImageError:
            self.refused += 1
            return
        except Exception as e:  # noqa: BLE001 - any other exception is a crash of the reader
            self.crashed.append(f"{what}: {type(e).__name__}: {e}")
            return
        self.accepted.append(what)

    def assert_clean(self, at_least: int):
        assert self.crashed == [] and self.accepted == [], (self.crashed[:5], self.accepted[:5])
        assert self.refused >= at_least


def regions(data: bytes, sections) -> dict:
    """Byte ranges of each region class of a v1 image."""
    table_end = layout.HEADER_SIZE_B + layout.ENTRY.size * len(sections)
    out = {"header": [(0, layout.HEADER_SIZE_B)], "table": [(layout.HEADER_SIZE_B, table_end)],
           "padding": [(a, b) for a, b in layout.padding_ranges(sections) if b > a]}
    for s in sections:
        out.setdefault(s.kind_name, []).append((s.offset_B, s.offset_B + s.size_B))
    return out


@pytest.mark.parametrize("region", ["header", "table", "padding", "manifest", "kernel", "weight", "golden"])
def test_byte_damage_in_every_region(good, tmp_path, region):
    data, sections = good
    ranges = regions(data, sections)[region]
    rng = random.Random(region)
    v = Verdicts(tmp_path)
    if region in ("header", "table"):  # small: every byte
        positions = sorted({p for a, b in ranges for p in range(a, b)})
    else:  # 40 random bytes per section plus its first and last
        positions = sorted({rng.randrange(a, b) for a, b in ranges for _ in range(40)} | {a for a, _ in ranges} |
                           {b - 1 for _, b in ranges})
    for pos in positions:
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(data)
            damaged[pos] ^= mask
            v.check(bytes(damaged), f"{region} byte {pos} ^ {mask:#x}")
    v.assert_clean(len(positions) * 3)


def test_truncation_at_many_points(good, tmp_path):
    data, sections = good
    points = set(range(0, 300)) | set(range(0, len(data), 97))
    for s in sections:
        points |= {s.offset_B - 1, s.offset_B, s.offset_B + 1, s.offset_B + s.size_B - 1}
    v = Verdicts(tmp_path)
    for n in sorted(p for p in points if 0 <= p < len(data)):
        v.check(data[:n], f"truncated to {n} B")
    v.assert_clean(300)


def test_extension_and_garbage(good, tmp_path):
    data, _ = good
    v = Verdicts(tmp_path)
    v.check(data + b"\0", "one zero byte appended")
    v.check(data + data, "image appended to itself")
    v.check(b"", "empty file")
    v.check(random.Random(0).randbytes(len(data)), "random bytes")
    v.check(b"KOSIMG\0\0" + bytes(len(data) - 8), "magic then zeros")
    v.assert_clean(5)


# --- semantic tampering: rebuild a consistent file (valid hashes) around a lie --------------------

def unpack(data: bytes, sections) -> list:
    return [[s.kind, s.name, data[s.offset_B:s.offset_B + s.size_B]] for s in sections]


def repack(parts: list, version: int = layout.VERSION) -> bytes:
    offsets = layout.layout_offsets([len(p[2]) for p in parts])
    secs = [layout.Section(k, n, o, len(b), hashlib.sha256(b).digest()) for (k, n, b), o in zip(parts, offsets)]
    size_B = offsets[-1] + len(parts[-1][2])
    out = bytearray(size_B)
    head = layout.pack_header(secs, size_B, version)
    out[:len(head)] = head
    for (_, _, b), o in zip(parts, offsets):
        out[o:o + len(b)] = b
    return bytes(out)


def with_manifest(parts, fn) -> list:
    doc = json.loads(parts[0][2])
    fn(doc)
    parts = [list(p) for p in parts]
    parts[0][2] = json.dumps(doc).encode()
    return parts


def _section(parts, prefix):
    return next(p for p in parts if p[1].startswith(prefix))


MANIFEST_LIES = {
    "format name": lambda d: d.__setitem__("format", "onnx"),
    "manifest version": lambda d: d.__setitem__("version", 2),
    "weight dtype": lambda d: d["dag"]["buffers"][1].__setitem__("dtype", "float64"),
    "weight shape": lambda d: d["dag"]["buffers"][1].__setitem__("shape", [16, 16]),
    "huge shape": lambda d: d["dag"]["buffers"][5].update(shape=[1 << 40, 1 << 40], size_B=1 << 83),
    "input spec": lambda d: d["inputs"][0].__setitem__("shape", [8, 16]),
    "output dtype": lambda d: d["outputs"][0].__setitem__("dtype", "float16"),
    "missing kernel section": lambda d: d["kernels"]["cpu-x86_64"].__setitem__("dense", "k/none/0"),
    "kernel points at a weight": lambda d: d["kernels"]["cpu-x86_64"].__setitem__("dense", "w/0"),
    "weight used twice": lambda d: d["weights"].__setitem__("b1", d["weights"]["w1"]),
    "golden missing": lambda d: d["golden"]["outputs"].pop("y"),
    "negative tolerance": lambda d: d["golden"].__setitem__("atol", -1),
    "cycle": lambda d: d["dag"]["nodes"][0]["reads"].append("y"),
    "unknown buffer": lambda d: d["dag"]["nodes"][1]["reads"].append("ghost"),
    "undersized buffer": lambda d: d["dag"]["buffers"][5].__setitem__("size_B", 4),
    "plan overlap": lambda d: d["plans"]["cpu-x86_64"]["offsets"].__setitem__("y", d["plans"]["cpu-x86_64"]["offsets"]["h"]),
    "plan arena too small": lambda d: d["plans"]["cpu-x86_64"].__setitem__("arena_B", 256),
    "plan missing": lambda d: d["plans"].clear(),
    "target without kernels": lambda d: d["targets"].append("sm_90"),
    "no targets": lambda d: d.__setitem__("targets", []),
    "dims for no target": lambda d: d["dag"]["nodes"][0].__setitem__("dims", {}),
    "arg not a number": lambda d: d["dag"]["nodes"][0]["args"][4].__setitem__("value", "16"),
    "model not a dict": lambda d: d.__setitem__("model", "mlp"),
    "dag not a dict": lambda d: d.__setitem__("dag", []),
}


@pytest.mark.parametrize("lie", sorted(MANIFEST_LIES))
def test_manifest_lies_with_valid_hashes(good, tmp_path, lie):
    data, sections = good
    v = Verdicts(tmp_path)
    v.check(repack(with_manifest(unpack(data, sections), MANIFEST_LIES[lie])), lie)
    v.assert_clean(1)


def test_structural_tampering_with_valid_hashes(good, tmp_path):
    data, sections = good
    parts = unpack(data, sections)
    v = Verdicts(tmp_path)
    v.check(repack(parts), "untampered repack")  # control: the repacker itself produces a good image
    assert v.accepted == ["untampered repack"]
    v.accepted.clear()
    v.check(repack(parts, version=2), "version bump")
    w = _section(parts, "w/")
    v.check(repack([p if p is not w else [w[0], w[1], w[2][:-4]] for p in parts]), "weight 4 B short")
    v.check(repack([p if p is not w else [w[0], w[1], w[2] + b"\0" * 4] for p in parts]), "weight 4 B long")
    v.check(repack(parts + [[layout.KIND_WEIGHT, "w/extra", b"1234"]]), "unreferenced section")
    v.check(repack([p for p in parts if not p[1].startswith("k/")]), "kernel section removed")
    v.check(repack([p for p in parts if p[1] != "gi/0"]), "golden input removed")
    v.check(repack(parts[1:] + parts[:1]), "manifest not first")
    v.check(repack([parts[0], parts[0]] + parts[1:]), "duplicate section name")
    v.check(repack([[parts[0][0], parts[0][1], b"\xff\xfe not json"]] + parts[1:]), "manifest not UTF-8 JSON")
    v.check(repack([[parts[0][0], parts[0][1], b"[1, 2]"]] + parts[1:]), "manifest not an object")
    v.check(repack([[parts[0][0], parts[0][1], b"[" * 100000]] + parts[1:]), "manifest nested 100000 deep")
    k = _section(parts, "k/")
    v.check(repack([p if p is not k else [k[0], k[1], b""] for p in parts]), "empty kernel")
    v.assert_clean(12)


def test_header_fields_rewritten_with_valid_hash(good, tmp_path):
    """Header fields that lie (with the header hash recomputed) are caught by the field checks."""
    data, sections = good
    v = Verdicts(tmp_path)
    table = data[layout.HEADER_SIZE_B:layout.HEADER_SIZE_B + layout.ENTRY.size * len(sections)]
    fields = list(layout.HEADER_FIXED.unpack_from(data))
    for index, value in [(2, 64), (3, len(sections) + 1), (3, 0), (4, 1), (5, 96), (6, 0), (6, 1 << 60), (7, 1 << 40)]:
        f = list(fields)
        f[index] = value
        fixed = layout.HEADER_FIXED.pack(*f)
        v.check(fixed + hashlib.sha256(fixed + table).digest() + data[layout.HEADER_SIZE_B:], f"header field {index} = {value}")
    # a section entry that points outside the file, hashed consistently
    bad = [layout.Section(s.kind, s.name, s.offset_B + (1 << 50) * (i == 2), s.size_B, s.sha256) for i, s in enumerate(sections)]
    v.check(layout.pack_header(bad, len(data)) + data[len(layout.pack_header(sections, len(data))):], "offset 2^50")
    v.assert_clean(9)


def test_of_several_damaged_sections_the_first_in_table_order_is_named(good, tmp_path):
    """Sections are hashed on several threads; the error still names the first damaged one."""
    data, sections = good
    weights = [s for s in sections if s.kind == layout.KIND_WEIGHT]
    first, last = weights[0], weights[-1]
    damaged = bytearray(data)
    for s in (last, first):
        damaged[s.offset_B + s.size_B // 2] ^= 0x01
    path = tmp_path / "two.kimg"
    path.write_bytes(bytes(damaged))
    with pytest.raises(ImageError, match=f"weight section {first.name!r} is damaged"):
        read_image(path)
