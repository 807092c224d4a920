"""The CUDA GEMV template (kernels/cuda/gemv.cu, codegen.gemv_loop): batch-1 MatMul + bias (+ ReLU)
with contiguous float4 rows, in every KOS_CUDA_GEMV shape (outputs per block x lanes per output),
on odd shapes (outputs not a multiple of the outputs per block, K not a multiple of 4 x lanes).

No GPU here: a numpy model of the generated kernel (its grid -> output / lane mapping parsed from
the source, the float4 indices each lane reads, the group's shuffle sum) against float64; NVRTC
compiles without local memory; bad shapes are a GraphError. On an NVIDIA GPU: the built image's
outputs (poisoned first) against float64."""

import re

import numpy as np
import pytest
from onnx import helper, numpy_helper

import hal
from hal.errors import GraphError
from kernelos.builder import codegen
from kernelos.builder.build import lower_model
from kernelos.dag import Launch

from .conftest import rel_error
from .rowview_cases import make_model, run_model

SHAPES = ["8x32", "1x32", "3x32", "4x16", "16x8"]
# (outputs n, reduction k, relu): n off every outputs-per-block, k off every 4 x lanes, a tail
# shorter than a group, small and wide layers (k < 1024 or n > 512 keep the GEMV template)
CASES = [(1000, 1024, True), (1030, 516, False), (77, 132, True), (600, 1028, True), (513, 4100, False)]


def gemv_case(n, k, relu, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, k)).astype(np.float32)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["t"]), helper.make_node("Add", ["t", "b"], ["u" if relu else "y"])]
    if relu:
        nodes.append(helper.make_node("Relu", ["u"], ["y"]))
    ref = x.astype(np.float64) @ w + b
    return make_model(nodes, {"x": (1, k)}, ["y"], {"w": w, "b": b}), {"x": x}, {"y": np.maximum(ref, 0) if relu else ref}


@pytest.fixture(params=SHAPES)
def gemv_shape(request, monkeypatch):
    monkeypatch.setattr(codegen, "CUDA_GEMV_SHAPE", request.param)
    return request.param


def gemv_kernel(model, target="sm_90"):
    """(source, name, grid, block) of the model's one launch, which must be the GEMV template."""
    low = lower_model(model, [target])
    (node,) = [n for n in low.dag.nodes if isinstance(n, Launch)]
    src = low.specs[node.kernel].source("cuda", node.kernel)
    assert "const bool kos_live" in src, "not the GEMV template"
    (grid, _, _), (block, _, _) = node.dims[target]
    return src, node.kernel, grid, block


def _int(pattern, src):
    return int(re.search(pattern, src).group(1))


def model_of_gemv(src, grid, block, n, k, x, w):
    """The kernel as numpy: thread t of block g is lane t % lanes of output (g * threads + t) / lanes
    (the last output where that is past n, stored by nobody); lane reads float4 lane + lanes s for
    s < steps, and lane + lanes steps where lane < tail; the group sums (xor shuffles below lanes);
    lane 0 of a live group stores. Checks the mapping and returns the stored outputs (NaN elsewhere)."""
    threads, lanes = _int(r"__launch_bounds__\((\d+)\)", src), _int(r"threadIdx\.x\) / (\d+);", src)
    steps, stride = _int(r"for \(int s = 0; s < (\d+); s\+\+\)", src), _int(r"va\[lane \+ (\d+) \* s\]", src)
    tail = _int(r"if \(lane < (\d+)\)", src) if "if (lane < " in src else 0
    assert block == threads and stride == lanes and 32 % lanes == 0 and threads % 32 == 0
    assert _int(r"for \(int o = (\d+); o > 0; o >>= 1\) acc \+= __shfl_xor_sync", src) == lanes // 2  # in the group
    if tail:
        assert _int(r"va\[lane \+ (\d+)\]", src) == lanes * steps
    t = np.arange(grid * threads)
    out, lane = t // lanes, t % threads % lanes
    live = out < n
    assert np.array_equal(np.bincount(out[live & (lane == 0)], minlength=n), np.ones(n, int))  # one store each
    lanes_of = np.arange(lanes)     # the float4s the group's lanes read, the same for every output
    reads = np.concatenate([lanes_of + lanes * s for s in range(steps)] + [lanes_of[lanes_of < tail] + lanes * steps])
    assert np.array_equal(np.sort(reads), np.arange(k // 4)), "each float4 read once"
    x4, w4 = x.reshape(-1, 4).astype(np.float64), w.T.reshape(n, -1, 4)    # W's rows as float4s
    return np.einsum("rc,orc->o", x4[reads], w4[:, reads])


@pytest.mark.parametrize("n,k,relu", CASES)
def test_model_of_gemv_template_matches_float64(gemv_shape, n, k, relu):
    model, feeds, refs = gemv_case(n, k, relu)
    src, _, grid, block = gemv_kernel(model)
    rows, lanes = codegen.gemv_shape()
    assert (grid, block) == (-(-n // rows), rows * lanes)
    w, bias = (numpy_helper.to_array(a).astype(np.float64) for a in model.graph.initializer)
    acc = model_of_gemv(src, grid, block, n, k, feeds["x"], w)
    y = np.maximum(acc + bias, 0) if relu else acc + bias
    assert rel_error(y, refs["y"]) <= 1e-12


def test_k_not_a_multiple_of_4_keeps_the_scalar_warp_template():
    model = gemv_case(600, 1022, True)[0]
    low = lower_model(model, ["sm_90"])
    (spec,) = low.specs.values()
    assert spec.cuda_variant == "warp" and "kos_live" not in spec.sources["cuda"] and "float4" not in spec.sources["cuda"]


@pytest.mark.parametrize("bad", ["8x64", "5x8", "64x32", "x32", "8 by 32", "0x32"])
def test_bad_gemv_shape_is_a_graph_error(monkeypatch, bad):
    monkeypatch.setattr(codegen, "CUDA_GEMV_SHAPE", bad)
    with pytest.raises(GraphError, match="KOS_CUDA_GEMV"):
        lower_model(gemv_case(1000, 1024, True)[0], ["sm_90"])


@pytest.mark.parametrize("target", ["sm_80", "sm_90"])
def test_gemv_kernels_compile_with_nvrtc_spilling_at_most_one_register(nvrtc, gemv_shape, target):
    """The MLP's 1024 x 1024 layer keeps everything in registers; ptxas may spill one long-lived
    register (16 B of local memory, one store and one load per thread) where it aims at 32 registers
    (K = 4100 did so in the warp template before this one too)."""
    from drivers.nvidia.cubin import Cubin
    for n, k, relu in CASES:
        src, name, _, _ = gemv_kernel(gemv_case(n, k, relu)[0], target)
        binary = hal.compile(src, name, target)
        if target == "sm_90":
            assert Cubin(binary).kernel(name).local_B <= (0 if (n, k) == (1000, 1024) else 16), (n, k)


@pytest.mark.nvidia
@pytest.mark.parametrize("n,k,relu", CASES)
def test_gemv_matches_float64_on_nvidia(tmp_path, nvidia_device, gemv_shape, n, k, relu):
    spec, arch = nvidia_device
    model, feeds, refs = gemv_case(n, k, relu, seed=1)
    out = run_model(model, feeds, tmp_path, arch, spec)["y"]
    assert out.shape == refs["y"].shape and rel_error(out, refs["y"]) <= 1e-5
