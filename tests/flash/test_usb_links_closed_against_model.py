"""tools/flashing used as a library, against the device models (no hardware): every USB handle an
operation opens is closed when it returns, whether it succeeded or failed part-way. The caller
keeps its `Found` (and so the pyusb device) alive, as a library user does, so nothing is closed
behind the tool's back by garbage collection."""

import os

import pytest

from tools.flashing import bridge, dfu_ops, discovery
from tools.flashing.errors import DeviceMismatch, FlashError, Stall
from tools.flashing.options import FlashOptions

from .conftest import backend_for, bridge_image_for, dfu_file_for, random_firmware
from .model_bridge import BridgeModel
from .model_dfu import DfuModel
from .virtual_usb import Fault

SPI_READ = 0x03


def _bridge():
    model = BridgeModel(flash_image=bridge_image_for("0.1", 1500), config=os.urandom(256))
    backend = backend_for(model)
    return model, backend, FlashOptions(backend=backend, show_progress=False)


def _dfu(**model_kw):
    model = DfuModel(firmware=random_firmware(4000), **model_kw)
    backend = backend_for(model)
    return model, backend, FlashOptions(backend=backend, show_progress=False, reenumerate_timeout_s=2.0)


def _one(opts, protocols):
    return discovery.select(discovery.scan(opts.backend), protocols)


def test_scanning_leaves_no_handle_open():
    _model, backend, opts = _bridge()
    found = discovery.scan(opts.backend)
    assert [f.protocol for f in found] == ["asm2464"] and found[0].product == "custom v0.1"
    assert backend.open_handles == set()


def test_bridge_operations_that_succeed_close_their_link(tmp_path):
    model, backend, opts = _bridge()
    found = _one(opts, ("asm2464",))
    assert bridge.info(found, opts)["image"]["valid"]
    assert bridge.backup(found, opts, str(tmp_path / "b.bin"))["size_B"] == len(model.chip.mem)
    new = bridge_image_for("0.2", 1800)
    assert bridge.write(found, new, str(tmp_path / "b2.bin"), opts, opted_in=True)["verified"]
    assert backend.open_handles == set()


def test_bridge_info_failing_mid_read_closes_its_link():
    model, backend, opts = _bridge()
    found = _one(opts, ("asm2464",))
    model.faults = [Fault("spi", "stall", where=lambda d: d["opcode"] == SPI_READ)]
    with pytest.raises(Stall):
        bridge.info(found, opts)
    assert model.faults[0].fired and backend.open_handles == set()


def test_bridge_write_whose_backup_cannot_be_saved_closes_its_link(tmp_path):
    model, backend, opts = _bridge()
    found = _one(opts, ("asm2464",))
    before = bytes(model.chip.mem)
    with pytest.raises(FlashError, match="cannot write the backup"):
        bridge.write(found, bridge_image_for("0.2"), str(tmp_path / "no-such-dir" / "b.bin"), opts, opted_in=True)
    assert backend.open_handles == set() and bytes(model.chip.mem) == before


def test_bridge_restore_of_a_backup_from_another_device_closes_its_link():
    model, backend, opts = _bridge()
    found = _one(opts, ("asm2464",))
    twice_the_flash = bytes(model.chip.mem) * 2  # a valid backup of a bridge with a larger chip
    with pytest.raises(DeviceMismatch, match="from another device"):
        bridge.restore(found, twice_the_flash, opts, opted_in=True)
    assert backend.open_handles == set()


def test_dfu_download_dry_run_and_real_close_every_interface():
    model, backend, opts = _dfu(tolerant=False)  # manifestation reset: a second interface is opened
    new = random_firmware(4000)
    data = dfu_file_for(model, new)
    found = _one(opts, ("dfu",))
    assert dfu_ops.download(found, data, FlashOptions(**{**opts.__dict__, "dry_run": True}))["dry_run"]
    assert backend.open_handles == set()
    found = _one(opts, ("dfu",))  # still in DFU mode after the dry run: name its application's IDs
    result = dfu_ops.download(found, data, opts, runtime_id=(model.vid, model.runtime_pid))
    assert result["verified"] and model.firmware == new
    assert backend.open_handles == set()


def test_dfu_download_that_fails_closes_its_interface():
    model, backend, opts = _dfu()
    model.faults = [Fault("dnload", "stall", nth=n) for n in (2, 2, 2)]  # more stalls than retries
    found = _one(opts, ("dfu",))
    with pytest.raises(Stall):
        dfu_ops.download(found, dfu_file_for(model, random_firmware(4000)), opts)
    assert backend.open_handles == set()


def test_dfu_upload_that_fails_closes_its_interface():
    model, backend, opts = _dfu()
    found = dfu_ops.enter_dfu_mode(_one(opts, ("dfu",)), opts)
    model.faults = [Fault("control", "stall", where=lambda d: d["request"] == 2)]  # DFU_UPLOAD
    with pytest.raises(FlashError):
        dfu_ops.upload(found, opts, 4096)
    assert model.faults[0].fired and backend.open_handles == set()
