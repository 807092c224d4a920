"""tools/flash.py bridge-* against a model of an ASM2464 bridge and its SPI flash
(tests/flash/model_bridge.py): no hardware. Where the model goes beyond the facts (the ROM
bootloader's USB IDs, the version string) its docstring says so."""

import json
import os

import pytest

from tools.flashing import bridge_image

from .conftest import backend_for, bridge_image_for, run_cli
from .model_bridge import BridgeModel
from .model_dfu import DfuModel
from .virtual_usb import Fault

BRICK = "--i-understand-this-can-brick"


def _setup(write_file):
    old, new, config = bridge_image_for("0.1", 1500), bridge_image_for("0.2", 1800), os.urandom(256)
    model = BridgeModel(flash_image=old, config=config)
    return model, backend_for(model), old, new, write_file("new.bin", new)


def _power_cycle(model):
    model.power_cut()
    model.power_on()


def test_model_bridge_list_and_info_report_version_and_image(write_file):
    model, backend, old, _new, _p = _setup(write_file)
    r = run_cli(backend, "list")
    assert r.rc == 0 and "add1:0001  asm2464 custom-firmware" in r.out and "custom v0.1" in r.out, r
    r = run_cli(backend, "bridge-info", "--json")
    info = json.loads(r.out)
    assert info["flash"] == {"jedec_id": "ef4010", "size_B": 65536}
    assert info["image"]["valid"] and info["image"]["crc32"] == bridge_image.check(old).as_dict()["crc32"]


def test_model_bridge_write_backs_up_writes_verifies_and_boots_new_version(write_file, tmp_path):
    model, backend, old, new, path = _setup(write_file)
    before = bytes(model.chip.mem)
    backup = tmp_path / "backup.bin"
    r = run_cli(backend, "bridge-write", path, "--backup", backup, BRICK, "--json")
    assert r.rc == 0, r
    result = json.loads(r.out)
    assert result["verified"] and result["blocks_rewritten"] == 1 and "power-cycle" in result["next"]
    assert backup.read_bytes() == before                                  # the full flash, saved first
    assert model.chip.mem[:0x100] == before[:0x100]                       # config kept
    assert bytes(model.chip.mem[0x100:0x100 + len(new)]) == new
    assert set(model.chip.mem[0x100 + len(new):]) == {0xFF}               # old image's tail erased
    _power_cycle(model)
    r = run_cli(backend, "list")
    assert "custom v0.2" in r.out, r
    assert all(t and t > 0 for t in backend.timeouts_ms)


def test_model_bridge_write_refuses_without_the_brick_flag(write_file, tmp_path):
    model, backend, _old, _new, path = _setup(write_file)
    before = bytes(model.chip.mem)
    r = run_cli(backend, "bridge-write", path, "--backup", tmp_path / "b.bin")
    assert r.rc == 6 and BRICK in r.err and "--dry-run" in r.err, r
    assert bytes(model.chip.mem) == before and model.flash_ops == 0


def test_model_bridge_dry_run_does_every_check_and_writes_nothing(write_file, tmp_path):
    model, backend, _old, _new, path = _setup(write_file)
    before = bytes(model.chip.mem)
    r = run_cli(backend, "bridge-write", path, "--backup", tmp_path / "b.bin", "--dry-run", "--json")
    assert r.rc == 0 and json.loads(r.out)["dry_run"] is True, r
    assert bytes(model.chip.mem) == before and model.flash_ops == 0
    big = write_file("big.bin", bridge_image.build(os.urandom(0x10000)))
    r = run_cli(backend, "bridge-write", big, "--backup", tmp_path / "b.bin", "--dry-run")
    assert r.rc == 5 and "does not fit" in r.err, r


@pytest.mark.parametrize("damage,match", [
    (lambda d: d[:-1], "header says"),                                 # truncated
    (lambda d: d[:-6] + b"\x00" + d[-5:], "trailer flag"),             # flag
    (lambda d: d[:-5] + bytes([d[-5] ^ 1]) + d[-4:], "8-bit checksum"),
    (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "CRC32"),
    (lambda d: d[:4] + bytes([d[4] ^ 1]) + d[5:], "checksum|CRC32"),    # body byte: both sums catch it
])
def test_model_bridge_damaged_image_is_refused_before_touching_the_device(write_file, tmp_path, damage, match):
    model, backend, _old, new, _p = _setup(write_file)
    r = run_cli(backend, "bridge-write", write_file("bad.bin", damage(new)), "--backup", tmp_path / "b.bin", BRICK)
    assert r.rc == 4, r
    assert any(m in r.err for m in match.split("|")), r
    assert backend.transfers == 0 and not (tmp_path / "b.bin").exists()


def test_model_bridge_wrong_device_is_refused(write_file, tmp_path):
    dfu = DfuModel(firmware=b"app" * 100)
    _model, _backend, _old, new, path = _setup(write_file)
    r = run_cli(backend_for(dfu), "bridge-write", path, "--backup", tmp_path / "b.bin", BRICK)
    assert r.rc == 3 and "no asm2464 device" in r.err and "1209:70d0 dfu runtime" in r.err, r
    two = backend_for(BridgeModel("A", bridge_image_for("0.1")), BridgeModel("B", bridge_image_for("0.1")))
    r = run_cli(two, "bridge-write", path, "--backup", tmp_path / "b.bin", BRICK)
    assert r.rc == 3 and "--serial" in r.err, r


def test_model_bridge_verify_failure_restores_the_backup(write_file, tmp_path):
    model, backend, old, _new, path = _setup(write_file)
    before = bytes(model.chip.mem)
    real_program, bad = model.chip.program, {}

    def weak_cell_once(addr, data):         # the first program at 0x200 loses one set bit
        if addr == 0x200 and not bad:
            i = next(i for i, b in enumerate(data) if b)
            bad["at"] = addr + i
            data = data[:i] + b"\0" + data[i + 1:]
        real_program(addr, data)
    model.chip.program = weak_cell_once
    r = run_cli(backend, "bridge-write", path, "--backup", tmp_path / "b.bin", BRICK, "--quiet")
    assert r.rc == 11, r
    assert f"differs at 0x{bad['at']:06X}" in r.err and "was written back and verified" in r.err
    assert bytes(model.chip.mem) == before


@pytest.mark.parametrize("action", ["stall", "timeout"])
def test_model_bridge_usb_error_mid_write_restores_the_backup(write_file, tmp_path, action):
    model, backend, _old, _new, path = _setup(write_file)
    before = bytes(model.chip.mem)
    model.faults = [Fault("program", action, nth=10)]
    r = run_cli(backend, "bridge-write", path, "--backup", tmp_path / "b.bin", BRICK, "--quiet")
    assert r.rc == 7 and "was written back and verified: the bridge is unchanged" in r.err, r
    assert bytes(model.chip.mem) == before
    _power_cycle(model)
    assert "custom v0.1" in run_cli(backend, "list").out


def _write_ops(write_file, tmp_path) -> int:
    model, backend, _old, _new, path = _setup(write_file)
    assert run_cli(backend, "bridge-write", path, "--backup", tmp_path / "count.bin", BRICK, "--quiet").rc == 0
    return model.flash_ops


N_WRITE_OPS = 1 + 256 // 64 + -(-1800 // 64)      # one block erase, the config, the new image (64-B programs)


def test_model_bridge_power_loss_cases_cover_every_flash_operation(write_file, tmp_path):
    assert _write_ops(write_file, tmp_path) == N_WRITE_OPS


@pytest.mark.parametrize("op", range(N_WRITE_OPS))
def test_model_bridge_power_loss_at_every_block_restores_from_backup(write_file, tmp_path, op):
    """Cut the power at every erase/program of a write. The tool says how to recover; after
    power-on the bridge runs its ROM bootloader (the image is broken), bridge-restore writes the
    backup back through it, and the bridge boots the original version."""
    model, backend, old, _new, path = _setup(write_file)
    before = bytes(model.chip.mem)
    backup = tmp_path / "backup.bin"
    model.faults = [Fault("program" if op else "erase", "power_cut", nth=max(op - 1, 0))]
    r = run_cli(backend, "bridge-write", path, "--backup", backup, BRICK, "--quiet")
    assert r.rc == 12, r
    assert "disconnected" in r.err and f"bridge-restore --backup {backup} {BRICK}" in r.err
    model.power_on()
    # a half-written image fails the boot check; only a cut in the last program, after the image's
    # last bytes (the first half of that 64-B chunk) were in, leaves a complete image that boots
    last = op == N_WRITE_OPS - 1
    assert model.mode == ("custom" if last else "bootloader")
    r = run_cli(backend, "bridge-restore", "--backup", backup, BRICK, "--json")
    assert r.rc == 0, r
    route = json.loads(r.out)["route"]
    assert route == ("custom-firmware" if last else "bootloader") and json.loads(r.out)["verified"]
    assert bytes(model.chip.mem) == before
    _power_cycle(model)
    info = json.loads(run_cli(backend, "bridge-info", "--json").out)
    assert info["device"]["product"] == "custom v0.1"
    assert info["image"]["crc32"] == bridge_image.check(old).as_dict()["crc32"]


def test_model_bridge_restore_refuses_a_backup_without_a_valid_image(write_file):
    model, backend, _old, _new, _p = _setup(write_file)
    junk = write_file("junk.bin", b"\xff" * 65536)
    r = run_cli(backend, "bridge-restore", "--backup", junk, BRICK)
    assert r.rc == 4 and "no valid image" in r.err, r


def test_model_bridge_backup_then_rollback_through_custom_firmware(write_file, tmp_path):
    model, backend, old, new, path = _setup(write_file)
    saved = tmp_path / "saved.bin"
    r = run_cli(backend, "bridge-backup", saved, "--quiet")
    assert r.rc == 0 and saved.read_bytes() == bytes(model.chip.mem), r
    assert run_cli(backend, "bridge-write", path, "--backup", tmp_path / "b.bin", BRICK, "--quiet").rc == 0
    _power_cycle(model)
    r = run_cli(backend, "bridge-restore", "--backup", saved, "--dry-run", "--json")
    assert r.rc == 0 and json.loads(r.out)["dry_run"], r
    assert bytes(model.chip.mem[0x100:0x100 + len(new)]) == new                # dry run wrote nothing
    r = run_cli(backend, "bridge-restore", "--backup", saved, "--quiet")
    assert r.rc == 6, r                                                          # needs the opt-in too
    r = run_cli(backend, "bridge-restore", "--backup", saved, BRICK, "--json")
    assert r.rc == 0 and json.loads(r.out)["route"] == "custom-firmware" and json.loads(r.out)["verified"], r
    assert bytes(model.chip.mem) == saved.read_bytes()
    _power_cycle(model)
    assert "custom v0.1" in run_cli(backend, "list").out


def test_model_bridge_restore_refuses_a_backup_of_another_flash_size(write_file, tmp_path):
    model, backend, old, _new, _p = _setup(write_file)
    other = bytearray(b"\xff" * 0x20000)
    other[:0x100] = os.urandom(0x100)
    other[0x100:0x100 + len(old)] = old
    before = bytes(model.chip.mem)
    r = run_cli(backend, "bridge-restore", "--backup", write_file("other.bin", bytes(other)), BRICK)
    assert r.rc == 5 and "131072 B but this bridge's flash is 65536 B" in r.err, r
    assert bytes(model.chip.mem) == before


def test_model_bridge_identity_checks_refuse_before_writing(write_file, tmp_path):
    _m, _b, _old, _new, path = _setup(write_file)
    in_bootloader = BridgeModel(flash_image=b"")                      # no valid image: ROM bootloader
    r = run_cli(backend_for(in_bootloader), "bridge-write", path, "--backup", tmp_path / "b.bin", BRICK)
    assert r.rc == 5 and "bootloader" in r.err and "bridge-restore" in r.err, r
    no_flash = BridgeModel(flash_image=bridge_image_for("0.1"))
    no_flash.chip.jedec = b"\xff\xff\xff"                             # nothing answers on the SPI bus
    r = run_cli(backend_for(no_flash), "bridge-write", path, "--backup", tmp_path / "b.bin", BRICK)
    assert r.rc == 5 and "no SPI NOR flash answered" in r.err, r
    assert no_flash.flash_ops == 0 and in_bootloader.flash_ops == 0


def test_model_bridge_power_loss_during_a_restore_is_itself_restorable(write_file, tmp_path):
    model, backend, old, _new, path = _setup(write_file)
    saved = tmp_path / "saved.bin"
    assert run_cli(backend, "bridge-write", path, "--backup", saved, BRICK, "--quiet").rc == 0
    model.faults = [Fault("program", "power_cut", nth=6)]          # the rollback itself loses power
    r = run_cli(backend, "bridge-restore", "--backup", saved, BRICK, "--quiet")
    assert r.rc == 8 and "run the same bridge-restore command again" in r.err, r
    model.power_on()
    r = run_cli(backend, "bridge-restore", "--backup", saved, BRICK, "--json")
    assert r.rc == 0 and json.loads(r.out)["route"] == "bootloader", r
    assert bytes(model.chip.mem) == saved.read_bytes()
    _power_cycle(model)
    assert "custom v0.1" in run_cli(backend, "list").out


@pytest.mark.parametrize("command", ["bridge-backup", "bridge-write"])
def test_model_bridge_unwritable_backup_path_is_a_clear_error_and_nothing_is_written(command, write_file, tmp_path):
    model, backend, old, _new, path = _setup(write_file)
    before = bytes(model.chip.mem)
    backup = tmp_path / "no-such-dir" / "b.bin"
    argv = [command, backup] if command == "bridge-backup" else [command, path, "--backup", backup, BRICK]
    r = run_cli(backend, *argv, "--quiet")
    assert r.rc == 10 and "cannot write the backup" in r.err, r
    assert bytes(model.chip.mem) == before
