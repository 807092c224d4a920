"""The ASM2464 bridge's SPI flash, driven from the host through the custom firmware's XDATA
read (0xE4) and write (0xE5) vendor requests, the register sequence of tinygrad's e4_flash.py.

Controller registers (XDATA): C8AA opcode, C8A1/C8A2/C8AB address bits 7:0/15:8/23:16, C8A3/C8A4
length (big-endian), C8AC address length, C8AD mode (bit0 = data goes host->flash), C8A9 bit0
start/busy. Flash data passes through the buffer at 0x7000: reads land there (DMA of at least
4 KiB), writes are staged there by a bulk OUT after ARM_OUT (0x9094 = 0x10), 64 B at a time.
"""

import time

from .errors import DeviceMismatch, FlashError, TransferTimeout
from .usb_io import UsbLink

REQ_VENDOR_OUT, REQ_VENDOR_IN = 0x40, 0xC0
XDATA_READ, XDATA_WRITE = 0xE4, 0xE5
EP_BULK_OUT = 0x02
E4_MAX_B = 64                # the firmware caps a 0xE4 reply at one EP0 packet on USB 2
WRITE_CHUNK_B = 64           # e4_flash.py stages 64 B per page program (USB 2 safe)
READ_DMA_B = 4096            # a flash read DMA needs a 4 KiB length to run
BLOCK_B = 0x10000            # 64 KiB block erase (0xD8)
BUFFER = 0x7000

SPI_OPCODE, SPI_ADDR0, SPI_ADDR1, SPI_ADDR2 = 0xC8AA, 0xC8A1, 0xC8A2, 0xC8AB
SPI_LEN_HI, SPI_LEN_LO, SPI_ADDR_LEN, SPI_MODE, SPI_CSR = 0xC8A3, 0xC8A4, 0xC8AC, 0xC8AD, 0xC8A9
SPI_MODE_EXT = (0xC8AE, 0xC8AF)
DMA_STATUS = (0xC8B8, 0xC8B6, 0xC8D6, 0xC8D8)
ARM_OUT = 0x9094

OP_WREN, OP_RDSR, OP_WRSR, OP_JEDEC, OP_READ, OP_PROGRAM, OP_ERASE64K = 0x06, 0x05, 0x01, 0x9F, 0x03, 0x02, 0xD8
SR_WIP, SR_BLOCK_PROTECT = 0x01, 0x1C


class SpiFlash:
    def __init__(self, link: UsbLink, busy_deadline_s: float = 10.0):
        self.link, self.busy_deadline_s = link, busy_deadline_s

    # ---- XDATA access --------------------------------------------------------------------
    def xread(self, addr: int, size_B: int = 1) -> bytes:
        data = self.link.ctrl_in(REQ_VENDOR_IN, XDATA_READ, addr, 0, size_B, f"XDATA read 0x{addr:04X}")
        if len(data) != size_B:
            raise FlashError(f"XDATA read 0x{addr:04X}: short reply {len(data)}/{size_B} B")
        return data

    def xwrite(self, addr: int, value: int):
        self.link.ctrl_out(REQ_VENDOR_OUT, XDATA_WRITE, addr, value & 0xFF, b"", f"XDATA write 0x{addr:04X}")

    def stage(self, data: bytes):
        """Put data into the 0x7000 buffer (ARM_OUT, then a bulk OUT)."""
        self.xwrite(ARM_OUT, 0x10)
        self.link.bulk_out(EP_BULK_OUT, data, "bulk OUT to the flash buffer")

    # ---- controller -------------------------------------------------------------------------
    def _poll_clear(self, addr: int, mask: int, what: str):
        deadline = time.monotonic() + self.busy_deadline_s
        while self.xread(addr)[0] & mask:
            if time.monotonic() > deadline:
                raise TransferTimeout(f"{what}: still busy after {self.busy_deadline_s:g} s; power-cycle the bridge")

    def transaction(self, opcode: int, addr: int = 0, data_B: int = 0, addr_len: int = 0x07, mode: int = 0):
        is_read = data_B > 0 and not mode & 1
        self._poll_clear(SPI_CSR, 1, "SPI controller")
        if is_read:
            for reg in DMA_STATUS:
                self.xwrite(reg, 0)
        for reg, value in ((SPI_MODE, mode), (SPI_MODE_EXT[0], 0), (SPI_MODE_EXT[1], 0), (SPI_OPCODE, opcode),
                           (SPI_ADDR_LEN, addr_len), (SPI_ADDR0, addr), (SPI_ADDR1, addr >> 8),
                           (SPI_ADDR2, addr >> 16), (SPI_LEN_HI, data_B >> 8), (SPI_LEN_LO, data_B), (SPI_CSR, 1)):
            self.xwrite(reg, value)
        self._poll_clear(SPI_CSR, 1, f"SPI opcode 0x{opcode:02X}")
        for mask in (0x10, 0x20, 0x40, 0x80, 0x01):     # one read-modify-write each, as the bootstub does
            self.xwrite(SPI_MODE, self.xread(SPI_MODE)[0] & ~mask)

    def write_enable(self):
        for reg, value in ((SPI_MODE, 0), (SPI_OPCODE, OP_WREN), (SPI_ADDR_LEN, 0x04), (SPI_LEN_HI, 0),
                           (SPI_LEN_LO, 0), (SPI_CSR, 1)):
            self.xwrite(reg, value)
        self._poll_clear(SPI_CSR, 1, "SPI write enable")

    def status(self) -> int:
        self.transaction(OP_RDSR, data_B=1, addr_len=0x04)
        return self.xread(BUFFER)[0]

    def wait_ready(self, what: str):
        deadline = time.monotonic() + self.busy_deadline_s
        while self.status() & SR_WIP:
            if time.monotonic() > deadline:
                raise TransferTimeout(f"{what}: the flash stayed busy for {self.busy_deadline_s:g} s")

    def init(self):
        """Controller init, then clear the block-protect bits (WREN + WRSR 0)."""
        self.xwrite(0xCC33, 0x04)
        self.xwrite(0xCA81, self.xread(0xCA81)[0] | 0x01)
        self.xwrite(0xC805, 0x02)
        self.xwrite(0xC8A6, 0x04)

    def unprotect(self):
        for _ in range(5):
            self.write_enable()
            self.stage(bytes(4))
            self.transaction(OP_WRSR, data_B=1, addr_len=0x04, mode=0x01)
            self.wait_ready("write status register")
            if not self.status() & SR_BLOCK_PROTECT:
                return
        raise FlashError("the SPI flash keeps its block-protect bits set; it may be hardware write-protected")

    def jedec_id(self) -> bytes:
        self.transaction(OP_JEDEC, data_B=3, addr_len=0x04)
        return self.xread(BUFFER, 3)

    def capacity_B(self) -> int:
        jedec = self.jedec_id()
        if jedec in (b"\x00\x00\x00", b"\xff\xff\xff") or not 16 <= jedec[2] <= 28:
            raise DeviceMismatch(f"no SPI NOR flash answered the JEDEC ID command (got {jedec.hex()}): "
                                 f"not an ASM2464 bridge with flash, or the controller did not initialise")
        return 1 << jedec[2]

    # ---- data ---------------------------------------------------------------------------------
    def read(self, addr: int, size_B: int, progress=None) -> bytes:
        out = bytearray()
        while len(out) < size_B:
            want = min(READ_DMA_B, size_B - len(out))
            self.transaction(OP_READ, addr + len(out), READ_DMA_B)
            for off in range(0, want, E4_MAX_B):
                out += self.xread(BUFFER + off, min(E4_MAX_B, want - off))
            if progress:
                progress.update(want)
        return bytes(out)

    def erase_block(self, addr: int):
        if addr % BLOCK_B:
            raise FlashError(f"block erase address 0x{addr:X} is not 64 KiB aligned")
        self.write_enable()
        self.transaction(OP_ERASE64K, addr)
        self.wait_ready(f"erase block 0x{addr:06X}")

    def program(self, addr: int, data: bytes):
        """One staged page program of at most WRITE_CHUNK_B bytes."""
        self.stage(data + bytes(-len(data) % 4))
        self.write_enable()
        self.transaction(OP_PROGRAM, addr, len(data), mode=0x01)
        self.wait_ready(f"program 0x{addr:06X}")
