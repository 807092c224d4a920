"""The GPU VA space in both modes (drivers/nvidia/gpu_va.py): RM-owned (the default, no UVM) and
UVM-owned (KERNELOS_NV_VA=uvm). Each must map huge-page VRAM, small VRAM and pinned host memory so
that a kernel and the copy engine see the right data."""

import numpy as np
import pytest

import hal
from drivers.nvidia import gpu_va
from hal import DeviceError, KernelMeta

from . import kernels
from .conftest import nv_reason


def test_unknown_mode_is_a_device_error(monkeypatch):
    monkeypatch.setenv("KERNELOS_NV_VA", "pagetables")
    with pytest.raises(DeviceError, match="KERNELOS_NV_VA='pagetables'"):
        gpu_va.open_va_space(gpu=None)          # refused before any device call


@pytest.mark.nvidia
@pytest.mark.parametrize("mode", gpu_va.MODES)
def test_kernel_and_copies_in_mode(mode, monkeypatch):
    reason = nv_reason()
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("KERNELOS_NV_VA", mode)
    with hal.open("nv:0") as dev:
        assert dev.va_space.mode == mode
        prog = dev.load_program(hal.compile(kernels.ADD, "add", dev.info.arch), "add",
                                KernelMeta(params=("ptr", "ptr", "ptr", "i32")))
        n = 3 << 20                              # 12 MiB per operand: huge-page VRAM
        rng = np.random.default_rng()
        a, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
        A, B = dev.alloc(a.nbytes), dev.alloc(4096 + b.nbytes)     # B: offset into a second VRAM buffer
        O = dev.alloc(a.nbytes, host_visible=True)
        A.write(a)
        B.write(b, 4096)
        np.frombuffer(O.view(), np.float32)[:] = np.nan
        done = dev.signal(0)
        dev.queue().stream().launch(prog, [O, A, (B, 4096), n], grid=((n + 255) // 256,), block=(256,)) \
            .signal(done, 1).submit()
        done.wait(1, 10)
        assert np.array_equal(np.frombuffer(O.view(), np.float32), a + b)
        small = dev.alloc(4096)                  # 4 KiB-page VRAM round trip through the copy engine
        small.write(a[:1024])
        assert np.array_equal(np.frombuffer(small.read(), np.float32), a[:1024])
