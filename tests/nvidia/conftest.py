"""Fixtures for the NVIDIA driver tests: `nv` is an opened nv:0, skipped with the probe's reason."""

import pytest

import hal


def nv_reason():
    try:
        import drivers.nvidia as nvd
        nvd.probe()
        return None
    except hal.DeviceNotFound as e:
        return str(e)


@pytest.fixture(scope="module")
def nv():
    reason = nv_reason()
    if reason:
        pytest.skip(reason)
    dev = hal.open("nv:0")
    yield dev
    dev.close()
