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


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_kernels_compile_for_every_nvidia_target(nvrtc, name):
    low = lower_model(MODELS[name](), list(NVIDIA_TARGETS))
    counts = compile_kernels(low.dag, low.specs, NVIDIA_TARGETS, Progress(quiet=True))
    assert counts == {t: len(low.specs) for t in NVIDIA_TARGETS}
    for k in low.dag.kernels.values():
        for t in NVIDIA_TARGETS:
            assert len(k.binaries[t]) > 0 and k.meta[t]["max_threads"] >= 32
        low.dag.validate("sm_90")


def test_every_op_compiles_for_cuda(nvrtc):
    """The CUDA rendering of the first node-test case of every supported op compiles for sm_90."""
    from tools import onnx_conformance as conf

    seen, failures = set(), []
    for op, case in conf.collect():
        if op in seen:
            continue
        seen.add(op)
        try:
            low, _ = conf.with_bindings(case, lambda c: lower_model(case.model, ["sm_90"], constants=c))
        except hal.KernelosError:
            continue          # refused (a documented limit); the cpu conformance run lists it
        try:
            compile_kernels(low.dag, low.specs, ["sm_90"], Progress(quiet=True))
        except CompileError as e:
            failures.append(f"{op} ({case.name}): {e}")
    assert len(seen) > 40 and not failures, "\n".join(failures)
