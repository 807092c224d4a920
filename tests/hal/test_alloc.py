"""Allocation: sizes from 1 B to 1 GiB, alignment, exhaustion, free and reuse."""

import pytest

import hal
from hal import DeviceClosed, InvalidArgument, OutOfDeviceMemory

MIN_ALIGN_B = 256  # every driver's buffers start at least this aligned (CUDA's guarantee)


@pytest.mark.parametrize("size_B", [1, 3, 255, 4096, 4097, 1 << 20, (1 << 20) + 13, 1 << 30])
def test_alloc_sizes_alignment_and_ends(dev, size_B):
    buf = dev.alloc(size_B)
    try:
        assert buf.size_B == size_B and buf.va % MIN_ALIGN_B == 0
        head, tail = bytes([0x11, 0x22, 0x33])[:size_B], bytes([0x44, 0x55, 0x66])[:size_B]
        buf.write(head, 0)
        buf.write(tail, size_B - len(tail))
        assert buf.read(len(tail), size_B - len(tail)) == tail
        if size_B >= 6:
            assert buf.read(3, 0) == head
        with pytest.raises(InvalidArgument):
            buf.write(b"x", size_B)  # one past the end
        with pytest.raises(InvalidArgument):
            buf.read(2, size_B - 1)
    finally:
        buf.free()


def test_buffers_do_not_overlap(dev):
    bufs = [dev.alloc(size_B) for size_B in (1, 100, 5000, 70000, 1)]
    try:
        ranges = sorted((b.va, b.va + b.size_B) for b in bufs)
        assert all(end <= nxt for (_, end), (nxt, _) in zip(ranges, ranges[1:]))
        for i, b in enumerate(bufs):
            b.write(bytes([i + 1]) * b.size_B)
        for i, b in enumerate(bufs):
            assert b.read() == bytes([i + 1]) * b.size_B
    finally:
        for b in bufs:
            b.free()


@pytest.mark.parametrize("bad", [0, -1, 1.5, "64", None])
def test_alloc_bad_size_is_invalid_argument(dev, bad):
    with pytest.raises(InvalidArgument):
        dev.alloc(bad)


def test_alloc_larger_than_device_raises(dev):
    with pytest.raises(OutOfDeviceMemory):
        dev.alloc(dev.info.memory_B + (1 << 30))
    dev.alloc(4096).free()  # still usable


def test_exhaustion_then_free_and_reuse(dev):
    """Allocate eighths of the device until it is full, free one, and allocate it again."""
    chunk_B = dev.info.memory_B // 8
    bufs = []
    try:
        with pytest.raises(OutOfDeviceMemory):
            for _ in range(10):
                bufs.append(dev.alloc(chunk_B))
        assert 1 <= len(bufs) <= 8
        bufs.pop().free()
        bufs.append(dev.alloc(chunk_B))  # the freed space is reusable
    finally:
        for b in bufs:
            b.free()
    small = dev.alloc(4096)
    small.write(b"ok")
    assert small.read(2) == b"ok"
    small.free()


def test_free_twice_and_use_after_free(dev):
    buf = dev.alloc(4096)
    va = buf.va
    assert any(m["va"] == va for m in dev.memory_map())
    buf.free()
    buf.free()
    assert not any(m["va"] == va for m in dev.memory_map())
    for use in (lambda: buf.read(1), lambda: buf.write(b"x"), lambda: buf.address(0)):
        with pytest.raises(DeviceClosed):
            use()


def test_host_visible_view_aliases_memory(dev):
    buf = dev.alloc(64, host_visible=True)
    try:
        view = buf.view()
        assert view.nbytes == 64
        view[0:4] = b"abcd"
        assert buf.read(4) == b"abcd"
        buf.write(b"wxyz", 60)
        assert bytes(view[60:64]) == b"wxyz"
    finally:
        buf.free()


def test_probe_lists_the_device(dev):
    infos = {i.spec: i for i in hal.probe()}
    assert dev.spec in infos and infos[dev.spec].memory_B > 0 and infos[dev.spec].compute_units >= 1
    assert dev.info.arch in dev.targets
