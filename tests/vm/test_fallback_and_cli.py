"""Host-side pieces of the system image's boot: the cpu-fallback line and a CLI that still works
when a build-host package (onnx, usb) is missing, as on the system image."""

import pytest

from boot.sequence import fallback_note
from hal.device import DeviceInfo
from tools import cli


def _info(spec, vendor, arch):
    return DeviceInfo(spec=spec, vendor=vendor, arch=arch, name=spec, memory_B=1 << 30, compute_units=1)


def test_fallback_note_names_each_absent_driver_and_each_gpu_without_kernels():
    cpu, gpu = _info("cpu", "cpu", "cpu-x86_64"), _info("nv:0", "nvidia", "sm_90")
    note = fallback_note(cpu, [gpu, cpu], {"amd": "no /dev/kfd"})
    assert note == ("no accelerator (amd: no /dev/kfd; nv:0 (sm_90) present but the image has no kernels "
                    "for it): falling back to the cpu device")
    assert fallback_note(gpu, [gpu, cpu], {}) is None


def test_cli_lists_a_command_whose_package_is_missing_and_explains(monkeypatch, tmp_path, capsys):
    (tmp_path / "needs_missing.py").write_text(
        "import kos_no_such_package\nNAME = 'needs-missing'\nHELP = 'x'\n"
        "def add_arguments(p): pass\ndef run(args): return 0\n")
    monkeypatch.setattr(cli.commands, "__path__", [*cli.commands.__path__, str(tmp_path)])
    help_text = " ".join(cli.build_parser().format_help().split())
    assert "needs_missing" in help_text and "needs the Python package 'kos_no_such_package'" in help_text
    assert cli.main(["needs_missing"]) == 2
    assert "kernelos needs_missing: needs the Python package 'kos_no_such_package'" in capsys.readouterr().err
    assert cli.main(["info", "--json"]) == 0  # the other commands still work


def test_cli_still_fails_loudly_when_our_own_code_is_missing(monkeypatch, tmp_path):
    (tmp_path / "broken.py").write_text("import kernelos.no_such_module\n")
    monkeypatch.setattr(cli.commands, "__path__", [*cli.commands.__path__, str(tmp_path)])
    with pytest.raises(ModuleNotFoundError):
        cli.build_parser()
