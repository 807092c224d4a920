"""Flashing an ASM2464 through USB mass-storage Bulk-Only Transport (BOT), the only interface the
bridge's ROM bootloader offers (amd-usb-firmware.md E.5, tinygrad patch.py's stock route).

A command is a 31-byte CBW ("USBC", tag, data length, flags, LUN, CDB length, CDB), the data
phase, then a 13-byte CSW ("USBS", tag, residue, status 0 = ok). The flashing sequence:
  E1 50 00 + config block 1 (128 B), E1 50 01 + config block 2 (128 B),
  E3 50 <len BE32> + image[0:0xFF00], E3 D0 <len BE32> + image[0xFF00:], E8 51 (commit, reset).
Where the facts are silent this module says so: the CDB is sent padded to 16 bytes, <len> is taken
as the data-phase length, and the two config blocks as flash 0x00-0x7F and 0x80-0xFF [inferred].
"""

import struct

import usb.util

from .errors import DeviceDisconnected, FlashError
from .usb_io import UsbLink

_CBW = struct.Struct("<IIIBBB16s")
_CSW = struct.Struct("<IIIB")
CBW_SIGNATURE, CSW_SIGNATURE = 0x43425355, 0x53425355
FIRST_PART_B = 0xFF00
CONFIG_BLOCK_B = 128


class BotTransport:
    def __init__(self, link: UsbLink, interface):
        self.link, self.tag = link, 0
        eps = list(interface)
        self.ep_out = next(e.bEndpointAddress for e in eps if usb.util.endpoint_direction(e.bEndpointAddress)
                           == usb.util.ENDPOINT_OUT)
        self.ep_in = next(e.bEndpointAddress for e in eps if usb.util.endpoint_direction(e.bEndpointAddress)
                          == usb.util.ENDPOINT_IN)

    def command(self, cdb: bytes, data_out: bytes = b"", what: str = "BOT command", timeout_ms: int | None = None):
        self.tag += 1
        cbw = _CBW.pack(CBW_SIGNATURE, self.tag, len(data_out), 0x00, 0, len(cdb), cdb.ljust(16, b"\0"))
        self.link.bulk_out(self.ep_out, cbw, f"{what} (CBW)", timeout_ms)
        if data_out:
            self.link.bulk_out(self.ep_out, data_out, f"{what} (data)", timeout_ms)
        csw = self.link.bulk_in(self.ep_in, _CSW.size, f"{what} (CSW)", timeout_ms)
        if len(csw) != _CSW.size:
            raise FlashError(f"{what}: status wrapper of {len(csw)} bytes (13 expected)")
        sig, tag, residue, status = _CSW.unpack(csw)
        if sig != CSW_SIGNATURE or tag != self.tag:
            raise FlashError(f"{what}: bad status wrapper (signature 0x{sig:08X}, tag {tag} for {self.tag})")
        if status != 0:
            raise FlashError(f"{what}: the bootloader failed the command (CSW status {status}, residue {residue})")


def flash_via_bootloader(bot: BotTransport, config: bytes, image: bytes, progress=None):
    """Write the 256-byte config and the image container, then commit (the bridge resets)."""
    if len(config) != 2 * CONFIG_BLOCK_B:
        raise FlashError(f"bootloader route needs a 256-byte config block, got {len(config)}")
    bot.command(bytes([0xE1, 0x50, 0x00]), config[:CONFIG_BLOCK_B], "write config block 1")
    bot.command(bytes([0xE1, 0x50, 0x01]), config[CONFIG_BLOCK_B:], "write config block 2")
    for opcode, part in ((0x50, image[:FIRST_PART_B]), (0xD0, image[FIRST_PART_B:])):
        if part:
            bot.command(bytes([0xE3, opcode]) + struct.pack(">I", len(part)), part, "write image", 60000)
            if progress:
                progress.update(len(part))
    try:
        bot.command(bytes([0xE8, 0x51]), b"", "commit and reset")
    except DeviceDisconnected:
        pass    # the bridge may reset before sending its status
