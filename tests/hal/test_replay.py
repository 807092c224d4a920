"""Recorded streams replayed: 1000 submits of one recording, each checked."""

import numpy as np

from hal import Var

LAUNCHES_PER_STREAM = 10
REPLAYS = 1000


def test_resubmit_recorded_stream_1000_times(dev, programs, rng):
    n = 4096
    buf = dev.alloc(4 * n)
    start = rng.integers(0, 1 << 20, n, dtype=np.uint32)
    buf.write(start)
    done = dev.signal(0)
    s = dev.queue("compute").stream()
    for _ in range(LAUNCHES_PER_STREAM):
        s.launch(programs["increment"], [buf, n], grid=(n // 128,), block=(128,))
    s.signal(done, Var("t"))
    for t in range(1, REPLAYS + 1):
        s.submit(t=t)
        done.wait(t, 10)
        got = np.frombuffer(buf.read(), np.uint32)
        assert np.array_equal(got, start + t * LAUNCHES_PER_STREAM), f"wrong result after replay {t}"
    buf.free()
    done.close()


def test_replays_pipeline_without_waiting(dev, programs):
    """Many submits in flight at once finish in order with the right total."""
    n = 256
    buf = dev.alloc(4 * n)
    buf.write(np.zeros(n, np.uint32))
    done = dev.signal(0)
    s = dev.queue("compute").stream().launch(programs["increment"], [buf, n], grid=(n // 64,), block=(64,)).signal(done, Var("t"))
    for t in range(1, 301):
        s.submit(t=t)
    done.wait(300, 30)
    assert np.all(np.frombuffer(buf.read(), np.uint32) == 300)
    buf.free()
    done.close()


def test_decode_names_every_command(dev, programs):
    sig = dev.signal(0)
    buf = dev.alloc(64)
    s = dev.queue("compute").stream().wait(sig, Var("t")).launch(programs["increment"], [buf, 16], grid=1, block=(16,)) \
        .timestamp(sig).signal(sig, Var("t") + 1)
    lines = s.decode()
    assert len(lines) == 4
    assert all(isinstance(line, str) and line for line in lines)
    assert "increment" in lines[1]
    buf.free()
    sig.close()
