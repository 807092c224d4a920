import numpy as np
import onnxruntime as ort
import pytest

import hal


def rel_error(out, ref) -> float:
    """max |out - ref| / max |ref| (the e2e criterion: <= 1e-4 for float32)."""
    return float(np.abs(out.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))


def ort_run(model, inputs: dict) -> dict:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    return dict(zip(names, sess.run(names, inputs)))


@pytest.fixture(scope="session")
def nvidia_device():
    """(spec, arch) of the first NVIDIA GPU, or skip with the reason it is absent."""
    devices, absent = hal.probe_report()
    for d in devices:
        if d.vendor == "nvidia" or d.arch.startswith("sm_"):
            return d.spec, d.arch
    pytest.skip(f"no NVIDIA GPU: {absent.get('nv', 'not found by hal.probe()')}")
