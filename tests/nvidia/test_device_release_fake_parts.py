"""NvDevice._release against fake parts (no GPU): every step runs even when earlier ones fail, the
first error is the one raised, and every fd is closed. Plus the KERNELOS_NV_COPY_ENGINE parsing."""

import os

import pytest

from drivers.nvidia import device as nv_device
from drivers.nvidia.classes import objects
from hal import DeviceError, InvalidArgument


class FakePart:
    """Records its calls in a shared log; raises `error` from the named method."""

    def __init__(self, name, log, failing=(), error=None):
        self.name, self.log, self.failing, self.error = name, log, failing, error

    def __getattr__(self, method):
        def call(*args):
            self.log.append(f"{self.name}.{method}")
            if method in self.failing:
                raise self.error
        return call


def _half_released_device(log, memory_fails=None, free_client_fails=None):
    """An NvDevice with fake memory, VA space and RM file, and a real /dev fd (a pipe end)."""
    dev = object.__new__(nv_device.NvDevice)
    dev.memory = FakePart("memory", log, ("close",) if memory_fails else (), memory_fails)
    dev.usermode_addr = 0
    dev.groups = {}
    dev.va_space = FakePart("va_space", log)
    dev.rm = FakePart("rm", log, ("free_client",) if free_client_fails else (), free_client_fails)
    dev.client = 0xC1
    read_fd, dev.dev_fd = os.pipe()
    os.close(read_fd)
    return dev


def _is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def test_release_runs_every_step_and_raises_the_first_error():
    log = []
    first, second = DeviceError("memory unmap failed"), DeviceError("RM_FREE failed")
    dev = _half_released_device(log, memory_fails=first, free_client_fails=second)
    fd = dev.dev_fd
    with pytest.raises(DeviceError) as raised:
        dev._release()
    assert raised.value is first
    assert log == ["memory.close", "va_space.close", "rm.free_client", "rm.close"]
    assert not _is_open(fd)
    assert (dev.memory, dev.va_space, dev.rm, dev.client, dev.dev_fd) == (None, None, None, 0, -1)
    dev._release()  # nothing left: a second release does nothing and raises nothing


def test_release_without_errors_closes_everything():
    log = []
    dev = _half_released_device(log)
    fd = dev.dev_fd
    dev._release()
    assert log == ["memory.close", "va_space.close", "rm.free_client", "rm.close"]
    assert not _is_open(fd)


def test_bring_up_error_is_kept_when_release_also_fails(monkeypatch):
    log = []
    release_error = DeviceError("RM_FREE failed")

    def failing_bring_up(self, index):
        self.rm = FakePart("rm", log, ("free_client",), release_error)
        self.client = 0xC1
        raise DeviceError("VA space allocation failed")

    monkeypatch.setattr(nv_device.NvDevice, "_bring_up", failing_bring_up)
    with pytest.raises(DeviceError, match="VA space allocation failed") as raised:
        nv_device.NvDevice(0)
    assert "RM_FREE failed" in " ".join(getattr(raised.value, "__notes__", []))
    assert log == ["rm.free_client", "rm.close"]


COPY = objects.ENGINE_TYPE_COPY0
PRESENT = [COPY + 1, COPY + 2, COPY + 4]


def test_copy_engine_setting():
    assert nv_device.pick_copy_engine(PRESENT, None) == COPY + 4
    assert nv_device.pick_copy_engine(PRESENT, "2") == COPY + 2


@pytest.mark.parametrize("setting", ["fast", "", "2.5", "3", "-1"])
def test_bad_copy_engine_setting_is_a_clear_invalid_argument(setting):
    with pytest.raises(InvalidArgument, match=r"KERNELOS_NV_COPY_ENGINE=.*one of \[1, 2, 4\]"):
        nv_device.pick_copy_engine(PRESENT, setting)
