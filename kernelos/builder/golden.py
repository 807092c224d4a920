"""The golden input/output pair stored in an image for the boot self-test: seeded random inputs,
outputs from an independent implementation of ONNX on the build host (onnxruntime when installed,
else onnx's reference evaluator)."""

import numpy as np

from hal.errors import GraphError


def golden_inputs(graph, seed: int = 0) -> dict:
    """Random inputs of the right shape and dtype: normal floats; ints 1 or 2 (no zero divisors,
    valid indices into dims of 3 or more); random bools."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in graph.inputs:
        v = graph.value(name)
        if v.dtype.startswith("float"):
            out[name] = rng.standard_normal(v.shape).astype(v.dtype)
        elif v.dtype == "bool":
            out[name] = rng.random(v.shape) < 0.5
        else:
            out[name] = rng.integers(1, 3, v.shape).astype(v.dtype)
    return out


def reference_outputs(model, inputs: dict, output_names) -> dict:
    """Run the ONNX model on the build host with an independent runtime."""
    errors = []
    for runtime in (_onnxruntime, _onnx_reference):
        try:
            results = runtime(model, inputs, list(output_names))
        except Exception as e:  # each runtime raises its own error types (or lacks an op / opset)
            errors.append(f"{runtime.__doc__}: {type(e).__name__}: {str(e)[:300]}")
            continue
        return {n: np.array(r, order="C") for n, r in zip(output_names, results)}   # keeps 0-d arrays 0-d
    raise GraphError("no reference runtime could run the model for the golden output:\n  " + "\n  ".join(errors))


def _onnxruntime(model, inputs, names):
    """onnxruntime"""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(names, inputs)


def _onnx_reference(model, inputs, names):
    """onnx.reference"""
    import warnings

    from onnx.reference import ReferenceEvaluator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # numpy's divide-by-zero and overflow notes
        return ReferenceEvaluator(model).run(names, inputs)
