"""Which USB devices speak a protocol we flash, in which state, and picking exactly one of them.

Only descriptors are read here (cached by the OS/backend) plus string descriptors, so `list`
never changes a device's state.
"""

import time
from dataclasses import dataclass, field

import usb.core

from . import dfu_spec as S
from .errors import NoDevice
from .usb_io import UsbLink, find_devices, interfaces

# ASM2464-family USB-to-PCIe bridges (shared/design/amd-usb-firmware.md E.1)
BRIDGE_CUSTOM_IDS = {(0xADD1, 0x0001), (0x3801, 0x0001)}   # tinygrad's custom firmware
BRIDGE_STOCK_IDS = {(0x174C, 0x2464), (0x174C, 0x2463)}    # ASMedia stock firmware / ROM bootloader
MASS_STORAGE, SCSI_TRANSPARENT, BULK_ONLY = 0x08, 0x06, 0x50


@dataclass
class Found:
    dev: object
    protocol: str            # "dfu", "dfuse", "asm2464"
    state: str               # "runtime", "dfu-mode", "custom-firmware", "bootloader"
    vid: int
    pid: int
    bcd_device: int
    serial: str | None
    product: str | None
    interface: int | None = None
    desc: S.FunctionalDescriptor | None = None
    alt_names: dict = field(default_factory=dict)   # DfuSe: {alt: memory-map string}

    @property
    def version(self) -> str:
        return f"bcdDevice {self.bcd_device >> 8:x}.{self.bcd_device & 0xFF:02x}" + \
            (f", {self.product}" if self.product else "")

    @property
    def location(self) -> str:
        bus, addr = getattr(self.dev, "bus", None), getattr(self.dev, "address", None)
        return f"{bus}:{addr}" if bus is not None else "?"

    def as_dict(self) -> dict:
        d = {"vid_pid": f"{self.vid:04x}:{self.pid:04x}", "serial": self.serial, "protocol": self.protocol,
             "state": self.state, "version": self.version, "product": self.product, "location": self.location}
        if self.desc:
            d["dfu"] = self.desc.as_dict()
        if self.alt_names:
            d["memory"] = {str(a): n for a, n in sorted(self.alt_names.items())}
        return d


def classify(dev) -> Found | None:
    """What dev is, from its descriptors and strings; the handle reading them is closed again."""
    with UsbLink(dev) as link:
        return _classify(dev, link)


def _classify(dev, link: UsbLink) -> Found | None:
    ids = (dev.idVendor, dev.idProduct)
    try:
        dfu_intfs = [i for _c, i in interfaces(dev)
                     if i.bInterfaceClass == S.DFU_CLASS and i.bInterfaceSubClass == S.DFU_SUBCLASS]
        msc = any(i.bInterfaceClass == MASS_STORAGE and i.bInterfaceProtocol == BULK_ONLY for _c, i in interfaces(dev))
    except (usb.core.USBError, ValueError, IndexError):    # unreadable configuration: not ours to judge
        return None
    base = dict(vid=ids[0], pid=ids[1], bcd_device=dev.bcdDevice, serial=link.string(dev.iSerialNumber),
                product=link.string(dev.iProduct))
    if ids in BRIDGE_CUSTOM_IDS:
        return Found(dev, "asm2464", "custom-firmware", interface=0, **base)
    if ids in BRIDGE_STOCK_IDS and msc:
        return Found(dev, "asm2464", "bootloader", interface=0, **base)
    if not dfu_intfs:
        return None
    first = dfu_intfs[0]
    desc = next((d for d in (S.FunctionalDescriptor.find(bytes(i.extra_descriptors)) for i in dfu_intfs) if d), None)
    if desc is None:
        return None
    state = "dfu-mode" if first.bInterfaceProtocol == S.PROTOCOL_DFU_MODE else "runtime"
    found = Found(dev, "dfuse" if desc.is_dfuse else "dfu", state, interface=first.bInterfaceNumber, desc=desc, **base)
    if desc.is_dfuse and state == "dfu-mode":
        found.alt_names = {i.bAlternateSetting: link.string(i.iInterface) for i in dfu_intfs}
    return found


def scan(backend=None) -> list:
    return [f for f in (classify(d) for d in find_devices(backend)) if f is not None]


def select(found: list, protocols: tuple, serial: str | None = None, vid_pid: tuple | None = None) -> Found:
    """Exactly one device of the given protocols matching the filters, else NoDevice saying why."""
    want = [f for f in found if f.protocol in protocols]
    if serial is not None:
        want = [f for f in want if f.serial == serial]
    if vid_pid is not None:
        want = [f for f in want if (f.vid, f.pid) == tuple(vid_pid)]
    kinds = "/".join(protocols)
    if not want:
        seen = ", ".join(f"{f.vid:04x}:{f.pid:04x} {f.protocol} {f.state}" for f in found) or "none"
        wanted = f"{vid_pid[0]:04x}:{vid_pid[1]:04x}" if vid_pid else None
        raise NoDevice(f"no {kinds} device matches (serial={serial}, vid:pid={wanted}); supported devices "
                       f"seen: {seen}. Check the cable, permissions (udev rules) and `flash.py list`")
    if len(want) > 1:
        listed = ", ".join(f"{f.vid:04x}:{f.pid:04x} serial={f.serial}" for f in want)
        raise NoDevice(f"{len(want)} {kinds} devices match ({listed}): pick one with --serial or --vid-pid")
    return want[0]


def wait_for(backend, predicate, timeout_s: float, what: str, poll_s: float = 0.05) -> Found:
    """Re-scan until exactly one device satisfies predicate (after a detach, reset or power cycle)."""
    deadline = time.monotonic() + timeout_s
    while True:
        hits = [f for f in scan(backend) if predicate(f)]
        if len(hits) == 1:
            return hits[0]
        if time.monotonic() > deadline:
            raise NoDevice(f"{what}: {len(hits)} matching devices after {timeout_s:g} s (1 expected); "
                           f"re-plug the device and retry")
        time.sleep(poll_s)
