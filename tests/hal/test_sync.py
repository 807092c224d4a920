"""Signals: cross-queue ordering, timeline semantics, timeouts, timestamps, Var binding."""

import time

import numpy as np
import pytest

from hal import DeviceTimeout, InvalidArgument, Var

from .helpers import poison


def test_cross_queue_order_through_signals(dev, programs, rng):
    """compute waits for copy: the kernel must see the copied data, never the stale one."""
    n = 50000
    staging, x, y = dev.alloc(4 * n), dev.alloc(4 * n), dev.alloc(4 * n)
    copied, done = dev.signal(0), dev.signal(0)
    compute = dev.queue("compute").stream().wait(copied, Var("t")).launch(
        programs["saxpy"], [y, x, 2.0, n], grid=((n + 255) // 256,), block=(256,)).signal(done, Var("t"))
    copy = dev.queue("copy").stream().copy(x, staging, 4 * n).signal(copied, Var("t"))
    for t in (1, 2, 3):
        data, y0 = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
        staging.write(data)
        poison(x)
        y.write(y0)
        compute.submit(t=t)
        time.sleep(0.02)
        assert done.value == t - 1, "compute ran before the copy it waits for"
        copy.submit(t=t)
        done.wait(t, 10)
        np.testing.assert_allclose(np.frombuffer(y.read(), np.float32), 2.0 * data.astype(np.float64) + y0, rtol=1e-6, atol=1e-6)
    for b in (staging, x, y):
        b.free()


def test_timeline_values(dev):
    sig = dev.signal(5)
    assert sig.value == 5
    sig.wait(3, 0.1)  # already past: returns at once
    sig.wait(5, 0.1)
    sig.set(2**63 + 7)  # full 64 bits survive
    assert sig.value == 2**63 + 7
    for bad in (-1, 2**64):
        with pytest.raises(InvalidArgument):
            sig.set(bad)
        with pytest.raises(InvalidArgument):
            dev.signal(bad)
    assert sig.value == 2**63 + 7
    sig.close()

    sig = dev.signal(0)
    q = dev.queue("compute")
    q.stream().signal(sig, 1).signal(sig, 2).signal(sig, 3).submit()
    sig.wait(3, 10)
    assert sig.value == 3
    s = q.stream().signal(sig, Var("t") + 2).signal(sig, Var("t") + 1 - 1 + 3)
    for t in (10, 20, 2**40, np.uint64(2**41)):
        s.submit(t=t)
        sig.wait(int(t) + 3, 10)
        assert sig.value == int(t) + 3
    sig.close()


def test_submit_needs_every_var_and_submits_nothing_otherwise(dev):
    sig = dev.signal(0)
    q = dev.queue("copy")
    s = q.stream().signal(sig, Var("a")).signal(sig, Var("b"))
    before = q.state()
    with pytest.raises(InvalidArgument, match="b"):
        s.submit(a=1)
    with pytest.raises(InvalidArgument):
        q.stream().signal(sig, Var("a") - 5).submit(a=2)  # resolves below zero
    with pytest.raises(InvalidArgument):
        q.stream().signal(sig, -1)
    with pytest.raises(InvalidArgument):
        q.stream().signal(sig, Var("a")).submit(a=1.5)
    assert q.state()["wptr"] == before["wptr"] and sig.value == 0
    s.submit(a=1, b=4)
    sig.wait(4, 10)
    sig.close()


def test_wait_timeout_raises_and_does_not_hang(dev):
    sig = dev.signal(0)
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout, match="1"):
        sig.wait(1, timeout_s=0.05)
    assert 0.04 <= time.monotonic() - t0 < 2.0
    with pytest.raises(DeviceTimeout):
        sig.wait(1, timeout_s=0)
    for never in (float("nan"), -1.0):  # a deadline that never comes, or one already gone
        with pytest.raises(InvalidArgument):
            sig.wait(1, timeout_s=never)
    sig.close()


def test_queue_blocked_on_host_signal_times_out_then_recovers(dev, programs):
    """A queue waiting on a signal the host sets later: waits time out, the queue stays usable."""
    gate, done = dev.signal(0), dev.signal(0)
    q = dev.queue("compute")
    q.stream().wait(gate, 1).launch(programs["empty"], [], grid=1).signal(done, 1).submit()
    with pytest.raises(DeviceTimeout):
        done.wait(1, timeout_s=0.05)
    assert q.state()["pending"] > 0
    gate.set(1)
    done.wait(1, 10)
    q.stream().signal(done, 2).submit()
    done.wait(2, 10)
    assert q.state()["pending"] == 0
    gate.close()
    done.close()


def test_timestamps_increase(dev, programs):
    t1, t2, done = dev.signal(0), dev.signal(0), dev.signal(0)
    n = 1 << 16
    buf = dev.alloc(4 * n)
    buf.write(np.zeros(n, np.uint32))
    dev.queue("compute").stream().timestamp(t1).launch(programs["increment"], [buf, n], grid=(n // 64,), block=(64,)) \
        .timestamp(t2).signal(done, 1).submit()
    done.wait(1, 10)
    assert 0 < t1.value <= t2.value
    assert np.all(np.frombuffer(buf.read(), np.uint32) == 1)
    buf.free()
    for s in (t1, t2, done):
        s.close()


def test_signal_use_after_close(dev):
    from hal import DeviceClosed
    sig = dev.signal(0)
    sig.close()
    sig.close()
    with pytest.raises(DeviceClosed):
        sig.value
    with pytest.raises(DeviceClosed):
        dev.queue("compute").stream().signal(sig, 1)
