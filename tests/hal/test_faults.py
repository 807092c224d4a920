"""A kernel that faults: the wait raises DeviceFault, the device stays usable."""

import numpy as np
import pytest

import hal
from hal import DeviceFault

from .helpers import Programs

UNMAPPED_VA = 0x10  # in the first page, which no process or GPU VA space maps


@pytest.fixture
def fresh_dev(spec):
    """Faults kill a queue; keep them away from the module's shared device."""
    with hal.open(spec) as dev:
        yield dev


def test_fault_raises_and_device_recovers(fresh_dev):
    dev = fresh_dev
    programs = Programs(dev)
    done = dev.signal(0)
    q = dev.queue("compute")
    q.stream().launch(programs["bad_store"], [UNMAPPED_VA], grid=1).signal(done, 1).submit()
    with pytest.raises(DeviceFault, match="compute0"):
        done.wait(1, 10)
    assert q.state()["dead"]
    with pytest.raises(DeviceFault):
        q.stream().signal(done, 1).submit()
    # a fresh queue of the same kind works, and so does everything else on the device
    q2 = dev.queue("compute")
    assert q2 is not q and not q2.state()["dead"]
    with pytest.raises(hal.DeviceClosed):
        q.stream().signal(done, 1).submit()  # the dead queue was torn down
    n = 64
    buf = dev.alloc(4 * n)
    buf.write(np.arange(n, dtype=np.uint32))
    q2.stream().launch(programs["increment"], [buf, n], grid=1, block=(n,)).signal(done, 2).submit()
    done.wait(2, 10)
    assert np.array_equal(np.frombuffer(buf.read(), np.uint32), np.arange(n) + 1)


def test_fault_in_a_multi_block_launch(fresh_dev):
    """Every block faults, on every worker thread at once: reported once, nothing crashes."""
    dev = fresh_dev
    programs = Programs(dev)
    done = dev.signal(0)
    dev.queue("compute").stream().launch(programs["bad_store"], [UNMAPPED_VA], grid=(64,)).signal(done, 1).submit()
    with pytest.raises(DeviceFault):
        done.wait(1, 10)
    with pytest.raises(DeviceFault):
        done.wait(1, 10)  # still faulted until the queue is replaced
    dev.queue("compute").stream().signal(done, 3).submit()
    done.wait(3, 10)
    assert hal.DeviceFault  # the process is alive
