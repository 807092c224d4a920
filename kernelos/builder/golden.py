"""The golden input/output pair stored in an image for the boot self-test: seeded random inputs,
outputs from an independent implementation of ONNX on the build host (onnxruntime when installed,
else onnx's reference evaluator)."""

import numpy as np

from hal.errors import GraphError


def golden_inputs(graph, seed: int = 0) -> dict:
    """Random inputs of the right shape and dtype: normal floats; small non-negative ints (valid as
    indices into any non-empty dim); random bools."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in graph.inputs:
        v = graph.value(name)
        if v.dtype.startswith("float"):
            out[name] = rng.standard_normal(v.shape).astype(v.dtype)
        elif v.dtype == "bool":
            out[name] = rng.random(v.shape) < 0.5
        else:
            out[name] = rng.integers(0, 2, v.shape).astype(v.dtype)
    return out


def reference_outputs(model, inputs: dict, output_names) -> dict:
    """Run the ONNX model on the build host with an independent runtime."""
    data = model.SerializeToString()
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    try:
        if ort is not None:
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
            results = sess.run(list(output_names), inputs)
        else:
            from onnx.reference import ReferenceEvaluator
            results = ReferenceEvaluator(model).run(list(output_names), inputs)
    except Exception as e:  # the reference runtimes raise their own error types
        raise GraphError(f"the reference runtime could not run the model for the golden output: {e}") from None
    return {n: np.ascontiguousarray(r) for n, r in zip(output_names, results)}
