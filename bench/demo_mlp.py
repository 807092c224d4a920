"""Steady-state latency of the demo MLP (4 x 1024, ReLU, batch 1, float32) on the cpu device,
against numpy doing the same math (x @ W + b, ReLU) and onnxruntime (CPU, same thread count) in
the same run. `python -m bench demo_mlp`; prints machine, date and the ratios.

The three are sampled in alternating rounds (ROUND_RUNS calls each, in turn, after a short pause
so the previous one's thread pool has gone idle) so that load from other processes on a shared
machine falls on all of them alike; medians over every sample."""

import datetime
import os
import platform
import statistics
import tempfile
import time

import numpy as np
from onnx import numpy_helper

ROUNDS = 4
ROUND_RUNS = 100
WARMUP = 20
PAUSE_S = 0.3       # numpy's and onnxruntime's worker threads spin a while after a call


def _alternating_medians_s(fns: dict) -> dict:
    """name -> median seconds per call, sampling the functions in alternating rounds."""
    samples = {name: [] for name in fns}
    for _ in range(ROUNDS):
        for name, fn in fns.items():
            time.sleep(PAUSE_S)
            for _ in range(WARMUP):
                fn()
            for _ in range(ROUND_RUNS):
                t = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in samples.items()}


def run():
    from kernelos.builder.build import build_image
    from kernelos.builder.demo_model import demo_mlp
    from kernelos.model import load_model

    model = demo_mlp()
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    layers = len(weights) // 2
    x = np.random.default_rng(7).standard_normal((1, 1024)).astype(np.float32)

    def numpy_mlp():
        h = x
        for i in range(layers):
            h = h @ weights[f"w{i}"] + weights[f"b{i}"]
            if i < layers - 1:
                h = np.maximum(h, 0)
        return h

    cores = len(os.sched_getaffinity(0))
    fns = {"numpy (same math)": numpy_mlp}
    try:
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = cores
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        fns[f"onnxruntime CPU ({cores} threads)"] = lambda: sess.run(None, {"x": x})
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        image = os.path.join(tmp, "demo.kimg")
        build_image(model, image, ["cpu"])
        with load_model(image, "cpu") as m:
            ref = numpy_mlp()
            err = float(np.abs(m.run({"x": x})["y"] - ref).max() / np.abs(ref).max())
            medians = _alternating_medians_s({"kernelos cpu device": lambda: m.run({"x": x}), **fns})
    kos_s = medians["kernelos cpu device"]
    print(f"demo MLP 4x1024 batch 1 float32; {platform.node()} {platform.processor() or platform.machine()}, "
          f"{cores} cores, load average {os.getloadavg()[0]:.2f}; "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
          f"medians of {ROUNDS * ROUND_RUNS} samples each, in alternating rounds")
    print(f"max relative difference kernelos vs numpy: {err:.2e}")
    for name, s in medians.items():
        print(f"  {name:34} {s * 1e6:9.1f} us   kernelos / this = {kos_s / s:5.2f}")
    return medians


if __name__ == "__main__":
    run()
