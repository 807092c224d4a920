"""kernelos NVIDIA driver vs the CUDA runtime, measured in one run on one card; prints a markdown table.

    python -m bench.nv_vs_cuda      (needs an NVIDIA GPU and nvcc; run from the repository root)

Builds bench/cuda_baseline.cu with nvcc, runs it and bench/nv_launch.py, and times process start ->
first kernel result for both (median of 5 fresh processes each; ours after one run that fills the
NVRTC disk cache, as a device image carries precompiled kernels).
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ROWS = [("launch_roundtrip_us", "empty kernel launch -> signal seen by host (µs, lower is better)"),
        ("graph_replay_us_per_kernel", "100-kernel chain replay, per kernel (µs, lower is better)"),
        ("h2d_GBps", "copy engine H2D, 256 MiB pinned (GB/s, higher is better)"),
        ("d2h_GBps", "copy engine D2H, 256 MiB pinned (GB/s, higher is better)"),
        ("first_result_s", "process start -> first kernel result (s, lower is better)")]


def parse(out: str) -> dict:
    return {k: float(v) for k, v in (line.split()[:2] for line in out.splitlines() if len(line.split()) == 2)}


def run_checked(cmd, **kw) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    if p.returncode:
        raise SystemExit(f"{cmd} failed:\n{p.stdout}\n{p.stderr}")
    return p.stdout


def first_result_s(cmd, env=None) -> float:
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        out = run_checked(cmd, env=env, cwd=ROOT)
        times.append(time.perf_counter() - t0)
        assert "first_result ok" in out, out
    return statistics.median(times)


def run():
    """`python -m bench` entry: needs an NVIDIA GPU and nvcc, else says why it skips."""
    import shutil
    if not os.path.exists("/dev/nvidiactl") or not shutil.which("nvcc"):
        print("skipped: needs /dev/nvidiactl (an NVIDIA GPU) and nvcc for the CUDA baseline")
        return
    main()


def main():
    binary = os.path.join(tempfile.mkdtemp(), "cuda_baseline")
    run_checked(["nvcc", "-O2", "-arch=sm_90", "-o", binary, os.path.join(HERE, "cuda_baseline.cu")])
    cuda = parse(run_checked([binary, "all"]))
    cuda["first_result_s"] = first_result_s([binary, "first"])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    ours = parse(run_checked([sys.executable, "-m", "bench.nv_launch"], env=env, cwd=ROOT))
    run_checked([sys.executable, os.path.join(HERE, "nv_first_result.py")], env=env, cwd=ROOT)   # fills the cubin cache
    ours["first_result_s"] = first_result_s([sys.executable, os.path.join(HERE, "nv_first_result.py")], env=env)
    t0 = time.perf_counter()
    run_checked([sys.executable, "-c", "pass"], env=env, cwd=ROOT)
    print(f"(python3 interpreter start alone: {time.perf_counter() - t0:.3f} s)")
    print("| measurement | kernelos nv | CUDA runtime |")
    print("|---|---|---|")
    for key, label in ROWS:
        print(f"| {label} | {ours.get(key, float('nan')):.3f} | {cuda.get(key, float('nan')):.3f} |")


if __name__ == "__main__":
    main()
