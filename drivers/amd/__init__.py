"""AMD driver (KFD + PM4/SDMA): not written yet; probe() says so."""

from hal import DeviceNotFound

VENDOR = "amd"


def probe():
    raise DeviceNotFound("the amd driver is not written yet")


def open(index: int):  # noqa: A001
    raise DeviceNotFound("the amd driver is not written yet")
