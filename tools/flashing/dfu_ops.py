"""DFU and DfuSe operations as the CLI runs them: detach into DFU mode, download with checks,
retries and read-back verification, upload (backup).

Order of a download: parse and check the file (suffix CRC, IDs, DfuSe layout against the memory
map) -> enter DFU mode -> recheck IDs -> dfuIDLE -> download (on a stall, timeout or error status:
back to dfuIDLE and retry) -> manifest -> read back and compare. A DFU device keeps its
bootloader, so any failure, power loss included, is recovered by running the download again.
"""

import contextlib
import time

from . import dfu_file, dfu_spec as S
from .dfu import DfuInterface
from .dfuse import DfuseInterface, parse_memory_map, plan
from .discovery import Found, wait_for
from .errors import (DeviceDisconnected, DeviceMismatch, FirmwareFileError, FlashError, UsbTransferError,
                     VerifyError, DfuStatusError)
from .options import FlashOptions
from .usb_io import UsbLink

_RETRYABLE = (DfuStatusError, UsbTransferError)


def _same_device(found: Found):
    """Predicate for re-finding one device after it re-enumerates (by serial when it has one)."""
    if found.serial:
        return lambda f: f.serial == found.serial and f.protocol in ("dfu", "dfuse")
    return lambda f: f.protocol in ("dfu", "dfuse")


def open_interface(found: Found, opts: FlashOptions) -> DfuInterface:
    """The device's DFU interface; the caller closes it (`with iface.link:`)."""
    link = UsbLink(found.dev, opts.timeout_ms)
    cls = DfuseInterface if found.desc.is_dfuse else DfuInterface
    return cls(link, found.interface, found.desc, busy_deadline_s=opts.busy_deadline_s)


def enter_dfu_mode(found: Found, opts: FlashOptions) -> Found:
    """DETACH a runtime-mode device (then reset it unless it detaches itself) and re-find it in DFU mode."""
    if found.state == "dfu-mode":
        return found
    iface = open_interface(found, opts)
    with iface.link:
        try:
            status = iface.get_status()
            state = status.state
        except UsbTransferError as e:
            if isinstance(e, DeviceDisconnected):
                raise
            state = S.APP_IDLE          # dfu-util: a stalled GETSTATUS in runtime means appIDLE
        if state not in (S.APP_IDLE, S.APP_DETACH):
            raise FlashError(f"runtime DFU interface is in {S.state_name(state)}, expected appIDLE")
        iface.detach(min(1000, found.desc.detach_timeout_ms or 1000))
        if not found.desc.will_detach:
            try:
                iface.link.call("USB reset after DFU_DETACH", found.dev.reset)
            except DeviceDisconnected:
                pass                    # expected: the device re-enumerates in DFU mode
    return wait_for(opts.backend, lambda f: _same_device(found)(f) and f.state == "dfu-mode",
                    opts.reenumerate_timeout_s, "waiting for the device in DFU mode after DFU_DETACH")


def check_file(data: bytes, found: Found, runtime_ids: list, allow_no_suffix: bool) -> dfu_file.DfuFile:
    """The file, checked against the DFU-mode device and the (vid, pid, bcd) it has at runtime."""
    f = dfu_file.load(data, allow_no_suffix)
    if f.suffix:
        try:
            f.suffix.check_device([(found.vid, found.pid, found.bcd_device), *runtime_ids])
        except DeviceMismatch as e:
            if not runtime_ids:
                e.args = (f"{e.args[0]}. If the device is in DFU mode because an earlier download was "
                          f"interrupted, name its application's IDs with --runtime-id VID:PID",)
            raise
        is_dfuse_file = f.suffix.bcd_dfu == S.BCD_DFUSE
        if is_dfuse_file != found.desc.is_dfuse:
            kind = "a DfuSe file" if is_dfuse_file else "a plain DFU file"
            raise DeviceMismatch(f"{kind} cannot go to a {'DfuSe' if found.desc.is_dfuse else 'plain DFU'} device")
    elif found.desc.is_dfuse:
        raise FirmwareFileError("a DfuSe device needs a .dfu file with a DfuSe container (addresses); "
                                "--allow-no-suffix is for plain DFU devices only")
    if not found.desc.can_download:
        raise DeviceMismatch("the device's DFU descriptor says it cannot download (bitCanDnload = 0)")
    if found.desc.transfer_size_B == 0:
        raise FlashError("the device's DFU descriptor has wTransferSize 0: cannot transfer")
    return f


def _with_retries(opts: FlashOptions, iface: DfuInterface, attempt_fn):
    """Run attempt_fn, and after a stall/timeout/status error bring the device to dfuIDLE and
    run it again (opts.retries times). A disconnect is not retried: the device must come back."""
    for attempt in range(opts.retries + 1):
        try:
            return attempt_fn()
        except DeviceDisconnected as e:
            raise DeviceDisconnected(f"{e}. The device keeps its DFU bootloader: reconnect or power it "
                                     f"and run the same command again to re-download") from None
        except _RETRYABLE as e:
            if attempt == opts.retries:
                raise
            try:
                iface.ensure_idle()     # back to dfuIDLE, then retry from the start
            except FlashError as again:
                again.args = (f"{again.args[0]} (while recovering from: {e})",)
                raise again from e


def download(found: Found, data: bytes, opts: FlashOptions, allow_no_suffix: bool = False,
             runtime_id: tuple | None = None) -> dict:
    """runtime_id: (vid, pid) the application enumerates as, for a device already in DFU mode
    (a DFU-mode device cannot say which application it belongs to)."""
    runtime_ids = [(found.vid, found.pid, found.bcd_device)] if found.state == "runtime" else []
    if runtime_id:
        runtime_ids.append((*runtime_id, found.bcd_device))
    dfu_file.load(data, allow_no_suffix)    # integrity first, before touching the device at all
    dfu_mode = enter_dfu_mode(found, opts)  # (detaching writes nothing; the IDs need DFU mode)
    try:
        return _download(dfu_mode, data, opts, allow_no_suffix, runtime_ids)
    except FlashError as e:
        if runtime_ids and (runtime_ids[0][:2]) != (dfu_mode.vid, dfu_mode.pid):
            vid, pid = runtime_ids[0][:2]
            e.args = (f"{e.args[0]} (the device is in DFU mode as {dfu_mode.vid:04x}:{dfu_mode.pid:04x}: "
                      f"to re-run, add --runtime-id {vid:04x}:{pid:04x})",)
        raise


def _download(found: Found, data: bytes, opts: FlashOptions, allow_no_suffix: bool, runtime_ids: list) -> dict:
    f = check_file(data, found, runtime_ids, allow_no_suffix)
    with contextlib.ExitStack() as links:    # closes every interface opened here, however it ends
        return _download_on(found, f, opts, links)


def _download_on(found: Found, f: dfu_file.DfuFile, opts: FlashOptions, links: contextlib.ExitStack) -> dict:
    iface = open_interface(found, opts)
    links.enter_context(iface.link)
    result = {"device": found.as_dict(), "size_B": len(f.payload), "dry_run": opts.dry_run,
              "suffix": bool(f.suffix), "verified": False}
    if found.desc.is_dfuse:
        return _download_dfuse(found, iface, f, opts, result)
    iface.ensure_idle()
    if opts.dry_run:
        return result
    t0 = time.monotonic()

    def attempt():
        progress = opts.progress("download", len(f.payload))
        iface.download(f.payload, progress)
        progress.finish()
        return iface.manifest()
    status = _with_retries(opts, iface, attempt)
    result["download_s"] = round(time.monotonic() - t0, 3)
    result["manifest_state"] = S.state_name(status.state)
    if not opts.verify or not found.desc.can_upload:
        result["verify_skipped"] = "--no-verify" if not opts.verify else "the device cannot upload (bitCanUpload = 0)"
        if opts.reset_after or status.state == S.MANIFEST_WAIT_RESET:
            _reset(iface)
        return result
    if status.state == S.MANIFEST_WAIT_RESET:
        found, iface = _reenter_after_manifest(found, iface, opts)
        links.enter_context(iface.link)
    iface.ensure_idle()
    _verify(iface.read(len(f.payload), opts.progress("verify", len(f.payload))), f.payload, 0)
    result["verified"] = True
    if opts.reset_after:
        _reset(iface)               # leave DFU mode: run the new firmware
    return result


def _reset(iface: DfuInterface):
    try:
        iface.link.call("USB reset", iface.link.dev.reset)
    except DeviceDisconnected:
        pass
    iface.link.close()


def _reenter_after_manifest(found: Found, iface: DfuInterface, opts: FlashOptions):
    """A non-tolerant device needs a reset to run the new firmware; to read it back we detach again."""
    _reset(iface)
    again = wait_for(opts.backend, _same_device(found), opts.reenumerate_timeout_s,
                     "waiting for the device after manifestation reset")
    found = enter_dfu_mode(again, opts)
    return found, open_interface(found, opts)


def _verify(got: bytes, want: bytes, base: int):
    if got == want:
        return
    if len(got) != len(want):
        raise VerifyError(f"read-back gave {len(got)} bytes, {len(want)} were written: download again")
    at = next(i for i in range(len(want)) if got[i] != want[i])
    raise VerifyError(f"read-back differs at 0x{base + at:08X} (wrote 0x{want[at]:02X}, read 0x{got[at]:02X}): "
                      f"the device keeps its DFU bootloader; download again")


def _download_dfuse(found: Found, iface: DfuseInterface, f: dfu_file.DfuFile, opts: FlashOptions, result: dict):
    maps = {alt: parse_memory_map(name) for alt, name in found.alt_names.items()}
    steps = plan(dfu_file.parse_dfuse(f.payload), maps)      # every check before any erase
    result["elements"] = [{"alt": a, "address": f"0x{addr:08X}", "size_B": len(d), "pages": len(p)}
                          for a, addr, d, p in steps]
    iface.ensure_idle()
    if opts.dry_run:
        return result
    total_B = sum(len(d) for _a, _addr, d, _p in steps)
    progress = opts.progress("download", total_B)
    for alt, address, data, pages in steps:
        iface.link.call("select alt setting", found.dev.set_interface_altsetting, found.interface, alt)

        def attempt(address=address, data=data, pages=pages):
            for page in pages:
                iface.erase_page(page)
            iface.write(address, data, progress)
        _with_retries(opts, iface, attempt)   # a retry re-erases and rewrites this element
    progress.finish()
    if opts.verify:
        for alt, address, data, _p in steps:
            iface.link.call("select alt setting", found.dev.set_interface_altsetting, found.interface, alt)
            _verify(iface.read_at(address, len(data), opts.progress("verify", len(data))), data, address)
        result["verified"] = True
    iface.leave(steps[0][1])
    return result


def upload(found: Found, opts: FlashOptions, size_B: int, address: int | None = None, alt: int = 0) -> tuple:
    """Read the device's firmware: returns (a .dfu file with a suffix naming this device, info)."""
    found = enter_dfu_mode(found, opts)
    if not found.desc.can_upload:
        raise DeviceMismatch("the device's DFU descriptor says it cannot upload (bitCanUpload = 0)")
    iface = open_interface(found, opts)
    with iface.link:
        iface.ensure_idle()
        progress = opts.progress("upload", size_B)
        if found.desc.is_dfuse:
            mm = parse_memory_map(found.alt_names.get(alt, ""))
            address = mm.segments[0].start if address is None else address
            iface.link.call("select alt setting", found.dev.set_interface_altsetting, found.interface, alt)
            data = iface.read_at(address, size_B, progress)
            payload = dfu_file.build_dfuse([dfu_file.DfuseTarget(alt, mm.name, [(address, data)])])
            bcd_dfu = S.BCD_DFUSE
        else:
            data = payload = iface.read(size_B, progress)
            bcd_dfu = 0x0100
        progress.finish()
    info = {"device": found.as_dict(), "size_B": len(data)}
    return dfu_file.add_suffix(payload, found.vid, found.pid, found.bcd_device, bcd_dfu), info
