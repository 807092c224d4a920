"""Per-launch host overhead on the cpu device: submit -> signal round trips, median of many.

Rows (all on one opened cpu device, same process, same run):
  ffi call floor       one call into the runtime (kos_now_ns): the cost of crossing Python -> C
  signal only          submit a recorded stream holding one SIGNAL, wait for it: the queue round trip
  empty launch         submit one empty-kernel launch + SIGNAL, wait: the headline figure (target < 10 us)
  submit only          host cost of submit() alone for the empty launch stream (no wait)
  100-launch replay    a recorded stream of 100 empty launches + SIGNAL, submitted and waited, / 100
"""

import os
import statistics
import sys
import time

import hal
from hal import KernelMeta, Var

EMPTY = '#include "kos_kernel.h"\nKOS_KERNEL(empty) { (void)L; (void)block_begin; (void)block_end; (void)args; }\n'
CHAIN_LAUNCHES = 100


def _round_trips(stream, sig, start: int, count: int) -> list:
    """Seconds per submit -> signal round trip, one sample per submit."""
    out, clock = [], time.perf_counter
    for t in range(start, start + count):
        t0 = clock()
        stream.submit(t=t)
        sig.wait(t, 10)
        out.append(clock() - t0)
    return out


def _row(name: str, samples_s: list, per: int = 1) -> tuple:
    samples_us = sorted(s * 1e6 / per for s in samples_s)
    return name, statistics.median(samples_us), samples_us[int(len(samples_us) * 0.9)], len(samples_us)


def measure(iterations: int = 20000) -> list:
    rows = []
    with hal.open("cpu") as dev:
        empty = dev.load_program(hal.compile(EMPTY, "empty", dev.info.arch), "empty", KernelMeta(()))
        q, sig = dev.queue("compute"), dev.signal(0)

        t0 = time.perf_counter()
        for _ in range(iterations):
            dev._lib.kos_now_ns()
        rows.append(("ffi call floor", (time.perf_counter() - t0) / iterations * 1e6, float("nan"), iterations))

        t = 1
        signal_only = q.stream().signal(sig, Var("t"))
        _round_trips(signal_only, sig, t, 1000)  # warm up
        t += 1000
        rows.append(_row("signal only", _round_trips(signal_only, sig, t, iterations)))
        t += iterations

        launch = q.stream().launch(empty, [], grid=1).signal(sig, Var("t"))
        _round_trips(launch, sig, t, 1000)
        t += 1000
        rows.append(_row("empty launch", _round_trips(launch, sig, t, iterations)))
        t += iterations

        submits = []
        for _ in range(iterations // 10):
            t0 = time.perf_counter()
            launch.submit(t=t)
            submits.append(time.perf_counter() - t0)
            sig.wait(t, 10)
            t += 1
        rows.append(_row("submit only", submits))

        chain = q.stream()
        for _ in range(CHAIN_LAUNCHES):
            chain.launch(empty, [], grid=1)
        chain.signal(sig, Var("t"))
        _round_trips(chain, sig, t, 100)
        t += 100
        rows.append(_row(f"{CHAIN_LAUNCHES}-launch replay", _round_trips(chain, sig, t, iterations // 10), per=CHAIN_LAUNCHES))
    return rows


def run(iterations: int = 20000):
    info = hal.probe()[-1]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"cpu device: {info.name}, {info.compute_units} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average before: {load} (other processes on the machine inflate the round trips)")
    print(f"{'row':22} {'median us':>10} {'p90 us':>10} {'samples':>8}")
    for name, median, p90, n in measure(iterations):
        print(f"{name:22} {median:10.2f} {p90:10.2f} {n:8d}")


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
