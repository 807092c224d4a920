"""USB DFU 1.1 (and ST DfuSe 1.1a) constants: requests, states, status codes, functional descriptor.

One table per concept, values from the DFU 1.1 specification as dfu-util uses them
(shared/design/amd-usb-firmware.md F.1).
"""

import struct
from dataclasses import dataclass

from .errors import FlashError

# bmRequestType for class requests to an interface
REQ_OUT, REQ_IN = 0x21, 0xA1

DETACH, DNLOAD, UPLOAD, GETSTATUS, CLRSTATUS, GETSTATE, ABORT = range(7)

DFU_CLASS, DFU_SUBCLASS = 0xFE, 0x01
PROTOCOL_RUNTIME, PROTOCOL_DFU_MODE = 0x01, 0x02
FUNCTIONAL_DESCRIPTOR_TYPE = 0x21
BCD_DFU_1_1, BCD_DFUSE = 0x0110, 0x011A

APP_IDLE, APP_DETACH, DFU_IDLE, DNLOAD_SYNC, DNBUSY, DNLOAD_IDLE, MANIFEST_SYNC, MANIFEST, \
    MANIFEST_WAIT_RESET, UPLOAD_IDLE, DFU_ERROR = range(11)

STATE_NAMES = ["appIDLE", "appDETACH", "dfuIDLE", "dfuDNLOAD-SYNC", "dfuDNBUSY", "dfuDNLOAD-IDLE",
               "dfuMANIFEST-SYNC", "dfuMANIFEST", "dfuMANIFEST-WAIT-RESET", "dfuUPLOAD-IDLE", "dfuERROR"]

STATUS_OK = 0
# status code -> (name, what it means and what to do)
STATUS_TEXT = {
    0x00: ("OK", "no error"),
    0x01: ("errTARGET", "the file is not for this device (wrong target): check the device and the file"),
    0x02: ("errFILE", "the device rejected the file as damaged or for another device: rebuild or re-download it"),
    0x03: ("errWRITE", "the device could not write its memory: retry; if it persists the flash may be worn or locked"),
    0x04: ("errERASE", "memory erase failed: retry; if it persists the flash may be protected or worn"),
    0x05: ("errCHECK_ERASED", "memory erase check failed: retry the download"),
    0x06: ("errPROG", "the program-memory function failed: retry the download"),
    0x07: ("errVERIFY", "the device's own verify of the programmed memory failed: retry the download"),
    0x08: ("errADDRESS", "an address is outside the device's memory: the file does not fit this device"),
    0x09: ("errNOTDONE", "the download ended but the device thinks the firmware is incomplete: download again"),
    0x0A: ("errFIRMWARE", "the device's firmware is corrupt and it cannot leave DFU mode: download a good image"),
    0x0B: ("errVENDOR", "vendor-specific error (see the device's status string)"),
    0x0C: ("errUSBR", "the device saw an unexpected USB reset: download again"),
    0x0D: ("errPOR", "the device saw an unexpected power-on reset: download again"),
    0x0E: ("errUNKNOWN", "something went wrong the device cannot name: download again"),
    0x0F: ("errSTALLEDPKT", "the device stalled an unexpected request: the host and device disagreed on the state"),
}


def state_name(state: int) -> str:
    return STATE_NAMES[state] if 0 <= state < len(STATE_NAMES) else f"state {state}"


def status_text(status: int) -> str:
    name, meaning = STATUS_TEXT.get(status, (f"status 0x{status:02X}", "not a DFU 1.1 status code"))
    return f"{name}: {meaning}"


@dataclass(frozen=True)
class DfuStatus:
    status: int
    poll_timeout_ms: int
    state: int
    string_index: int

    @classmethod
    def parse(cls, data: bytes) -> "DfuStatus":
        if len(data) != 6:
            raise FlashError(f"DFU GETSTATUS returned {len(data)} bytes instead of 6: not a DFU device?")
        return cls(data[0], data[1] | data[2] << 8 | data[3] << 16, data[4], data[5])


@dataclass(frozen=True)
class FunctionalDescriptor:
    can_download: bool
    can_upload: bool
    manifestation_tolerant: bool
    will_detach: bool
    detach_timeout_ms: int
    transfer_size_B: int
    bcd_dfu: int

    @property
    def is_dfuse(self) -> bool:
        return self.bcd_dfu == BCD_DFUSE

    @classmethod
    def find(cls, extra: bytes) -> "FunctionalDescriptor | None":
        """Parse the functional descriptor out of an interface's extra descriptor bytes."""
        i = 0
        while i + 2 <= len(extra):
            length, dtype = extra[i], extra[i + 1]
            if length < 2:
                break
            if dtype == FUNCTIONAL_DESCRIPTOR_TYPE and length >= 7 and i + length <= len(extra):
                return cls.parse(bytes(extra[i:i + length]))
            i += length
        return None

    @classmethod
    def parse(cls, raw: bytes) -> "FunctionalDescriptor":
        attributes, detach_ms, transfer_B = struct.unpack_from("<BHH", raw, 2)
        bcd = struct.unpack_from("<H", raw, 7)[0] if len(raw) >= 9 else 0x0100   # 7 bytes = DFU 1.0
        return cls(bool(attributes & 1), bool(attributes & 2), bool(attributes & 4), bool(attributes & 8),
                   detach_ms, transfer_B, bcd)

    def as_dict(self) -> dict:
        return {"can_download": self.can_download, "can_upload": self.can_upload,
                "manifestation_tolerant": self.manifestation_tolerant, "will_detach": self.will_detach,
                "detach_timeout_ms": self.detach_timeout_ms, "transfer_size_B": self.transfer_size_B,
                "bcd_dfu": f"0x{self.bcd_dfu:04X}"}
