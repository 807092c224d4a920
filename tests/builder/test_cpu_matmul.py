"""The cpu matmul register tiles (mr A rows x 16 weight rows, kos_dot_mx4_f32) against numpy
float64: M that picks 3, 4 or 2 rows per tile, batched A flattened onto the rows, K with scalar
tails, Gemm with transB, alpha and a bias epilogue; and shapes that keep the older paths. Matmuls of
two computed tensors (attention's Q K^T and P V) accumulate whole output rows (4/2/1 per block)."""

import numpy as np
import pytest
from onnx import helper

from .conftest import rel_error, run_on_cpu


@pytest.mark.parametrize("a_shape,n", [
    ((12, 40), 32),       # 3 rows per tile, K tail of 0 after 5 vector steps
    ((8, 37), 16),        # 4 rows per tile, K = 37: scalar tail
    ((2, 3, 64), 48),     # batched A flattened to 6 rows, 3 per tile
    ((2, 24), 32),        # 2 rows per tile
    ((5, 19), 16),        # M = 5: one row per block (the GEMV path)
    ((4, 16), 20),        # N = 20: the per-output path
])
def test_matmul_tiles_match_float64(tmp_path, a_shape, n):
    rng = np.random.default_rng(sum(a_shape) + n)
    x = rng.standard_normal(a_shape).astype(np.float32)
    w = rng.standard_normal((a_shape[-1], n)).astype(np.float32)
    out = run_on_cpu(helper.make_node("MatMul", ["x", "w"], ["y"]), x, {"w": w}, tmp_path)
    ref = x.astype(np.float64) @ w.astype(np.float64)
    assert out.shape == ref.shape
    assert rel_error(out, ref) <= 1e-5


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_tiles_with_bias_match_float64(tmp_path, trans_b):
    rng = np.random.default_rng(7 + trans_b)
    x = rng.standard_normal((9, 45)).astype(np.float32)
    w = rng.standard_normal((32, 45) if trans_b else (45, 32)).astype(np.float32)
    c = rng.standard_normal(32).astype(np.float32)
    node = helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=trans_b, alpha=0.5)
    out = run_on_cpu(node, x, {"w": w, "c": c}, tmp_path)
    wt = w.T if trans_b else w
    ref = 0.5 * (x.astype(np.float64) @ wt.astype(np.float64)) + c
    assert rel_error(out, ref) <= 1e-5


@pytest.mark.parametrize("x_shape,a_perm,b_perm", [
    ((2, 12, 5), [0, 2, 1], None),        # [2,5,12] @ [2,12,5]: M = 5, one row per block
    ((2, 5, 12), [0, 2, 1], None),        # [2,12,5] @ [2,5,12]: M = 12, 4 rows per block
    ((3, 6, 7), None, [0, 2, 1]),         # [3,6,7] @ [3,7,6]: M = 6, 2 rows per block
])
def test_matmul_of_computed_tensors_matches_float64(tmp_path, x_shape, a_perm, b_perm):
    x = np.random.default_rng(sum(x_shape)).standard_normal(x_shape).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=a_perm or b_perm),
             helper.make_node("MatMul", ["t", "x"] if a_perm else ["x", "t"], ["y"])]
    out = run_on_cpu(nodes, x, {}, tmp_path)
    x64 = x.astype(np.float64)
    ref = x64.transpose(0, 2, 1) @ x64 if a_perm else x64 @ x64.transpose(0, 2, 1)
    assert out.shape == ref.shape
    assert rel_error(out, ref) <= 1e-5
