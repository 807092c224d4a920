"""tools/flash.py dfu-* against a model of an ST DfuSe bootloader (tests/flash/model_dfuse.py):
no hardware. The model's flash programs only erased bytes, so a missing erase fails the test."""

import json

import pytest

from tools.flashing import dfu_file, dfu_spec as S

from .conftest import backend_for, random_firmware, run_cli
from .model_dfuse import DfuseModel
from .virtual_usb import Fault

APP = 0x08000800          # after the 2 KiB read-only bootloader region of the model's map


def _dfuse_file(elements, alt=0, vid=0x0483, pid=0xDF11):
    payload = dfu_file.build_dfuse([dfu_file.DfuseTarget(alt, "Internal Flash", elements)])
    return dfu_file.add_suffix(payload, vid, pid, 0xFFFF, S.BCD_DFUSE)


def _setup(write_file, elements=None):
    model = DfuseModel()
    model.memory[0x08000800][:] = random_firmware(len(model.memory[0x08000800]))   # an old application
    elements = elements or [(APP, random_firmware(2500)), (APP + 0x1000, random_firmware(700))]
    return model, backend_for(model), elements, write_file("app.dfu", _dfuse_file(elements))


def test_model_dfuse_download_erases_writes_verifies_and_leaves(write_file):
    model, backend, elements, path = _setup(write_file)
    before_boot = model.read(0x08000000, 0x800)
    r = run_cli(backend, "dfu-download", path, "--json")
    assert r.rc == 0, r
    result = json.loads(r.out)
    assert result["verified"] and [e["pages"] for e in result["elements"]] == [3, 1]
    for address, data in elements:
        assert model.read(address, len(data)) == data
    assert model.read(0x08000000, 0x800) == before_boot            # the read-only region is untouched
    assert model.left and model.mode == "app"


def test_model_dfuse_element_outside_writable_memory_is_refused_before_any_erase(write_file):
    model, backend, _e, _p = _setup(write_file)
    before = {k: bytes(v) for k, v in model.memory.items()}
    for elements in ([(APP, random_firmware(1000)), (0x08000000, random_firmware(16))],   # read-only part
                     [(APP, random_firmware(1000)), (0x08003F00, random_firmware(512))]):  # runs off the end
        r = run_cli(backend, "dfu-download", write_file("bad.dfu", _dfuse_file(elements)))
        assert r.rc == 5 and "not for this device" in r.err, r
    r = run_cli(backend, "dfu-download", write_file("alt.dfu", _dfuse_file([(APP, b"x" * 16)], alt=3)))
    assert r.rc == 5 and "alt setting 3" in r.err, r
    assert {k: bytes(v) for k, v in model.memory.items()} == before
    assert not any(req == S.DNLOAD for _st, req in model.requests)


def test_model_dfuse_plain_file_to_dfuse_device_is_refused(write_file):
    model, backend, _e, _p = _setup(write_file)
    r = run_cli(backend, "dfu-download", write_file("plain.dfu", dfu_file.add_suffix(b"abc" * 100, 0x0483, 0xDF11)))
    assert r.rc == 3 and "no dfu device matches" in r.err and "0483:df11 dfuse" in r.err, r
    r = run_cli(backend, "dfu-download", write_file("raw.bin", b"abc" * 100), "--allow-no-suffix")
    assert r.rc == 4 and "DfuSe device needs a .dfu file" in r.err, r
    assert not any(req == S.DNLOAD for _st, req in model.requests)


def test_model_dfuse_upload_makes_a_restorable_dfuse_file(write_file, tmp_path):
    model, backend, _e, _p = _setup(write_file)
    original = model.read(APP, 0x1800)
    out = tmp_path / "backup.dfu"
    r = run_cli(backend, "dfu-upload", out, "--size", 0x1800, "--address", hex(APP), "--quiet")
    assert r.rc == 0, r
    ((alt, name, elements),) = [(t.alt, t.name, t.elements) for t in dfu_file.parse_dfuse(dfu_file.load(out.read_bytes()).payload)]
    assert elements == [(APP, original)]
    model.memory[0x08000800][:] = b"\xff" * len(model.memory[0x08000800])
    model.power_on()
    r = run_cli(backend, "dfu-download", out, "--quiet")
    assert r.rc == 0, r
    assert model.read(APP, 0x1800) == original


def test_model_dfuse_program_error_is_retried_by_re_erasing(write_file):
    model, backend, elements, path = _setup(write_file)
    model.status_error_at_block = {6: 0x06}             # errPROG on the 7th DNLOAD operation
    r = run_cli(backend, "dfu-download", path, "--quiet")
    assert r.rc == 0, r
    for address, data in elements:
        assert model.read(address, len(data)) == data


def test_model_dfuse_stall_exhausting_retries_names_the_address(write_file):
    model, backend, _e, path = _setup(write_file)
    model.faults = [Fault("program", "stall", nth=n) for n in (5, 5, 5)]
    r = run_cli(backend, "dfu-download", path, "--quiet", "--retries", 1)
    assert r.rc == 7 and "stalled" in r.err, r
    assert model.state in (S.DFU_ERROR, S.DFU_IDLE)
    r = run_cli(backend, "dfu-download", path, "--quiet")       # recovers from dfuERROR and succeeds
    assert r.rc == 0, r


N_OPS = 3 + 1 + 2 * (10 + 3)     # erases (3 + 1 pages) + per 256-B chunk: set-address + data (10 + 3 chunks)


@pytest.mark.parametrize("op", range(N_OPS))
def test_model_dfuse_power_loss_at_every_block_recovers(write_file, op):
    """Cut the power at every DNLOAD operation (erase, set-address, data block); the ROM
    bootloader comes back in DFU mode and re-running the same command gives a verified image."""
    model, backend, elements, path = _setup(write_file)
    model.faults = [Fault("program", "power_cut", nth=op)]
    r = run_cli(backend, "dfu-download", path, "--quiet")
    assert r.rc == 8 and "disconnected" in r.err and "run the same command again" in r.err, r
    model.power_on()
    r = run_cli(backend, "dfu-download", path, "--quiet")
    assert r.rc == 0, r
    for address, data in elements:
        assert model.read(address, len(data)) == data


def test_model_dfuse_power_loss_cases_cover_every_download_operation(write_file):
    """N_OPS above is every DNLOAD operation of the download; the verify and leave steps add
    three set-address commands (one per element, one for leave), which write nothing."""
    model, backend, _e, path = _setup(write_file)
    r = run_cli(backend, "dfu-download", path, "--quiet")
    assert r.rc == 0, r
    assert model.next_block == N_OPS + 3
