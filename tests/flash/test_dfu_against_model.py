"""tools/flash.py dfu-* against a model of a USB DFU 1.1 device (tests/flash/model_dfu.py): no
hardware. The model enforces the DFU state machine, so a host that skipped a poll timeout or a
state transition would fail these tests."""

import json

import pytest

from tools.flashing import dfu_spec as S

from .conftest import backend_for, dfu_file_for, random_firmware, run_cli
from .model_dfu import DfuModel
from .virtual_usb import Fault

OLD_B, NEW_B = 1500, 2300        # 2300 B = 9 blocks of 256 B, the last one short


def _setup(write_file, **model_kw):
    old, new = random_firmware(OLD_B), random_firmware(NEW_B)
    model = DfuModel(firmware=old, **model_kw)
    backend = backend_for(model)
    return model, backend, old, new, write_file("new.dfu", dfu_file_for(model, new))


@pytest.mark.parametrize("will_detach,transfer_size_B", [(False, 256), (True, 256), (False, 64), (True, 1024)])
def test_model_dfu_download_detaches_writes_verifies_and_runs(write_file, will_detach, transfer_size_B):
    model, backend, _old, new, path = _setup(write_file, will_detach=will_detach, transfer_size_B=transfer_size_B)
    r = run_cli(backend, "dfu-download", path, "--json")
    assert r.rc == 0, r
    result = json.loads(r.out)
    assert result["ok"] and result["verified"] and result["size_B"] == NEW_B
    assert result["device"]["dfu"]["transfer_size_B"] == transfer_size_B
    assert model.firmware == new
    assert model.mode == "runtime" and model.state == S.APP_IDLE     # reset afterwards: the new firmware runs
    assert all(t and t > 0 for t in backend.timeouts_ms)             # every transfer had a bounded timeout


def test_model_dfu_non_tolerant_device_is_reset_and_read_back(write_file):
    model, backend, _old, new, path = _setup(write_file, tolerant=False)
    r = run_cli(backend, "dfu-download", path, "--json")
    assert r.rc == 0, r
    assert json.loads(r.out)["manifest_state"] == "dfuMANIFEST-WAIT-RESET"
    assert json.loads(r.out)["verified"] and model.firmware == new and model.mode == "runtime"


def test_model_dfu_upload_backup_round_trips(write_file, tmp_path):
    model, backend, old, _new, _path = _setup(write_file)
    out = tmp_path / "backup.dfu"
    r = run_cli(backend, "dfu-upload", out, "--size", 65536, "--quiet")
    assert r.rc == 0, r
    model.usb_reset()                                             # back to the application
    assert model.mode == "runtime"
    r = run_cli(backend, "dfu-download", out, "--quiet")          # the backup's suffix names this device
    assert r.rc == 0, r
    assert model.firmware == old


def test_model_dfu_dry_run_checks_everything_and_writes_nothing(write_file):
    model, backend, old, _new, path = _setup(write_file)
    r = run_cli(backend, "dfu-download", path, "--dry-run", "--json")
    assert r.rc == 0, r
    assert json.loads(r.out)["dry_run"] is True
    assert model.firmware == old and not any(req == S.DNLOAD for _st, req in model.requests)


@pytest.mark.parametrize("ids,match", [({"vid": 0x1234}, "the file is for USB device 1234"),
                                       ({"pid": 0x0001}, "70d0"),
                                       ({"bcd": 0x0999}, "bcdDevice 0x0999")])
def test_model_dfu_wrong_device_file_is_refused_before_any_write(write_file, ids, match):
    model, backend, old, new, _path = _setup(write_file)
    path = write_file("other.dfu", dfu_file_for(model, new, **ids))
    r = run_cli(backend, "dfu-download", path)
    assert r.rc == 5, r
    assert match in r.err and "DeviceMismatch" in r.err
    assert model.firmware == old and not any(req == S.DNLOAD for _st, req in model.requests)


def test_model_dfu_damaged_file_is_refused_without_touching_the_device(write_file):
    model, backend, old, new, _path = _setup(write_file)
    data = bytearray(dfu_file_for(model, new))
    data[1000] ^= 0xFF
    r = run_cli(backend, "dfu-download", write_file("bad.dfu", bytes(data)))
    assert r.rc == 4 and "CRC mismatch" in r.err, r
    assert model.requests == [] and model.mode == "runtime"      # not even detached


def test_model_dfu_raw_image_needs_allow_no_suffix(write_file):
    model, backend, old, new, _path = _setup(write_file)
    raw = write_file("raw.bin", new)
    r = run_cli(backend, "dfu-download", raw)
    assert r.rc == 4 and "--allow-no-suffix" in r.err, r
    r = run_cli(backend, "dfu-download", raw, "--allow-no-suffix", "--quiet")
    assert r.rc == 0, r
    assert model.firmware == new


@pytest.mark.parametrize("action", ["stall", "timeout"])
def test_model_dfu_stall_or_timeout_mid_download_recovers_and_retries(write_file, action):
    model, backend, _old, new, path = _setup(write_file)
    model.faults = [Fault("dnload", action, nth=4)]
    r = run_cli(backend, "dfu-download", path, "--quiet")
    assert r.rc == 0, r
    assert model.faults[0].fired and model.firmware == new


@pytest.mark.parametrize("code", sorted(set(S.STATUS_TEXT) - {0}))
def test_model_dfu_every_status_code_gives_a_clear_error_and_idle_device(write_file, code):
    model, backend, _old, new, path = _setup(write_file)
    model.status_error_at_block = {3: code}
    r = run_cli(backend, "dfu-download", path, "--quiet", "--retries", 0)
    name, meaning = S.STATUS_TEXT[code]
    assert r.rc == 9, r
    assert f"{name}: {meaning}" in r.err and "block 4/9" in r.err and "cleared" in r.err
    assert model.state == S.DFU_IDLE and model.status == S.STATUS_OK      # cleared, ready for a retry
    assert "--runtime-id 1209:70d0" in r.err
    r = run_cli(backend, "dfu-download", path, "--quiet", "--runtime-id", "1209:70d0")   # a re-run succeeds
    assert r.rc == 0, r
    assert model.firmware == new


def test_model_dfu_status_error_is_retried_automatically(write_file):
    model, backend, _old, new, path = _setup(write_file)
    model.status_error_at_block = {5: 0x03}                               # errWRITE once
    r = run_cli(backend, "dfu-download", path, "--quiet")
    assert r.rc == 0, r
    assert model.firmware == new


def test_model_dfu_device_stuck_busy_times_out_clearly(write_file):
    model, backend, _old, _new, path = _setup(write_file, poll_ms=5)
    model.faults = []
    model.stuck_busy = True
    r = run_cli(backend, "dfu-download", path, "--quiet", "--busy-timeout-s", 0.2, "--retries", 0)
    assert r.rc == 7, r
    assert "stayed in dfuDNBUSY" in r.err and "power-cycle" in r.err


def test_model_dfu_readback_mismatch_is_reported(write_file):
    model, backend, _old, _new, path = _setup(write_file)
    model.corrupt_block = 2
    r = run_cli(backend, "dfu-download", path, "--quiet")
    assert r.rc == 11 and "read-back differs at 0x00000200" in r.err, r


def test_model_dfu_disconnect_mid_download_then_rerun_succeeds(write_file):
    model, backend, _old, new, path = _setup(write_file)
    model.faults = [Fault("dnload", "disconnect", nth=6)]
    r = run_cli(backend, "dfu-download", path, "--quiet")
    assert r.rc == 8 and "disconnected" in r.err and "run the same command again" in r.err, r
    model.power_on()
    assert model.mode == "dfu"                   # the application was erased: the bootloader stays
    r = run_cli(backend, "dfu-download", path, "--quiet")
    assert r.rc == 5 and "name its application's IDs with --runtime-id" in r.err, r    # DFU-mode IDs only
    r = run_cli(backend, "dfu-download", path, "--quiet", "--runtime-id", "1209:70d0")
    assert r.rc == 0, r
    assert model.firmware == new


@pytest.mark.parametrize("block", range(9))
def test_model_dfu_power_loss_at_every_block_recovers(write_file, block):
    """Cut the power while block N is being programmed; the device comes back in DFU mode (in
    dfuERROR/errPOR on odd blocks), the error names the block, and a re-run restores a good image."""
    model, backend, _old, new, path = _setup(write_file, por_error=bool(block % 2))
    model.faults = [Fault("program", "power_cut", nth=block)]
    r = run_cli(backend, "dfu-download", path, "--quiet")
    assert r.rc == 8, r
    assert f"block {block + 1}/9" in r.err and "DFU bootloader" in r.err and "--runtime-id 1209:70d0" in r.err
    model.power_on()
    assert model.mode == "dfu" and model.state == (S.DFU_ERROR if block % 2 else S.DFU_IDLE)
    r = run_cli(backend, "dfu-download", path, "--quiet", "--runtime-id", "1209:70d0")
    assert r.rc == 0, r
    assert model.firmware == new and model.mode == "runtime"


def test_model_dfu_stuck_device_with_retries_still_ends_in_a_clear_error(write_file):
    model, backend, _old, _new, path = _setup(write_file, poll_ms=5)
    model.stuck_busy = True
    r = run_cli(backend, "dfu-download", path, "--quiet", "--busy-timeout-s", 0.1)
    assert r.rc in (7, 10), r
    assert "dfuDNBUSY" in r.err and "power-cycle" in r.err


def test_model_dfu_model_rejects_a_host_that_ignores_bwpolltimeout():
    """Control for the model's strictness: a host that polls again before bwPollTimeout is stalled
    and the device drops into dfuERROR, so the passing downloads above really honour it."""
    from tools.flashing.discovery import scan
    from tools.flashing.dfu import DfuInterface
    from tools.flashing.errors import Stall
    from tools.flashing.usb_io import UsbLink

    model = DfuModel(poll_ms=200)                 # no firmware: starts in DFU mode
    (found,) = scan(backend_for(model))
    hasty = DfuInterface(UsbLink(found.dev), found.interface, found.desc, sleep=lambda s: None)
    with pytest.raises(Stall):
        hasty.download(random_firmware(600))
    assert model.state == S.DFU_ERROR and model.status == 0x0F


def test_model_dfu_detach_switches_to_dfu_mode_and_stays(write_file):
    model, backend, old, _new, _path = _setup(write_file)
    r = run_cli(backend, "dfu-detach", "--json")
    assert r.rc == 0, r
    assert json.loads(r.out)["device"]["state"] == "dfu-mode" and json.loads(r.out)["device"]["vid_pid"] == "1209:70d1"
    assert model.mode == "dfu" and model.state == S.DFU_IDLE and model.firmware == old


def test_model_dfu_device_that_cannot_upload_is_flashed_without_verify(write_file):
    model, backend, _old, new, path = _setup(write_file, can_upload=False)
    r = run_cli(backend, "dfu-download", path, "--json")
    assert r.rc == 0, r
    result = json.loads(r.out)
    assert result["verified"] is False and "bitCanUpload = 0" in result["verify_skipped"]
    assert model.firmware == new and model.mode == "runtime"


def test_model_dfu_upload_to_an_unwritable_path_is_a_clear_error(write_file, tmp_path):
    _model, backend, _old, _new, _path = _setup(write_file)
    r = run_cli(backend, "dfu-upload", tmp_path / "no-such-dir" / "b.dfu", "--size", 65536, "--quiet")
    assert r.rc == 10 and "cannot write" in r.err, r
