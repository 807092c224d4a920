"""Shared helpers for the flashing tests, which all run against device models (no hardware)."""

import io
import os

import pytest

from tools import flash
from tools.flashing import bridge_image, dfu_file

from .virtual_usb import VirtualUsbBackend


class CliResult:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err

    def __repr__(self):
        return f"rc={self.rc}\nstdout:\n{self.out}\nstderr:\n{self.err}"


def run_cli(backend, *argv) -> CliResult:
    """tools/flash.py with the virtual backend, capturing its output and exit code."""
    out, err = io.StringIO(), io.StringIO()
    args = flash.build_parser().parse_args([str(a) for a in argv])
    rc = flash.run_args(args, backend=backend, out=out, err=err)
    return CliResult(rc, out.getvalue(), err.getvalue())


def random_firmware(size_B: int) -> bytes:
    """Fresh random bytes with no 0xFF run at the end (so a short read-back is visible)."""
    return os.urandom(size_B - 1) + b"\x5a"


def dfu_file_for(model, payload: bytes, **ids) -> bytes:
    """A .dfu file whose suffix names the model (runtime IDs) unless ids override."""
    vid = ids.get("vid", model.vid)
    pid = ids.get("pid", model.runtime_pid)
    return dfu_file.add_suffix(payload, vid, pid, ids.get("bcd", model.bcd_device), ids.get("bcd_dfu", 0x0100))


def bridge_image_for(version: str, body_B: int = 1800) -> bytes:
    tag = f"custom v{version}\0".encode()
    return bridge_image.build(tag + os.urandom(body_B - len(tag)))


@pytest.fixture
def write_file(tmp_path):
    def _write(name: str, data: bytes):
        p = tmp_path / name
        p.write_bytes(data)
        return p
    return _write


def backend_for(*models) -> VirtualUsbBackend:
    return VirtualUsbBackend(*models)
