"""Opening and closing devices leaves nothing behind; closed devices refuse work."""

import numpy as np
import pytest

import hal
from hal import DeviceClosed, KernelMeta

from .helpers import process_resources
from .kernels import source

CYCLES = 100
ALLOWED_GROWTH = {"fds": 0, "maps": 5, "threads": 0}  # maps: the Python allocator may add an arena or two


def _use_device(spec: str, binary: bytes):
    """Open, touch every kind of object, close."""
    with hal.open(spec) as dev:
        prog = dev.load_program(binary, "increment", KernelMeta(("ptr", "u32")))
        buf = dev.alloc(4096)
        buf.write(np.zeros(16, np.uint32))
        done = dev.signal(0)
        dev.queue("compute").stream().launch(prog, [buf, 16], grid=1, block=(16,)).signal(done, 1).submit()
        dev.queue("copy").stream().wait(done, 1).copy(buf, buf, 64, 64, 0).signal(done, 2).submit()
        done.wait(2, 10)
        assert np.all(np.frombuffer(buf.read(64, 64), np.uint32) == 1)


def test_open_close_100_times_leaks_nothing(spec):
    arch = {d.spec: d.arch for d in hal.probe()}[spec]
    src = source("increment", arch)
    try:
        binary = hal.compile(src, "increment", arch)
    except hal.CompileError as e:
        pytest.skip(f"{spec}: cannot compile test kernels for {arch}: {str(e).splitlines()[0]}")
    for _ in range(3):  # warm up: libraries, caches
        _use_device(spec, binary)
    before = process_resources()
    for _ in range(CYCLES):
        _use_device(spec, binary)
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
    with hal.open(spec) as dev:
        with pytest.raises(hal.InvalidArgument):
            dev.queue("graphics")
