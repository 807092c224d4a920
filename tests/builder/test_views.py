"""Layout changes without copy kernels (kernelos/builder/views.py, fusion.py, ops/movement.py): a
Split / Transpose / Reshape chain only MatMuls read becomes a strided view the MatMul loads through;
a Transpose of a value only it reads is stored transposed by that value's producer; a Split that
must be materialised is one kernel for all its outputs. Checked by the exact launches of GPT-2's
blocks and of small graphs, numerically against float64 on the cpu device (poisoned outputs) and,
on an NVIDIA GPU, the same attention blocks."""

import numpy as np
import pytest
from onnx import helper

from bench.e2e import models as bench_models
from kernelos.builder.build import lower_model
from kernelos.builder.views import reshape_strides
from kernelos.dag import Launch

from .conftest import rel_error
from .rowview_cases import ATTENTION_CASES, attention_case, make_model, run_model

GPT2_BLOCK = ["LayerNormalization", "MatMul", "MatMul", "Softmax", "MatMul", "MatMul", "LayerNormalization", "MatMul",
              "MatMul"]


def _launches(low) -> list:
    return [n for n in low.dag.nodes if isinstance(n, Launch)]


def _ops(low) -> list:
    by_name = {n.name: n.op for n in low.graph.nodes}
    return [by_name[n.name] for n in _launches(low)]


def test_gpt2_block_is_nine_launches():
    """LayerNorm, the QKV GEMM, q k^T (+ scale, mask), Softmax, p v (stored head-interleaved), the
    projection (+ bias, residual), LayerNorm, the MLP's two GEMMs: no Split, Transpose or statistics
    kernels (22 launches a block before)."""
    low = lower_model(bench_models.gpt2(), ["cpu-x86_64", "sm_90"])
    assert _ops(low) == GPT2_BLOCK * 12 + ["LayerNormalization"]
    variants = {low.specs[n.kernel].cuda_variant for n in _launches(low) if not n.name.startswith("MatMul")}
    assert variants == {"row"}
    assert len(low.views) == 12 * 10      # per block: 3 Split outputs, 3 reshapes, 4 Transposes
    unfused = lower_model(bench_models.gpt2(), ["cpu-x86_64"], fusion=False)
    assert len(_launches(unfused)) > 2 * len(_launches(low))


@pytest.mark.parametrize("seq,heads,dh", ATTENTION_CASES)
def test_attention_through_views_matches_float64_on_cpu(tmp_path, seq, heads, dh):
    model, feeds, refs = attention_case(seq, heads, dh)
    low = lower_model(model, ["cpu-x86_64", "sm_90"])
    # qkv (+ bias), q k^T (+ scale, mask), Softmax, p v (stored transposed), projection (+ bias, residual)
    assert [n.name for n in _launches(low)] == ["MatMul_0", "MatMul_10", "Softmax_13", "MatMul_14", "MatMul_17"]
    assert len(low.views) == 10
    out = run_model(model, feeds, tmp_path)["y"]
    assert rel_error(out, refs["y"]) <= 1e-5


def _split_model(to_matmul: bool):
    """x[3, 8, 5] split on axis 1 into 2 + 5 + 1; the first part a graph output or the A of a MatMul
    ([3, 2, 5] @ w[5, 4], read as a view)."""
    rng = np.random.default_rng(11)
    w = rng.standard_normal((5, 4)).astype(np.float32)
    nodes = [helper.make_node("Split", ["x", "sizes"], ["a", "b", "c"], axis=1)]
    inits = {"sizes": np.array([2, 5, 1], np.int64)}
    outs = ["a", "b", "c"]
    if to_matmul:
        nodes.append(helper.make_node("MatMul", ["a", "w"], ["y"]))
        inits["w"] = w
        outs = ["y", "b", "c"]
    x = rng.standard_normal((3, 8, 5)).astype(np.float32)
    a, b, c = np.split(x.astype(np.float64), [2, 7], axis=1)
    refs = {"a": a, "b": b, "c": c} if not to_matmul else {"y": a @ w.astype(np.float64), "b": b, "c": c}
    return make_model(nodes, {"x": x.shape}, outs, inits), {"x": x}, refs


@pytest.mark.parametrize("to_matmul", [False, True])
def test_split_is_one_kernel_for_its_stored_outputs(tmp_path, to_matmul):
    model, feeds, refs = _split_model(to_matmul)
    low = lower_model(model, ["cpu-x86_64"])
    assert _ops(low) == (["Split", "MatMul"] if to_matmul else ["Split"])
    split = next(n for n in _launches(low) if n.name.startswith("Split"))
    assert set(split.writes) == {"b", "c"} | ({"a"} if not to_matmul else set())
    assert set(low.views) == ({"a"} if to_matmul else set())
    outs = run_model(model, feeds, tmp_path)
    for name, ref in refs.items():
        assert outs[name].shape == ref.shape and rel_error(outs[name], ref) <= 1e-6, name


@pytest.mark.parametrize("perm,operand,is_view", [
    ([0, 2, 1], 0, False),      # A = x^T: rows not contiguous along k -> a Transpose kernel
    ([0, 2, 1], 1, True),       # B = x^T: columns contiguous along k -> the dot-product kernels read it
])
def test_transpose_feeding_matmul_is_a_view_where_rows_stay_contiguous(tmp_path, perm, operand, is_view):
    x = np.random.default_rng(5).standard_normal((2, 7, 7)).astype(np.float32)
    ins = ["t", "x"] if operand == 0 else ["x", "t"]
    model = make_model([helper.make_node("Transpose", ["x"], ["t"], perm=perm), helper.make_node("MatMul", ins, ["y"])],
                       {"x": x.shape}, ["y"], {})
    low = lower_model(model, ["cpu-x86_64"])
    assert ("t" in low.views) == is_view and len(_launches(low)) == (1 if is_view else 2)
    x64, t64 = x.astype(np.float64), x.astype(np.float64).transpose(perm)
    ref = t64 @ x64 if operand == 0 else x64 @ t64
    assert rel_error(run_model(model, {"x": x}, tmp_path)["y"], ref) <= 1e-5


def test_transpose_after_a_kernel_folds_into_its_store_and_a_non_view_reshape_stays_a_kernel(tmp_path):
    """a = relu(x @ x^T) stored transposed [0, 2, 1] by the MatMul; then Transpose(x) -> Reshape
    merges dims that are not contiguous (no view): that Transpose is a kernel."""
    n = helper.make_node
    nodes = [n("Transpose", ["x"], ["xt"], perm=[0, 2, 1]), n("MatMul", ["x", "xt"], ["s"]), n("Relu", ["s"], ["r"]),
             n("Transpose", ["r"], ["rt"], perm=[0, 2, 1]), n("MatMul", ["rt", "x"], ["y"]),
             n("Transpose", ["x"], ["x2"], perm=[0, 2, 1]), n("Reshape", ["x2", "flat"], ["xf"]),
             n("MatMul", ["xf", "w"], ["z"])]
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((2, 6, 9)).astype(np.float32), rng.standard_normal((54, 3)).astype(np.float32)
    model = make_model(nodes, {"x": x.shape}, ["y", "z"], {"flat": np.array([2, 54], np.int64), "w": w})
    low = lower_model(model, ["cpu-x86_64"])
    assert _ops(low) == ["MatMul", "MatMul", "Transpose", "MatMul"]
    assert _launches(low)[0].writes == ("rt",)
    assert "xt" in low.views and "x2" not in low.views and "xf" not in low.views
    x64 = x.astype(np.float64)
    r = np.maximum(x64 @ x64.transpose(0, 2, 1), 0)
    outs = run_model(model, {"x": x}, tmp_path)
    assert rel_error(outs["y"], r.transpose(0, 2, 1) @ x64) <= 1e-5
    assert rel_error(outs["z"], x64.transpose(0, 2, 1).reshape(2, 54) @ w.astype(np.float64)) <= 1e-5


def test_transpose_of_a_transposed_store_keeps_its_kernel(tmp_path):
    """relu(x @ x^T) -> Transpose -> Transpose -> output: the first folds into the MatMul's store,
    the second (whose input no group stores any more) stays a kernel."""
    n = helper.make_node
    nodes = [n("MatMul", ["x", "w"], ["s"]), n("Relu", ["s"], ["r"]), n("Transpose", ["r"], ["t1"], perm=[1, 0, 2]),
             n("Transpose", ["t1"], ["y"], perm=[0, 2, 1])]
    rng = np.random.default_rng(9)
    x, w = rng.standard_normal((3, 5, 7)).astype(np.float32), rng.standard_normal((7, 4)).astype(np.float32)
    model = make_model(nodes, {"x": x.shape}, ["y"], {"w": w})
    low = lower_model(model, ["cpu-x86_64"])
    assert _ops(low) == ["MatMul", "Transpose"] and _launches(low)[0].writes == ("t1",)
    ref = np.maximum(x.astype(np.float64) @ w.astype(np.float64), 0).transpose(1, 0, 2).transpose(0, 2, 1)
    assert rel_error(run_model(model, {"x": x}, tmp_path)["y"], ref) <= 1e-6


def test_reshape_strides_agree_with_numpy():
    """Where numpy reshapes a strided view without a copy we give its strides; where it needs a
    copy we give None."""
    rng = np.random.default_rng(0)
    checked = copies = 0
    for _ in range(400):
        shape = tuple(int(d) for d in rng.integers(1, 5, rng.integers(1, 5)))
        base = np.zeros(int(np.prod(shape)) * 3, np.int8)[::3].reshape(shape) if rng.random() < 0.3 else np.zeros(shape, np.int8)
        v = base.transpose(rng.permutation(len(shape)))
        flat = int(np.prod(shape))
        dims, rest = [], flat
        while rest > 1:
            d = int(rng.choice([f for f in range(1, rest + 1) if rest % f == 0]))
            dims.append(d)
            rest //= d
            if rng.random() < 0.2:
                dims.append(1)
        new = tuple(dims) or (1,)
        try:
            want = v.reshape(new, copy=False)
        except ValueError:
            want = None
        got = reshape_strides(v.shape, tuple(s // v.itemsize for s in v.strides), new)
        if want is None:
            copies += 1
            assert got is None, (v.shape, v.strides, new)
        else:
            assert got is not None, (v.shape, v.strides, new)
            assert all(g * v.itemsize == s for g, s, d in zip(got, want.strides, new) if d != 1), (v.shape, new)
        checked += 1
    assert copies > 20 and checked - copies > 100


@pytest.mark.nvidia
@pytest.mark.parametrize("seq,heads,dh", ATTENTION_CASES)
def test_attention_through_views_matches_float64_on_nvidia(tmp_path, nvidia_device, seq, heads, dh):
    spec, arch = nvidia_device
    model, feeds, refs = attention_case(seq, heads, dh)
    out = run_model(model, feeds, tmp_path, arch, spec)["y"]
    assert rel_error(out, refs["y"]) <= 1e-5
