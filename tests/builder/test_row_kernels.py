"""Softmax and LayerNormalization as ONE row kernel each (kernelos/builder/rowkernel.py): every
case builds to a single launch, matches a float64 reference on the cpu device with poisoned
outputs (odd row counts, 1-element rows, rows longer than a CUDA block holds in registers, rows
along a middle axis, LayerNorm's Mean/InvStdDev outputs, a fused epilogue), its CUDA rendering
compiles with NVRTC without spilling, and on an NVIDIA GPU matches the same reference."""

import numpy as np
import pytest

import hal
from kernelos.builder.build import lower_model
from kernelos.builder.rowkernel import CUDA_ROW_CACHE, CUDA_ROW_THREADS, CUDA_ROW_WARP_MAX
from kernelos.dag import Launch

from .conftest import rel_error
from .rowview_cases import LAYERNORM_CASES, SOFTMAX_CASES, layernorm_case, run_model, softmax_case

CASES = ([pytest.param(softmax_case, c, id=f"softmax-{c[0]}-axis{c[1]}") for c in SOFTMAX_CASES]
         + [pytest.param(layernorm_case, c, id=f"layernorm-{c[0]}-axis{c[1]}") for c in LAYERNORM_CASES]
         + [pytest.param(layernorm_case, c + (False,), id=f"layernorm-epilogue-{c[0]}") for c in LAYERNORM_CASES[1:3]])


def _check(outs, refs):
    for name, ref in refs.items():
        assert outs[name].shape == ref.shape, name
        assert rel_error(outs[name], ref) <= 2e-6, name


@pytest.mark.parametrize("make,args", CASES)
def test_row_op_is_one_kernel_matching_float64_on_cpu(tmp_path, make, args):
    model, feeds, refs = make(*args)
    low = lower_model(model, ["cpu-x86_64", "sm_90"])
    launches = [n for n in low.dag.nodes if isinstance(n, Launch)]
    assert len(launches) == 1 and low.specs[launches[0].kernel].cuda_variant == "row"
    _check(run_model(model, feeds, tmp_path), refs)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-13), (np.float16, 2e-3)])
def test_softmax_in_other_float_dtypes_on_cpu(tmp_path, dtype, tol):
    """float64 accumulates in double, float16 in float (stored rounded)."""
    model, feeds, refs = softmax_case((9, 70), -1, 3.0, dtype=dtype)
    out = run_model(model, feeds, tmp_path)["y"]
    assert out.dtype == dtype and rel_error(out, refs["y"]) <= tol


def test_cuda_row_layout_by_row_length():
    """A warp per row up to CUDA_ROW_WARP_MAX elements (8 rows a block), else a block per row; the
    row's elements in registers up to CUDA_ROW_CACHE per thread, else re-read."""
    seen = {}
    for shape, axis, scale in SOFTMAX_CASES:
        model = softmax_case(shape, axis, scale)[0]
        spec = next(iter(lower_model(model, ["sm_90"]).specs.values()))
        row_len = shape[axis]
        (grid, _, _), (threads, _, _) = spec.dims["cuda"]
        rows = int(np.prod(shape)) // row_len
        lanes = 32 if row_len <= CUDA_ROW_WARP_MAX else CUDA_ROW_THREADS
        assert threads == CUDA_ROW_THREADS and grid == -(-rows // (threads // lanes))
        assert ("kos_xs[" in spec.sources["cuda"]) == (-(-row_len // lanes) <= CUDA_ROW_CACHE)
        seen[row_len] = (lanes, "kos_xs[" in spec.sources["cuda"])
    assert seen[1] == (32, True) and seen[700] == (256, True) and seen[5000] == (256, False)


@pytest.mark.parametrize("target", ["sm_80", "sm_90"])
def test_row_kernels_compile_with_nvrtc_without_spilling(nvrtc, target):
    from drivers.nvidia.cubin import Cubin
    compiled = 0
    for make, args in [(p.values[0], p.values[1]) for p in CASES]:
        low = lower_model(make(*args)[0], [target])
        for k, spec in low.specs.items():
            binary = hal.compile(spec.source("cuda", k), k, target)
            assert len(binary) > 0
            if target == "sm_90":
                assert Cubin(binary).kernel(k).local_B == 0, k
            compiled += 1
    for dtype in (np.float64, np.float16):
        low = lower_model(softmax_case((9, 70), -1, 3.0, dtype=dtype)[0], [target])
        for k, spec in low.specs.items():
            assert len(hal.compile(spec.source("cuda", k), k, target)) > 0
            compiled += 1
    assert compiled == len(CASES) + 2


@pytest.mark.nvidia
@pytest.mark.parametrize("make,args", CASES)
def test_row_op_matches_float64_on_nvidia(tmp_path, nvidia_device, make, args):
    spec, arch = nvidia_device
    model, feeds, refs = make(*args)
    _check(run_model(model, feeds, tmp_path, arch, spec), refs)
