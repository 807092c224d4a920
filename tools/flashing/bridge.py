"""ASM2464 bridge firmware operations: identify, back up, write, restore.

Write = make the flash equal to a target built from the full backup with the new image at 0x100:
the image and device are checked and the backup is saved (and re-read from disk) before the
first erase; only 64 KiB blocks that differ are erased; the touched blocks are read back and
compared. If anything fails after the first erase, the backup is written back the same way; if
the bridge is gone (power loss) the error says how to restore it (`bridge-restore`), which works
from the custom firmware (XDATA/SPI) or, when the image in flash is broken, the ROM bootloader (BOT).
"""

import os
import time

import usb.util

from . import bridge_image as img
from .bridge_bot import BotTransport, flash_via_bootloader
from .bridge_spi import BLOCK_B, WRITE_CHUNK_B, SpiFlash
from .discovery import Found, wait_for
from .errors import (DeviceDisconnected, DeviceMismatch, FirmwareFileError, FlashError, RecoveryFailed,
                     SafetyRefusal, UsbTransferError, VerifyError)
from .options import FlashOptions
from .usb_io import UsbLink

BRICK_FLAG = "--i-understand-this-can-brick"


def require_opt_in(opted_in: bool, dry_run: bool, what: str):
    if not (opted_in or dry_run):
        raise SafetyRefusal(f"{what} rewrites the bridge's SPI flash; a failure there can leave it unbootable "
                            f"(retail enclosures have no recovery pin). Run with --dry-run first, keep the "
                            f"backup, then pass {BRICK_FLAG}")


def open_spi(found: Found, opts: FlashOptions) -> SpiFlash:
    if found.state != "custom-firmware":
        raise DeviceMismatch(f"the bridge runs its {found.state}, not the custom firmware whose XDATA requests "
                             f"reach the SPI flash: use bridge-restore (bootloader route) instead")
    link = UsbLink(found.dev, opts.timeout_ms)
    dev = found.dev
    try:
        if link.call("kernel driver check", dev.is_kernel_driver_active, 0):
            link.call("detach kernel driver", dev.detach_kernel_driver, 0)
        link.call("set configuration 1", dev.set_configuration, 1)
        link.call("claim interface 0", usb.util.claim_interface, dev, 0)
        spi = SpiFlash(link, opts.busy_deadline_s)
        spi.init()
    except BaseException:
        link.close()
        raise
    return spi                                  # the caller closes spi.link (`with spi.link:`)


def info(found: Found, opts: FlashOptions) -> dict:
    """Identity and the firmware version: USB descriptors, flash JEDEC ID, the image header in flash."""
    out = {"device": found.as_dict()}
    if found.state != "custom-firmware":
        out["note"] = "ROM bootloader: the flash image is missing or invalid; restore a backup"
        return out
    spi = open_spi(found, opts)
    with spi.link:
        out["flash"] = {"jedec_id": spi.jedec_id().hex(), "size_B": spi.capacity_B()}
        head = spi.read(0, img.IMAGE_OFFSET + 4)
        body_B = int.from_bytes(head[img.IMAGE_OFFSET:], "little")
        if body_B + img.IMAGE_OFFSET + img.OVERHEAD_B > out["flash"]["size_B"]:
            out["image"] = {"valid": False, "why": f"header length {body_B} does not fit the flash"}
            return out
        flash = head[:img.IMAGE_OFFSET] + spi.read(img.IMAGE_OFFSET, body_B + img.OVERHEAD_B)
    try:
        out["image"] = {"valid": True, **img.check(flash[img.IMAGE_OFFSET:]).as_dict()}
    except FirmwareFileError as e:
        out["image"] = {"valid": False, "why": str(e)}
    return out


def read_backup(spi: SpiFlash, opts: FlashOptions) -> bytes:
    size_B = spi.capacity_B()
    progress = opts.progress("backup", size_B)
    data = spi.read(0, size_B, progress)
    progress.finish()
    return data


def backup(found: Found, opts: FlashOptions, path: str) -> dict:
    """Save the whole SPI flash to path (written, then read back from disk)."""
    spi = open_spi(found, opts)
    with spi.link:
        data = read_backup(spi, opts)
    save_backup(data, path)
    return {"device": found.as_dict(), "output": path, "size_B": len(data)}


def save_backup(data: bytes, path: str):
    """Write the backup and read it back from disk: it must be good before anything is erased."""
    tmp = f"{path}.part"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise FlashError(f"cannot write the backup {path}: {e.strerror or e}; nothing was erased "
                         f"(choose another --backup / output path)") from None
    with open(path, "rb") as f:
        if f.read() != data:
            raise FlashError(f"the backup file {path} does not read back identically: check the disk")


def make_equal(spi: SpiFlash, current: bytes, target: bytes, opts: FlashOptions, label: str) -> int:
    """Erase and program every 64 KiB block where current != target, then read back and compare
    those blocks. Returns the number of blocks rewritten."""
    blocks = [b for b in range(0, len(target), BLOCK_B) if current[b:b + BLOCK_B] != target[b:b + BLOCK_B]]
    to_write = [(a, target[a:a + WRITE_CHUNK_B]) for b in blocks for a in range(b, b + BLOCK_B, WRITE_CHUNK_B)
                if target[a:a + WRITE_CHUNK_B] != b"\xff" * WRITE_CHUNK_B]
    progress = opts.progress(label, sum(len(d) for _a, d in to_write))
    for b in blocks:
        spi.erase_block(b)
    for addr, chunk in to_write:
        spi.program(addr, chunk)
        progress.update(len(chunk))
    progress.finish()
    for b in blocks:
        got = spi.read(b, BLOCK_B)
        if got != target[b:b + BLOCK_B]:
            at = b + next(i for i in range(BLOCK_B) if got[i] != target[b + i])
            raise VerifyError(f"read-back of the flash differs at 0x{at:06X} after {label}")
    return len(blocks)


def write(found: Found, image: bytes, backup_path: str, opts: FlashOptions, opted_in: bool) -> dict:
    new = img.check(image, "new image")                      # 1. the file
    require_opt_in(opted_in, opts.dry_run, "bridge-write")
    spi = open_spi(found, opts)                              # 2. the device
    with spi.link:
        return _write(spi, found, image, new, backup_path, opts)


def _write(spi: SpiFlash, found: Found, image: bytes, new, backup_path: str, opts: FlashOptions) -> dict:
    """write() from step 3 on, on an opened bridge (the caller closes its link)."""
    size_B = spi.capacity_B()
    if img.IMAGE_OFFSET + len(image) > size_B:
        raise DeviceMismatch(f"the image ({len(image)} B at 0x{img.IMAGE_OFFSET:X}) does not fit this bridge's "
                             f"{size_B}-byte flash: it is not for this device")
    backup = read_backup(spi, opts)                          # 3. the backup, restorable and on disk
    old = img.image_in_flash(backup)
    save_backup(backup, backup_path)
    target = bytearray(backup)
    target[img.IMAGE_OFFSET:img.IMAGE_OFFSET + len(old)] = b"\xff" * len(old)
    target[img.IMAGE_OFFSET:img.IMAGE_OFFSET + len(image)] = image
    result = {"device": found.as_dict(), "backup": backup_path, "old_image": img.check(old).as_dict(),
              "new_image": new.as_dict(), "dry_run": opts.dry_run, "verified": False}
    if opts.dry_run:
        return result
    spi.unprotect()
    t0 = time.monotonic()
    try:
        result["blocks_rewritten"] = make_equal(spi, backup, bytes(target), opts, "write")
    except DeviceDisconnected as e:
        raise RecoveryFailed(f"{e} while writing the bridge flash. Power-cycle the bridge, then run: "
                             f"flash.py bridge-restore --backup {backup_path} {BRICK_FLAG}") from None
    except (UsbTransferError, VerifyError) as e:
        _restore_after_failure(spi, backup, backup_path, opts, e)
    result["write_s"] = round(time.monotonic() - t0, 3)
    result["verified"] = True
    result["next"] = "power-cycle the bridge to boot the new firmware"
    return result


def _restore_after_failure(spi: SpiFlash, backup: bytes, backup_path: str, opts: FlashOptions, cause: Exception):
    try:
        current = spi.read(0, len(backup))
        make_equal(spi, current, backup, opts, "restore")
    except FlashError as e:
        raise RecoveryFailed(f"{cause}; restoring the backup failed too ({e}). Do not power off if you can avoid "
                             f"it; run: flash.py bridge-restore --backup {backup_path} {BRICK_FLAG}") from None
    cause.args = (f"{cause.args[0]}; the backup {backup_path} was written back and verified: the bridge "
                  f"is unchanged",)
    raise cause


def restore(found: Found, backup: bytes, opts: FlashOptions, opted_in: bool) -> dict:
    """Make the flash equal to a backup, through the custom firmware or the ROM bootloader."""
    image = img.image_in_flash(backup)                   # a backup without a bootable image is refused
    if len(backup) < BLOCK_B or len(backup) & (len(backup) - 1):
        raise FirmwareFileError(f"a backup is a whole-flash dump (a power of two >= 64 KiB), not {len(backup)} B")
    require_opt_in(opted_in, opts.dry_run, "bridge-restore")
    result = {"device": found.as_dict(), "route": found.state, "image": img.check(image).as_dict(),
              "dry_run": opts.dry_run, "verified": False}
    if found.state == "bootloader":
        if opts.dry_run:
            return result
        with UsbLink(found.dev, opts.timeout_ms) as link:
            link.call("set configuration", found.dev.set_configuration)
            intf = link.call("read the configuration", found.dev.get_active_configuration)[(0, 0)]
            progress = opts.progress("restore", len(image))
            flash_via_bootloader(BotTransport(link, intf), backup[:img.CONFIG_B], image, progress)
            progress.finish()
        found = wait_for(opts.backend, lambda f: f.protocol == "asm2464" and f.state == "custom-firmware",
                         opts.reenumerate_timeout_s, "waiting for the bridge to boot the restored firmware")
        result["rebooted_as"] = found.as_dict()
    spi = open_spi(found, opts)
    with spi.link:
        size_B = spi.capacity_B()
        if size_B != len(backup):
            raise DeviceMismatch(f"the backup is {len(backup)} B but this bridge's flash is {size_B} B: "
                                 f"it is from another device")
        if opts.dry_run:
            return result
        current = spi.read(0, size_B)
        if current != backup:
            spi.unprotect()
            try:
                result["blocks_rewritten"] = make_equal(spi, current, backup, opts, "restore")
            except DeviceDisconnected as e:
                raise DeviceDisconnected(f"{e} during the restore. Power-cycle the bridge and run the same "
                                         f"bridge-restore command again (it works from the ROM bootloader too)") from None
    result["verified"] = True
    return result
