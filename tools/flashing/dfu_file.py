"""The .dfu file: the 16-byte DFU suffix (with its CRC) and the DfuSe container inside it.

Suffix (last 16 bytes, little-endian): bcdDevice, idProduct, idVendor (0xFFFF = any), bcdDFU,
'UFD', bLength (>= 16), dwCRC. The CRC is reflected CRC-32 (0xEDB88320), initial 0xFFFFFFFF, no
final XOR, over the whole file except the CRC itself, i.e. zlib.crc32(data) ^ 0xFFFFFFFF.
The suffix is never sent to the device. DfuSe payloads (bcdDFU 0x011A) are a "DfuSe" prefix, then
per target a "Target" prefix and its elements (address, size, data).
"""

import struct
import zlib
from dataclasses import dataclass, field

from .dfu_spec import BCD_DFU_1_1, BCD_DFUSE
from .errors import DeviceMismatch, FirmwareFileError

SUFFIX_B = 16
ANY_ID = 0xFFFF
_SUFFIX = struct.Struct("<HHHH3sBI")
_DFUSE_PREFIX = struct.Struct("<5sBIB")          # "DfuSe", version 1, image size, target count
_TARGET_PREFIX = struct.Struct("<6sBI255sII")    # "Target", alt, named, name, size, element count
_ELEMENT = struct.Struct("<II")                  # address, size


def dfu_crc(data: bytes) -> int:
    return zlib.crc32(data) ^ 0xFFFFFFFF


@dataclass(frozen=True)
class DfuSuffix:
    bcd_device: int
    id_product: int
    id_vendor: int
    bcd_dfu: int
    length_B: int
    crc: int

    def check_device(self, ids):
        """Refuse a file whose suffix names another device. `ids` are the (vid, pid, bcdDevice) the
        one physical device enumerates as (runtime and DFU mode may differ)."""
        if not any(self.id_vendor in (ANY_ID, v) and self.id_product in (ANY_ID, p) for v, p, _b in ids):
            seen = ", ".join(f"{v:04x}:{p:04x}" for v, p, _b in ids)
            raise DeviceMismatch(f"the file is for USB device {self.id_vendor:04x}:{self.id_product:04x} "
                                 f"but the device is {seen}: use the firmware built for this device")
        if self.bcd_device != ANY_ID and all(self.bcd_device != b for _v, _p, b in ids):
            seen = ", ".join(f"0x{b:04X}" for _v, _p, b in ids)
            raise DeviceMismatch(f"the file is for device release bcdDevice 0x{self.bcd_device:04X} but the "
                                 f"device reports {seen}: use the firmware for this hardware revision")


@dataclass
class DfuFile:
    payload: bytes          # what goes to the device (the file without its suffix)
    suffix: DfuSuffix | None


def parse_suffix(data: bytes) -> DfuSuffix | None:
    """The suffix, None if the file has no 'UFD' signature; FirmwareFileError if it is damaged."""
    if len(data) < SUFFIX_B or data[-8:-5] != b"UFD":
        return None
    bcd_device, pid, vid, bcd_dfu, _sig, length_B, crc = _SUFFIX.unpack(data[-SUFFIX_B:])
    if length_B < SUFFIX_B or length_B > len(data):
        raise FirmwareFileError(f"DFU suffix length {length_B} is invalid (must be 16..{len(data)}): file damaged")
    actual = dfu_crc(data[:-4])
    if actual != crc:
        raise FirmwareFileError(f"DFU suffix CRC mismatch: file says 0x{crc:08X}, contents give 0x{actual:08X}; "
                                f"the file is damaged or truncated, download it again")
    if bcd_dfu not in (0x0100, BCD_DFU_1_1, BCD_DFUSE):
        raise FirmwareFileError(f"DFU suffix has unsupported bcdDFU 0x{bcd_dfu:04X} (0x0100 or 0x011A expected)")
    return DfuSuffix(bcd_device, pid, vid, bcd_dfu, length_B, crc)


def load(data: bytes, allow_no_suffix: bool = False) -> DfuFile:
    suffix = parse_suffix(data)
    if suffix is None:
        if not allow_no_suffix:
            raise FirmwareFileError("the file has no DFU suffix, so its integrity and target device cannot be "
                                    "checked: add one (dfu-suffix -a) or pass --allow-no-suffix for a raw image")
        return DfuFile(bytes(data), None)
    payload = bytes(data[:-suffix.length_B])
    if not payload:
        raise FirmwareFileError("the DFU file holds no firmware (only a suffix)")
    return DfuFile(payload, suffix)


def add_suffix(payload: bytes, vid: int = ANY_ID, pid: int = ANY_ID, bcd_device: int = ANY_ID,
               bcd_dfu: int = 0x0100) -> bytes:
    body = bytes(payload) + struct.pack("<HHHH3sB", bcd_device, pid, vid, bcd_dfu, b"UFD", SUFFIX_B)
    return body + struct.pack("<I", dfu_crc(body))


# ---- DfuSe container --------------------------------------------------------------------------

@dataclass
class DfuseTarget:
    alt: int
    name: str
    elements: list = field(default_factory=list)   # [(address, bytes)]


def parse_dfuse(payload: bytes) -> list:
    """The targets of a DfuSe payload, each checked for consistent sizes."""
    if len(payload) < _DFUSE_PREFIX.size or payload[:5] != b"DfuSe":
        raise FirmwareFileError("bcdDFU says DfuSe (0x011A) but the file has no 'DfuSe' prefix: file damaged")
    _sig, version, image_B, n_targets = _DFUSE_PREFIX.unpack_from(payload)
    if version != 1:
        raise FirmwareFileError(f"DfuSe prefix version {version} is not supported (1 expected)")
    if image_B != len(payload):
        raise FirmwareFileError(f"DfuSe prefix says {image_B} bytes, the file holds {len(payload)}: truncated?")
    pos, targets = _DFUSE_PREFIX.size, []
    for t in range(n_targets):
        if pos + _TARGET_PREFIX.size > len(payload):
            raise FirmwareFileError(f"DfuSe target {t} runs past the end of the file: truncated")
        sig, alt, named, name, size_B, n_elements = _TARGET_PREFIX.unpack_from(payload, pos)
        if sig != b"Target":
            raise FirmwareFileError(f"DfuSe target {t} lacks its 'Target' signature at offset {pos}: file damaged")
        pos += _TARGET_PREFIX.size
        end = pos + size_B
        if end > len(payload):
            raise FirmwareFileError(f"DfuSe target {t} says {size_B} bytes but the file ends first: truncated")
        target = DfuseTarget(alt, name.rstrip(b"\0").decode("latin-1") if named else "")
        for e in range(n_elements):
            if pos + _ELEMENT.size > end:
                raise FirmwareFileError(f"DfuSe target {t} element {e} header runs past its target")
            address, elem_B = _ELEMENT.unpack_from(payload, pos)
            pos += _ELEMENT.size
            if pos + elem_B > end:
                raise FirmwareFileError(f"DfuSe target {t} element {e} ({elem_B} B at 0x{address:08X}) "
                                        f"runs past its target")
            target.elements.append((address, bytes(payload[pos:pos + elem_B])))
            pos += elem_B
        if pos != end:
            raise FirmwareFileError(f"DfuSe target {t}: elements fill {pos - end + size_B} of {size_B} bytes")
        targets.append(target)
    if pos != len(payload):
        raise FirmwareFileError(f"DfuSe file has {len(payload) - pos} unexplained bytes after its targets")
    if not targets:
        raise FirmwareFileError("DfuSe file has no targets")
    return targets


def build_dfuse(targets: list) -> bytes:
    """A DfuSe payload (without suffix) from DfuseTarget objects."""
    body = b""
    for t in targets:
        elements = b"".join(_ELEMENT.pack(addr, len(data)) + data for addr, data in t.elements)
        body += _TARGET_PREFIX.pack(b"Target", t.alt, 1 if t.name else 0, t.name.encode("latin-1"),
                                    len(elements), len(t.elements)) + elements
    return _DFUSE_PREFIX.pack(b"DfuSe", 1, _DFUSE_PREFIX.size + len(body), len(targets)) + body
