"""Models for the builder's end-to-end tests, made with onnx.helper from seeded numpy weights:
an MLP, a small CNN (residual blocks, BatchNorm, depthwise conv, pooling) and a transformer block
(embedding Gather, LayerNorm, multi-head attention with Softmax, GELU MLP)."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from kernelos.builder.demo_model import demo_mlp


class _G:
    """A tiny graph-building helper: nodes with auto names, seeded initializers."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.k = [], [], 0

    def const(self, array, name=None):
        name = name or f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def rand(self, *shape, scale=1.0):
        return self.const((self.rng.standard_normal(shape) * scale).astype(np.float32))

    def op(self, op_type, *inputs, n_out=1, **attrs):
        self.k += 1
        outs = [f"{op_type.lower()}{self.k}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=f"{op_type}_{self.k}", **attrs))
        return outs[0] if n_out == 1 else outs

    def model(self, name, inputs, outputs, opset=17):
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        return m


def mlp(batch=1):
    return demo_mlp(width=256, layers=3, batch=batch, seed=1)


def _conv_bn(g, x, cin, cout, k=3, stride=1, group=1, relu=True):
    w = g.rand(cout, cin // group, k, k, scale=np.sqrt(2.0 / (cin // group * k * k)))
    y = g.op("Conv", x, w, g.rand(cout, scale=0.1), kernel_shape=[k, k], strides=[stride, stride],
             pads=[k // 2] * 4, group=group)
    scale = g.const((1 + 0.1 * g.rng.standard_normal(cout)).astype(np.float32))
    bias, mean = g.rand(cout, scale=0.1), g.rand(cout, scale=0.1)
    var = g.const((1 + 0.2 * g.rng.random(cout)).astype(np.float32))
    y = g.op("BatchNormalization", y, scale, bias, mean, var, epsilon=1e-5)
    return g.op("Relu", y) if relu else y


def _residual(g, x, c):
    y = _conv_bn(g, x, c, c)
    y = _conv_bn(g, y, c, c, relu=False)
    return g.op("Relu", g.op("Add", y, x))


def cnn():
    """[1,3,32,32] -> conv-bn-relu -> residual -> depthwise s2 -> 1x1 -> maxpool -> residual ->
    avgpool -> global avg pool -> flatten -> gemm [1,10]."""
    g = _G(2)
    x = _conv_bn(g, "x", 3, 16)
    x = _residual(g, x, 16)
    x = _conv_bn(g, x, 16, 16, stride=2, group=16)                   # depthwise
    x = _conv_bn(g, x, 16, 32, k=1)
    x = g.op("MaxPool", x, kernel_shape=[2, 2], strides=[2, 2])
    x = _residual(g, x, 32)
    x = g.op("AveragePool", x, kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=0)
    x = g.op("Flatten", g.op("GlobalAveragePool", x), axis=1)
    g.op("Gemm", x, g.rand(10, 32, scale=0.3), g.rand(10, scale=0.1), transB=1)
    g.nodes[-1].output[0] = "y"
    return g.model("small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])])


def _layernorm(g, x, d):
    scale = g.const((1 + 0.1 * g.rng.standard_normal(d)).astype(np.float32))
    return g.op("LayerNormalization", x, scale, g.rand(d, scale=0.1), axis=-1, epsilon=1e-5)


def _gelu(g, x):
    """GELU written out with Erf (opset 17 has no Gelu op): 0.5 * x * (1 + erf(x / sqrt(2)))."""
    e = g.op("Erf", g.op("Div", x, g.const(np.float32(np.sqrt(2.0)))))
    return g.op("Mul", g.op("Mul", x, g.const(np.float32(0.5))), g.op("Add", e, g.const(np.float32(1.0))))


def transformer(seq=16, d=64, heads=4, vocab=100):
    """ids[1,seq] -> embedding + positions -> pre-LN attention block -> pre-LN GELU MLP block."""
    g = _G(3)
    dh = d // heads
    x = g.op("Gather", g.rand(vocab, d, scale=0.5), "ids", axis=0)              # [1, seq, d]
    x = g.op("Add", x, g.rand(1, seq, d, scale=0.1))
    h = _layernorm(g, x, d)
    # the head split goes through Shape -> Gather -> Concat -> Reshape, which constant folding removes
    batch = g.op("Gather", g.op("Shape", h), g.const(np.array([0], np.int64)), axis=0)
    split = g.op("Concat", batch, g.const(np.array([seq, heads, dh], np.int64)), axis=0)

    def heads_of(t):
        return g.op("Transpose", g.op("Reshape", t, split), perm=[0, 2, 1, 3])       # [1, H, seq, dh]
    q = heads_of(g.op("Add", g.op("MatMul", h, g.rand(d, d, scale=d ** -0.5)), g.rand(d, scale=0.1)))
    k = heads_of(g.op("Add", g.op("MatMul", h, g.rand(d, d, scale=d ** -0.5)), g.rand(d, scale=0.1)))
    v = heads_of(g.op("Add", g.op("MatMul", h, g.rand(d, d, scale=d ** -0.5)), g.rand(d, scale=0.1)))
    s = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2]))
    p = g.op("Softmax", g.op("Div", s, g.const(np.float32(np.sqrt(dh)))), axis=-1)
    a = g.op("Reshape", g.op("Transpose", g.op("MatMul", p, v), perm=[0, 2, 1, 3]), g.const(np.array([1, seq, d], np.int64)))
    x = g.op("Add", x, g.op("Add", g.op("MatMul", a, g.rand(d, d, scale=d ** -0.5)), g.rand(d, scale=0.1)))
    h = _layernorm(g, x, d)
    h = _gelu(g, g.op("Add", g.op("MatMul", h, g.rand(d, 4 * d, scale=d ** -0.5)), g.rand(4 * d, scale=0.1)))
    y = g.op("Add", x, g.op("Add", g.op("MatMul", h, g.rand(4 * d, d, scale=(4 * d) ** -0.5)), g.rand(d, scale=0.1)))
    g.nodes[-1].output[0] = "y"
    del y
    return g.model("transformer_block", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, seq])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, d])])


def random_inputs(model, rng):
    """Fresh random inputs for a model's graph inputs (token ids in range for the transformer)."""
    out = {}
    for inp in model.graph.input:
        shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        if inp.type.tensor_type.elem_type == TensorProto.INT64:
            out[inp.name] = rng.integers(0, 100, shape).astype(np.int64)
        else:
            out[inp.name] = rng.standard_normal(shape).astype(np.float32)
    return out


MODELS = {"mlp": mlp, "cnn": cnn, "transformer": transformer}
