"""Importer, shape inference, constant folding, BatchNorm folding, fusion and lowering (no device)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hal.errors import GraphError
from kernelos.builder import infer, onnx_import, rewrite
from kernelos.builder.build import lower_model, resolve_targets
from kernelos.builder.graph import UnsupportedModel
from kernelos.dag import Launch
from tools.cli import main as kernelos

from .models import cnn, mlp, transformer


def _model(nodes, inputs, outputs, inits=(), opset=17):
    m = helper.make_model(helper.make_graph(nodes, "t", inputs, outputs, list(inits)),
                          opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def test_unsupported_nodes_are_all_listed_in_one_error():
    nodes = [helper.make_node("Foo", ["x"], ["a"], name="foo"),
             helper.make_node("Conv", ["a", "w"], ["b"], name="conv", auto_pad="WEIRD"),
             helper.make_node("MaxPool", ["b"], ["y", "idx"], name="pool", kernel_shape=[2, 2]),
             helper.make_node("Relu", ["y"], ["r"], name="fine"),
             helper.make_node("Relu", ["r"], ["z"], name="odd", alpha=0.5)]
    m = _model(nodes, [_vi("x", [1, 1, 4, 4]), _vi("w", [1, 1, 1, 1])], [_vi("z", None)])
    with pytest.raises(UnsupportedModel) as e:
        onnx_import.load(m)
    assert [(op, name) for op, name, _ in e.value.problems] == [("Foo", "foo"), ("Conv", "conv"), ("MaxPool", "pool"),
                                                               ("Relu", "odd")]
    assert "Indices output" in str(e.value) and "'fine'" not in str(e.value)
    assert "attribute(s) alpha not supported" in str(e.value)


def test_cli_prints_unsupported_nodes_and_exits_2(tmp_path, capsys):
    m = _model([helper.make_node("Foo", ["x"], ["y"], name="foo")], [_vi("x", [2])], [_vi("y", [2])])
    onnx.save(m, tmp_path / "bad.onnx")
    assert kernelos(["build", str(tmp_path / "bad.onnx"), "-o", str(tmp_path / "bad.kimg")]) == 2
    err = capsys.readouterr().err
    assert "UnsupportedModel" in err and "Foo 'foo': op is not supported" in err
    assert not (tmp_path / "bad.kimg").exists()


def test_dynamic_batch_needs_shape_and_shape_fixes_it():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["N", 8])], [_vi("y", ["N", 8])])
    with pytest.raises(GraphError, match=r"--shape x=1,8"):
        onnx_import.load(m)
    g = onnx_import.load(m, shapes={"x": (3, 8)})
    assert g.value("x").shape == (3, 8)
    with pytest.raises(GraphError, match="does not fit"):
        onnx_import.load(m, shapes={"x": (3, 9, 1)})


def test_old_opsets_are_accepted_only_for_unchanged_ops():
    """Below opset 13 a node must have its opset-13 definition (Not has not changed since opset 1;
    Softmax's axis semantics changed in 13)."""
    ok = _model([helper.make_node("Not", ["x"], ["y"])], [_vi("x", [2], TensorProto.BOOL)], [_vi("y", [2])], opset=1)
    assert [n.op for n in onnx_import.load(ok).nodes] == ["Not"]
    old = _model([helper.make_node("Softmax", ["x"], ["y"], name="sm")], [_vi("x", [2])], [_vi("y", [2])], opset=11)
    with pytest.raises(UnsupportedModel, match=r"Softmax 'sm': opset 11 has its pre-13 definition"):
        onnx_import.load(old)
    new = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2])], [_vi("y", [2])], opset=99)
    with pytest.raises(GraphError, match="opset 99"):
        onnx_import.load(new)


def test_bad_targets_are_refused():
    with pytest.raises(GraphError, match="unknown target"):
        resolve_targets(["sm_75"])
    assert resolve_targets(["cpu", "sm_90", "cpu"])[1:] == ["sm_90"]


def test_shape_subgraph_is_constant_folded():
    """Shape -> Gather -> Concat -> Reshape becomes a plain alias: no kernel for any of it."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "i0"], ["b"], axis=0),
             helper.make_node("Concat", ["b", "rest"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("Relu", ["r"], ["y"])]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "i0"), numpy_helper.from_array(np.array([-1], np.int64), "rest")]
    g = onnx_import.load(_model(nodes, [_vi("x", [2, 3, 4])], [_vi("y", None)], inits))
    infer.infer_and_fold(g)
    assert [n.op for n in g.nodes] == ["Reshape", "Relu"]
    assert g.value("shape").const.tolist() == [2, -1] and g.value("y").shape == (2, 12)


def test_batchnorm_folds_into_conv_and_epilogues_fuse():
    """The CNN: every Conv+BN(+Add)(+Relu) chain is one launch; BN nodes disappear."""
    low = lower_model(cnn(), ["cpu-x86_64"])
    assert not any(n.op == "BatchNormalization" for n in low.graph.nodes)
    convs = sum(1 for n in low.graph.nodes if n.op == "Conv")
    launches = [n for n in low.dag.nodes if isinstance(n, Launch)]
    # conv launches + maxpool + avgpool + global pool + gemm; every Relu/Add fused away
    assert len(launches) == convs + 4


def test_mlp_layers_are_one_launch_each_with_bias_and_relu_fused():
    low = lower_model(mlp(), ["cpu-x86_64"])
    launches = [n for n in low.dag.nodes if isinstance(n, Launch)]
    assert len(launches) == 3
    src = low.specs[launches[0].kernel].sources["cpu"]
    assert "kos_dot4_f32(p" in src and "> 0 ?" in src           # 4-row vector dot + fused ReLU
    # the constant weights are stored transposed, [N, K], so each output reads one contiguous row
    w = [b for b in low.dag.buffers.values() if b.role == "weight" and len(b.shape) == 2]
    assert all(b.name.endswith(".T") for b in w)


def test_gelu_subgraph_fuses_into_the_matmul():
    """x -> {Div -> Erf -> Add, Mul 0.5} -> Mul: a diamond of elementwise nodes after MatMul + bias is
    one launch; the Erf appears in the MatMul's kernel."""
    low = lower_model(transformer(), ["cpu-x86_64"])
    launches = {n.name: n for n in low.dag.nodes if isinstance(n, Launch)}
    assert not any(name.startswith(("Div", "Mul", "Erf", "Add")) for name in launches)
    srcs = [low.specs[n.kernel].sources["cpu"] for n in launches.values()]
    assert any("erff(" in s and ("kos_dot4_f32(p" in s or "kos_dot_mx4_f32(p" in s) for s in srcs)


def test_identical_kernels_are_shared():
    low = lower_model(transformer(), ["cpu-x86_64"])
    launches = [n for n in low.dag.nodes if isinstance(n, Launch)]
    assert len(low.specs) < len(launches)      # e.g. the two LayerNorms and the Q/K/V projections
    assert set(low.dag.kernels) == set(low.specs)


def test_constant_and_alias_outputs_are_copied_into_their_output_buffers():
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Reshape", ["y", "s"], ["r"]),
             helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.arange(3, dtype=np.float32)))]
    inits = [numpy_helper.from_array(np.array([3, 1], np.int64), "s")]
    low = lower_model(_model(nodes, [_vi("x", [3])], [_vi("r", [3, 1]), _vi("c", [3])], inits), ["cpu-x86_64"])
    writers = {w: n for n in low.dag.nodes for w in n.writes}
    assert low.dag.buffers["c"].role == low.dag.buffers["r"].role == "output"
    assert writers["r"].reads == ("y",) and low.dag.buffers["y"].role == "scratch"
    (src,) = writers["c"].reads
    assert np.array_equal(low.weights[src], np.arange(3, dtype=np.float32))


def test_shape_errors_name_the_node():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    m = _model(nodes, [_vi("x", [2, 3]), _vi("w", [4, 5])], [_vi("y", None)])
    g = onnx_import.load(m)
    with pytest.raises(GraphError, match=r"MatMul node 'mm'.*inner dimensions"):
        infer.infer_and_fold(g)
    assert rewrite.fold_batchnorm_into_conv(g) == 0
