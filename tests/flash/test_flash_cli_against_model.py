"""The command line (tools/flash.py and `kernelos flash`) against the device models: help and
exit codes, --json output, device selection, file checks. No hardware."""

import json
import os
import subprocess
import sys

import pytest

from tools import flash
from tools.cli import build_parser as kernelos_parser
from tools.flashing import bridge_image, dfu_file, discovery, usb_io
from tools.flashing.errors import EXIT_CODES

from .conftest import backend_for, bridge_image_for, dfu_file_for, random_firmware, run_cli
from .model_bridge import BridgeModel
from .model_dfu import DfuModel
from .model_dfuse import DfuseModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_help_documents_every_command_and_exit_code():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "flash.py"), "--help"],
                         capture_output=True, text=True, check=True).stdout
    for command in ("list", "check", "dfu-detach", "dfu-download", "dfu-upload", "bridge-info", "bridge-backup",
                    "bridge-write", "bridge-restore"):
        assert command in out
    for code, text in EXIT_CODES.items():
        assert f"{code:3d}  {text}" in out


def test_model_kernelos_flash_subcommand_delegates_to_flash_py(capsys, monkeypatch):
    backend = backend_for(BridgeModel(flash_image=bridge_image_for("0.1")))
    monkeypatch.setattr(discovery, "find_devices", lambda _backend=None: usb_io.find_devices(backend))
    args = kernelos_parser().parse_args(["flash", "list", "--json"])
    assert args._run(args) == 0
    (device,) = json.loads(capsys.readouterr().out)["devices"]
    assert device["protocol"] == "asm2464" and device["product"] == "custom v0.1"


def test_model_list_json_shows_protocol_state_and_version_of_each_device():
    backend = backend_for(DfuModel(firmware=random_firmware(500)), DfuseModel(),
                          BridgeModel(flash_image=bridge_image_for("0.1")))
    devices = json.loads(run_cli(backend, "list", "--json").out)["devices"]
    summary = [(d["vid_pid"], d["protocol"], d["state"], d["serial"]) for d in devices]
    assert summary == [("1209:70d0", "dfu", "runtime", "MODEL-DFU-1"),
                       ("0483:df11", "dfuse", "dfu-mode", "MODEL-DFUSE-1"),
                       ("add1:0001", "asm2464", "custom-firmware", "MODEL-ASM2464-1")]
    assert devices[0]["dfu"]["transfer_size_B"] == 256 and devices[0]["dfu"]["manifestation_tolerant"]
    assert devices[2]["version"] == "bcdDevice 0.01, custom v0.1"
    assert devices[1]["memory"]["0"].startswith("@Internal Flash")


def test_model_device_selection_by_serial_and_vid_pid(write_file):
    a, b = DfuModel(serial="A", firmware=random_firmware(300)), DfuModel(serial="B", firmware=random_firmware(300))
    backend = backend_for(a, b)
    new = random_firmware(700)
    path = write_file("n.dfu", dfu_file_for(a, new))
    r = run_cli(backend, "dfu-download", path)
    assert r.rc == 3 and "2 dfu devices match" in r.err and "--serial" in r.err, r
    r = run_cli(backend, "dfu-download", path, "--serial", "B", "--quiet")
    assert r.rc == 0, r
    assert b.firmware == new and a.firmware != new
    r = run_cli(backend, "dfu-download", path, "--vid-pid", "dead:beef")
    assert r.rc == 3 and "dead:beef" in r.err


def test_model_json_error_output_is_machine_readable(write_file):
    backend = backend_for(BridgeModel(flash_image=bridge_image_for("0.1")))
    r = run_cli(backend, "bridge-write", write_file("x.bin", b"not an image at all"), "--json")
    assert r.rc == 4
    err = json.loads(r.out)
    assert err["ok"] is False and err["error"] == "FirmwareFileError" and err["exit_code"] == 4
    assert err["device_intact"] is True and "not an ASM2464 image" in err["message"]


def test_check_identifies_and_validates_files_without_a_device(write_file):
    dfuse = dfu_file.add_suffix(dfu_file.build_dfuse([dfu_file.DfuseTarget(0, "Flash", [(0x08000800, b"ab" * 50)])]),
                                0x0483, 0xDF11, 0xFFFF, 0x011A)
    r = run_cli(None, "check", write_file("a.dfu", dfuse), "--json")
    out = json.loads(r.out)
    assert r.rc == 0 and out["kind"] == "dfuse" and out["targets"][0]["elements"] == [
        {"address": "0x08000800", "size_B": 100}]
    image = bridge_image.build(os.urandom(100))
    out = json.loads(run_cli(None, "check", write_file("b.bin", image), "--json").out)
    assert out["kind"] == "asm2464-image" and out["body_B"] == 100
    r = run_cli(None, "check", write_file("c.bin", image[:-1]))
    assert r.rc == 4 and "neither a .dfu file" in r.err
    r = run_cli(None, "check", "/nonexistent/file.dfu")
    assert r.rc == 4 and "cannot read" in r.err


def test_timeouts_that_would_never_expire_are_usage_errors(capsys):
    """libusb treats a 0 ms timeout as "wait forever"; every transfer must have a deadline."""
    for flag, value in (("--timeout-ms", "0"), ("--timeout-ms", "-5"), ("--busy-timeout-s", "nan"),
                        ("--busy-timeout-s", "0"), ("--busy-timeout-s", "inf")):
        with pytest.raises(SystemExit) as exit_info:
            flash.build_parser().parse_args(["list", flag, value])
        assert exit_info.value.code == 2 and f"{flag}: must be" in capsys.readouterr().err, (flag, value)
