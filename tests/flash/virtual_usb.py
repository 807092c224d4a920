"""A pyusb backend (usb.backend.IBackend) whose devices are Python models, for testing the
flashing tools without hardware.

`VirtualUsbBackend(*models)` is passed to `usb.core.find(backend=...)`. Each model subclasses
`VirtualDevice`: it describes its descriptors, answers control/bulk transfers, and can lose
power or re-enumerate; handles opened before that fail with ENODEV as libusb's do. Faults are
injected through `VirtualDevice.faults`. The backend records every transfer's timeout so a test
can check the tool never passes an unbounded one, and keeps the handles that are open so a test
can check the tool closes them.
"""

import array
import errno
import types

import usb.backend
import usb.core

GET_DESCRIPTOR, DESC_STRING = 6, 3
LANGID_EN_US = 0x0409


def stall(what: str = "stall"):
    return usb.core.USBError(f"Pipe error ({what})", -9, errno.EPIPE)


def timeout():
    return usb.core.USBTimeoutError("Operation timed out", -7, errno.ETIMEDOUT)


def gone():
    return usb.core.USBError("No such device (it may have been disconnected)", -4, errno.ENODEV)


class Fault:
    """Raise `action` ("stall", "timeout", "disconnect", "power_cut") at the n-th (0-based)
    event named `event` whose details satisfy `where`. Fires once."""

    def __init__(self, event: str, action: str, nth: int = 0, where=None):
        self.event, self.action, self.nth, self.where = event, action, nth, where
        self.seen, self.fired = 0, False

    def hit(self, event: str, details: dict) -> bool:
        if self.fired or event != self.event or (self.where and not self.where(details)):
            return False
        self.seen += 1
        if self.seen - 1 == self.nth:
            self.fired = True
            return True
        return False


class VirtualDevice:
    """Base of the device models. Subclasses implement descriptors(), control(), and optionally
    bulk_write()/bulk_read()/usb_reset()/boot()."""

    def __init__(self, serial: str):
        self.serial = serial
        self.powered, self.generation = True, 0
        self.faults: list[Fault] = []
        self.address = 0

    # -- lifecycle -----------------------------------------------------------------------
    def reenumerate(self):
        self.generation += 1

    def power_cut(self):
        self.powered = False
        self.generation += 1

    def power_on(self):
        self.powered = True
        self.generation += 1
        self.boot()

    def boot(self):
        """Volatile state after power-on (override)."""

    def event(self, name: str, **details):
        """Models call this at interesting points; an armed Fault fires here."""
        for f in self.faults:
            if f.hit(name, details):
                if f.action == "stall":
                    self.on_stall()
                    raise stall(name)
                if f.action == "timeout":
                    raise timeout()
                if f.action in ("disconnect", "power_cut"):
                    self.on_power_cut(name, details, partial=f.action == "power_cut")
                    self.power_cut()
                    raise gone()
                raise ValueError(f"unknown fault action {f.action}")

    def on_stall(self):
        """State change when the device stalls a request (override)."""

    def on_power_cut(self, event: str, details: dict, partial: bool):
        """Leave non-volatile state as a cut at this point would (override)."""

    # -- to implement ------------------------------------------------------------------------
    def descriptors(self) -> dict:
        raise NotImplementedError

    def strings(self) -> dict:
        raise NotImplementedError

    def control(self, bmRequestType, bRequest, wValue, wIndex, data: bytes | int):
        raise NotImplementedError

    def bulk_write(self, ep: int, data: bytes) -> int:
        raise stall("no bulk endpoint")

    def bulk_read(self, ep: int, size: int) -> bytes:
        raise stall("no bulk endpoint")

    def usb_reset(self):
        """A USB bus reset (override); most devices re-enumerate."""
        self.reenumerate()


# ---- descriptor objects as pyusb expects them --------------------------------------------------

def device_descriptor(vid, pid, bcd_device, i_manufacturer=1, i_product=2, i_serial=3, bcd_usb=0x0200,
                      configurations=()):
    return dict(bLength=18, bDescriptorType=1, bcdUSB=bcd_usb, bDeviceClass=0, bDeviceSubClass=0,
                bDeviceProtocol=0, bMaxPacketSize0=64, idVendor=vid, idProduct=pid, bcdDevice=bcd_device,
                iManufacturer=i_manufacturer, iProduct=i_product, iSerialNumber=i_serial,
                bNumConfigurations=len(configurations), configurations=list(configurations))


def configuration(interfaces, value=1):
    """interfaces: a list (per interface number) of lists of alternate settings."""
    return dict(bLength=9, bDescriptorType=2, wTotalLength=0, bNumInterfaces=len(interfaces),
                bConfigurationValue=value, iConfiguration=0, bmAttributes=0x80, bMaxPower=250,
                extra_descriptors=[], interfaces=interfaces)


def interface(number, alt, cls, subclass, protocol, i_interface=0, extra=b"", endpoints=()):
    return dict(bLength=9, bDescriptorType=4, bInterfaceNumber=number, bAlternateSetting=alt,
                bNumEndpoints=len(endpoints), bInterfaceClass=cls, bInterfaceSubClass=subclass,
                bInterfaceProtocol=protocol, iInterface=i_interface, extra_descriptors=list(extra),
                endpoints=list(endpoints))


def bulk_endpoint(address, max_packet=512):
    return dict(bLength=7, bDescriptorType=5, bEndpointAddress=address, bmAttributes=2,
                wMaxPacketSize=max_packet, bInterval=0, bRefresh=0, bSynchAddress=0, extra_descriptors=[])


def _ns(d: dict, drop=()):
    return types.SimpleNamespace(**{k: v for k, v in d.items() if k not in drop})


# ---- the backend ---------------------------------------------------------------------------------

class _DevId:
    """What enumerate_devices yields: a model plus a snapshot of its descriptors at that moment."""

    def __init__(self, model: VirtualDevice, bus_address: int):
        self.model, self.generation = model, model.generation
        self.tree, self.strings = model.descriptors(), model.strings()
        self.bus_address = bus_address


class _Handle:
    def __init__(self, devid: _DevId):
        self.devid = devid

    @property
    def model(self) -> VirtualDevice:
        m = self.devid.model
        if not m.powered or m.generation != self.devid.generation:
            raise gone()
        return m


class VirtualUsbBackend(usb.backend.IBackend):
    def __init__(self, *models: VirtualDevice):
        super().__init__()
        self.models = list(models)
        self.timeouts_ms: list = []      # every transfer's timeout, for the "always bounded" check
        self.transfers = 0
        self.open_handles: set = set()   # opened and not yet closed

    def enumerate_devices(self):
        for i, m in enumerate(self.models):
            if m.powered:
                yield _DevId(m, 10 * (i + 1) + m.generation % 10)

    def get_device_descriptor(self, dev):
        d = _ns(dev.tree, drop=("configurations",))
        d.bus, d.address, d.port_number, d.port_numbers, d.speed = 1, dev.bus_address, None, None, None
        return d

    def get_configuration_descriptor(self, dev, config):
        return _ns(dev.tree["configurations"][config], drop=("interfaces",))

    def get_interface_descriptor(self, dev, intf, alt, config):
        alts = dev.tree["configurations"][config]["interfaces"][intf]
        if alt >= len(alts):
            raise IndexError("no such alternate setting")
        return _ns(alts[alt], drop=("endpoints",))

    def get_endpoint_descriptor(self, dev, ep, intf, alt, config):
        return _ns(dev.tree["configurations"][config]["interfaces"][intf][alt]["endpoints"][ep])

    def open_device(self, dev):
        h = _Handle(dev)
        h.model    # raises if the device is already gone
        self.open_handles.add(h)
        return h

    def close_device(self, dev_handle):
        self.open_handles.discard(dev_handle)

    def set_configuration(self, dev_handle, config_value):
        dev_handle.model

    def get_configuration(self, dev_handle):
        dev_handle.model
        return 1

    def set_interface_altsetting(self, dev_handle, intf, altsetting):
        m = dev_handle.model
        if hasattr(m, "set_alt"):
            m.set_alt(intf, altsetting)

    def claim_interface(self, dev_handle, intf):
        dev_handle.model

    def release_interface(self, dev_handle, intf):
        pass

    def is_kernel_driver_active(self, dev_handle, intf):
        dev_handle.model
        return False

    def detach_kernel_driver(self, dev_handle, intf):
        dev_handle.model

    def reset_device(self, dev_handle):
        """Like libusb_reset_device: NOT_FOUND (ENOENT) when the device came back as another one."""
        model = dev_handle.model
        before = model.descriptors()
        model.usb_reset()
        if not model.powered or model.descriptors() != before:
            raise usb.core.USBError("Entity not found (re-enumeration required)", -5, errno.ENOENT)
        dev_handle.devid.generation = model.generation      # same device, same handle

    def clear_halt(self, dev_handle, ep):
        dev_handle.model

    def _record(self, timeout):
        self.transfers += 1
        self.timeouts_ms.append(timeout)

    def ctrl_transfer(self, dev_handle, bmRequestType, bRequest, wValue, wIndex, data, timeout):
        self._record(timeout)
        m = dev_handle.model
        is_in = bool(bmRequestType & 0x80)
        if bmRequestType == 0x80 and bRequest == GET_DESCRIPTOR and wValue >> 8 == DESC_STRING:
            reply = self._string(dev_handle.devid, wValue & 0xFF)
        else:
            reply = m.control(bmRequestType, bRequest, wValue, wIndex, len(data) if is_in else bytes(data))
        if not is_in:
            return reply
        n = min(len(reply), len(data))
        data[:n] = array.array("B", reply[:n])
        return n

    @staticmethod
    def _string(devid: _DevId, index: int) -> bytes:
        if index == 0:
            return bytes([4, DESC_STRING]) + LANGID_EN_US.to_bytes(2, "little")
        text = devid.strings.get(index)
        if text is None:
            raise stall("no such string")
        raw = text.encode("utf-16-le")
        return bytes([2 + len(raw), DESC_STRING]) + raw

    def bulk_write(self, dev_handle, ep, intf, data, timeout):
        self._record(timeout)
        return dev_handle.model.bulk_write(ep, bytes(data))

    def bulk_read(self, dev_handle, ep, intf, buff, timeout):
        self._record(timeout)
        reply = dev_handle.model.bulk_read(ep, len(buff))
        buff[:len(reply)] = array.array("B", reply)
        return len(reply)
