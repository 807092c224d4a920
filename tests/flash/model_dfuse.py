"""A model of an ST DfuSe 1.1a bootloader (STM32-class) for testing the flasher without hardware.

It is the DFU model in DFU mode only (a ROM bootloader), with bcdDFU 0x011A, a memory map per
alternate setting (the iInterface string), DNLOAD wValue 0 = commands (0x21 set address, 0x41
erase page), wValue >= 2 = data at pointer + (wValue - 2) * wTransferSize, and flash that only
programs erased bytes (a write over unerased memory fails with errPROG, like real NOR flash).
"""

import struct

from tools.flashing import dfu_spec as S
from tools.flashing.dfuse import parse_memory_map

from .model_dfu import DfuModel
from .virtual_usb import interface

FLASH_MAP = "@Internal Flash  /0x08000000/02*001Ka,14*001Kg"
OPTION_MAP = "@Option Bytes  /0x1FFF7800/01*040 e"


class DfuseModel(DfuModel):
    def __init__(self, serial="MODEL-DFUSE-1", vid=0x0483, pid=0xDF11, bcd_device=0x2200, transfer_size_B=256,
                 maps=(FLASH_MAP, OPTION_MAP), **kw):
        self.maps = [parse_memory_map(m) for m in maps]
        self.map_strings = list(maps)
        self.memory = {}
        for mm in self.maps:
            for seg in mm.segments:
                self.memory[seg.start] = bytearray(b"\xff" * (seg.end - seg.start))
        super().__init__(serial=serial, vid=vid, runtime_pid=pid, dfu_pid=pid, bcd_device=bcd_device,
                         transfer_size_B=transfer_size_B, bcd_dfu=S.BCD_DFUSE, **kw)
        self.alt, self.pointer, self.left = 0, self.maps[0].segments[0].start, False

    def boot(self):
        super().boot()
        self.mode = "dfu"                               # a ROM bootloader: always DFU mode
        self.state = S.DFU_ERROR if self.por_error else S.DFU_IDLE

    def set_alt(self, intf, alt):
        self.alt = alt

    def dfu_interfaces(self):
        return [[interface(0, alt, S.DFU_CLASS, S.DFU_SUBCLASS, S.PROTOCOL_DFU_MODE, 4 + alt,
                           self.functional_descriptor()) for alt in range(len(self.maps))]]

    def strings(self):
        out = {1: "kernelos test models", 2: "DfuSe model (ROM bootloader)", 3: self.serial}
        out.update({4 + i: m for i, m in enumerate(self.map_strings)})
        return out

    # -- memory ----------------------------------------------------------------------------------
    def _locate(self, address, size):
        """(segment, its memory, offset) for [address, address+size) inside one segment."""
        for mm in self.maps:
            seg = mm.segment_at(address)
            if seg and address + size <= seg.end:
                return seg, self.memory[seg.start], address - seg.start
        return None, None, None

    def read(self, address, size) -> bytes:
        _seg, mem, off = self._locate(address, size)
        return bytes(mem[off:off + size])

    # -- DfuSe semantics on top of the DFU state machine -------------------------------------------
    def start_download(self):
        pass                                             # DfuSe erases only on command

    def accept_block(self, block, data):
        self.event("dnload", block=block)
        if block == 1:                                   # reserved in DfuSe
            raise self._error()
        self.pending = ("cmd", bytes(data)) if block == 0 else \
            ("data", self.pointer + (block - 2) * self.transfer_size_B, bytes(data))

    def on_power_cut(self, event, details, partial):
        if partial and isinstance(self.pending, tuple) and self.pending[0] == "data":
            _kind, address, data = self.pending
            _seg, mem, off = self._locate(address, len(data))
            if mem is not None:
                half = data[:len(data) // 2]
                mem[off:off + len(half)] = bytes(a & b for a, b in zip(mem[off:off + len(half)], half))

    def _fail(self, status):
        self.state, self.status, self.pending = S.DFU_ERROR, status, None

    def _program(self):
        pending = self.pending
        self.event("program", block=self.next_block, pending=pending[0])
        self.next_block += 1
        if self.next_block - 1 in self.status_error_at_block:
            return self._fail(self.status_error_at_block.pop(self.next_block - 1))
        self.pending = None
        if pending[0] == "cmd":
            return self._command(pending[1])
        _kind, address, data = pending
        seg, mem, off = self._locate(address, len(data))
        if seg is None or not seg.attributes & 4:
            return self._fail(0x08)                          # errADDRESS
        if any(b != 0xFF for b in mem[off:off + len(data)]):
            return self._fail(0x06)                          # errPROG: not erased
        if self.corrupt_block is not None and self.next_block - 1 == self.corrupt_block:
            data = bytes([data[0] ^ 0x01]) + data[1:]
        mem[off:off + len(data)] = data

    def _command(self, cmd):
        if cmd[:1] == b"\x21" and len(cmd) == 5:
            address = struct.unpack_from("<I", cmd, 1)[0]
            if self._locate(address, 1)[0] is None:
                return self._fail(0x08)
            self.pointer = address
        elif cmd[:1] == b"\x41" and len(cmd) == 5:
            address = struct.unpack_from("<I", cmd, 1)[0]
            seg, mem, off = self._locate(address, 1)
            if seg is None or not seg.attributes & 2 or (address - seg.start) % seg.page_B:
                return self._fail(0x01 if seg is None else 0x08)   # errTARGET / errADDRESS
            mem[off:off + seg.page_B] = b"\xff" * seg.page_B
        else:
            return self._fail(0x0F)

    def _getstatus(self, wValue, length):
        if self.state == S.MANIFEST_SYNC and self.pending == "manifest":
            self.left = True                                  # "leave": run the firmware
            self.mode = "app"
            self.reenumerate()
            return self._status()
        return super()._getstatus(wValue, length)

    def _dnload(self, block, data):
        if not data and self.state == S.DFU_IDLE:               # DfuSe allows leave from dfuIDLE
            self.state, self.pending = S.MANIFEST_SYNC, "manifest"
            return 0
        return super()._dnload(block, data)

    def _upload(self, block, length):
        if self.state not in (S.DFU_IDLE, S.UPLOAD_IDLE) or block < 2:
            raise self._error()
        address = self.pointer + (block - 2) * self.transfer_size_B
        seg, mem, off = self._locate(address, 1)
        if seg is None or not seg.attributes & 1:
            raise self._error(0x08)
        chunk = bytes(mem[off:off + length])
        self.state = S.UPLOAD_IDLE if len(chunk) == length else S.DFU_IDLE
        return chunk

    def descriptors(self):
        d = super().descriptors()
        if self.mode == "app":                                  # the application has no DFU interface
            d["configurations"][0]["interfaces"] = [[interface(0, 0, 0xFF, 0, 0)]]
        return d
