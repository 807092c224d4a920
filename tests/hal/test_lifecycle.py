"""Opening and closing devices leaves nothing behind; closed devices refuse work."""

import time

import numpy as np
import pytest

import hal
from hal import DeviceClosed, KernelMeta

from .helpers import Programs, process_resources

CYCLES = 100
BUFFER_B = 1 << 20  # per cycle: a leaked buffer adds 100 MiB of mappings, far past the allowance
# maps, vm_kB: the Python allocator may add an arena or two while the test runs
ALLOWED_GROWTH = {"fds": 0, "maps": 5, "vm_kB": 16 << 10, "threads": 0}
THREAD_EXIT_S = 2.0  # how long a just-joined thread may take to leave /proc/self/task


def _use_device(spec: str, binary: bytes):
    """Open, touch every kind of object, close."""
    with hal.open(spec) as dev:
        prog = dev.load_program(binary, "increment", KernelMeta(("ptr", "u32")))
        buf = dev.alloc(BUFFER_B)
        buf.write(np.zeros(16, np.uint32))
        done = dev.signal(0)
        dev.queue("compute").stream().launch(prog, [buf, 16], grid=1, block=(16,)).signal(done, 1).submit()
        dev.queue("copy").stream().wait(done, 1).copy(buf, buf, 64, 64, 0).signal(done, 2).submit()
        done.wait(2, 10)
        assert np.all(np.frombuffer(buf.read(64, 64), np.uint32) == 1)


def test_open_close_100_times_leaks_nothing(spec):
    with hal.open(spec) as dev:
        binary = Programs(dev).binary("increment")
    for _ in range(3):  # warm up: libraries, caches
        _use_device(spec, binary)
    before = process_resources()
    for _ in range(CYCLES):
        _use_device(spec, binary)
    after = process_resources()
    # A joined thread can stay listed in /proc/self/task for a moment after pthread_join returns (the
    # kernel wakes the joiner before it removes the task): a leaked thread stays, a dying one goes.
    deadline = time.monotonic() + THREAD_EXIT_S
    while after["threads"] > before["threads"] and time.monotonic() < deadline:
        time.sleep(0.01)
        after = process_resources()
    for key, allowed in ALLOWED_GROWTH.items():
        assert after[key] - before[key] <= allowed, f"{key} grew from {before[key]} to {after[key]} over {CYCLES} cycles"


def test_closed_device_refuses_work(spec):
    dev = hal.open(spec)
    buf, sig, q = dev.alloc(64), dev.signal(0), dev.queue("compute")
    s = q.stream().signal(sig, 1)
    dev.close()
    dev.close()  # twice is fine
    for use in (lambda: dev.alloc(64), lambda: dev.signal(0), lambda: dev.queue("copy"), lambda: buf.read(1),
                lambda: sig.value, lambda: s.submit(), lambda: q.stream()):
        with pytest.raises(DeviceClosed):
            use()
    buf.free()  # freeing after close is harmless


def test_bad_specs_and_queue_kinds(spec):
    with pytest.raises(hal.DeviceNotFound):
        hal.open(f"{spec.split(':')[0]}:99")
    with pytest.raises(hal.DeviceNotFound):
        hal.open("nonsense:0")
    for bad_index in ("\u00b2", "1x", "-1"):  # "²" passes str.isdigit() but not int()
        with pytest.raises(hal.DeviceNotFound, match="bad device spec"):
            hal.open(f"{spec.split(':')[0]}:{bad_index}")
    with hal.open(spec) as dev:
        with pytest.raises(hal.InvalidArgument):
            dev.queue("graphics")


def test_close_with_a_queue_blocked_on_a_wait(spec):
    """A queue waiting on a signal nobody will set does not hold up close()."""
    import time
    dev = hal.open(spec)
    gate, done = dev.signal(0), dev.signal(0)
    dev.queue("compute").stream().wait(gate, 1).signal(done, 1).submit()
    dev.queue("copy").stream().wait(gate, 1).signal(done, 2).submit()
    t0 = time.monotonic()
    dev.close()
    assert time.monotonic() - t0 < 5.0
