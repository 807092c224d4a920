"""Timing one framework's inference: warm-up, then many timed calls (each ends with a host sync),
bounded by a run count and a time budget so a slow column cannot eat the harness's time."""

import statistics
import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Policy:
    warmup_s: float      # warm up this long (at least WARMUP_MIN_RUNS calls)
    max_runs: int
    budget_s: float      # time the calls until max_runs or this long (at least min_runs calls)
    min_runs: int = 3


WARMUP_MIN_RUNS = 2
FULL = Policy(warmup_s=0.5, max_runs=2000, budget_s=2.0)
QUICK = Policy(warmup_s=0.05, max_runs=50, budget_s=0.5)


def measure(call, policy: Policy) -> dict:
    """call() runs one inference and returns once its result is on the host (or synced).
    Returns the median, p10, p90 and min in microseconds and the number of timed runs."""
    t_end = time.perf_counter() + policy.warmup_s
    done = 0
    while done < WARMUP_MIN_RUNS or time.perf_counter() < t_end:
        call()
        done += 1
    times = []
    t_end = time.perf_counter() + policy.budget_s
    while len(times) < policy.min_runs or (len(times) < policy.max_runs and time.perf_counter() < t_end):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    us = np.array(times) * 1e6
    return {"median_us": float(statistics.median(us)), "p10_us": float(np.percentile(us, 10)),
            "p90_us": float(np.percentile(us, 90)), "min_us": float(us.min()), "runs": len(us),
            "warmup_runs": done}


def rel_error(out: np.ndarray, ref: np.ndarray) -> float:
    """max |out - ref| / max |ref| (float64): the error relative to the output's scale; NaN or a
    shape mismatch gives inf."""
    out = np.asarray(out, dtype=np.float64)
    if out.shape != ref.shape or not np.all(np.isfinite(out)):
        return float("inf")
    return float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-30))
