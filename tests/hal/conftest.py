"""The HAL conformance suite runs every test once per driver: against each device hal.probe() finds,
and, for each driver that is absent here, as a skip whose reason is the driver's own (probe_report).
"""

import pytest

import hal
from hal import CompileError, KernelMeta

from . import kernels


def _device_params():
    devices, absent = hal.probe_report()
    params = [pytest.param(d.spec, id=d.spec) for d in devices]
    params += [pytest.param(prefix, id=prefix, marks=pytest.mark.skip(reason=f"{prefix}: {why}"))
               for prefix, why in absent.items()]
    return params


DEVICE_PARAMS = _device_params()


@pytest.fixture(scope="module", params=DEVICE_PARAMS)
def spec(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def dev(spec):
    d = hal.open(spec)
    yield d
    d.close()


class Programs:
    """Test kernels compiled for a device's arch and loaded on it, once each."""

    def __init__(self, device):
        self.device, self._loaded = device, {}

    def __getitem__(self, name: str):
        if name not in self._loaded:
            arch = self.device.info.arch
            src = kernels.source(name, arch)
            if src is None:
                pytest.skip(f"{self.device.spec}: the suite has no test kernels for arch {arch}")
            try:
                binary = hal.compile(src, name, arch)
            except CompileError as e:
                pytest.skip(f"{self.device.spec}: cannot compile test kernels for {arch}: {str(e).splitlines()[0]}")
            self._loaded[name] = self.device.load_program(binary, name, KernelMeta(kernels.KERNELS[name].params))
        return self._loaded[name]


@pytest.fixture(scope="module")
def programs(dev):
    return Programs(dev)


@pytest.fixture
def rng():
    import numpy as np
    return np.random.default_rng()

