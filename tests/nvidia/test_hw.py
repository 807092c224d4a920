"""NVIDIA driver on real hardware (marked nvidia; skipped with the probe's reason elsewhere)."""

import os
import time

import numpy as np
import pytest

import hal
from hal import KernelMeta, Var

from . import kernels

pytestmark = pytest.mark.nvidia


def load(dev, src, name, params):
    return dev.load_program(hal.compile(src, name, dev.info.arch), name, KernelMeta(params=tuple(params)))


def test_probe_and_identity(nv):
    import drivers.nvidia
    infos = drivers.nvidia.probe()
    mine = [i for i in infos if i.spec == "nv:0"]
    assert mine and mine[0].arch == nv.info.arch and mine[0].compute_units > 0
    assert nv.info.memory_B > 1 << 30
    print(nv.info)
    for key in ("pci_id", "pci_bus", "driver", "vbios", "gsp_firmware"):
        assert key in nv.info.extra, key


def test_host_and_vram_round_trip(nv):
    rng = np.random.default_rng()
    data = rng.standard_normal(1 << 16).astype(np.float32)
    for host_visible in (True, False):
        buf = nv.alloc(data.nbytes, host_visible=host_visible)
        buf.write(data)
        assert np.array_equal(np.frombuffer(buf.read(), np.float32), data)
        buf.free()


def test_copy_engine(nv):
    rng = np.random.default_rng()
    data = rng.integers(0, 2**32, 1 << 20, dtype=np.uint32)
    src, mid, dst = nv.alloc(data.nbytes, True), nv.alloc(data.nbytes), nv.alloc(data.nbytes, True)
    np.frombuffer(src.view(), np.uint32)[:] = data
    np.frombuffer(dst.view(), np.uint32)[:] = 0xDEADBEEF
    done = nv.signal(0)
    nv.queue("copy").stream().copy(mid, src, data.nbytes).copy(dst, mid, data.nbytes).signal(done, 1).submit()
    done.wait(1, 10)
    assert np.array_equal(np.frombuffer(dst.view(), np.uint32), data)


def test_launch_add(nv):
    prog = load(nv, kernels.ADD, "add", ["ptr", "ptr", "ptr", "i32"])
    n = 100_003
    rng = np.random.default_rng()
    a, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    A, B, O = nv.alloc(a.nbytes, True), nv.alloc(b.nbytes, True), nv.alloc(a.nbytes, True)
    np.frombuffer(A.view(), np.float32)[:] = a
    np.frombuffer(B.view(), np.float32)[:] = b
    np.frombuffer(O.view(), np.float32)[:] = np.nan
    done = nv.signal(0)
    s = nv.queue().stream().launch(prog, [O, A, B, n], grid=((n + 255) // 256,), block=(256,)).signal(done, Var("t"))
    s.submit(t=1)
    done.wait(1, 10)
    assert np.array_equal(np.frombuffer(O.view(), np.float32), a + b)
    np.frombuffer(O.view(), np.float32)[:] = np.nan
    s.submit(t=2)
    done.wait(2, 10)
    assert np.array_equal(np.frombuffer(O.view(), np.float32), a + b)


def test_mixed_shared_local_dims(nv):
    prog = load(nv, kernels.MIXED, "mixed", ["ptr", "ptr", "i32"])
    n, block = 4096, 256
    x = np.random.default_rng().standard_normal(n).astype(np.float32)
    X, O = nv.alloc(x.nbytes), nv.alloc(x.nbytes)
    X.write(x)
    O.write(np.full(n, np.nan, np.float32))
    done = nv.signal(0)
    nv.queue().stream().launch(prog, [O, X, n], grid=(n // block,), block=(block,)).signal(done, 1).submit()
    done.wait(1, 10)
    g = np.arange(n)
    tile = x.reshape(-1, block)[:, ::-1].reshape(-1)
    k = g & 63
    ref = tile + x[(k * 7 + g) % n] + np.float32((n // block) * 1000 + block)
    assert np.allclose(np.frombuffer(O.read(), np.float32), ref, rtol=1e-6)


def test_chain_and_timestamps(nv):
    prog = load(nv, kernels.INC, "inc", ["ptr"])
    ctr = nv.alloc(4, True)
    np.frombuffer(ctr.view(), np.uint32)[:] = 0
    t0, t1, done = nv.signal(0), nv.signal(0), nv.signal(0)
    s = nv.queue().stream().timestamp(t0)
    for _ in range(100):
        s.launch(prog, [ctr], grid=(2,), block=(32,))
    s.timestamp(t1).signal(done, 1).submit()
    done.wait(1, 10)
    assert np.frombuffer(ctr.view(), np.uint32)[0] == 100 * 64
    assert 0 < t1.value - t0.value < 10**9


def test_chained_launches_see_each_others_stores(nv):
    """100 dependent launches (chained QMDs, no host round trip between them) over 4 MiB."""
    prog = load(nv, kernels.STEP, "step", ["ptr", "u32"])
    n = 1 << 20
    x0 = np.random.default_rng().integers(0, 2**32, n, dtype=np.uint32)
    X = nv.alloc(x0.nbytes)
    X.write(x0)
    done = nv.signal(0)
    s = nv.queue().stream()
    for _ in range(100):
        s.launch(prog, [X, n], grid=(n // 256,), block=(256,))
    s.signal(done, 1).submit()
    done.wait(1, 10)
    ref = x0.copy()
    for _ in range(100):
        ref = ref * np.uint32(3) + np.uint32(1)
    assert np.array_equal(np.frombuffer(X.read(), np.uint32), ref)


def test_cross_queue_wait(nv):
    prog = load(nv, kernels.INC, "inc", ["ptr"])
    ctr = nv.alloc(4, True)
    np.frombuffer(ctr.view(), np.uint32)[:] = 0
    gate, done = nv.signal(0), nv.signal(0)
    nv.queue().stream().wait(gate, 5).launch(prog, [ctr], grid=(1,), block=(1,)).signal(done, 1).submit()
    time.sleep(0.05)
    assert done.value == 0 and np.frombuffer(ctr.view(), np.uint32)[0] == 0
    gate.set(5)
    done.wait(1, 10)
    assert np.frombuffer(ctr.view(), np.uint32)[0] == 1


def test_fault_then_recover(nv):
    oob = load(nv, kernels.OOB, "oob", ["ptr"])
    buf = nv.alloc(4096, True)
    done = nv.signal(0)
    nv.queue().stream().launch(oob, [buf], grid=(1,), block=(32,)).signal(done, 1).submit()
    with pytest.raises(hal.DeviceFault):
        done.wait(1, 5)
    test_launch_add(nv)


def test_hang_then_recover(nv):
    hang = load(nv, kernels.HANG, "hang", ["ptr"])
    flag = nv.alloc(4, True)
    np.frombuffer(flag.view(), np.uint32)[:] = 0
    done = nv.signal(0)
    nv.queue().stream().launch(hang, [flag], grid=(1,), block=(1,)).signal(done, 1).submit()
    with pytest.raises(hal.DeviceTimeout):
        done.wait(1, 2)
    test_launch_add(nv)


NO_LIBCUDA = r"""
import hal, numpy as np
from tests.nvidia import kernels
dev = hal.open("nv:0")
prog = dev.load_program(hal.compile(kernels.INC, "inc", dev.info.arch), "inc", hal.KernelMeta(params=("ptr",)))
ctr, done = dev.alloc(4, True), dev.signal(0)
np.frombuffer(ctr.view(), np.uint32)[:] = 0
dev.queue().stream().launch(prog, [ctr], grid=(3,), block=(32,)).signal(done, 1).submit()
done.wait(1, 10)
assert np.frombuffer(ctr.view(), np.uint32)[0] == 96
maps = open("/proc/self/maps").read()
print("libcuda mapped" if "libcuda" in maps else "no libcuda")
"""


def test_no_libcuda_mapped(nv):
    """A fresh process (no pytest plugins) opens the GPU, runs a kernel, and has no libcuda mapped."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", NO_LIBCUDA], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("no libcuda"), out.stdout


def _fds_and_maps():
    """(open fds, mappings of NVIDIA device files or inside the driver's GPU-VA slots, all mappings)."""
    from drivers.nvidia.memory import SLOT_B, SLOT_BASE, SLOT_COUNT
    ours, total = 0, 0
    for line in open("/proc/self/maps"):
        total += 1
        start = int(line.split("-")[0], 16)
        ours += "nvidia" in line or SLOT_BASE <= start < SLOT_BASE + SLOT_COUNT * SLOT_B
    return len(os.listdir("/proc/self/fd")), ours, total


def test_two_devices_open_at_once(nv):
    """A second open of the GPU (own RM client, UVM VA space and VA slot) runs work next to the first."""
    prog1 = load(nv, kernels.INC, "inc", ["ptr"])
    with hal.open("nv:0") as other:
        prog2 = load(other, kernels.INC, "inc", ["ptr"])
        c1, c2 = nv.alloc(4, True), other.alloc(4, True)
        assert c1.va != c2.va
        for c in (c1, c2):
            np.frombuffer(c.view(), np.uint32)[:] = 0
        d1, d2 = nv.signal(0), other.signal(0)
        nv.queue().stream().launch(prog1, [c1], grid=(2,), block=(32,)).signal(d1, 1).submit()
        other.queue().stream().launch(prog2, [c2], grid=(3,), block=(32,)).signal(d2, 1).submit()
        d1.wait(1, 10)
        d2.wait(1, 10)
        assert np.frombuffer(c1.view(), np.uint32)[0] == 64 and np.frombuffer(c2.view(), np.uint32)[0] == 96


def test_open_close_cycles_leak_nothing():
    from .conftest import nv_reason
    if nv_reason():
        pytest.skip(nv_reason())
    hal.open("nv:0").close()
    before = _fds_and_maps()
    for _ in range(int(os.environ.get("NV_CYCLES", "100"))):
        dev = hal.open("nv:0")
        dev.alloc(1 << 20).free()
        dev.close()
    fds, ours, total = _fds_and_maps()
    assert (fds, ours) == before[:2]
    assert total - before[2] <= 4, "mappings grew (beyond a few malloc arenas)"
