"""Typed errors of the flashing tools, each with the process exit code the CLI returns for it.

Every message says what happened and what to do next. The exit codes are part of the CLI's
contract (documented in `tools/flash.py --help`); keep EXIT_CODES in step with the classes.
"""

from hal.errors import DeviceError, DeviceTimeout, ImageError, KernelosError


class FlashError(KernelosError):
    """Base of every flashing failure. `exit_code` is what tools/flash.py exits with."""
    exit_code = 10
    #: True when the device was left untouched or restored (safe to retry as is).
    device_intact = True


class NoDevice(FlashError, DeviceError):
    """No supported device matched, or several did and the selection is ambiguous."""
    exit_code = 3


class FirmwareFileError(FlashError, ImageError):
    """The firmware file failed a check (suffix, CRC, header, size). Nothing was written."""
    exit_code = 4


class DeviceMismatch(FlashError, DeviceError):
    """The file is for another device (VID/PID/bcdDevice, flash size, device family). Nothing written."""
    exit_code = 5


class SafetyRefusal(FlashError):
    """The operation can brick the device and the explicit opt-in flag was not given."""
    exit_code = 6


class UsbTransferError(FlashError, DeviceError):
    """A USB transfer stalled or failed (not a timeout, not a disconnect)."""
    exit_code = 7


class Stall(UsbTransferError):
    """The device answered a request with STALL (EPIPE)."""


class TransferTimeout(UsbTransferError, DeviceTimeout):
    """A USB transfer, or the device's busy state, outlasted its timeout."""
    exit_code = 7


class DeviceDisconnected(UsbTransferError):
    """The device went away (unplugged, reset, power loss) during an operation."""
    exit_code = 8


class DfuStatusError(FlashError, DeviceError):
    """The DFU device reported a status other than OK (see dfu_spec.STATUS_TEXT)."""
    exit_code = 9

    def __init__(self, message: str, status: int, state: int):
        super().__init__(message)
        self.status, self.state = status, state


class VerifyError(FlashError, DeviceError):
    """Reading the firmware back did not give the bytes written."""
    exit_code = 11


class RecoveryFailed(FlashError, DeviceError):
    """A write failed and the automatic recovery failed too: follow the message to recover."""
    exit_code = 12
    device_intact = False


EXIT_CODES = {
    0: "success (or, with --dry-run, every check passed and nothing was written)",
    1: "unexpected internal error (a bug: please report the traceback)",
    2: "bad command line (argparse usage error)",
    NoDevice.exit_code: "no matching device, or more than one: select with --serial / --vid-pid",
    FirmwareFileError.exit_code: "the firmware file failed its checks (suffix, CRC, header); nothing was written",
    DeviceMismatch.exit_code: "the file is for another device (VID/PID/bcdDevice, size, family); nothing was written",
    SafetyRefusal.exit_code: "refused: the operation can brick the device and the opt-in flag is missing",
    UsbTransferError.exit_code: "a USB transfer stalled or timed out; the device was returned to an idle state",
    DeviceDisconnected.exit_code: "the device disconnected (unplug, reset, power loss); see the message to resume",
    DfuStatusError.exit_code: "the DFU device reported an error status (named in the message); it was cleared",
    FlashError.exit_code: "other flashing failure (message says what to do)",
    VerifyError.exit_code: "read-back verification failed (DFU: download again; bridge: the backup was restored)",
    RecoveryFailed.exit_code: "a write failed and automatic recovery failed: run the restore command printed",
}
