"""The float64 reference: an independent numpy evaluation of the benchmark models' ONNX graphs in
float64 (weights and inputs widened from float32), written here for exactly the ops models.py uses.
It shares no code with the builder or onnxruntime (onnxruntime computes in float32, so it is a
baseline, not a reference). An op outside the table raises NotImplementedError naming it."""

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from onnx import helper, numpy_helper


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _windows(x, k, stride, pads, fill):
    """x[N, C, H, W] padded -> [N, C, OH, OW, kh, kw] strided windows."""
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=fill)
    return sliding_window_view(x, k, axis=(2, 3))[:, :, ::stride[0], ::stride[1]]


def conv(x, w, b, a):
    k, stride = tuple(a["kernel_shape"]), a.get("strides", [1, 1])
    if a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1, 1])):
        raise NotImplementedError("Conv with groups or dilations")
    win = _windows(x, k, stride, a.get("pads", [0, 0, 0, 0]), 0.0)     # [N, C, OH, OW, kh, kw]
    y = np.einsum("nchwij,ocij->nohw", win, w, optimize=True)
    return y + b.reshape(1, -1, 1, 1) if b is not None else y


def maxpool(x, a):
    return _windows(x, tuple(a["kernel_shape"]), a.get("strides", [1, 1]), a.get("pads", [0, 0, 0, 0]),
                    -np.inf).max(axis=(4, 5))


def layernorm(x, g, b, a):
    axis = a.get("axis", -1)
    mean = x.mean(axis=axis, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axis, keepdims=True)
    return (x - mean) / np.sqrt(var + a.get("epsilon", 1e-5)) * g + b


def softmax(x, a):
    e = np.exp(x - x.max(axis=a.get("axis", -1), keepdims=True))
    return e / e.sum(axis=a.get("axis", -1), keepdims=True)


def gemm(x, w, b, a):
    x = x.T if a.get("transA") else x
    w = w.T if a.get("transB") else w
    return a.get("alpha", 1.0) * (x @ w) + (a.get("beta", 1.0) * b if b is not None else 0)


def split(x, sizes, a):
    axis, n = a.get("axis", 0), a.get("num_outputs")
    if sizes is None:
        sizes = [x.shape[axis] // n] * n
    return np.split(x, np.cumsum(sizes)[:-1].astype(int), axis=axis)


OPS = {
    "MatMul": lambda i, a: i[0] @ i[1],
    "Add": lambda i, a: i[0] + i[1],
    "Mul": lambda i, a: i[0] * i[1],
    "Relu": lambda i, a: np.maximum(i[0], 0.0),
    "Tanh": lambda i, a: np.tanh(i[0]),
    "Erf": lambda i, a: np.vectorize(math.erf)(i[0]),
    "Conv": lambda i, a: conv(i[0], i[1], i[2] if len(i) > 2 else None, a),
    "MaxPool": lambda i, a: maxpool(i[0], a),
    "GlobalAveragePool": lambda i, a: i[0].mean(axis=(2, 3), keepdims=True),
    "Flatten": lambda i, a: i[0].reshape(int(np.prod(i[0].shape[:a.get("axis", 1)])), -1),
    "Gemm": lambda i, a: gemm(i[0], i[1], i[2] if len(i) > 2 else None, a),
    "LayerNormalization": lambda i, a: layernorm(i[0], i[1], i[2], a),
    "Softmax": lambda i, a: softmax(i[0], a),
    "Reshape": lambda i, a: i[0].reshape([int(d) for d in i[1]]),
    "Transpose": lambda i, a: np.transpose(i[0], a["perm"]),
    "Split": lambda i, a: split(i[0], i[1] if len(i) > 1 else None, a),
}


def run_float64(model, inputs: dict) -> dict:
    """Output name -> float64 array for the model on `inputs` (float arrays widened to float64)."""
    def wide(v):
        return v.astype(np.float64) if v.dtype.kind == "f" else v
    env = {i.name: wide(numpy_helper.to_array(i)) for i in model.graph.initializer}
    env.update({k: wide(np.asarray(v)) for k, v in inputs.items()})
    for node in model.graph.node:
        fn = OPS.get(node.op_type)
        if fn is None:
            raise NotImplementedError(f"the float64 reference has no {node.op_type} (node {node.name})")
        result = fn([env[n] if n else None for n in node.input], _attrs(node))
        for name, value in zip(node.output, result if isinstance(result, list) else [result]):
            env[name] = value
    return {o.name: env[o.name] for o in model.graph.output}
