"""The three benchmark models of issue 9, made as ONNX with onnx.helper from seeded random weights.
Every framework in the harness runs these same files: kernelos builds its image from them, the
PyTorch runner (torch_models.py) and the float64 reference (reference.py) read the initializers
by name, onnxruntime loads them as they are.

- mlp: 8 x (MatMul 1024x1024 + bias), ReLU between layers, x[1, 1024] (the demo MLP, 8 layers).
- resnet18: ResNet-18 shape at 224x224, batch 1: 7x7/2 conv, 3x3/2 max pool, 4 stages of 2 basic
  blocks (64, 128, 256, 512 channels; 1x1/2 projection shortcuts), global average pool, FC 1000.
  BatchNorm is already folded into the convolutions' weights and biases, as in an ONNX export of
  an eval-mode model (torch.onnx.export folds it).
- gpt2: GPT-2-small shape: 12 pre-LN blocks, d=768, 12 heads, sequence 128, causal attention
  (additive mask), GELU (tanh form, as GPT-2), final LayerNorm. The input is the hidden state
  x[1, 128, 768] after the token + position embedding (the embedding lookup is not benchmarked).
"""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from kernelos.builder.demo_model import demo_mlp

OPSET = 17
GPT2 = {"blocks": 12, "d": 768, "heads": 12, "seq": 128}
RESNET18_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))   # (channels, stride of the first block)


class GraphMaker:
    """Nodes and named initializers for one model; weights from one seeded generator."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.k = [], [], 0

    def const(self, name: str, array) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def normal(self, name: str, shape, scale: float, mean: float = 0.0) -> str:
        return self.const(name, (mean + scale * self.rng.standard_normal(shape)).astype(np.float32))

    def op(self, op_type: str, *inputs, out: str | None = None, n_out: int = 1, **attrs):
        self.k += 1
        outs = [out] if out else [f"{op_type.lower()}{self.k}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=f"{op_type}_{self.k}", **attrs))
        return outs[0] if n_out == 1 else outs

    def model(self, name: str, inputs, outputs):
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kernelos-bench")
        m.ir_version = 8
        return m


def mlp():
    return demo_mlp(width=1024, layers=8, batch=1, seed=9)


def _conv(g: GraphMaker, name: str, x: str, cin: int, cout: int, k: int, stride: int, relu: bool) -> str:
    g.normal(f"{name}.w", (cout, cin, k, k), np.sqrt(2.0 / (cin * k * k)))
    g.normal(f"{name}.b", (cout,), 0.05)
    y = g.op("Conv", x, f"{name}.w", f"{name}.b", kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)
    return g.op("Relu", y) if relu else y


def resnet18():
    g = GraphMaker(18)
    x = _conv(g, "conv1", "x", 3, 64, 7, 2, relu=True)
    x = g.op("MaxPool", x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for s, (c, stride) in enumerate(RESNET18_STAGES, start=1):
        for blk in range(2):
            st = stride if blk == 0 else 1
            name = f"layer{s}.{blk}"
            y = _conv(g, f"{name}.conv1", x, cin, c, 3, st, relu=True)
            y = _conv(g, f"{name}.conv2", y, c, c, 3, 1, relu=False)
            short = _conv(g, f"{name}.down", x, cin, c, 1, st, relu=False) if (st != 1 or cin != c) else x
            x = g.op("Relu", g.op("Add", y, short))
            cin = c
    x = g.op("Flatten", g.op("GlobalAveragePool", x), axis=1)
    g.normal("fc.w", (1000, 512), np.sqrt(1.0 / 512))
    g.normal("fc.b", (1000,), 0.05)
    g.op("Gemm", x, "fc.w", "fc.b", transB=1, out="y")
    return g.model("resnet18_shape", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1000])])


def _layernorm(g: GraphMaker, name: str, x: str, d: int) -> str:
    g.normal(f"{name}.g", (d,), 0.1, mean=1.0)
    g.normal(f"{name}.b", (d,), 0.02)
    return g.op("LayerNormalization", x, f"{name}.g", f"{name}.b", axis=-1, epsilon=1e-5)


def _linear(g: GraphMaker, name: str, x: str, din: int, dout: int) -> str:
    """x @ W + b with W stored [din, dout] (the ONNX / GPT-2 Conv1D layout)."""
    g.normal(f"{name}.w", (din, dout), 0.02)
    g.normal(f"{name}.b", (dout,), 0.02)
    return g.op("Add", g.op("MatMul", x, f"{name}.w"), f"{name}.b")


def _gelu_tanh(g: GraphMaker, x: str) -> str:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    cube = g.op("Mul", g.op("Mul", x, x), x)
    inner = g.op("Mul", g.op("Add", x, g.op("Mul", cube, "gelu.c")), "gelu.k")
    return g.op("Mul", g.op("Mul", x, "gelu.half"), g.op("Add", g.op("Tanh", inner), "gelu.one"))


def gpt2():
    blocks, d, heads, seq = GPT2["blocks"], GPT2["d"], GPT2["heads"], GPT2["seq"]
    dh = d // heads
    g = GraphMaker(2)
    g.const("gelu.c", np.float32(0.044715))
    g.const("gelu.k", np.float32(np.sqrt(2.0 / np.pi)))
    g.const("gelu.half", np.float32(0.5))
    g.const("gelu.one", np.float32(1.0))
    g.const("attn.scale", np.float32(1.0 / np.sqrt(dh)))
    g.const("attn.mask", np.triu(np.full((seq, seq), -1e9, np.float32), k=1))
    g.const("shape.heads", np.array([1, seq, heads, dh], np.int64))
    g.const("shape.model", np.array([1, seq, d], np.int64))
    x = "x"
    for i in range(blocks):
        h = _layernorm(g, f"h{i}.ln1", x, d)
        qkv = _linear(g, f"h{i}.attn.qkv", h, d, 3 * d)
        q, k, v = g.op("Split", qkv, axis=-1, n_out=3, num_outputs=3) if OPSET >= 18 else \
            g.op("Split", qkv, g.const(f"h{i}.split", np.array([d, d, d], np.int64)), axis=-1, n_out=3)
        q, k, v = (g.op("Transpose", g.op("Reshape", t, "shape.heads"), perm=[0, 2, 1, 3]) for t in (q, k, v))
        s = g.op("Mul", g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2])), "attn.scale")
        p = g.op("Softmax", g.op("Add", s, "attn.mask"), axis=-1)
        a = g.op("Reshape", g.op("Transpose", g.op("MatMul", p, v), perm=[0, 2, 1, 3]), "shape.model")
        x = g.op("Add", x, _linear(g, f"h{i}.attn.proj", a, d, d))
        h = _layernorm(g, f"h{i}.ln2", x, d)
        h = _gelu_tanh(g, _linear(g, f"h{i}.mlp.fc", h, d, 4 * d))
        x = g.op("Add", x, _linear(g, f"h{i}.mlp.proj", h, 4 * d, d))
    g.normal("ln_f.g", (d,), 0.1, mean=1.0)
    g.normal("ln_f.b", (d,), 0.02)
    g.op("LayerNormalization", x, "ln_f.g", "ln_f.b", axis=-1, epsilon=1e-5, out="y")
    return g.model("gpt2_small_shape", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, d])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, d])])


MODELS = {"mlp": mlp, "resnet18": resnet18, "gpt2": gpt2}


def make_input(model, seed: int = 1234) -> dict:
    """Fresh standard-normal float32 inputs for the model's graph inputs."""
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
            for i in model.graph.input}


def weights(model) -> dict:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
