"""Host<->device and device<->device copies of odd sizes at odd offsets."""

import pytest

from hal import InvalidArgument

from .helpers import POISON_BYTE, poison

ODD_CASES = [  # (size_B, dst_offset_B, src_offset_B)
    (1, 0, 0), (3, 1, 2), (7, 13, 5), (4095, 1, 3), (4097, 4095, 0), (65537, 7, 4099), ((1 << 20) + 3, 5, 1),
]


def _copy_sync(dev, dst, src, size_B, dst_offset_B=0, src_offset_B=0, timeout_s=10.0):
    done = dev.signal(0)
    dev.queue("copy").stream().copy(dst, src, size_B, dst_offset_B, src_offset_B).signal(done, 1).submit()
    done.wait(1, timeout_s)
    done.close()


@pytest.mark.parametrize("size_B,offset_B,_", ODD_CASES)
def test_host_device_round_trip(dev, rng, size_B, offset_B, _):
    buf = dev.alloc(size_B + offset_B + 9)
    poison(buf)
    data = rng.integers(0, 256, size_B, dtype="uint8").tobytes()
    buf.write(data, offset_B)
    assert buf.read(size_B, offset_B) == data
    assert buf.read(offset_B, 0) == bytes([POISON_BYTE]) * offset_B  # nothing before the range changed
    assert buf.read(9, offset_B + size_B) == bytes([POISON_BYTE]) * 9  # nor after
    buf.free()


@pytest.mark.parametrize("size_B,dst_offset_B,src_offset_B", ODD_CASES)
def test_device_device_copy(dev, rng, size_B, dst_offset_B, src_offset_B):
    src = dev.alloc(size_B + src_offset_B + 5)
    dst = dev.alloc(size_B + dst_offset_B + 5)
    data = rng.integers(0, 256, src.size_B, dtype="uint8").tobytes()
    src.write(data)
    poison(dst)
    _copy_sync(dev, dst, src, size_B, dst_offset_B, src_offset_B)
    got = dst.read()
    assert got[dst_offset_B:dst_offset_B + size_B] == data[src_offset_B:src_offset_B + size_B]
    assert got[:dst_offset_B] == bytes([POISON_BYTE]) * dst_offset_B
    assert got[dst_offset_B + size_B:] == bytes([POISON_BYTE]) * 5
    src.free()
    dst.free()


def test_copy_chain_in_one_stream(dev, rng):
    """Copies in one stream run in order: a -> b -> c sees a's data in c."""
    size_B = 100003
    a, b, c = (dev.alloc(size_B) for _ in range(3))
    data = rng.integers(0, 256, size_B, dtype="uint8").tobytes()
    a.write(data)
    poison(b)
    poison(c)
    done = dev.signal(0)
    dev.queue("copy").stream().copy(b, a, size_B).copy(c, b, size_B).signal(done, 1).submit()
    done.wait(1, 10)
    assert c.read() == data
    for x in (a, b, c, done):
        x.free() if hasattr(x, "free") else x.close()


def test_copy_out_of_range_is_refused_at_record(dev):
    a, b = dev.alloc(100), dev.alloc(50)
    stream = dev.queue("copy").stream()
    for args in [(b, a, 51), (b, a, 10, 41, 0), (b, a, 10, 0, 91), (b, a, -1)]:
        with pytest.raises(InvalidArgument):
            stream.copy(*args)
    with pytest.raises(InvalidArgument):
        dev.queue("compute").stream().copy(b, a, 10)  # copies need a copy queue
    with pytest.raises(InvalidArgument):
        stream.copy(b, b"not a buffer", 10)
    a.free()
    b.free()


def test_zero_size_copy_is_a_no_op(dev):
    a, b = dev.alloc(16), dev.alloc(16)
    a.write(b"A" * 16)
    b.write(b"B" * 16)
    _copy_sync(dev, b, a, 0)
    assert b.read() == b"B" * 16
    a.free()
    b.free()
