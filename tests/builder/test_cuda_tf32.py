"""The TF32 tensor-core GEMMs of tf32 images: every kernel compiles with NVRTC for sm_80 and sm_90
without spilling (no GPU needed), and on an NVIDIA GPU (`-m nvidia`) tf32 images of GEMM-shaped
graphs -- convolutions as implicit GEMMs with padding, strides, bias, ReLU and a residual; matmuls
with constant and computed operands, batched; Gemm with transB -- under the tile heuristic and every
forced tile shape (cross-block split-K among them), give outputs within 1e-2 of a float64 numpy
reference (relative to the output's scale), for fresh random inputs with poisoned outputs, and
differ from it by more than fp32 rounding would (the GEMMs did run in TF32)."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import hal
from bench.e2e import models as bench_models
from kernelos.builder import gemm_tf32
from kernelos.builder.build import build_image, lower_model

from .models import MODELS as TEST_MODELS
from .test_cuda_gemm_model import _conv_ref, _odd_model

TF32_BOUND = 1e-2       # issue 9: max |out - ref| / max |ref| of a TF32 column
TF32_SEEN = 1e-5        # fp32 GEMMs of these sizes stay near 1e-7; TF32 rounding (2**-11) shows above this
FORCED = ["", "64x64w8", "64x64w4/2", "64x32w8/2", "64x32w4/4", "32x64w8/4", "32x64w4", "32x32w8/4", "32x32w4/2",
          "32x16w4/4", "32x16w4/4k16", "64x64w8k16", "64x64w8s6", "32x32w4/2s5k16"]


@pytest.mark.parametrize("target", ["sm_80", "sm_90"])
def test_tf32_kernels_compile_with_nvrtc_without_spills(nvrtc, target):
    """Every distinct TF32 kernel of the bench, test and odd-edge models."""
    from drivers.nvidia.cubin import Cubin
    srcs = {}
    for model in (bench_models.resnet18(), bench_models.gpt2(), _odd_model(), *(m() for m in TEST_MODELS.values())):
        low = lower_model(model, [target], precision="tf32")
        srcs.update({k: s.source("cuda", k) for k, s in low.specs.items() if s.cuda_variant in ("tf32", "splitk_reduce")})
    assert len(srcs) >= 25 and sum("kos_part" in s for s in srcs.values()) >= 8     # split-K GEMMs and their reduces
    for k, src in srcs.items():
        kernel = Cubin(hal.compile(src, k, target)).kernel(k)
        assert kernel.local_B == 0, k


def _cases_model(seed=0):
    """x [2, 24, 17, 19] -> conv3x3+bias+ReLU -> conv3x3+bias + residual, ReLU -> strided conv (y1);
    t [1, 70, 96] -> MatMul W1 + b1, ReLU -> MatMul W2 + b2 + t (y2); a [3, 40, 64] @ b [3, 64, 50] (y3);
    Gemm(g [33, 80], gw [48, 80], transB) + gb (y4)."""
    rng = np.random.default_rng(seed)
    w = {"w1": (40, 24, 3, 3), "b1": (40,), "w2": (40, 40, 3, 3), "b2": (40,), "w3": (36, 40, 3, 3),
         "m1": (96, 200), "c1": (200,), "m2": (200, 96), "c2": (96,), "gw": (48, 80), "gb": (48,)}
    inits = {k: (rng.standard_normal(s) * (0.2 if len(s) > 1 else 1.0)).astype(np.float32) for k, s in w.items()}
    n = helper.make_node
    nodes = [n("Conv", ["x", "w1", "b1"], ["h1"], pads=[1, 1, 1, 1]), n("Relu", ["h1"], ["r1"]),
             n("Conv", ["r1", "w2", "b2"], ["h2"], pads=[1, 1, 1, 1]), n("Add", ["h2", "r1"], ["s2"]),
             n("Relu", ["s2"], ["r2"]), n("Conv", ["r2", "w3"], ["y1"], strides=[2, 2], pads=[0, 1, 1, 0]),
             n("MatMul", ["t", "m1"], ["u1"]), n("Add", ["u1", "c1"], ["v1"]), n("Relu", ["v1"], ["q1"]),
             n("MatMul", ["q1", "m2"], ["u2"]), n("Add", ["u2", "c2"], ["v2"]), n("Add", ["v2", "t"], ["y2"]),
             n("MatMul", ["a", "b"], ["y3"]), n("Gemm", ["g", "gw", "gb"], ["y4"], transB=1)]
    f = TensorProto.FLOAT
    ins = [helper.make_tensor_value_info(k, f, s) for k, s in
           (("x", [2, 24, 17, 19]), ("t", [1, 70, 96]), ("a", [3, 40, 64]), ("b", [3, 64, 50]), ("g", [33, 80]))]
    outs = [helper.make_tensor_value_info(f"y{i}", f, None) for i in range(1, 5)]
    m = helper.make_model(helper.make_graph(nodes, "tf32_cases", ins, outs,
                                            [numpy_helper.from_array(v, k) for k, v in inits.items()]),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m, {k: v.astype(np.float64) for k, v in inits.items()}


def _reference(w, x) -> dict:
    """The cases model in float64 numpy."""
    x = {k: v.astype(np.float64) for k, v in x.items()}
    relu = lambda v: np.maximum(v, 0)   # noqa: E731
    r1 = relu(_conv_ref(x["x"], w["w1"], (1, 1), (1, 1, 1, 1), (1, 1)) + w["b1"].reshape(1, -1, 1, 1))
    r2 = relu(_conv_ref(r1, w["w2"], (1, 1), (1, 1, 1, 1), (1, 1)) + w["b2"].reshape(1, -1, 1, 1) + r1)
    y1 = _conv_ref(r2, w["w3"], (2, 2), (0, 1, 1, 0), (1, 1))
    q1 = relu(x["t"] @ w["m1"] + w["c1"])
    return {"y1": y1, "y2": q1 @ w["m2"] + w["c2"] + x["t"], "y3": x["a"] @ x["b"], "y4": x["g"] @ w["gw"].T + w["gb"]}


@pytest.mark.nvidia
@pytest.mark.parametrize("forced", FORCED)
def test_tf32_image_matches_float64_on_nvidia(tmp_path, nvidia_device, monkeypatch, forced):
    from kernelos.model import load_model
    spec, arch = nvidia_device
    monkeypatch.setattr(gemm_tf32, "FORCE", forced)
    model, w = _cases_model()
    result = build_image(model, tmp_path / "c.kimg", [arch], precision="tf32")
    assert result.precision == {arch: "tf32"}
    rng = np.random.default_rng()           # fresh inputs every run
    with load_model(str(tmp_path / "c.kimg"), spec) as m:
        assert m.self_test().passed
        for _ in range(2):
            x = {k: rng.standard_normal(s).astype(np.float32) for k, (s, _) in m.inputs.items()}
            out, ref = m.run(x, poison=True), _reference(w, x)
            for name, r in ref.items():
                err = float(np.abs(out[name].astype(np.float64) - r).max() / np.abs(r).max())
                print(f"{forced or 'heuristic'} {name}: max rel error {err:.2e}")
                assert TF32_SEEN < err <= TF32_BOUND, (name, err)
