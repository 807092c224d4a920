"""Steady-state latency of the demo MLP (4 x 1024, ReLU, batch 1, float32) on the cpu device,
against numpy doing the same math (x @ W + b, ReLU) and onnxruntime (CPU, same thread count) in
the same run. `python -m bench demo_mlp`; prints machine, date and the ratios."""

import datetime
import os
import platform
import statistics
import tempfile
import time

import numpy as np
from onnx import numpy_helper

RUNS = 300
WARMUP = 20


def _median_s(fn, runs=RUNS) -> float:
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


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
    with tempfile.TemporaryDirectory() as tmp:
        image = os.path.join(tmp, "demo.kimg")
        build_image(model, image, ["cpu"])
        with load_model(image, "cpu") as m:
            out = m.run({"x": x})["y"]
            err = float(np.abs(out - numpy_mlp()).max() / np.abs(numpy_mlp()).max())
            kos_s = _median_s(lambda: m.run({"x": x}))
    numpy_s = _median_s(numpy_mlp)
    rows = [("kernelos cpu device", kos_s), ("numpy (same math)", numpy_s)]
    try:
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = cores
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        rows.append((f"onnxruntime CPU ({cores} threads)", _median_s(lambda: sess.run(None, {"x": x}))))
    except ImportError:
        pass
    print(f"demo MLP 4x1024 batch 1 float32; {platform.node()} {platform.processor() or platform.machine()}, "
          f"{cores} cores; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; median of {RUNS}")
    print(f"max relative difference kernelos vs numpy: {err:.2e}")
    for name, s in rows:
        print(f"  {name:34} {s * 1e6:9.1f} us   {s / kos_s:5.2f}x of kernelos" if s is not kos_s
              else f"  {name:34} {s * 1e6:9.1f} us")
    print(f"  kernelos / numpy latency ratio: {kos_s / numpy_s:.2f}")
    return {name: s for name, s in rows}


if __name__ == "__main__":
    run()
