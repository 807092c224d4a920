"""The DFU 1.1 class protocol on one interface: requests, status polling, recovery to dfuIDLE,
block download with manifestation, and upload.

Every request has a timeout (UsbLink); every busy wait honours bwPollTimeout and is bounded by
busy_deadline_s, so a device stuck in dfuDNBUSY gives TransferTimeout instead of a hang. A non-OK
status is cleared (CLRSTATUS) before DfuStatusError is raised, so the device is back in dfuIDLE.
"""

import time

from . import dfu_spec as S
from .errors import DeviceDisconnected, DfuStatusError, FlashError, TransferTimeout, UsbTransferError
from .usb_io import UsbLink

_MAX_RECOVERY_STEPS = 8


class DfuInterface:
    def __init__(self, link: UsbLink, interface: int, desc: S.FunctionalDescriptor,
                 busy_deadline_s: float = 10.0, sleep=time.sleep):
        self.link, self.interface, self.desc = link, interface, desc
        self.busy_deadline_s, self.sleep = busy_deadline_s, sleep

    # ---- the seven class requests ----------------------------------------------------------
    def detach(self, timeout_ms: int = 1000):
        self.link.ctrl_out(S.REQ_OUT, S.DETACH, timeout_ms, self.interface, b"", "DFU_DETACH")

    def dnload(self, block: int, data: bytes):
        self.link.ctrl_out(S.REQ_OUT, S.DNLOAD, block & 0xFFFF, self.interface, data, f"DFU_DNLOAD block {block}")

    def upload(self, block: int, length_B: int) -> bytes:
        return self.link.ctrl_in(S.REQ_IN, S.UPLOAD, block & 0xFFFF, self.interface, length_B,
                                 f"DFU_UPLOAD block {block}")

    def get_status(self) -> S.DfuStatus:
        return S.DfuStatus.parse(self.link.ctrl_in(S.REQ_IN, S.GETSTATUS, 0, self.interface, 6, "DFU_GETSTATUS"))

    def clear_status(self):
        self.link.ctrl_out(S.REQ_OUT, S.CLRSTATUS, 0, self.interface, b"", "DFU_CLRSTATUS")

    def abort(self):
        self.link.ctrl_out(S.REQ_OUT, S.ABORT, 0, self.interface, b"", "DFU_ABORT")

    # ---- state handling ---------------------------------------------------------------------
    def poll(self, what: str, until: tuple) -> S.DfuStatus:
        """GETSTATUS (sleeping bwPollTimeout between) until the state is in `until` or an error.
        A non-OK status is cleared and raised as DfuStatusError."""
        deadline = time.monotonic() + self.busy_deadline_s
        while True:
            status = self.get_status()
            if status.status != S.STATUS_OK or status.state == S.DFU_ERROR:
                self._raise_status(status, what)
            if status.state in until:
                return status
            if time.monotonic() + status.poll_timeout_ms / 1000 > deadline:
                raise TransferTimeout(f"{what}: the device stayed in {S.state_name(status.state)} for more than "
                                      f"{self.busy_deadline_s:g} s; power-cycle it and retry "
                                      f"(it stays in DFU mode until a good image is manifested)")
            self.sleep(status.poll_timeout_ms / 1000)

    def _raise_status(self, status: S.DfuStatus, what: str):
        try:
            self.clear_status()
            cleared = "the error was cleared"
        except UsbTransferError:
            cleared = "clearing it failed; the next run clears it first"    # ensure_idle() does
        raise DfuStatusError(f"{what}: the device reported {S.status_text(status.status)} "
                             f"(state {S.state_name(status.state)}); {cleared}", status.status, status.state)

    def ensure_idle(self) -> S.DfuStatus:
        """Bring the interface to dfuIDLE from any DFU-mode state (the dfu-util start sequence)."""
        status = None
        for _ in range(_MAX_RECOVERY_STEPS):
            try:
                status = self.get_status()
            except UsbTransferError as e:
                if isinstance(e, DeviceDisconnected):
                    raise
                self._clear_quietly()   # a stalled GETSTATUS puts a DFU device in dfuERROR
                continue
            if status.state == S.DFU_IDLE and status.status == S.STATUS_OK:
                return status
            if status.state in (S.DFU_ERROR, S.DFU_IDLE):
                self.clear_status()
            elif status.state in (S.DNLOAD_IDLE, S.UPLOAD_IDLE, S.DNLOAD_SYNC, S.MANIFEST_SYNC):
                self.abort()
            elif status.state in (S.DNBUSY, S.MANIFEST):
                self.sleep(status.poll_timeout_ms / 1000)
            elif status.state == S.MANIFEST_WAIT_RESET:
                raise FlashError("the device waits for a USB reset after manifestation; reset or re-plug it")
            else:
                raise FlashError(f"the interface is in {S.state_name(status.state)}, not DFU mode: detach first")
        last = S.state_name(status.state) if status else "no status"
        raise FlashError(f"could not bring the device to dfuIDLE ({last} after {_MAX_RECOVERY_STEPS} tries); "
                         f"power-cycle it and retry")

    def _clear_quietly(self):
        try:
            self.clear_status()
        except UsbTransferError as e:
            if isinstance(e, DeviceDisconnected):
                raise

    # ---- transfers --------------------------------------------------------------------------
    def download(self, payload: bytes, progress=None):
        """Send the payload in wTransferSize blocks, each followed by the GETSTATUS handshake."""
        size = self.desc.transfer_size_B
        n_blocks = (len(payload) + size - 1) // size
        for i in range(n_blocks):
            chunk = payload[i * size:(i + 1) * size]
            where = f"block {i + 1}/{n_blocks} ({i * size}..{i * size + len(chunk)} B)"
            try:
                self.dnload(i, chunk)
                self.poll(f"download {where}", until=(S.DNLOAD_IDLE,))
            except FlashError as e:
                if where not in e.args[0]:
                    e.args = (f"{e.args[0]} [at {where}]",)
                raise
            if progress:
                progress.update(len(chunk))

    def manifest(self) -> S.DfuStatus:
        """The zero-length DNLOAD that ends the image, then polling through manifestation. Returns
        the final status: dfuIDLE (tolerant devices) or dfuMANIFEST-WAIT-RESET."""
        self.dnload(0, b"")
        try:
            return self.poll("manifestation", until=(S.DFU_IDLE, S.MANIFEST_WAIT_RESET))
        except DeviceDisconnected:
            # a non-tolerant device may reset itself straight after manifesting
            return S.DfuStatus(S.STATUS_OK, 0, S.MANIFEST_WAIT_RESET, 0)

    def read(self, length_B: int, progress=None, first_block: int = 0) -> bytes:
        """Upload up to length_B bytes from dfuIDLE; a short frame ends the upload early."""
        size, out, block = self.desc.transfer_size_B, bytearray(), first_block
        while len(out) < length_B:
            chunk = self.upload(block, size)
            if progress:
                progress.update(min(len(chunk), length_B - len(out)))
            out += chunk
            block += 1
            if len(chunk) < size:
                return bytes(out[:length_B])    # the short frame returned the device to dfuIDLE
        self.abort()                             # we stopped in dfuUPLOAD-IDLE
        return bytes(out[:length_B])
