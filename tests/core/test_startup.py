"""Start-up path of `python -m boot` and `kernelos boot`: what it imports, and the helper thread that
imports numpy beside the device bring-up (boot/background.py, boot/sequence.py bring_up)."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from boot import sequence
from boot.background import Background, quick_switches

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))

# Never needed to boot an image: the build host's packages, firmware flashing, and what only serving,
# profiling or writing images needs (imported when that starts).
NOT_FOR_BOOT = ("onnx", "onnxruntime", "usb", "torch", "pycparser", "kernelos.builder", "kernelos.image.writer",
                "tools.flashing", "tools.flash", "tools.shell", "tools.commands.build", "tools.commands.demo",
                "boot.server", "boot.protocol", "kernelos.profile", "socketserver")


def modules_after(code: str) -> set:
    """The modules loaded once `code` ran in a fresh interpreter (SystemExit from a command is fine)."""
    script = f"import json, sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\nprint(json.dumps(sorted(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout.splitlines()[-1]))


def loaded(modules: set, names) -> list:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_importing_the_boot_entry_loads_no_numpy_and_nothing_boot_does_not_need():
    """numpy (0.1-0.2 s) must not load before boot() starts, else it cannot overlap the bring-up."""
    mods = modules_after("import boot.__main__, boot.command")
    assert loaded(mods, ("numpy", "kernelos.model") + NOT_FOR_BOOT) == []


@pytest.mark.parametrize("entry", ["boot", "kernelos"])
def test_booting_an_image_loads_nothing_it_does_not_need(mlp_image, entry):
    path, _ = mlp_image
    argv = ([] if entry == "boot" else ["boot"]) + [str(path), "--device", "cpu", "--count", "0"]
    mods = modules_after(f"import runpy; sys.argv = ['x'] + {argv!r}; runpy.run_module({entry!r}, run_name='__main__')")
    assert "numpy" in mods and "kernelos.model" in mods  # it did boot
    assert loaded(mods, NOT_FOR_BOOT) == []


def test_background_returns_the_value_or_raises_the_error_of_its_function():
    assert Background(lambda: 42, "t-ok").result() == 42
    names = []

    def fails():
        names.append(threading.current_thread().name)
        raise KeyError("boom")

    bg = Background(fails, "t-fail")
    with pytest.raises(KeyError, match="boom"):
        bg.result()
    assert names == ["t-fail"]


def test_quick_switches_restores_the_switch_interval_even_on_error():
    before = sys.getswitchinterval()
    with pytest.raises(RuntimeError):
        with quick_switches(1e-4):
            assert sys.getswitchinterval() == pytest.approx(1e-4)
            raise RuntimeError
    assert sys.getswitchinterval() == before


def test_bring_up_closes_the_device_and_image_when_the_helper_import_fails(mlp_image, monkeypatch):
    path, _ = mlp_image
    opened = []
    real_pick = sequence.pick_device

    def pick(image, spec, say):
        dev = real_pick(image, spec, say)
        opened.append((image, dev))
        return dev

    def broken_import():
        raise ImportError("no numpy here")

    monkeypatch.setattr(sequence, "pick_device", pick)
    monkeypatch.setattr(sequence, "_import_runtime", broken_import)
    with pytest.raises(ImportError, match="no numpy here"):
        sequence.bring_up(path, "cpu", lambda line: None)
    (image, dev), = opened
    assert dev.closed and image._mm is None


def test_bring_up_returns_a_verified_image_and_an_open_device(mlp_image):
    path, weights = mlp_image
    lines = []
    image, dev = sequence.bring_up(path, "cpu", lines.append)
    try:
        assert not dev.closed and dev.spec == "cpu"
        assert "verified" in lines[0] and lines[1].startswith("device cpu")
        assert sorted(image.weights) == sorted(weights)
    finally:
        dev.close()
        image.close()


def test_preload_imports_what_open_needs_and_touches_no_device():
    """hal.preload (boot runs it while verifying the image) imports the driver's open() path; it opens
    no device node, and a bad spec is left for hal.open to report."""
    mods = modules_after("import hal, os; hal.preload('nv:0'); hal.preload('nope:1'); "
                         "fds = [os.path.realpath(f'/proc/self/fd/{f}') for f in os.listdir('/proc/self/fd')]; "
                         "assert not [f for f in fds if 'nvidia' in f], fds")
    assert "drivers.nvidia.device" in mods and "drivers.nvidia.channel" in mods
