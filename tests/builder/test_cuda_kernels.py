"""The CUDA side of the kernel library: every kernel of the e2e models compiles with NVRTC for each
NVIDIA target through hal.compile (no GPU needed). Skips, with the compiler's reason, where the
nvidia driver's NVRTC compiler is not available."""

import pytest

import hal
from hal.errors import CompileError
from kernelos.builder.build import NVIDIA_TARGETS, lower_model
from kernelos.builder.compile import compile_kernels
from kernelos.builder.progress import Progress

from .models import MODELS

PROBE = 'extern "C" __global__ void kos_probe(float *x) { x[threadIdx.x] = 1.0f; }'


@pytest.fixture(scope="module")
def nvrtc():
    try:
        hal.compile(PROBE, "kos_probe", "sm_90")
    except CompileError as e:
        pytest.skip(f"NVRTC not available through hal.compile: {str(e).splitlines()[0]}")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_kernels_compile_for_every_nvidia_target(nvrtc, name):
    low = lower_model(MODELS[name](), list(NVIDIA_TARGETS))
    counts = compile_kernels(low.dag, low.specs, NVIDIA_TARGETS, Progress(quiet=True))
    assert counts == {t: len(low.specs) for t in NVIDIA_TARGETS}
    for k in low.dag.kernels.values():
        for t in NVIDIA_TARGETS:
            assert len(k.binaries[t]) > 0 and k.meta[t]["max_threads"] >= 32
        low.dag.validate("sm_90")
