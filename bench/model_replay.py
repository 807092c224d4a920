"""Host cost of a model replay vs the number of kernels, on the cpu device (kernelos/scheduler.py).

Images: a chain of k tiny launches (x -> +1 -> ... -> y, 16 floats), the chain used by
tests/core/test_model.py. Per k, on one device in one run, median and p90 over many inferences of:
  run()       LoadedModel.run end to end: input write, submit, wait, output read
  submit()    the submit calls alone (the recorded streams' replay): the figure that must stay flat
The k = 1 row is the baseline; run() grows with k because the device executes k launches.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import hal
from kernelos.model import load_model
from tests.core.models import chain_image  # the test suite's chain builder, not a copy of it

CHAIN_LENGTHS = (1, 16, 256)


def measure(iterations: int = 2000) -> list:
    rows = []
    with tempfile.TemporaryDirectory(prefix="kos-bench-") as tmp:
        for k in CHAIN_LENGTHS:
            path = Path(tmp) / f"chain{k}.kimg"
            chain_image(path, k)
            with load_model(path, "cpu") as model:
                x = {"x": np.random.default_rng(k).standard_normal(16, dtype=np.float32)}
                for _ in range(100):
                    model.run(x)
                runs, submits = [], []
                for _ in range(iterations):
                    t0 = time.perf_counter()
                    model.run(x)
                    runs.append(time.perf_counter() - t0)
                    submits.append(model._recorded.submit_s)
                rows.append((k, _stats(runs), _stats(submits), model.submits_per_inference))
    return rows


def _stats(samples_s: list) -> tuple:
    us = sorted(s * 1e6 for s in samples_s)
    return statistics.median(us), us[int(len(us) * 0.9)]


def run(iterations: int = 2000):
    info = hal.probe()[-1]
    print(f"cpu device: {info.name}, {info.compute_units} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"{'kernels':>8} {'run med us':>11} {'run p90 us':>11} {'submit med us':>14} {'submit p90 us':>14} {'submits':>8}")
    for k, (run_med, run_p90), (sub_med, sub_p90), submits in measure(iterations):
        print(f"{k:8d} {run_med:11.1f} {run_p90:11.1f} {sub_med:14.2f} {sub_p90:14.2f} {submits:8d}")


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
