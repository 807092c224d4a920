"""The cpu device against onnxruntime's CPU provider with the same thread count, in one process, on
issue 9's models (bench/e2e/models.py): builds cpu images, then alternates rounds of kernelos
model.run and onnxruntime session.run on the same input, and reports the median of the per-round
medians (alternating rounds share whatever load the machine has), the output error against
onnxruntime, and optionally the per-node profile of the cpu device.

    python -m bench.cpu_vs_ort [--models resnet18,mlp] [--rounds 7] [--runs 20] [--profile]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _median_us(call, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def compare(name: str, rounds: int, runs: int, profile_runs: int, workdir: Path) -> dict:
    import onnxruntime as ort

    from bench.e2e.models import MODELS, make_input
    from kernelos.builder.build import build_image
    from kernelos.model import load_model
    from kernelos.profile import profile
    model = MODELS[name]()
    x = make_input(model)
    image = workdir / f"{name}.kimg"
    build_image(model, str(image), ["cpu"])
    threads = len(os.sched_getaffinity(0))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    with load_model(str(image), "cpu") as m:
        out = m.run(x, poison=True)["y"]
        ref = sess.run(None, x)[0]
        err = float(np.abs(out - ref).max() / np.abs(ref).max())
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(_median_us(lambda: m.run(x), runs))
            theirs.append(_median_us(lambda: sess.run(None, x), runs))
        timeline = profile(m, x, runs=profile_runs) if profile_runs else None
    k, o = statistics.median(ours), statistics.median(theirs)
    return {"model": name, "threads": threads, "kernelos_us": k, "ort_us": o, "ratio": k / o, "err_vs_ort": err,
            "rounds_kernelos": ours, "rounds_ort": theirs, "timeline": timeline}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,mlp")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--runs", type=int, default=20, help="inferences per round")
    p.add_argument("--profile", type=int, default=0, metavar="RUNS", help="profile the cpu device over RUNS runs")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kos-cpu-ort-") as tmp:
        for name in args.models.split(","):
            r = compare(name, args.rounds, args.runs, args.profile, Path(tmp))
            print(f"{r['model']}: kernelos cpu {r['kernelos_us']:.1f} us, onnxruntime CPU {r['ort_us']:.1f} us "
                  f"({r['threads']} threads) = {r['ratio']:.2f}x; max |diff| / max |ort| = {r['err_vs_ort']:.1e}; "
                  f"per-round medians kernelos {[round(v) for v in r['rounds_kernelos']]}, "
                  f"ort {[round(v) for v in r['rounds_ort']]}", flush=True)
            if r["timeline"] is not None:
                print(r["timeline"].format(top=12), flush=True)
    return 0


def run():
    main([])


if __name__ == "__main__":
    sys.exit(main())
