"""A model of a USB DFU 1.1 device, for testing the flasher without hardware.

Runtime mode (interface protocol 1: appIDLE/appDETACH) and DFU mode (protocol 2) with the DFU 1.1
state machine of Appendix A as amd-usb-firmware.md F.1 summarises it: GETSTATUS advances the
*-SYNC states, a request during dfuDNBUSY before bwPollTimeout has passed is stalled and drops the
device into dfuERROR, dfuERROR is left only by CLRSTATUS, and so on. Firmware lives in a flash
array that the first DNLOAD erases; the application counts as valid only once manifested, so a
device that loses power mid-download comes back in DFU mode (as a DFU bootloader does).
"""

import struct
import time

from tools.flashing import dfu_spec as S

from .virtual_usb import VirtualDevice, configuration, device_descriptor, interface, stall


class DfuModel(VirtualDevice):
    def __init__(self, serial="MODEL-DFU-1", vid=0x1209, runtime_pid=0x70D0, dfu_pid=0x70D1, bcd_device=0x0102,
                 transfer_size_B=256, can_upload=True, tolerant=True, will_detach=False, detach_timeout_ms=1000,
                 poll_ms=1, capacity_B=16 * 1024, firmware=b"", por_error=False, bcd_dfu=S.BCD_DFU_1_1):
        super().__init__(serial)
        self.vid, self.runtime_pid, self.dfu_pid, self.bcd_device = vid, runtime_pid, dfu_pid, bcd_device
        self.transfer_size_B, self.poll_ms, self.bcd_dfu = transfer_size_B, poll_ms, bcd_dfu
        self.attributes = 1 | (2 if can_upload else 0) | (4 if tolerant else 0) | (8 if will_detach else 0)
        self.detach_timeout_ms = detach_timeout_ms
        self.flash = bytearray(b"\xff" * capacity_B)
        self.flash[:len(firmware)] = firmware
        self.fw_len = len(firmware)
        self.app_valid = bool(firmware)
        self.por_error = por_error          # come back from a power cut in dfuERROR/errPOR
        self.stuck_busy = False             # never leave dfuDNBUSY (a hung device)
        self.status_error_at_block = {}     # {block: DFU status code reported while programming it}
        self.corrupt_block = None           # program this block with one bit flipped
        self.requests = []                  # (state name, bRequest) of every DFU request received
        self.boot()

    @property
    def tolerant(self) -> bool:
        return bool(self.attributes & 4)

    # -- lifecycle -----------------------------------------------------------------------------
    def boot(self):
        self.mode = "runtime" if self.app_valid else "dfu"
        self.state = S.APP_IDLE if self.mode == "runtime" else S.DFU_IDLE
        self.status = S.STATUS_OK
        if self.mode == "dfu" and self.por_error:
            self.state, self.status = S.DFU_ERROR, 0x0D     # errPOR
        self.pending = None
        self.busy_until = 0.0
        self.written_B = 0
        self.next_block = 0

    def usb_reset(self):
        if self.mode == "runtime":
            if self.state == S.APP_DETACH:
                self.mode, self.state, self.status = "dfu", S.DFU_IDLE, S.STATUS_OK
        elif self.app_valid and self.state in (S.MANIFEST_WAIT_RESET, S.DFU_IDLE):
            self.mode, self.state = "runtime", S.APP_IDLE
        else:
            self.state, self.status = S.DFU_IDLE, S.STATUS_OK
        self.pending = None
        self.reenumerate()

    def on_stall(self):
        if self.mode == "dfu":
            self.state, self.status = S.DFU_ERROR, 0x0F       # errSTALLEDPKT

    def on_power_cut(self, event, details, partial):
        if partial and isinstance(self.pending, tuple):      # the block being programmed is half written
            offset, data = self.pending
            half = data[:len(data) // 2]
            self.flash[offset:offset + len(half)] = half

    # -- descriptors ---------------------------------------------------------------------------
    def functional_descriptor(self) -> bytes:
        return struct.pack("<BBBHHH", 9, S.FUNCTIONAL_DESCRIPTOR_TYPE, self.attributes, self.detach_timeout_ms,
                           self.transfer_size_B, self.bcd_dfu)

    def dfu_interfaces(self):
        protocol = S.PROTOCOL_RUNTIME if self.mode == "runtime" else S.PROTOCOL_DFU_MODE
        return [[interface(0, 0, S.DFU_CLASS, S.DFU_SUBCLASS, protocol, 0, self.functional_descriptor())]]

    def descriptors(self):
        pid = self.runtime_pid if self.mode == "runtime" else self.dfu_pid
        return device_descriptor(self.vid, pid, self.bcd_device, configurations=[configuration(self.dfu_interfaces())])

    def strings(self):
        return {1: "kernelos test models", 2: f"DFU model ({self.mode})", 3: self.serial}

    # -- requests ---------------------------------------------------------------------------------
    def _error(self, status=0x0F):
        self.state, self.status = S.DFU_ERROR, status
        return stall(f"DFU request refused in {S.state_name(self.state)}")

    def _advance_busy(self):
        """dfuDNBUSY/dfuMANIFEST end when bwPollTimeout has passed; a request before that is an error."""
        if self.state in (S.DNBUSY, S.MANIFEST):
            if time.monotonic() < self.busy_until:
                raise self._error()
            if self.state == S.DNBUSY and not self.stuck_busy:
                self.state = S.DNLOAD_SYNC
            elif self.state == S.MANIFEST:
                self.state = S.MANIFEST_SYNC if self.tolerant else S.MANIFEST_WAIT_RESET

    def control(self, bmRequestType, bRequest, wValue, wIndex, data):
        self.requests.append((S.state_name(self.state), bRequest))
        self.event("control", request=bRequest, value=wValue)
        if bmRequestType & 0x7F != 0x21:
            raise stall("not a DFU class request")
        if self.mode == "runtime":
            return self._runtime(bRequest, wValue, data)
        self._advance_busy()
        handler = {S.DNLOAD: self._dnload, S.UPLOAD: self._upload, S.GETSTATUS: self._getstatus,
                   S.CLRSTATUS: self._clrstatus, S.GETSTATE: self._getstate, S.ABORT: self._abort}.get(bRequest)
        if handler is None:
            raise self._error()
        return handler(wValue, data)

    def _runtime(self, bRequest, wValue, data):
        if bRequest == S.GETSTATUS:
            return bytes([S.STATUS_OK, 0, 0, 0, self.state, 0])
        if bRequest == S.DETACH:
            self.state = S.APP_DETACH
            if self.attributes & 8:                       # bitWillDetach: re-enumerates by itself
                self.mode, self.state = "dfu", S.DFU_IDLE
                self.reenumerate()
            return 0
        raise stall("runtime mode supports GETSTATUS and DETACH only")

    def _status(self, poll_ms=0) -> bytes:
        return bytes([self.status]) + poll_ms.to_bytes(3, "little") + bytes([self.state, 0])

    def _getstatus(self, wValue, length):
        if self.state == S.DNLOAD_SYNC and self.pending is not None:
            self._program()
            if self.state == S.DFU_ERROR:
                return self._status()
            self.state, self.busy_until = S.DNBUSY, time.monotonic() + self.poll_ms / 1000
            return self._status(self.poll_ms)
        if self.state == S.DNLOAD_SYNC:
            self.state = S.DNLOAD_IDLE
        elif self.state == S.DNBUSY:                       # stuck_busy: the block never finishes
            self.busy_until = time.monotonic() + self.poll_ms / 1000
            return self._status(self.poll_ms)
        elif self.state == S.MANIFEST_SYNC and self.pending == "manifest":
            self.pending = None
            self._manifest()
            self.state, self.busy_until = S.MANIFEST, time.monotonic() + self.poll_ms / 1000
            return self._status(self.poll_ms)
        elif self.state == S.MANIFEST_SYNC:
            self.state = S.DFU_IDLE
        return self._status()

    def _getstate(self, wValue, length):
        return bytes([self.state])

    def _clrstatus(self, wValue, data):
        if self.state not in (S.DFU_ERROR, S.DFU_IDLE):
            raise self._error()
        self.state, self.status = S.DFU_IDLE, S.STATUS_OK
        return 0

    def _abort(self, wValue, data):
        if self.state not in (S.DFU_IDLE, S.DNLOAD_SYNC, S.DNLOAD_IDLE, S.MANIFEST_SYNC, S.UPLOAD_IDLE):
            raise self._error()
        self.state, self.pending = S.DFU_IDLE, None
        return 0

    def _dnload(self, block, data):
        if self.state not in (S.DFU_IDLE, S.DNLOAD_IDLE) or len(data) > self.transfer_size_B:
            raise self._error()
        if not data:
            if self.state == S.DFU_IDLE:
                raise self._error()
            self.state, self.pending = S.MANIFEST_SYNC, "manifest"
            return 0
        if self.state == S.DFU_IDLE:
            self.start_download()
        self.accept_block(block, data)
        self.state = S.DNLOAD_SYNC
        return len(data)

    def start_download(self):
        self.flash[:] = b"\xff" * len(self.flash)      # the device erases when a download starts
        self.app_valid, self.written_B, self.next_block = False, 0, 0

    def accept_block(self, block, data):
        self.event("dnload", block=block)
        if block != self.next_block:
            self.status_error_at_block.setdefault(block, 0x09)      # errNOTDONE: blocks out of order
        self.pending = (block * self.transfer_size_B, bytes(data))
        self.next_block = block + 1

    def _program(self):
        offset, data = self.pending
        block = offset // self.transfer_size_B
        self.event("program", block=block)
        self.pending = None
        if block in self.status_error_at_block:
            self.state, self.status = S.DFU_ERROR, self.status_error_at_block.pop(block)
            return
        if offset + len(data) > len(self.flash):
            self.state, self.status = S.DFU_ERROR, 0x08               # errADDRESS
            return
        if block == self.corrupt_block:
            data = bytes([data[0] ^ 0x01]) + data[1:]
        self.flash[offset:offset + len(data)] = data
        self.written_B = max(self.written_B, offset + len(data))

    def _manifest(self):
        self.fw_len, self.app_valid = self.written_B, True

    def _upload(self, block, length):
        if not self.attributes & 2 or self.state not in (S.DFU_IDLE, S.UPLOAD_IDLE):
            raise self._error()
        offset = block * self.transfer_size_B
        chunk = bytes(self.flash[offset:min(offset + length, self.fw_len)])
        self.state = S.UPLOAD_IDLE if len(chunk) == length else S.DFU_IDLE
        return chunk

    @property
    def firmware(self) -> bytes:
        return bytes(self.flash[:self.fw_len])
