"""`kernelos build` / `kernelos demo` from the command line: options, errors, output."""

import numpy as np
import onnx
from onnx import TensorProto, helper

from kernelos.model import load_model
from tools.cli import main as kernelos


def _reshape_model():
    """y = Relu(Reshape(x, shape)) with the shape given as a graph input (needs --const)."""
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Relu", ["r"], ["y"])]
    g = helper.make_graph(nodes, "reshape_input", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6]),
                                                   helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_build_with_shape_and_const_then_run(tmp_path, capsys):
    onnx.save(_reshape_model(), tmp_path / "m.onnx")
    np.save(tmp_path / "shape.npy", np.array([3, 4], np.int64))
    image = tmp_path / "m.kimg"
    assert kernelos(["build", str(tmp_path / "m.onnx"), "-o", str(image), "--shape", "x=2,6",
                     "--const", f"shape={tmp_path / 'shape.npy'}", "-q"]) == 0
    out = capsys.readouterr()
    assert out.err == "" and "kernels, arena" in out.out
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    with load_model(str(image), "cpu") as m:
        assert list(m.inputs) == ["x"]
        np.testing.assert_array_equal(m.run({"x": x})["y"], np.maximum(x.reshape(3, 4), 0))


def test_build_errors_are_one_clear_line(tmp_path, capsys):
    onnx.save(_reshape_model(), tmp_path / "m.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    cases = [
        (["build", str(tmp_path / "missing.onnx"), "-o", "x.kimg"], "cannot read ONNX model"),
        (["build", str(tmp_path / "junk.onnx"), "-o", "x.kimg"], "cannot read ONNX model"),
        (["build", str(tmp_path / "m.onnx"), "-o", "x.kimg", "--shape", "x=a,b"], "integer dims"),
        (["build", str(tmp_path / "m.onnx"), "-o", "x.kimg", "--shape", "x=2,6"], "must be a build-time constant"),
        (["build", str(tmp_path / "m.onnx"), "-o", "x.kimg", "--target", "sm_75"], "unknown target"),
    ]
    for argv, why in cases:
        assert kernelos(argv) == 2
        err = capsys.readouterr().err
        assert why in err and "Traceback" not in err, err


def test_demo_builds_and_boots(tmp_path, capsys):
    image = tmp_path / "demo.kimg"
    assert kernelos(["demo", "--output", str(image), "--count", "5", "--width", "64", "--layers", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "demo.onnx").exists() and image.exists()
    assert "self-test PASS" in out and "steady-state latency" in out


def test_build_verifies_the_cpu_kernels_against_the_golden_pair(tmp_path, capsys, monkeypatch):
    """A golden output the kernels cannot match (here: deliberately shifted) fails the build."""
    import kernelos.builder.build as build

    onnx.save(_reshape_model(), tmp_path / "m.onnx")
    np.save(tmp_path / "shape.npy", np.array([3, 4], np.int64))
    argv = ["build", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.kimg"), "--shape", "x=2,6",
            "--const", f"shape={tmp_path / 'shape.npy'}"]
    assert kernelos(argv) == 0
    assert "verify on cpu: self-test PASS" in capsys.readouterr().err
    real = build.reference_outputs
    monkeypatch.setattr(build, "reference_outputs", lambda *a: {k: v + 1 for k, v in real(*a).items()})
    assert kernelos(argv) == 2
    assert "disagree with the reference" in capsys.readouterr().err
