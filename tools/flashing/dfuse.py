"""ST DfuSe 1.1a on top of DFU: address/erase commands, the memory map from the alt-setting
string, and element download/upload by address.

Commands are a DNLOAD with wValue 0 followed by the GETSTATUS handshake (the device reports
dfuDNBUSY while it works) and an ABORT back to dfuIDLE. Data blocks use wValue >= 2 and land at
pointer + (wValue - 2) * wTransferSize; like dfu-util we set the pointer per block and use 2.
"""

import re
import struct
from dataclasses import dataclass

from . import dfu_spec as S
from .dfu import DfuInterface
from .errors import DeviceMismatch, FirmwareFileError, FlashError

CMD_SET_ADDRESS, CMD_ERASE = 0x21, 0x41
READABLE, ERASABLE, WRITEABLE = 1, 2, 4
_UNITS = {" ": 1, "B": 1, "K": 1024, "M": 1024 * 1024}


@dataclass(frozen=True)
class Segment:
    start: int
    page_B: int
    pages: int
    attributes: int

    @property
    def end(self) -> int:
        return self.start + self.page_B * self.pages


@dataclass(frozen=True)
class MemoryMap:
    name: str
    segments: tuple

    def segment_at(self, address: int) -> Segment | None:
        return next((s for s in self.segments if s.start <= address < s.end), None)

    def pages_for(self, address: int, size_B: int) -> list:
        """Start addresses of every page that [address, address+size_B) touches; DeviceMismatch if a
        byte falls outside writeable+erasable memory."""
        pages, pos, end = [], address, address + size_B
        while pos < end:
            seg = self.segment_at(pos)
            if seg is None or (seg.attributes & (WRITEABLE | ERASABLE)) != (WRITEABLE | ERASABLE):
                why = "is outside the device's memory map" if seg is None else "is not erasable and writeable"
                raise DeviceMismatch(f"address 0x{pos:08X} {why} ({self.name}): the file is not for this device")
            page = seg.start + (pos - seg.start) // seg.page_B * seg.page_B
            pages.append(page)
            pos = page + seg.page_B
        return pages


def parse_memory_map(text: str) -> MemoryMap:
    """'@Internal Flash  /0x08000000/04*016Kg,01*064Kg' -> MemoryMap (several '/addr/...' groups allowed)."""
    if not text or not text.startswith("@"):
        raise FlashError(f"the DfuSe alt setting has no memory map string ({text!r}); cannot flash safely")
    parts = text[1:].split("/")
    name, segments = parts[0].strip(), []
    for i in range(1, len(parts) - 1, 2):
        address = int(parts[i], 16)
        for spec in parts[i + 1].split(","):
            m = re.fullmatch(r"\s*(\d+)\*(\d+)\s*([ BKM]?)([a-g])\s*", spec)
            if not m:
                raise FlashError(f"cannot parse DfuSe memory map entry {spec!r} in {text!r}")
            count, size = int(m.group(1)), int(m.group(2)) * _UNITS[m.group(3) or " "]
            segments.append(Segment(address, size, count, ord(m.group(4)) - ord("a") + 1))
            address += count * size
    return MemoryMap(name, tuple(segments))


class DfuseInterface(DfuInterface):
    def command(self, payload: bytes, what: str):
        self.dnload(0, payload)
        self.poll(what, until=(S.DNLOAD_IDLE,))
        self.abort()

    def set_address(self, address: int):
        self.command(struct.pack("<BI", CMD_SET_ADDRESS, address), f"DfuSe set address 0x{address:08X}")

    def erase_page(self, address: int):
        self.command(struct.pack("<BI", CMD_ERASE, address), f"DfuSe erase page 0x{address:08X}")

    def write(self, address: int, data: bytes, progress=None):
        size = self.desc.transfer_size_B
        for off in range(0, len(data), size):
            chunk = data[off:off + size]
            where = f"0x{address + off:08X} (+{len(chunk)} B)"
            try:
                self.set_address(address + off)
                self.dnload(2, chunk)
                self.poll(f"DfuSe write at {where}", until=(S.DNLOAD_IDLE,))
            except FlashError as e:
                e.args = (f"{e.args[0]} [writing {where}]",)
                raise
            self.abort()
            if progress:
                progress.update(len(chunk))

    def read_at(self, address: int, size_B: int, progress=None) -> bytes:
        self.set_address(address)
        return self.read(size_B, progress, first_block=2)

    def leave(self, address: int):
        """Set the jump address and send the zero-length DNLOAD: the device starts its firmware."""
        self.set_address(address)
        self.dnload(0, b"")
        try:
            self.get_status()
        except FlashError:
            pass    # the device may already be gone, running the new firmware


def plan(targets: list, maps: dict) -> list:
    """(alt, address, data, pages) for every element, all checked against the memory maps before
    anything is erased. `maps` is {alt: MemoryMap}."""
    steps = []
    for t in targets:
        if t.alt not in maps:
            raise DeviceMismatch(f"the file targets alt setting {t.alt} ({t.name!r}); the device has "
                                 f"{sorted(maps)}: the file is not for this device")
        for address, data in t.elements:
            if not data:
                raise FirmwareFileError(f"DfuSe element at 0x{address:08X} is empty")
            steps.append((t.alt, address, data, maps[t.alt].pages_for(address, len(data))))
    return steps
