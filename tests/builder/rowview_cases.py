"""Models and float64 references for the row-kernel and strided-view tests (test_row_kernels.py,
test_views.py): LayerNormalization / Softmax on odd row shapes, attention blocks whose Split,
Transposes and reshapes fold into the MatMuls, and the build-and-run helper they share (cpu or a GPU,
outputs poisoned before the launches)."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from kernelos.builder.build import build_image
from kernelos.model import load_model


def make_model(nodes, inputs: dict, outputs, inits: dict, dtype=np.float32):
    """inputs: name -> shape (of dtype); outputs: names; inits: name -> array."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    g = helper.make_graph(nodes, "case", [helper.make_tensor_value_info(n, elem, list(s)) for n, s in inputs.items()],
                          [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs],
                          [numpy_helper.from_array(a, n) for n, a in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def run_model(model, feeds: dict, tmp_path, target="cpu", device="cpu") -> dict:
    build_image(model, tmp_path / "case.kimg", [target])
    with load_model(str(tmp_path / "case.kimg"), device) as m:
        return m.run(feeds, poison=True)


# --- LayerNormalization and Softmax ------------------------------------------------------------
def softmax64(x, axis):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def layernorm64(x, axis, scale, bias, eps=1e-5):
    x = x.astype(np.float64)
    axes = tuple(range(axis % x.ndim, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True) + eps)
    return (x - mean) * inv * scale + bias, mean, inv


# (shape, axis, value scale): 1-element rows, rows off every multiple of 32, a warp's worth, a block
# (cached in registers), longer than a block caches (re-read), strided rows (axis not last)
SOFTMAX_CASES = [((37, 1), -1, 1.0), ((5, 33), -1, 1.0), ((3, 5000), -1, 1.0), ((2, 700), 1, 4.0),
                 ((7, 3, 5), 0, 1.0), ((2, 45, 6), 1, 30.0), ((129, 128), -1, 8.0)]
LAYERNORM_CASES = [((37, 1), -1), ((6, 33), -1), ((2, 3, 5, 7), 1), ((3, 5000), -1), ((129, 768), -1),
                   ((4, 3, 37), 2)]


def softmax_case(shape, axis, scale, seed=0, dtype=np.float32):
    x = (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)
    model = make_model([helper.make_node("Softmax", ["x"], ["y"], axis=axis)], {"x": shape}, ["y"], {}, dtype)
    return model, {"x": x}, {"y": softmax64(x, axis)}


def layernorm_case(shape, axis, stats=True, seed=0):
    """LayerNorm with its Mean and InvStdDev outputs (stats) or followed by a fused epilogue
    (y = LN(x) * 0.5 + x), as one kernel either way."""
    rng = np.random.default_rng(seed)
    x = (3.0 + rng.standard_normal(shape)).astype(np.float32)
    norm = shape[axis % len(shape):]
    scale = (1 + 0.1 * rng.standard_normal(norm)).astype(np.float32)
    bias = (0.1 * rng.standard_normal(norm)).astype(np.float32)
    y, mean, inv = layernorm64(x, axis, scale, bias)
    inits = {"s": scale, "b": bias}
    if stats:
        nodes = [helper.make_node("LayerNormalization", ["x", "s", "b"], ["y", "mean", "inv"], axis=axis)]
        return make_model(nodes, {"x": shape}, ["y", "mean", "inv"], inits), {"x": x}, {"y": y, "mean": mean, "inv": inv}
    nodes = [helper.make_node("LayerNormalization", ["x", "s", "b"], ["ln"], axis=axis),
             helper.make_node("Mul", ["ln", "half"], ["h"]), helper.make_node("Add", ["h", "x"], ["y"])]
    inits["half"] = np.float32(0.5)
    return make_model(nodes, {"x": shape}, ["y"], inits), {"x": x}, {"y": y * 0.5 + x}


# --- attention: Split / Transpose / Reshape feeding MatMuls -----------------------------------
def attention_case(seq, heads, dh, seed=0):
    """GPT-2's attention at any size: x[1, seq, d] -> qkv linear -> Split -> per-head Reshape +
    Transpose (k transposed again) -> softmax(q k^T * scale + mask) v -> Transpose -> Reshape ->
    output linear + residual."""
    d = heads * dh
    rng = np.random.default_rng(seed)
    f = np.float32
    w = {"wqkv": (rng.standard_normal((d, 3 * d)) / np.sqrt(d)).astype(f), "bqkv": (0.1 * rng.standard_normal(3 * d)).astype(f),
         "wo": (rng.standard_normal((d, d)) / np.sqrt(d)).astype(f), "bo": (0.1 * rng.standard_normal(d)).astype(f),
         "scale": f(1 / np.sqrt(dh)), "mask": np.triu(np.full((seq, seq), -1e9, f), k=1),
         "heads": np.array([1, seq, heads, dh], np.int64), "model": np.array([1, seq, d], np.int64)}
    n = helper.make_node
    nodes = [n("MatMul", ["x", "wqkv"], ["qkv0"]), n("Add", ["qkv0", "bqkv"], ["qkv"]),
             n("Split", ["qkv", "sizes"], ["q0", "k0", "v0"], axis=-1)]
    w["sizes"] = np.array([d, d, d], np.int64)
    for t in "qkv":
        nodes += [n("Reshape", [f"{t}0", "heads"], [f"{t}1"]), n("Transpose", [f"{t}1"], [f"{t}"], perm=[0, 2, 1, 3])]
    nodes += [n("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]), n("MatMul", ["q", "kt"], ["s0"]),
              n("Mul", ["s0", "scale"], ["s1"]), n("Add", ["s1", "mask"], ["s2"]), n("Softmax", ["s2"], ["p"], axis=-1),
              n("MatMul", ["p", "v"], ["a0"]), n("Transpose", ["a0"], ["a1"], perm=[0, 2, 1, 3]),
              n("Reshape", ["a1", "model"], ["a2"]), n("MatMul", ["a2", "wo"], ["o0"]), n("Add", ["o0", "bo"], ["o1"]),
              n("Add", ["o1", "x"], ["y"])]
    x = rng.standard_normal((1, seq, d)).astype(f)
    w64 = {k: v.astype(np.float64) if v.dtype == f else v for k, v in w.items()}
    qkv = x.astype(np.float64) @ w64["wqkv"] + w64["bqkv"]
    q, k, v = (t.reshape(1, seq, heads, dh).transpose(0, 2, 1, 3) for t in np.split(qkv, 3, axis=-1))
    p = softmax64(q @ k.transpose(0, 1, 3, 2) * w64["scale"] + w64["mask"], -1)
    a = (p @ v).transpose(0, 2, 1, 3).reshape(1, seq, d)
    ref = a @ w64["wo"] + w64["bo"] + x
    return make_model(nodes, {"x": (1, seq, d)}, ["y"], w), {"x": x}, {"y": ref}


# (seq, heads, dh): odd sizes (rows off 4 and 16: no float4, per-output dots), aligned ones (the
# cpu's 16-output dot blocks, 4 or 3 A rows a block, float4 loads), big enough for the tiled CUDA GEMMs
ATTENTION_CASES = [(13, 3, 5), (32, 2, 16), (40, 4, 24), (48, 2, 8)]
