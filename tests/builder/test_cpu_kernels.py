"""The cpu kernel paths that the ONNX node tests are too small to reach, against onnxruntime:
the convolution row kernel's vector tiles (stride 1 and 2, with dilation, groups, 8/4/1 output
channels per block) and the 16-output matmul blocks, on outputs wide enough for interior tiles."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from kernelos.builder.build import build_image
from kernelos.model import load_model

from .conftest import ort_run, rel_error


def _single(op_nodes, x_shape, inits, y_name="y"):
    g = helper.make_graph(op_nodes, "k", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info(y_name, TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _check(model, x_shape, tmp_path):
    build_image(model, tmp_path / "k.kimg", ["cpu"])
    x = np.random.default_rng(3).standard_normal(x_shape).astype(np.float32)
    with load_model(str(tmp_path / "k.kimg"), "cpu") as m:
        out = m.run({"x": x}, poison=True)["y"]
    ref = ort_run(model, {"x": x})["y"]
    assert out.shape == ref.shape
    assert rel_error(out, ref) <= 1e-5


@pytest.mark.parametrize("cin,cout,k,stride,dil,group,width", [
    (3, 16, 3, 1, 1, 1, 40),      # 8 channels per block, stride 1, edge + interior tiles
    (3, 8, 7, 2, 1, 1, 70),       # stride 2 (even lanes of two loads)
    (4, 12, 3, 1, 2, 1, 33),      # dilation 2, 4 channels per block, a partial last tile
    (8, 8, 3, 2, 1, 8, 64),       # depthwise stride 2: 1 channel per block
    (6, 6, 5, 1, 1, 2, 24),       # 2 groups of 3
])
def test_conv_row_kernel_matches_onnxruntime(tmp_path, cin, cout, k, stride, dil, group, width):
    rng = np.random.default_rng(cin * 100 + k)
    w = rng.standard_normal((cout, cin // group, k, k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    pad = dil * (k - 1) // 2
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[stride, stride], dilations=[dil, dil],
                            group=group, pads=[pad] * 4)
    model = _single([node], [1, cin, 9, width], [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    _check(model, [1, cin, 9, width], tmp_path)


@pytest.mark.parametrize("m,k,n", [(1, 100, 48), (3, 64, 32), (2, 37, 20)])
def test_matmul_blocks_match_onnxruntime(tmp_path, m, k, n):
    """16-output blocks where n allows them (48, 32), the per-output path otherwise (20); K not a
    multiple of 8 exercises the scalar tails."""
    w = np.random.default_rng(k).standard_normal((k, n)).astype(np.float32)
    model = _single([helper.make_node("MatMul", ["x", "w"], ["y"])], [m, k], [numpy_helper.from_array(w, "w")])
    _check(model, [m, k], tmp_path)
