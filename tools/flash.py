#!/usr/bin/env python3
"""Flash firmware over USB (pyusb): DFU 1.1 / ST DfuSe devices and ASM2464 USB-to-PCIe bridges.

Run as `python tools/flash.py COMMAND ...` or `kernelos flash COMMAND ...`. The protocol logic is
in tools/flashing/; this file is the command line: arguments, output (text or --json), exit codes.
"""

import argparse
import json
import os
import sys
import time

if __package__ in (None, ""):       # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools.flashing import bridge, bridge_image, dfu_file, dfu_ops, discovery          # noqa: E402
from tools.flashing.errors import EXIT_CODES, FirmwareFileError, FlashError            # noqa: E402
from tools.flashing.options import FlashOptions                                         # noqa: E402

DESCRIPTION = """\
Flash firmware over USB with pyusb.

  list                       supported devices: VID:PID, serial, protocol, state, version
  check FILE                 check a .dfu file or an ASM2464 image without any device
  dfu-detach                 switch a runtime DFU device into DFU mode
  dfu-download FILE          write a .dfu file (suffix CRC and IDs checked), verify by read-back
  dfu-upload OUT --size N    read the firmware back into a .dfu file (a backup)
  bridge-info                ASM2464 bridge: flash chip, image header (size, CRC32), version
  bridge-backup OUT          ASM2464 bridge: save the whole SPI flash
  bridge-write IMAGE         ASM2464 bridge: check, back up, write and verify a new image
  bridge-restore --backup F  ASM2464 bridge: write a backup back (custom firmware or ROM bootloader)

Nothing is erased before the whole new image has been checked. --dry-run does every check
(files, device identity, sizes, backups) and writes nothing to the device.
"""


def epilog() -> str:
    lines = ["exit codes:"] + [f"  {code:3d}  {text}" for code, text in sorted(EXIT_CODES.items())]
    lines += ["", "examples:",
              "  flash.py list --json",
              "  flash.py dfu-download app.dfu --serial 0042 --dry-run",
              "  flash.py bridge-write fw.bin --backup bridge-backup.bin --i-understand-this-can-brick"]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser):
    """The subcommands, on any parser (tools/flash.py's own, or `kernelos flash`)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--serial", help="select the device with this USB serial number")
    common.add_argument("--vid-pid", metavar="VID:PID", type=_vid_pid, help="select by USB IDs (hex), e.g. 0483:df11")
    common.add_argument("--json", action="store_true", help="print one JSON object (no progress bar)")
    common.add_argument("--quiet", action="store_true", help="no progress bar")
    common.add_argument("--timeout-ms", type=_positive(int), default=2000, help="timeout of every USB transfer (default 2000)")
    common.add_argument("--busy-timeout-s", type=_positive(float), default=10.0,
                        help="longest the device may stay busy programming (default 10)")
    writes = argparse.ArgumentParser(add_help=False)
    writes.add_argument("--dry-run", action="store_true", help="do every check, write nothing to the device")

    sub = parser.add_subparsers(dest="flash_command", metavar="COMMAND")
    sub.required = True
    sub.add_parser("list", parents=[common], help="supported USB devices and their state")
    p = sub.add_parser("check", parents=[common], help="check a firmware file without a device")
    p.add_argument("file")
    sub.add_parser("dfu-detach", parents=[common], help="switch a runtime DFU device into DFU mode")
    p = sub.add_parser("dfu-download", parents=[common, writes], help="write a .dfu file and verify it")
    p.add_argument("file")
    p.add_argument("--allow-no-suffix", action="store_true",
                   help="accept a raw image without a DFU suffix (no CRC or device check possible)")
    p.add_argument("--no-verify", action="store_true", help="skip the read-back comparison")
    p.add_argument("--no-reset", action="store_true", help="stay in DFU mode afterwards (no USB reset)")
    p.add_argument("--retries", type=int, default=2, help="recover to dfuIDLE and retry this often (default 2)")
    p.add_argument("--runtime-id", metavar="VID:PID", type=_vid_pid,
                   help="for a device already in DFU mode: the IDs its application has (the file may name those)")
    p = sub.add_parser("dfu-upload", parents=[common], help="read the firmware into a .dfu file")
    p.add_argument("output")
    p.add_argument("--size", type=lambda s: int(s, 0), required=True, help="bytes to read (at most)")
    p.add_argument("--address", type=lambda s: int(s, 0), help="DfuSe: start address (default: start of alt's map)")
    p.add_argument("--alt", type=int, default=0, help="DfuSe: alternate setting (memory) to read")
    sub.add_parser("bridge-info", parents=[common], help="ASM2464: flash chip, image header, version")
    p = sub.add_parser("bridge-backup", parents=[common], help="ASM2464: save the whole SPI flash")
    p.add_argument("output")
    brick = argparse.ArgumentParser(add_help=False)
    brick.add_argument(bridge.BRICK_FLAG, dest="brick_ok", action="store_true",
                       help="required to write the bridge flash (not for --dry-run)")
    p = sub.add_parser("bridge-write", parents=[common, writes, brick], help="ASM2464: back up, write, verify")
    p.add_argument("image")
    p.add_argument("--backup", help="where to save the full-flash backup first "
                                    "(default bridge-backup-SERIAL-TIME.bin)")
    p = sub.add_parser("bridge-restore", parents=[common, writes, brick], help="ASM2464: write a backup back")
    p.add_argument("--backup", required=True, help="a file made by bridge-backup or bridge-write")


def _positive(kind):
    """An argparse type: a finite number > 0 (libusb reads a 0 ms timeout as "wait forever")."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
        return value
    return parse


def _vid_pid(text: str) -> tuple:
    try:
        vid, pid = (int(x, 16) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not VID:PID in hex, e.g. 0483:df11") from None
    return vid, pid


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flash.py", description=DESCRIPTION, epilog=epilog(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return parser


def _options(args, backend) -> FlashOptions:
    return FlashOptions(backend=backend, timeout_ms=args.timeout_ms, busy_deadline_s=args.busy_timeout_s,
                        retries=getattr(args, "retries", 2), dry_run=getattr(args, "dry_run", False),
                        verify=not getattr(args, "no_verify", False), reset_after=not getattr(args, "no_reset", False),
                        show_progress=not (args.json or args.quiet))


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise FirmwareFileError(f"cannot read {path}: {e.strerror}") from None


def _select(args, opts, protocols):
    return discovery.select(discovery.scan(opts.backend), protocols, args.serial, args.vid_pid)


def _check_file(data: bytes) -> dict:
    """Identify and check a firmware file: a .dfu file (suffix, DfuSe layout) or an ASM2464 image."""
    suffix = dfu_file.parse_suffix(data)
    if suffix is not None:
        out = {"kind": "dfuse" if suffix.bcd_dfu == 0x011A else "dfu", "payload_B": len(data) - suffix.length_B,
               "vid_pid": f"{suffix.id_vendor:04x}:{suffix.id_product:04x}", "bcd_device": f"0x{suffix.bcd_device:04X}",
               "crc": f"0x{suffix.crc:08X}"}
        if out["kind"] == "dfuse":
            targets = dfu_file.parse_dfuse(dfu_file.load(data).payload)
            out["targets"] = [{"alt": t.alt, "name": t.name, "elements": [
                {"address": f"0x{a:08X}", "size_B": len(d)} for a, d in t.elements]} for t in targets]
        return out
    try:
        return {"kind": "asm2464-image", **bridge_image.check(data).as_dict()}
    except FirmwareFileError as e:
        raise FirmwareFileError(f"neither a .dfu file (no DFU suffix) nor a valid ASM2464 image ({e})") from None


def _default_backup(found) -> str:
    return f"bridge-backup-{found.serial or 'noserial'}-{time.strftime('%Y%m%d-%H%M%S')}.bin"


def _run(args, opts) -> dict:
    cmd = args.flash_command
    if cmd == "list":
        return {"devices": [f.as_dict() for f in discovery.scan(opts.backend)]}
    if cmd == "check":
        return _check_file(_read(args.file))
    if cmd == "dfu-detach":
        return {"device": dfu_ops.enter_dfu_mode(_select(args, opts, ("dfu", "dfuse")), opts).as_dict()}
    if cmd == "dfu-download":
        data = _read(args.file)
        suffix = dfu_file.parse_suffix(data)     # a DfuSe file goes to DfuSe devices, a plain one to DFU
        protocols = ("dfu", "dfuse") if suffix is None else ("dfuse",) if suffix.bcd_dfu == 0x011A else ("dfu",)
        return dfu_ops.download(_select(args, opts, protocols), data, opts, args.allow_no_suffix, args.runtime_id)
    if cmd == "dfu-upload":
        data, info = dfu_ops.upload(_select(args, opts, ("dfu", "dfuse")), opts, args.size, args.address, args.alt)
        try:
            with open(args.output, "wb") as f:
                f.write(data)
        except OSError as e:
            raise FlashError(f"cannot write {args.output}: {e.strerror or e} (the device was only read)") from None
        return {**info, "output": args.output}
    if cmd == "bridge-info":
        return bridge.info(_select(args, opts, ("asm2464",)), opts)
    if cmd == "bridge-backup":
        return bridge.backup(_select(args, opts, ("asm2464",)), opts, args.output)
    if cmd == "bridge-write":
        image = _read(args.image)
        bridge_image.check(image, args.image)            # the file first, before looking for a device
        found = _select(args, opts, ("asm2464",))
        return bridge.write(found, image, args.backup or _default_backup(found), opts, args.brick_ok)
    if cmd == "bridge-restore":
        return bridge.restore(_select(args, opts, ("asm2464",)), _read(args.backup), opts, args.brick_ok)
    raise AssertionError(cmd)


def _print_text(cmd: str, result: dict, out):
    if cmd == "list":
        if not result["devices"]:
            print("no supported USB devices found", file=out)
        for d in result["devices"]:
            print(f"{d['vid_pid']}  {d['protocol']:7} {d['state']:15} serial={d['serial']}  {d['version']}  "
                  f"at {d['location']}", file=out)
            for alt, name in d.get("memory", {}).items():
                print(f"{'':11}alt {alt}: {name}", file=out)
        return
    for key, value in result.items():
        print(f"{key}: {json.dumps(value) if isinstance(value, (dict, list)) else value}", file=out)


def run_args(args, backend=None, out=None, err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    opts = _options(args, backend)
    try:
        result = _run(args, opts)
    except FlashError as e:
        if args.json:
            print(json.dumps({"ok": False, "error": type(e).__name__, "message": str(e),
                              "exit_code": e.exit_code, "device_intact": e.device_intact}), file=out)
        print(f"flash.py {args.flash_command}: {type(e).__name__}: {e}", file=err)
        return e.exit_code
    if args.json:
        print(json.dumps({"ok": True, **result}, indent=2), file=out)
    else:
        _print_text(args.flash_command, result, out)
    return 0


def main(argv=None, backend=None) -> int:
    return run_args(build_parser().parse_args(argv), backend)


if __name__ == "__main__":
    sys.exit(main())
