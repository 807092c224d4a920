"""kernelos NVIDIA driver: the same measurements as bench/cuda_baseline.cu, one `name value` line each.

    python -m bench.nv_launch     (needs an NVIDIA GPU; run from the repository root)
"""

import statistics
import time

import numpy as np

import hal
from hal import KernelMeta, Var

EMPTY = r'extern "C" __global__ void empty() {}'


def timed(fn, n: int, warmup: int, warmup_s: float = 0.0) -> float:
    """Median seconds of fn() over n runs, after warmup runs and at least warmup_s of running it."""
    t_end = time.perf_counter() + warmup_s
    i = 0
    while i < warmup or time.perf_counter() < t_end:
        fn(i)
        i += 1
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main():
    dev = hal.open("nv:0")
    empty = dev.load_program(hal.compile(EMPTY, "empty", dev.info.arch), "empty", KernelMeta(params=()))
    q, done = dev.queue(), dev.signal(0)
    base = [0]

    one = q.stream().launch(empty, [], grid=(1,)).signal(done, Var("t"))

    def roundtrip(i):
        base[0] += 1
        one.submit(t=base[0])
        done.wait(base[0], 5)
    print(f"launch_roundtrip_us {timed(roundtrip, 2000, 200) * 1e6:.2f}")

    chain = q.stream()
    for _ in range(100):
        chain.launch(empty, [], grid=(1,))
    chain.signal(done, Var("t"))

    def replay(i):
        base[0] += 1
        chain.submit(t=base[0])
        done.wait(base[0], 5)
    print(f"graph_replay_us_per_kernel {timed(replay, 300, 30) * 1e6 / 100:.3f}")

    n = 256 << 20
    host, vram = dev.alloc(n, host_visible=True), dev.alloc(n)
    np.frombuffer(host.view(), np.uint8)[:] = np.random.default_rng().integers(0, 256, n, dtype=np.uint8)
    cq = dev.queue("copy")
    for name, dst, src in (("h2d", vram, host), ("d2h", host, vram)):
        s = cq.stream().copy(dst, src, n).signal(done, Var("t"))

        def copy(i):
            base[0] += 1
            s.submit(t=base[0])
            done.wait(base[0], 10)
        print(f"{name}_GBps {n / timed(copy, 20, 2, warmup_s=0.5) / 1e9:.2f}")
    dev.close()


if __name__ == "__main__":
    main()
