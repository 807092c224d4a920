"""The shell's helpers in-process on the cpu device: data round trips, kernels against numpy,
waits that time out, typed errors for bad calls, the DAG stepper against an independent reference."""

import time

import numpy as np
import pytest

import hal
from tools.shell.hexdump import hexdump
from tools.shell.session import Session

from .conftest import cpu_device_reason

AXPB = """#include "kos_kernel.h"
struct args { const float *x; float *y; float a; uint32_t n; };
KOS_KERNEL(axpb) {
    const struct args *p = args;
    for (uint64_t b = block_begin; b < block_end; b++)
        for (uint32_t t = 0; t < L->block[0]; t++) {
            uint64_t i = b * L->block[0] + t;
            if (i < p->n) p->y[i] = p->a * p->x[i] + 1.0f;
        }
}
"""


@pytest.fixture
def shell():
    reason = cpu_device_reason()
    if reason:
        pytest.skip(f"cpu device unavailable: {reason}")
    dev = hal.open("cpu")
    try:
        yield Session(dev, timeout_s=0.5)
    finally:
        dev.close()


def test_upload_download_round_trip_keeps_dtype_and_shape(shell):
    rng = np.random.default_rng()
    for a in (rng.standard_normal((3, 5)).astype(np.float32), rng.integers(-2**40, 2**40, 7), rng.random(1)):
        got = shell.download(shell.upload(a))
        assert got.dtype == a.dtype and got.shape == a.shape and np.array_equal(got, a)


def test_empty_is_poisoned_and_download_reinterprets_on_request(shell):
    buf = shell.empty((2, 3), "int32")
    assert shell.download(buf).shape == (2, 3)
    assert (shell.download(buf, dtype=np.uint32) == 0xCDCDCDCD).all()


def test_kernel_launch_matches_numpy(shell, capsys):
    n = 1000
    x = np.random.default_rng().standard_normal(n).astype(np.float32)
    xb, yb = shell.upload(x), shell.empty(n)
    k = shell.kernel(AXPB, "axpb", "ptr, ptr, f32, u32")
    stream = shell.launch(k, [xb, yb, -1.5, n], grid=(n + 63) // 64, block=64)
    np.testing.assert_allclose(shell.download(yb), -1.5 * x.astype(np.float64) + 1.0, rtol=1e-6)
    shell.decode(stream)
    decoded = capsys.readouterr().out.splitlines()
    assert len(decoded) == len(stream.decode()) >= 2 and "axpb" in decoded[0]


def test_wait_times_out_with_device_timeout(shell):
    sig = shell.signal(3)
    start_s = time.monotonic()
    with pytest.raises(hal.DeviceTimeout, match="did not reach 4 within 0.3 s"):
        shell.wait(sig, 4, timeout_s=0.3)
    assert 0.25 < time.monotonic() - start_s < 3.0
    sig.set(4)
    shell.wait(sig, 4)


def test_bad_calls_raise_typed_errors(shell):
    with pytest.raises(hal.CompileError):
        shell.kernel("this is not C", "axpb", "ptr")
    with pytest.raises(hal.InvalidArgument):
        shell.kernel(AXPB, "axpb", "ptr, pointer")
    with pytest.raises(hal.InvalidArgument):
        shell.upload(np.zeros(0))
    with pytest.raises(hal.ImageError):
        shell.load("/nonexistent/model.kimg")
    buf = shell.upload(np.ones(4))
    buf.free()
    with pytest.raises(hal.DeviceClosed):
        shell.download(buf)
    with pytest.raises(hal.InvalidArgument):
        shell.hexdump(shell.upload(np.ones(4)), 16, offset_B=64)


def test_memmap_labels_live_buffers_only(shell, capsys):
    keep, gone = shell.upload(np.ones(4, np.float32)), shell.upload(np.ones(2, np.int64))
    gone.free()
    shell.memmap()
    out = capsys.readouterr().out
    assert f"0x{keep.va:012x}" in out and "upload float32[4]" in out
    assert "int64" not in out and out.rstrip().endswith("1 allocations, 16 B")


def test_hexdump_folds_repeated_lines():
    data = b"A" * 16 + bytes(64) + b"end"
    lines = hexdump(data, 0x1000).splitlines()
    assert lines[0].startswith("000000001000  41 41") and lines[0].endswith("|AAAAAAAAAAAAAAAA|")
    assert lines[1].startswith("000000001010  00") and lines[2] == "*"
    assert lines[3] == "000000001050  " + "65 6e 64".ljust(48) + "  |end|" and len(lines) == 4


def test_stepper_runs_the_demo_image_node_by_node(shell, tmp_path, capsys):
    from .demo_image import demo_arrays, write_demo_image

    write_demo_image(tmp_path / "demo.kimg")
    x, w, b = (a.astype(np.float64) for a in demo_arrays())
    m = shell.load(tmp_path / "demo.kimg")
    with pytest.raises(hal.InvalidArgument, match="has not been read or written"):
        m.tensor("y")
    m.step()
    np.testing.assert_array_equal(m.tensor("x"), x)
    np.testing.assert_allclose(m.tensor("h"), x * w, rtol=1e-6)
    with pytest.raises(hal.InvalidArgument):
        m.tensor("y")  # node 1 has not run yet
    m.step()
    np.testing.assert_allclose(m.tensor("y"), np.maximum(x * w + b, 0), rtol=1e-6)
    m.step()
    m.check()
    shown = capsys.readouterr().out
    assert "node 0 scale: launch mul_cols" in shown and "  out y " in shown
    assert "all 2 nodes have run; reset() starts again\ny: max |out - golden| = 0\n" in shown
    with pytest.raises(hal.InvalidArgument, match="no buffer 'z'"):
        m.tensor("z")
    m.reset({"x": -demo_arrays()[0]})
    m.step()
    m.self_test()  # ends the stepping (which holds the model's lock) and runs a whole inference
    assert capsys.readouterr().out.splitlines()[-1].startswith("self-test PASS: max |out - golden| = 0")
    assert m.next == 0
    m.run()
    np.testing.assert_allclose(m.tensor("y"), np.maximum(-x * w + b, 0), rtol=1e-6)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("timeout_s", [float("nan"), -1.0])
def test_wait_refuses_a_timeout_that_would_never_end_or_is_negative(shell, timeout_s):
    with pytest.raises(hal.InvalidArgument, match="timeout_s"):
        shell.wait(shell.signal(0), 1, timeout_s=timeout_s)


def test_load_replaces_the_previous_image_and_frees_its_memory(shell, tmp_path):
    from .demo_image import write_demo_image

    write_demo_image(tmp_path / "demo.kimg")
    before = shell.dev.memory_map()
    first = shell.load(tmp_path / "demo.kimg")
    loaded = shell.dev.memory_map()
    assert len(loaded) > len(before)
    first.step()
    second = shell.load(tmp_path / "demo.kimg")
    assert len(shell.dev.memory_map()) == len(loaded)  # the first image's arena was freed, not kept
    with pytest.raises(hal.DeviceClosed, match="later load"):
        first.step()
    second.run()
    second.check()
    assert not shell.dev.closed
    second.close()
    assert shell.dev.memory_map() == before
