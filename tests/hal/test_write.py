"""CommandStream.write: host bytes given at submit time land in device memory in queue order, on
compute and copy queues, fresh on every replay; bad data is refused before anything is submitted."""

import numpy as np
import pytest

from hal import InvalidArgument, Var

from .helpers import POISON_BYTE, poison


@pytest.mark.parametrize("kind", ["compute", "copy"])
@pytest.mark.parametrize("size_B,offset_B", [(1, 0), (7, 3), (4096, 256), (40_001, 5)])
def test_write_replays_fresh_bytes(dev, rng, kind, size_B, offset_B):
    buf, done = dev.alloc(offset_B + size_B + 8), dev.signal(0)
    poison(buf)
    s = dev.queue(kind).stream().write(buf, size_B, "data", offset_B).signal(done, Var("t"))
    for t in (1, 2, 3):
        data = rng.integers(0, 256, size_B, dtype=np.uint8)
        s.submit(t=t, data=data)
        done.wait(t, 10)
        assert buf.read(size_B, offset_B) == data.tobytes()
    assert buf.read(offset_B, 0) == bytes([POISON_BYTE]) * offset_B
    assert buf.read(8, offset_B + size_B) == bytes([POISON_BYTE]) * 8
    done.close()
    buf.free()


def test_write_precedes_a_launch_that_reads_it(dev, programs, rng):
    """y = 2 * x + y with x written by the same compute stream just before the launch."""
    n = 1000
    xb, yb, done = dev.alloc(4 * n), dev.alloc(4 * n), dev.signal(0)
    s = dev.queue("compute").stream().write(xb, 4 * n, "x").launch(programs["saxpy"], [yb, xb, 2.0, n], grid=(n + 127) // 128,
                                                                     block=128).signal(done, Var("t"))
    for t in (1, 2):
        x, y = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
        yb.write(y)
        s.submit(t=t, x=x)
        done.wait(t, 10)
        np.testing.assert_allclose(np.frombuffer(yb.read(), np.float32), 2.0 * x + y, rtol=1e-6)
    for b in (xb, yb):
        b.free()
    done.close()


def test_bad_write_data_is_refused_before_submitting(dev):
    buf, done = dev.alloc(64), dev.signal(0)
    s = dev.queue("copy").stream().write(buf, 16, "data").signal(done, 1)
    for bad in (b"\x00" * 15, b"\x00" * 17, 3.5, np.zeros((4, 4), np.float32)[:, ::2], None):
        with pytest.raises(InvalidArgument):
            s.submit(data=bad)
    with pytest.raises(InvalidArgument):
        s.submit()                                  # the data is missing
    assert done.value == 0                          # nothing ran
    q = dev.queue("copy").stream()
    for args in ((buf, 0, "x"), (buf, 65, "x"), (buf, 8, "x", 60), (buf, 8, "not a name"), ("buf", 8, "x")):
        with pytest.raises(InvalidArgument):
            q.write(*args)
    with pytest.raises(InvalidArgument):
        dev.queue("copy").stream().signal(done, Var("t")).write(buf, 4, "t")    # clashes with a Var
    s.submit(data=np.arange(4, dtype=np.float32))
    done.wait(1, 10)
    assert np.frombuffer(buf.read(16), np.float32).tolist() == [0, 1, 2, 3]
    done.close()
    buf.free()
