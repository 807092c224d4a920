"""A model of an ASM2464-family USB-to-PCIe bridge and its SPI NOR flash, for testing the bridge
flasher without hardware.

What is modelled comes from amd-usb-firmware.md E.1/E.5 and tinygrad's e4_flash.py:
- custom firmware (VID:PID ADD1:0001, vendor interface, bulk OUT 0x02 / IN 0x81): XDATA read
  0xE4 (at most 64 B per request, as on USB 2) and write 0xE5; the SPI controller registers
  (C8AA opcode, C8A1/C8A2/C8AB address, C8A3/C8A4 length, C8AC, C8AD mode, C8A9 start) executing
  WREN, RDSR, WRSR, JEDEC ID, READ (into the 0x7000 buffer), PAGE PROGRAM (from it) and 64 KiB
  BLOCK ERASE; ARM_OUT (0x9094 = 0x10) makes the next bulk OUT land at 0x7000; the controller
  works only after CA81 bit 0 is set;
- the SPI NOR chip: program only clears bits and needs WEL, erase sets a block to 0xFF, WIP is
  busy for a few status reads, block-protect bits come up set and WRSR clears them.
Model choices where the facts are silent (so tests cannot prove these match real hardware):
- at power-on a "boot ROM" checks the image container at 0x100; valid -> custom firmware, else a
  BOT-only ROM bootloader enumerating as 174C:2463 (mass storage 08/06/50) that takes the E1/E3/E8
  sequence of bridge_bot.py;
- the custom firmware reports as its product string the first "custom v..." text in the image
  body (tinygrad's real firmware reports "custom v0.1"), so tests can see which image booted;
- a power cut during an erase leaves the block's first half erased, during a program the first
  half of the chunk programmed.
"""

import struct

from tools.flashing import bridge_image
from tools.flashing.errors import FirmwareFileError

from .virtual_usb import (VirtualDevice, bulk_endpoint, configuration, device_descriptor, interface, stall)

JEDEC_64K = bytes([0xEF, 0x40, 0x10])        # a Winbond-style 64 KiB part (capacity byte 0x10 = 2^16)
BLOCK_B = 0x10000


class SpiNorChip:
    def __init__(self, jedec=JEDEC_64K):
        self.jedec = jedec
        self.mem = bytearray(b"\xff" * (1 << jedec[2]))
        self.power_on()

    def power_on(self):
        self.wel, self.busy_reads = False, 0
        self.status_protect = 0x1C                   # block protect set at power-on

    def status(self) -> int:
        wip = 1 if self.busy_reads else 0
        self.busy_reads = max(0, self.busy_reads - 1)
        return self.status_protect | (2 if self.wel else 0) | wip

    def program(self, addr, data):
        if not self.wel or self.status_protect or self.busy_reads:
            return                                    # ignored, as a real part ignores it
        for i, b in enumerate(data):
            self.mem[addr + i] &= b
        self.wel, self.busy_reads = False, 1

    def erase(self, addr, size_B=BLOCK_B):
        if not self.wel or self.status_protect or self.busy_reads:
            return
        base = addr & ~(BLOCK_B - 1)
        self.mem[base:base + size_B] = b"\xff" * size_B
        self.wel, self.busy_reads = False, 3


class BridgeModel(VirtualDevice):
    def __init__(self, serial="MODEL-ASM2464-1", flash_image: bytes = b"", config: bytes = b""):
        super().__init__(serial)
        self.chip = SpiNorChip()
        self.chip.mem[:len(config)] = config
        self.chip.mem[bridge_image.IMAGE_OFFSET:bridge_image.IMAGE_OFFSET + len(flash_image)] = flash_image
        self.flash_ops = 0            # erases + programs since power-on (the "blocks" of a write)
        self.boot()

    # -- lifecycle ----------------------------------------------------------------------------------
    def boot(self):
        self.xdata = bytearray(0x10000)
        self.chip.power_on()
        self.armed, self.bot = False, _BotState()
        try:
            image = bridge_image.image_in_flash(self.chip.mem)
            self.mode = "custom"
            at = image.find(b"custom v")
            self.product = image[at:at + 16].split(b"\0")[0].decode("ascii", "replace") if at >= 0 else "custom"
        except FirmwareFileError:
            self.mode, self.product = "bootloader", "ASM2464 ROM bootloader (model)"

    def usb_reset(self):
        self.reenumerate()            # a bus reset does not reboot the 8051: same mode, same state

    def on_power_cut(self, event, details, partial):
        if not partial:
            return
        if event == "erase":
            base = details["addr"] & ~(BLOCK_B - 1)
            self.chip.mem[base:base + BLOCK_B // 2] = b"\xff" * (BLOCK_B // 2)
        elif event == "program":
            data = details["data"][:len(details["data"]) // 2]
            for i, b in enumerate(data):
                self.chip.mem[details["addr"] + i] &= b

    # -- descriptors --------------------------------------------------------------------------------
    def descriptors(self):
        eps = [bulk_endpoint(0x02), bulk_endpoint(0x81)]
        if self.mode == "custom":
            return device_descriptor(0xADD1, 0x0001, 0x0001, configurations=[
                configuration([[interface(0, 0, 0xFF, 0xFF, 0xFF, endpoints=eps)]])])
        return device_descriptor(0x174C, 0x2463, 0x0001, configurations=[
            configuration([[interface(0, 0, 0x08, 0x06, 0x50, endpoints=eps)]])])

    def strings(self):
        return {1: "kernelos test models", 2: self.product, 3: self.serial}

    # -- custom firmware: XDATA and the SPI controller --------------------------------------------------
    def control(self, bmRequestType, bRequest, wValue, wIndex, data):
        if self.mode != "custom":
            raise stall("the ROM bootloader only speaks BOT")
        if bmRequestType == 0xC0 and bRequest == 0xE4:
            return bytes(self.xdata[wValue:wValue + min(data, 64)])
        if bmRequestType == 0x40 and bRequest == 0xE5:
            if wValue == 0xC8A9 and wIndex & 1:
                self._spi_execute()                    # done at once: the model is never CSR-busy
                return 0
            self.xdata[wValue] = wIndex & 0xFF
            if wValue == 0x9094 and wIndex & 0xFF == 0x10:
                self.armed = True
            return 0
        raise stall(f"vendor request 0x{bRequest:02X} not modelled")

    def _spi_execute(self):
        x = self.xdata
        if not x[0xCA81] & 1:
            return                                     # controller not enabled: nothing happens
        opcode, mode = x[0xC8AA], x[0xC8AD]
        addr = x[0xC8A1] | x[0xC8A2] << 8 | x[0xC8AB] << 16
        length = x[0xC8A3] << 8 | x[0xC8A4]
        chip, buf = self.chip, 0x7000
        self.event("spi", opcode=opcode)
        if opcode == 0x06:
            chip.wel = True
        elif opcode == 0x05:
            x[buf] = chip.status()
        elif opcode == 0x01 and mode & 1:
            if chip.wel:
                chip.status_protect = x[buf] & 0x1C
                chip.wel = False
        elif opcode == 0x9F:
            x[buf:buf + 3] = chip.jedec
        elif opcode == 0x03:
            n = min(length, 0x1000)
            x[buf:buf + n] = chip.mem[addr:addr + n]
        elif opcode == 0x02 and mode & 1:
            data = bytes(x[buf:buf + length])
            self.flash_ops += 1
            self.event("program", addr=addr, data=data)
            chip.program(addr, data)
        elif opcode == 0xD8:
            self.flash_ops += 1
            self.event("erase", addr=addr)
            chip.erase(addr)

    def bulk_write(self, ep, data):
        if self.mode == "bootloader":
            return self.bot.write(self, data)
        if ep != 0x02 or not self.armed:
            raise stall("bulk OUT without ARM_OUT")
        self.xdata[0x7000:0x7000 + len(data)] = data
        self.armed = False
        return len(data)

    def bulk_read(self, ep, size):
        if self.mode == "bootloader":
            return self.bot.read(self, size)
        raise stall("no bulk IN data")

    # -- bootloader: the flashing CDBs over BOT ---------------------------------------------------------
    def bootloader_commit(self, config: bytes, image: bytes):
        """E8 51: write the staged config and image (erase, program), then reboot."""
        chip = self.chip
        end = bridge_image.IMAGE_OFFSET + len(image)
        for block in range(0, end, BLOCK_B):
            chip.mem[block:block + BLOCK_B] = b"\xff" * BLOCK_B
        chip.mem[:len(config)] = config
        chip.mem[bridge_image.IMAGE_OFFSET:end] = image


class _BotState:
    """Bulk-Only Transport in the ROM bootloader: CBW, data OUT, CSW."""

    def __init__(self):
        self.cbw, self.expect_B, self.data, self.csw = None, 0, b"", None
        self.config, self.parts, self.reboot = [b"", b""], {}, False

    def write(self, model, data):
        if self.cbw is None:
            sig, tag, length, _flags, _lun, _cdb_len, cdb = struct.unpack("<IIIBBB16s", data)
            if sig != 0x43425355 or len(data) != 31:
                raise stall("not a CBW")
            self.cbw, self.expect_B, self.data = (tag, cdb), length, b""
            if length == 0:
                self._execute(model)
            return len(data)
        self.data += data
        if len(self.data) >= self.expect_B:
            self._execute(model)
        return len(data)

    def _execute(self, model):
        tag, cdb = self.cbw
        status = 0
        if cdb[0] == 0xE1 and cdb[1] == 0x50 and cdb[2] in (0, 1) and len(self.data) == 128:
            self.config[cdb[2]] = self.data
        elif cdb[0] == 0xE3 and cdb[1] in (0x50, 0xD0):
            length = struct.unpack(">I", cdb[2:6])[0]
            if length != len(self.data) or (cdb[1] == 0x50 and length > 0xFF00):
                status = 1
            self.parts[cdb[1]] = self.data
        elif cdb[0] == 0xE8 and cdb[1] == 0x51:
            image = self.parts.get(0x50, b"") + self.parts.get(0xD0, b"")
            config = b"".join(self.config)
            try:
                bridge_image.check(image)
                if len(config) != 256:
                    raise FirmwareFileError("config incomplete")
                model.bootloader_commit(config, image)
                self.reboot = True
            except FirmwareFileError:
                status = 1
        else:
            status = 1
        self.csw = struct.pack("<IIIB", 0x53425355, tag, 0, status)
        self.cbw = None

    def read(self, model, size):
        if self.csw is None:
            raise stall("no CSW pending")
        csw, self.csw = self.csw, None
        if self.reboot:                  # the bridge resets after sending the status of E8 51
            model.generation += 1
            model.boot()
        return csw
