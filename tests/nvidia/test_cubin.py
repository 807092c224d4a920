"""Cubin parsing and cbank0 layouts on NVRTC-built cubins (built in the test run; NVRTC needs no GPU)."""

import struct

import pytest

import hal
from drivers.nvidia import cbank0
from drivers.nvidia.cubin import EIATTR_REGCOUNT, Cubin
from hal import CompileError, ImageError, InvalidArgument

# A heavy kernel with a device function and a light one in one cubin: their register counts differ,
# and only matching .nv.info records to each kernel's own symbol gives the right one (nvidia-hopper.md 2.2).
TWO_KERNELS = r'''
__device__ __noinline__ float helper(const float *x, int n, int k) {
  float local[48];
  for (int i = 0; i < 48; i++) local[i] = x[(i * 5 + k) % n] * i;
  return local[k % 48];
}
extern "C" __global__ void heavy(float *out, const float *x, int n) {
  __shared__ float tile[128];
  int t = threadIdx.x;
  float a = x[t], b = x[t + 1], c = x[t + 2], d = x[t + 3], e = x[t + 4], f = x[t + 5];
  tile[t] = a * b + c * d + e * f + sinf(a) * cosf(b) + expf(c) * logf(d + 2.0f) + helper(x, n, t);
  __syncthreads();
  out[t] = tile[127 - t] * a + b / (c + 1.0f) + d * e - f;
}
extern "C" __global__ void light(unsigned *p, unsigned v, double scale, char flag) { p[0] = v + (unsigned)scale + flag; }
'''


def nvrtc(src, name, arch):
    try:
        return hal.compile(src, name, arch)
    except CompileError as e:
        if "libnvrtc not found" in str(e):
            pytest.skip(str(e))
        raise


@pytest.fixture(scope="module")
def two():
    return Cubin(nvrtc(TWO_KERNELS, "heavy", "sm_90"))


def test_register_counts_are_matched_to_each_kernel(two):
    heavy, light = two.kernel("heavy"), two.kernel("light")
    sym_of = {s.name: s.index for s in two.symbols}
    records = [struct.unpack("<II", p) for a, p in two.attributes(two.by_name[".nv.info"])
               if a == EIATTR_REGCOUNT and isinstance(p, bytes)]
    per_symbol = dict(records)
    assert heavy.regs == per_symbol[sym_of["heavy"]] and light.regs == per_symbol[sym_of["light"]]
    assert heavy.regs > light.regs
    assert records[-1][1] != heavy.regs or records[-1][1] != light.regs   # "take the last record" is wrong for one


def test_kernel_attributes(two):
    heavy, light = two.kernel("heavy"), two.kernel("light")
    assert two.sm == 90 and sorted(two.kernels()) == ["heavy", "light"]
    assert heavy.param_base == 0x210 and heavy.params == [(0, 0, 8), (1, 8, 8), (2, 16, 4)]
    assert light.params == [(0, 0, 8), (1, 8, 4), (2, 16, 8), (3, 24, 1)]
    assert heavy.shared_B >= 128 * 4 and heavy.barriers >= 1 and heavy.local_B >= 48 * 4
    assert light.shared_B == 0 and light.local_B == 0
    assert heavy.cbank0_size_B >= heavy.param_base + heavy.param_size_B


def test_bad_cubins_are_refused(two):
    with pytest.raises(ImageError):
        Cubin(b"\x7fELF" + b"\0" * 10)
    with pytest.raises(ImageError):
        Cubin(two.data[: len(two.data) // 2])
    with pytest.raises(ImageError, match="EM_CUDA"):
        Cubin(open("/bin/sh", "rb").read())
    with pytest.raises(InvalidArgument, match="no kernel 'nope'"):
        two.kernel("nope")


@pytest.mark.parametrize("arch,param_base", [("sm_80", 0x160), ("sm_90", 0x210), ("sm_100", 0x380)])
def test_cbank0_layout_per_architecture(arch, param_base):
    k = Cubin(nvrtc(TWO_KERNELS, "light", arch)).kernel("light")
    assert k.param_base == param_base
    params = struct.pack("<QIxxxxdB", 0x12_3456_7890, 7, 2.5, 1)
    cb = cbank0.build(k.sm, k.cbank0_size_B, k.param_base, params, grid=(3, 2, 1), block=(32, 4, 1),
                      shared_window=0x7294_0000_0000, local_window=0x7293_0000_0000)
    lay = cbank0.layout_for(k.sm)
    assert len(cb) % 16 == 0 and cb[param_base:param_base + len(params)] == params
    assert struct.unpack_from("<6I", cb, lay.block_dims) == (32, 4, 1, 3, 2, 1)
    assert struct.unpack_from("<Q", cb, lay.local_window)[0] == 0x7293_0000_0000
    assert struct.unpack_from("<I", cb, lay.stack_top)[0] == cbank0.STACK_TOP


def test_compile_errors_carry_the_log_and_the_cache_returns_the_same_cubin():
    with pytest.raises(CompileError, match="undefined_thing"):
        nvrtc('extern "C" __global__ void k() { undefined_thing(); }', "k", "sm_90")
    with pytest.raises(CompileError, match="sm_90"):
        hal.compile("", "k", "sm_x90")
    a = nvrtc('extern "C" __global__ void k(int *p) { *p = 1; }', "k", "sm_90")
    assert nvrtc('extern "C" __global__ void k(int *p) { *p = 1; }', "k", "sm_90") == a
