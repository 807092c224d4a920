"""The ASM2464 firmware image container and where it lives in the bridge's SPI flash.

Container (shared/design/amd-usb-firmware.md E.5, as tinygrad's patch.py/split.py use it):
u32 LE body length, the body, 0xA5, u8 sum(body) & 0xFF, u32 LE zlib-CRC32(body).
Flash layout (e4_flash.py defaults): 256 B of configuration (USB IDs, strings) at 0x000-0x0FF,
the container at 0x100. The facts give no model/revision field inside the container, so the
identity checks the tools can make are: container valid, bridge family by USB ID, image fits.
"""

import struct
import zlib
from dataclasses import dataclass

from .errors import FirmwareFileError

CONFIG_B = 0x100
IMAGE_OFFSET = 0x100
TRAILER_FLAG = 0xA5
OVERHEAD_B = 4 + 6


@dataclass(frozen=True)
class ImageInfo:
    body_B: int
    checksum: int
    crc32: int

    @property
    def size_B(self) -> int:
        return self.body_B + OVERHEAD_B

    def as_dict(self) -> dict:
        return {"size_B": self.size_B, "body_B": self.body_B, "sum8": f"0x{self.checksum:02X}",
                "crc32": f"0x{self.crc32:08X}"}


def check(data: bytes, what: str = "image") -> ImageInfo:
    """Every check the container allows; FirmwareFileError naming the first that fails."""
    if len(data) < OVERHEAD_B + 1:
        raise FirmwareFileError(f"{what}: {len(data)} bytes is too short for an ASM2464 image container")
    body_B = struct.unpack_from("<I", data)[0]
    if body_B != len(data) - OVERHEAD_B:
        raise FirmwareFileError(f"{what}: header says a {body_B}-byte body but the file holds "
                                f"{len(data) - OVERHEAD_B}: truncated or not an ASM2464 image")
    body = data[4:4 + body_B]
    flag, checksum, crc = struct.unpack_from("<BBI", data, 4 + body_B)
    if flag != TRAILER_FLAG:
        raise FirmwareFileError(f"{what}: trailer flag is 0x{flag:02X}, not 0xA5: not an ASM2464 image")
    if checksum != sum(body) & 0xFF:
        raise FirmwareFileError(f"{what}: 8-bit checksum 0x{checksum:02X} != 0x{sum(body) & 0xFF:02X}: image damaged")
    if crc != zlib.crc32(body) & 0xFFFFFFFF:
        raise FirmwareFileError(f"{what}: CRC32 0x{crc:08X} != 0x{zlib.crc32(body) & 0xFFFFFFFF:08X}: image damaged")
    return ImageInfo(body_B, checksum, crc)


def build(body: bytes) -> bytes:
    """A container around body (used for tests and for re-packing a patched body)."""
    return struct.pack("<I", len(body)) + body + struct.pack("<BBI", TRAILER_FLAG, sum(body) & 0xFF,
                                                              zlib.crc32(body) & 0xFFFFFFFF)


def image_in_flash(flash: bytes) -> bytes:
    """The container stored at IMAGE_OFFSET of a flash dump (checked), or FirmwareFileError."""
    if len(flash) < IMAGE_OFFSET + OVERHEAD_B:
        raise FirmwareFileError(f"flash dump of {len(flash)} bytes is too small to hold an image")
    body_B = struct.unpack_from("<I", flash, IMAGE_OFFSET)[0]
    end = IMAGE_OFFSET + body_B + OVERHEAD_B
    if end > len(flash):
        raise FirmwareFileError(f"flash dump: the image header at 0x{IMAGE_OFFSET:X} says {body_B} bytes, "
                                f"more than the flash holds: no valid image")
    data = bytes(flash[IMAGE_OFFSET:end])
    check(data, f"image in flash at 0x{IMAGE_OFFSET:X}")
    return data
