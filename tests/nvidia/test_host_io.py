"""Model inputs and outputs on the GPU without the copy engine (kernelos/model.py `_place_io`): the
compute stream writes the input itself (inline in its pushbuffer) and kernels write the outputs in
place in host-visible memory, so an inference is one compute-queue submit; larger buffers (here
forced by lowered limits) are staged by the copy queue. Every configuration must give the float64
result, with poisoned activations and I/O buffers, on fresh inputs each run (a stale input from
the previous run would show)."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import hal
from kernelos.builder.build import build_image
from kernelos.model import load_model

from .conftest import nv_reason

pytestmark = pytest.mark.nvidia
IN, HIDDEN, OUT = 256, 256, 64          # y (256 B) is smaller than x and h (1 KiB each)
RUNS = 20


def two_output_mlp(rng):
    """h = relu(x @ w1 + b1) and y = h @ w2 + b2, both graph outputs (h is also read by the next layer)."""
    w = {"w1": rng.standard_normal((IN, HIDDEN)) / 16, "b1": rng.standard_normal(HIDDEN) / 4,
         "w2": rng.standard_normal((HIDDEN, OUT)) / 16, "b2": rng.standard_normal(OUT) / 4}
    w = {k: v.astype(np.float32) for k, v in w.items()}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["m2"]),
             helper.make_node("Add", ["m2", "b2"], ["y"])]
    graph = helper.make_graph(nodes, "two_output_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, IN])],
                              [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, HIDDEN]),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, OUT])],
                              [numpy_helper.from_array(v, k) for k, v in w.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, w


def reference(w, x):
    h = np.maximum(x.astype(np.float64) @ w["w1"] + w["b1"], 0)
    return {"h": h, "y": h @ w["w2"] + w["b2"]}


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    reason = nv_reason()
    if reason:
        pytest.skip(reason)
    arch = next(d.arch for d in hal.probe() if d.spec == "nv:0")
    model, w = two_output_mlp(np.random.default_rng(5))
    path = tmp_path_factory.mktemp("host_io") / "two_output_mlp.kimg"
    build_image(model, path, [arch])
    return path, w


def check_runs(model, w, rng):
    for i in range(RUNS):
        x = rng.standard_normal((1, IN)).astype(np.float32)
        got, want = model.run({"x": x}, poison=True), reference(w, x)
        for name in ("h", "y"):
            err = np.abs(got[name] - want[name]).max() / np.abs(want[name]).max()
            assert np.all(np.isfinite(got[name])) and err <= 1e-4, (i, name, err)


@pytest.mark.parametrize("limits, staged, submits", [
    (None, set(), 1),                   # the driver's own limits: x written inline, h and y in place
    ((0, 512), {"x", "h"}, 2),          # x staged (no inline writes), h over the in-place limit, y in place
    ("stage_io", {"x", "h", "y"}, 2),   # stage_io=True: everything through the copy queue
])
def test_one_submit_and_staged_io_match_float64(image, limits, staged, submits):
    path, w = image
    dev = hal.open("nv:0")
    if isinstance(limits, tuple):
        dev.info.input_write_max_B, dev.info.output_in_place_max_B = limits
    with load_model(str(path), dev, stage_io=True if limits == "stage_io" else None) as model:
        assert set(model._stage) == staged
        assert model.submits_per_inference == submits
        check_runs(model, w, np.random.default_rng(11))
