"""Launches: buffer and scalar arguments, 1D/2D/3D grids, bad launches and bad binaries."""

import numpy as np
import pytest

import hal
from hal import DeviceClosed, DeviceError, InvalidArgument, KernelMeta

from .helpers import poison


def _run(dev, build, timeout_s=10.0):
    """Record with build(stream), submit on the compute queue, wait."""
    done = dev.signal(0)
    build(dev.queue("compute").stream()).signal(done, 1).submit()
    done.wait(1, timeout_s)
    done.close()


@pytest.mark.parametrize("n,block", [(1, 1), (1000, 64), (100003, 256), (1 << 20, 128)])
def test_saxpy_against_numpy(dev, programs, rng, n, block):
    x = rng.standard_normal(n).astype(np.float32)
    y0 = rng.standard_normal(n).astype(np.float32)
    alpha = float(rng.standard_normal())
    xb, yb = dev.alloc(4 * n), dev.alloc(4 * n + 64)
    poison(yb)
    xb.write(x)
    yb.write(y0)
    grid = (n + block - 1) // block
    _run(dev, lambda s: s.launch(programs["saxpy"], [yb, xb, alpha, n], grid=(grid,), block=(block,)))
    got = np.frombuffer(yb.read(4 * n), np.float32)
    want = np.float32(alpha).astype(np.float64) * x.astype(np.float64) + y0.astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert yb.read(64, 4 * n) == bytes([0xA5]) * 64  # nothing written past n
    xb.free()
    yb.free()


def test_every_scalar_type_and_padding(dev, programs, rng):
    out_u, out_f = dev.alloc(32), dev.alloc(16)
    poison(out_u)
    poison(out_f)
    i = int(rng.integers(-2**31, 0))
    u = int(rng.integers(2**31, 2**32))
    q = int(rng.integers(-2**63, -2**40))
    uq = int(rng.integers(2**63, 2**64 - 1, dtype=np.uint64))
    f = float(np.float32(rng.standard_normal()))
    d = float(rng.standard_normal()) * 1e300
    _run(dev, lambda s: s.launch(programs["scalars"], [out_u, i, out_f, u, f, q, d, uq], grid=1))
    got_u = np.frombuffer(out_u.read(), np.uint64)
    assert [int(got_u[0].astype(np.int64)), int(got_u[1]), int(got_u[2].astype(np.int64)), int(got_u[3])] == [i, u, q, uq]
    assert list(np.frombuffer(out_f.read(), np.float64)) == [f, d]
    out_u.free()
    out_f.free()


@pytest.mark.parametrize("shape,block", [
    ((37, 1, 1), (8, 1, 1)),       # 1D, partial last block
    ((19, 23, 1), (4, 8, 1)),      # 2D
    ((7, 5, 9), (2, 3, 4)),        # 3D
    ((130, 3, 2), (1, 1, 1)),      # one thread per block
])
def test_grid_geometry(dev, programs, shape, block):
    nx, ny, nz = shape
    grid = tuple((n + b - 1) // b for n, b in zip(shape, block))
    out = dev.alloc(4 * nx * ny * nz)
    poison(out)
    ndims = 3 if nz > 1 else 2 if ny > 1 else 1
    _run(dev, lambda s: s.launch(programs["index3"], [out, nx, ny, nz], grid=grid[:ndims], block=block[:ndims]))
    got = np.frombuffer(out.read(), np.uint32).reshape(nz, ny, nx)
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    np.testing.assert_array_equal(got, x + 1000 * y + 1000000 * z)
    out.free()


def test_launch_with_buffer_offset(dev, programs, rng):
    n, skip = 100, 16
    xb, yb = dev.alloc(4 * (n + skip)), dev.alloc(4 * (n + skip))
    x = rng.standard_normal(n + skip).astype(np.float32)
    xb.write(x)
    yb.write(np.zeros(n + skip, np.float32))
    _run(dev, lambda s: s.launch(programs["saxpy"], [(yb, 4 * skip), (xb, 4 * skip), 1.0, n], grid=(n,)))
    got = np.frombuffer(yb.read(), np.float32)
    np.testing.assert_array_equal(got[:skip], 0)
    np.testing.assert_array_equal(got[skip:], x[skip:])
    xb.free()
    yb.free()


def test_numpy_integer_dims_run_like_ints(dev, programs):
    """Dims computed with numpy (as a DAG's are) are integers too; index3 checks every thread ran."""
    nx, ny = 11, 6
    out = dev.alloc(4 * nx * ny)
    poison(out)
    grid, block = (np.int64(3), np.uint32(2)), [np.int32(4), np.uint8(3)]
    _run(dev, lambda s: s.launch(programs["index3"], [out, nx, ny, 1], grid=grid, block=block))
    y, x = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    np.testing.assert_array_equal(np.frombuffer(out.read(), np.uint32).reshape(ny, nx), x + 1000 * y)
    _run(dev, lambda s: s.launch(programs["empty"], [], grid=np.uint16(5), block=np.int64(1)))
    _run(dev, lambda s: s.launch(programs["empty"], [], grid=np.array([2, 3]), block=range(1, 2)))
    out.free()


@pytest.mark.parametrize("dims", [True, (2, False), 2.0, (np.float32(2),), "2", b"2", (), None, np.int64(0), 2**31,
                                  (1, 1, 1, 1), {"x": 1}])
def test_non_integer_dims_are_refused(dev, programs, dims):
    s = dev.queue("compute").stream()
    for kw in (dict(grid=dims), dict(grid=1, block=dims)):
        with pytest.raises(InvalidArgument, match="not bool or float"):
            s.launch(programs["empty"], [], **kw)
    assert s.decode() == []


def test_bad_launches_are_refused_at_record(dev, programs):
    saxpy, buf = programs["saxpy"], dev.alloc(64)
    s = dev.queue("compute").stream()
    bad = [
        dict(args=[buf, buf, 1.0], grid=1),                       # too few args
        dict(args=[buf, 5, 1.0, 4], grid=1),                      # int where a pointer goes
        dict(args=[buf, buf, "x", 4], grid=1),                    # str where f32 goes
        dict(args=[buf, buf, 1.0, -1], grid=1),                   # negative u32
        dict(args=[buf, buf, 1.0, 4], grid=0),                    # empty grid
        dict(args=[buf, buf, 1.0, 4], grid=(1, 1, 1, 1)),         # 4D grid
        dict(args=[buf, buf, 1.0, 4], grid=1, block=(saxpy.meta.max_threads + 1,)),
        dict(args=[(buf, 65), buf, 1.0, 4], grid=1),              # offset past the end
    ]
    for kw in bad:
        with pytest.raises(InvalidArgument):
            s.launch(saxpy, **kw)
    with pytest.raises(InvalidArgument):
        dev.queue("copy").stream().launch(saxpy, [buf, buf, 1.0, 4], grid=1)
    assert s.decode() == []  # nothing was recorded
    buf.free()


def test_bad_binaries_are_refused(dev, programs):
    meta = KernelMeta(())
    with pytest.raises(DeviceError):
        dev.load_program(b"definitely not a kernel binary" * 4, "empty", meta)
    with pytest.raises(DeviceError):
        dev.load_program(b"", "empty", meta)
    good = programs.binary("empty")
    with pytest.raises(DeviceError, match="no_such_entry"):
        dev.load_program(good, "no_such_entry", meta)
    with pytest.raises(InvalidArgument):
        dev.load_program(good, "empty", None)  # no KernelMeta
    with pytest.raises(InvalidArgument):
        dev.load_program(good, "not an identifier", meta)
    truncated = good[:len(good) // 3]
    with pytest.raises(DeviceError):
        dev.load_program(truncated, "empty", meta)
    programs["empty"]  # the device still loads and runs programs
    _run(dev, lambda s: s.launch(programs["empty"], [], grid=1))


def test_compile_error_carries_the_log(dev, programs):
    programs.binary("empty")  # the compiler works here (or this skips, saying why)
    with pytest.raises(hal.CompileError, match="oops_undeclared"):
        hal.compile("void broken(void) { oops_undeclared(); }", "broken", dev.info.arch)


def test_closed_program_cannot_launch(dev, programs):
    prog = dev.load_program(programs.binary("empty"), "empty", KernelMeta(()))
    s = dev.queue("compute").stream().launch(prog, [], grid=1)
    prog.close()
    with pytest.raises(DeviceClosed):
        s.submit()
    with pytest.raises(DeviceClosed):
        dev.queue("compute").stream().launch(prog, [], grid=1)
