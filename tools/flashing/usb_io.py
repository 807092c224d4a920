"""pyusb access with a timeout on every transfer and USB failures turned into typed errors.

`UsbLink` wraps one `usb.core.Device`; every control and bulk transfer passes an explicit
timeout_ms and maps pyusb's errors: a timeout -> TransferTimeout, ENODEV/EIO/no-device ->
DeviceDisconnected, EPIPE (STALL) and the rest -> UsbTransferError. A link is a context manager:
leaving the block releases the claimed interfaces and closes the handle, on errors too. `find_devices` takes an
optional pyusb backend so the tests can substitute their virtual devices.
"""

import errno

import usb.core
import usb.util

from .errors import DeviceDisconnected, NoDevice, Stall, TransferTimeout, UsbTransferError

DEFAULT_TIMEOUT_MS = 2000
# libusb NO_DEVICE -> ENODEV; NOT_FOUND (ENOENT) is what libusb_reset_device returns when the
# device re-enumerated with other descriptors (a DFU mode switch) or went away
_GONE_ERRNOS = {errno.ENODEV, errno.ENOENT, errno.ENXIO, errno.ESHUTDOWN, errno.EIO}

def translate(exc: Exception, what: str) -> Exception:
    """The typed error for a pyusb exception raised while doing `what`."""
    if isinstance(exc, usb.core.USBTimeoutError):
        return TransferTimeout(f"{what}: no answer within the timeout; check the cable and the device, then retry")
    if isinstance(exc, usb.core.USBError):
        if exc.errno in _GONE_ERRNOS:
            return DeviceDisconnected(f"{what}: the device disconnected ({exc.strerror})")
        if exc.errno == errno.EPIPE:
            return Stall(f"{what}: the device stalled the request")
        return UsbTransferError(f"{what}: USB error {exc.errno} ({exc.strerror})")
    return exc


class UsbLink:
    def __init__(self, dev: usb.core.Device, timeout_ms: int = DEFAULT_TIMEOUT_MS):
        self.dev, self.timeout_ms = dev, int(timeout_ms)
        dev.default_timeout = self.timeout_ms   # also bounds pyusb's own descriptor requests

    def ctrl_in(self, bmRequestType: int, bRequest: int, wValue: int, wIndex: int, length: int,
                what: str, timeout_ms: int | None = None) -> bytes:
        try:
            data = self.dev.ctrl_transfer(bmRequestType, bRequest, wValue, wIndex, length,
                                          timeout=timeout_ms or self.timeout_ms)
        except usb.core.USBError as e:
            raise translate(e, what) from None
        return bytes(data)

    def ctrl_out(self, bmRequestType: int, bRequest: int, wValue: int, wIndex: int, data: bytes,
                 what: str, timeout_ms: int | None = None) -> int:
        try:
            return self.dev.ctrl_transfer(bmRequestType, bRequest, wValue, wIndex, bytes(data),
                                          timeout=timeout_ms or self.timeout_ms)
        except usb.core.USBError as e:
            raise translate(e, what) from None

    def bulk_out(self, ep: int, data: bytes, what: str, timeout_ms: int | None = None) -> int:
        try:
            n = self.dev.write(ep, bytes(data), timeout=timeout_ms or self.timeout_ms)
        except usb.core.USBError as e:
            raise translate(e, what) from None
        if n != len(data):
            raise UsbTransferError(f"{what}: short bulk write ({n}/{len(data)} B)")
        return n

    def bulk_in(self, ep: int, length: int, what: str, timeout_ms: int | None = None) -> bytes:
        try:
            return bytes(self.dev.read(ep, length, timeout=timeout_ms or self.timeout_ms))
        except usb.core.USBError as e:
            raise translate(e, what) from None

    def call(self, what: str, fn, *args):
        """Run another pyusb call (set_configuration, reset, ...) with the same error mapping."""
        try:
            return fn(*args)
        except usb.core.USBError as e:
            raise translate(e, what) from None

    def string(self, index: int) -> str | None:
        """A string descriptor, or None when absent or unreadable (permissions, no langid)."""
        if not index:
            return None
        try:
            return usb.util.get_string(self.dev, index)
        except (usb.core.USBError, ValueError):
            return None

    def close(self):
        """Release claimed interfaces and close the handle (pyusb reopens it if used again). Best
        effort: a device that is gone has nothing left to release."""
        try:
            usb.util.dispose_resources(self.dev)
        except usb.core.USBError:
            pass

    def __enter__(self) -> "UsbLink":
        return self

    def __exit__(self, *exc):
        self.close()


def find_devices(backend=None, match=None) -> list:
    """All pyusb devices for which match(dev) is true (all devices when match is None)."""
    try:
        found = usb.core.find(find_all=True, backend=backend)
        return [d for d in found if match is None or match(d)]
    except usb.core.NoBackendError:
        raise NoDevice("no USB backend: install libusb-1.0 (apt-get install libusb-1.0-0)") from None


def interfaces(dev):
    """(configuration, interface) pairs of every alternate setting, without touching the device."""
    for cfg in dev:
        for intf in cfg:
            yield cfg, intf
