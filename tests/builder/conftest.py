import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import hal
from kernelos.builder.build import build_image
from kernelos.model import load_model


def rel_error(out, ref) -> float:
    """max |out - ref| / max |ref| (the e2e criterion: <= 1e-4 for float32)."""
    return float(np.abs(out.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))


def run_on_cpu(nodes, x, inits, tmp_path):
    """Build the ONNX graph `nodes` (x -> y, with initializers `inits`) into a cpu image and return
    y for input x, computed with a poisoned output buffer."""
    nodes = nodes if isinstance(nodes, list) else [nodes]
    g = helper.make_graph(nodes, "k", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(a, name) for name, a in inits.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    build_image(model, tmp_path / "k.kimg", ["cpu"])
    with load_model(str(tmp_path / "k.kimg"), "cpu") as m:
        return m.run({"x": x}, poison=True)["y"]


def ort_run(model, inputs: dict) -> dict:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    return dict(zip(names, sess.run(names, inputs)))


@pytest.fixture(scope="session")
def nvrtc():
    """Skip with the reason when NVRTC cannot compile CUDA here (hal.compile finds no libnvrtc)."""
    from hal.errors import CompileError
    try:
        hal.compile('extern "C" __global__ void kos_probe(float *x) { x[0] = 1.0f; }', "kos_probe", "sm_90")
    except CompileError as e:
        pytest.skip(f"NVRTC not available through hal.compile: {str(e).splitlines()[0]}")


@pytest.fixture(scope="session")
def nvidia_device():
    """(spec, arch) of the first NVIDIA GPU, or skip with the reason it is absent."""
    devices, absent = hal.probe_report()
    for d in devices:
        if d.vendor == "nvidia" or d.arch.startswith("sm_"):
            return d.spec, d.arch
    pytest.skip(f"no NVIDIA GPU: {absent.get('nv', 'not found by hal.probe()')}")
