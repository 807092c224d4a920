"""The HAL conformance suite runs every test once per driver: against each device hal.probe() finds,
and, for each driver that is absent here, as a skip whose reason is the driver's own (probe_report).
"""

import numpy as np
import pytest

import hal

from .helpers import Programs


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


@pytest.fixture(scope="module")
def programs(dev):
    return Programs(dev)


@pytest.fixture
def rng():
    """Fresh random inputs every run (never zeros)."""
    return np.random.default_rng()

