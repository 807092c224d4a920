"""Boots the system image (make vm-image) under QEMU and reads its serial console: the self-test
passes on the cpu device (no accelerator in the VM), the power-on-to-first-result time is printed,
the VM powers itself off after the counted inferences, and a damaged device image is refused with an
ImageError and a clean power-off instead of a kernel panic.

KVM when it is usable here, software emulation (TCG) otherwise; both are bounded by a timeout.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

from boot.vm import qemu
from boot.vm.build import write_initrd

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(REPO, "out", "vm")
COUNT = 3
TIMEOUT_S = {"kvm": 120.0, "tcg": 420.0}

pytestmark = [pytest.mark.vm, pytest.mark.timeout(900)]


def _missing_tool():
    if importlib.util.find_spec("kernelos.builder") is None:
        return "the image builder (kernelos.builder) that makes the demo device image is not in this tree"
    if os.geteuid() != 0:
        return "building the system image needs root (it compiles bytecode in a chroot)"
    for tool, how in (("apt-get", "a Debian-based host"), ("dpkg-deb", "a Debian-based host"),
                      ("readelf", "`make vm-tools`"), ("lz4", "`make vm-tools`"),
                      (qemu.QEMU, "`make vm-tools`")):
        if shutil.which(tool) is None:
            return f"{tool} not found: needs {how}"
    return None


@pytest.fixture(scope="module")
def system_image():
    why = _missing_tool()
    if why:
        pytest.skip(why)
    env = dict(os.environ, PYTHONPATH=REPO)
    built = subprocess.run([sys.executable, "-m", "boot.vm.build", "--out", OUT], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, f"make vm-image failed:\n{built.stdout}\n{built.stderr}"
    print(built.stdout)
    return {"kernel": os.path.join(OUT, "vmlinuz"), "initrd": os.path.join(OUT, "initrd.img"),
            "rootfs": os.path.join(OUT, "rootfs.cpio.lz4"), "image": os.path.join(OUT, "demo.kimg")}


def _boot(kernel, initrd, count=COUNT):
    accel = qemu.default_accel()
    result = qemu.boot(kernel, initrd, count, accel, timeout_s=TIMEOUT_S[accel])
    assert not result.timed_out, f"QEMU ({accel}) killed after {TIMEOUT_S[accel]} s:\n{result.console}"
    assert "Kernel panic" not in result.console, result.console
    return result


def test_vm_boots_to_passing_self_test_and_powers_off(system_image):
    result = _boot(system_image["kernel"], system_image["initrd"])
    console = result.console
    assert "Linux version" in console, console
    assert re.search(r"\] self-test PASS: ", console), console
    assert "falling back to the cpu device" in console, console
    first = re.search(r"kos-init: first result at (\d+\.\d+) s after power-on", console)
    assert first and 0.0 < float(first.group(1)) < TIMEOUT_S[result.accel], console
    assert re.search(r"time from process start to first result: \d", console), console
    assert f"over {COUNT} " in console, console  # the counted inferences ran
    assert f"kos-init: done: {COUNT} inferences run" in console, console
    assert result.powered_off, console
    print(f"power-on to first result ({result.accel}): {first.group(1)} s kernel uptime, "
          f"{result.first_seen_s(qemu.FIRST_RESULT_MARK):.2f} s host clock from QEMU start")


def test_damaged_image_prints_image_error_and_halts_cleanly(system_image, tmp_path):
    data = bytearray(open(system_image["image"], "rb").read())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])  # inside a section
    damaged = tmp_path / "damaged.kimg"
    damaged.write_bytes(bytes(data))
    initrd = tmp_path / "initrd-damaged.img"
    write_initrd(system_image["rootfs"], str(damaged), str(initrd))

    result = _boot(system_image["kernel"], str(initrd))
    console = result.console
    assert re.search(r"^boot: ImageError: .+", console, re.M), console
    assert "] self-test " not in console, console  # refused before any device work
    assert "kos-init: boot failed (exit status 2); halting" in console, console
    assert result.powered_off, console


def test_vm_without_count_serves(system_image):
    """kos.count=0: after the self-test the boot serves on its UNIX socket and the VM stays up."""
    accel = qemu.default_accel()
    result = qemu.boot(system_image["kernel"], system_image["initrd"], 0, accel, timeout_s=TIMEOUT_S[accel],
                       stop_at="] serving ")
    assert result.stopped, f"no 'serving' line ({accel}):\n{result.console}"
    console = result.console
    assert re.search(r"\] serving 'demo_mlp_\w+' on /\S+", console), console
    assert re.search(r"steady-state latency: median .* over 100 ", console), console
    assert "kos-init: powering off" not in console and "Kernel panic" not in console, console
