"""The demo model: an MLP (default 4 layers x 1024 wide, ReLU between layers, batch 1, float32)
made as ONNX with onnx.helper from seeded numpy weights. `make run` builds and boots it."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

DEMO_WIDTH = 1024
DEMO_LAYERS = 4


def demo_mlp(width: int = DEMO_WIDTH, layers: int = DEMO_LAYERS, batch: int = 1, seed: int = 0):
    """x[batch, width] -> (MatMul + Add bias, ReLU between layers) x layers -> y[batch, width].
    Weights are scaled (He init) so activations stay O(1) through the layers."""
    rng = np.random.default_rng(seed)
    inits, nodes, h = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((width, width)) * np.sqrt(2.0 / width)).astype(np.float32)
        b = (rng.standard_normal(width) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        out = "y" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [h, f"w{i}"], [f"mm{i}"], name=f"matmul{i}"))
        nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], [out if i == layers - 1 else f"pre{i}"], name=f"bias{i}"))
        if i < layers - 1:
            nodes.append(helper.make_node("Relu", [f"pre{i}"], [out], name=f"relu{i}"))
        h = out
    graph = helper.make_graph(nodes, f"demo_mlp_{layers}x{width}",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="kernelos-demo")
    model.ir_version = 8
    return model
