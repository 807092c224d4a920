"""Fixtures for the core tests that need the cpu device (skipped with the reason where it is absent)."""

import pytest

from .models import compile_mlp_kernels, write_mlp_image


@pytest.fixture(scope="session")
def cpu_ready():
    import hal

    devices, reasons = hal.probe_report()
    if not any(d.spec == "cpu" for d in devices):
        pytest.skip(f"cpu device absent: {reasons.get('cpu', 'not probed')}")
    return True


@pytest.fixture(scope="session")
def mlp_image(cpu_ready, tmp_path_factory):
    """(path, weights) of a batch-4 MLP image with real cpu kernels."""
    path = tmp_path_factory.mktemp("mlp") / "mlp.kimg"
    weights = write_mlp_image(path, batch=4, binaries=compile_mlp_kernels())
    return path, weights
