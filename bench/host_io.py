"""Where the host time of one batch-1 inference goes, and how inputs and outputs should reach the
kernels (issue 9: MLP <= 20 us around run() with a host sync).

    python -m bench.host_io model [--model mlp] [--image PATH] --device nv:0 [--modes default,staged]
    python -m bench.host_io sizes --device nv:0

model: per I/O mode (default: what load_model picks; staged: stage_io=True, copy-queue copies in and
out), the medians over `runs`
run() calls of: run() itself; the submit calls and the wait (Recorded.submit_s / wait_s); the rest
(input checks, input write, output read, bookkeeping) = run - submit - wait. On an NVIDIA device
also the time inside NvQueue.submit (GP ring, tail payload, bookkeeping) and inside Channel.push (GP
entries, GPPut, doorbell) and inside NvQueue.wait_done (a submit waiting for the stream's previous
submit before patching it) per inference, measured by wrapping them (each adds ~0.1 us). Then
a correctness pass (fresh random inputs, every 10th run poisoned, against bench/e2e/reference.py's
float64 evaluation of the ONNX model) and the profiler's timeline.
The script only uses API that exists before and after the I/O change, so the same file measures both.

sizes: a kernel reading an input of N bytes `reuse` times (different blocks touching the same lines,
as a convolution does) and writing N bytes; median host round trip of each way of moving the input
and output (bench_sizes).
"""

import argparse
import statistics
import sys
import time

import numpy as np

import hal
from hal import KernelMeta, Var
from kernelos.model import load_model

REUSE_KERNEL = r'''
extern "C" __global__ void reuse_sum(const float *x, float *y, unsigned n, unsigned reuse) {
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float acc = 0.f;
    for (unsigned r = 0; r < reuse; r++) acc += x[(i + r * 4099u) % n];
    y[i] = acc;
}'''
SIZES_B = (4 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20)


def med_us(samples_s) -> float:
    return statistics.median(samples_s) * 1e6


class Timer:
    """Wraps obj.name so the time spent inside it is summed into self.total_s."""

    def __init__(self, obj, name: str):
        self.obj, self.name, self.inner, self.total_s = obj, name, getattr(obj, name), 0.0

        def wrapped(*a, **k):
            t0 = time.perf_counter()
            try:
                return self.inner(*a, **k)
            finally:
                self.total_s += time.perf_counter() - t0
        setattr(obj, name, wrapped)

    def take(self) -> float:
        t, self.total_s = self.total_s, 0.0
        return t

    def remove(self):
        if self.name in vars(self.obj):
            delattr(self.obj, self.name)


def image_for(model_name: str, image: str, spec: str):
    """The ONNX model of bench/e2e/models.py and its image, built for cpu + the device's arch unless present."""
    import os

    from bench.e2e import models
    onnx_model = getattr(models, model_name)()
    if not os.path.exists(image):
        from kernelos.builder.build import build_image
        targets = ["cpu"] + [d.arch for d in hal.probe() if d.spec == spec and d.vendor != "cpu"]
        build_image(onnx_model, image, targets)
    return onnx_model


def bench_model(onnx_model, image: str, spec: str, mode: str, runs: int):
    from bench.e2e.reference import run_float64
    stage_io = {"default": None, "staged": True}[mode]
    rng = np.random.default_rng(7)
    with load_model(image, spec, stage_io=stage_io) as model:
        name, (shape, dt) = next(iter(model.inputs.items()))
        out_name = next(iter(model.outputs))
        x = {name: rng.standard_normal(shape).astype(dt)}
        timers = []
        if model.device.info.vendor == "nvidia":
            for kind in ("compute", "copy"):
                q = model.device.queue(kind)
                timers.append((f"{kind}.submit", Timer(q, "submit")))
                timers.append((f"{kind}.push", Timer(q.channel, "push")))
                timers.append((f"{kind}.wait_done", Timer(q, "wait_done")))
        for _ in range(200):
            model.run(x)
        for _, t in timers:
            t.take()
        rows = {k: [] for k in ["run", "submit", "wait", "rest"] + [n for n, _ in timers]}
        for _ in range(runs):
            t0 = time.perf_counter()
            model.run(x)
            run_s = time.perf_counter() - t0
            rec = model._recorded
            rows["run"].append(run_s)
            rows["submit"].append(rec.submit_s)
            rows["wait"].append(rec.wait_s)
            rows["rest"].append(run_s - rec.submit_s - rec.wait_s)
            for n, t in timers:
                rows[n].append(t.take())
        for _, t in timers:
            t.remove()
        print(f"model {model.image.name} on {spec} ({model.device.info.name}), I/O mode {mode}: "
              f"{model.submits_per_inference} submit(s)/inference, {runs} runs, medians (us): " +
              ", ".join(f"{k} {med_us(v):.2f}" for k, v in rows.items() if v), flush=True)
        print(f"  p90 run {np.percentile(rows['run'], 90) * 1e6:.2f} us, min run {min(rows['run']) * 1e6:.2f} us; "
              "means (us): " + ", ".join(f"{k} {statistics.fmean(v) * 1e6:.2f}" for k, v in rows.items() if v))
        worst = 0.0
        for i in range(100):
            x = {name: rng.standard_normal(shape).astype(dt)}
            got = model.run(x, poison=i % 10 == 0)[out_name].astype(np.float64)
            ref = run_float64(onnx_model, x)[out_name].reshape(got.shape)
            err = float(np.abs(got - ref).max() / np.abs(ref).max()) if np.all(np.isfinite(got)) else float("inf")
            worst = max(worst, err)
        print(f"  correctness: 100 fresh inputs (every 10th poisoned) vs float64: max rel error {worst:.2e}")
        from kernelos.profile import profile
        print("  " + profile(model, x, runs=20).format().replace("\n", "\n  "), flush=True)


def bench_sizes(spec: str, reps: int = 200):
    """See the module doc; `ways` per size: vram, write_in (the compute stream writes x inline, y in
    vram), out_host (kernel writes y in host memory), one_submit (both: the model's small-I/O path),
    read_host (kernel reads x in host memory), staged (copy engine in and out)."""
    dev = hal.open(spec)
    try:
        prog = dev.load_program(hal.compile(REUSE_KERNEL, "reuse_sum", dev.info.arch), "reuse_sum",
                                KernelMeta(("ptr", "ptr", "u32", "u32")))
        done, copied_in, computed = dev.signal(0), dev.signal(0), dev.signal(0)
        cq, xq = dev.queue("compute"), dev.queue("copy")
        t = [0]
        ways = ("vram", "write_in", "out_host", "one_submit", "read_host", "staged")
        print(f"sizes on {spec} ({dev.info.name}): median host round trip (us) of {reps} reps; "
              "kernel reads N bytes `reuse` times, writes N bytes; ok: y of every way but vram checked after the last rep")
        print(f"{'N bytes':>10} {'reuse':>5} " + " ".join(f"{w:>10}" for w in ways) + "  ok")
        for size_B in SIZES_B:
            n = size_B // 4
            hx, hy = dev.alloc(size_B, host_visible=True), dev.alloc(size_B, host_visible=True)
            vx, vy = dev.alloc(size_B), dev.alloc(size_B)
            xs, grid = np.frombuffer(hx.view(), np.float32), ((n + 255) // 256,)
            for reuse in (1, 9):
                res, ok = {}, []
                for way in ways:
                    data = {}
                    if way == "staged":
                        s1 = xq.stream().copy(vx, hx, size_B).signal(copied_in, Var("t"))
                        s2 = cq.stream().wait(copied_in, Var("t")).launch(prog, [vx, vy, n, reuse], grid, 256) \
                            .signal(computed, Var("t"))
                        s3 = xq.stream().wait(computed, Var("t")).copy(hy, vy, size_B).signal(done, Var("t"))
                        streams, out = [s2, s1, s3], hy
                    elif way in ("write_in", "one_submit") and size_B > (1 << 20):
                        res[way] = float("nan")        # inline data past 1 MiB: not a candidate
                        continue
                    else:
                        src = hx if way == "read_host" else vx
                        out = hy if way in ("out_host", "one_submit", "read_host") else vy
                        s = cq.stream()
                        if way in ("write_in", "one_submit"):
                            s.write(vx, size_B, "x")
                            data = {"x": hx.view()}
                        streams = [s.launch(prog, [src, out, n, reuse], grid, 256).signal(done, Var("t"))]
                    samples = []
                    for i in range(reps + 20):
                        xs[:] = i % 7 + 1.0
                        t[0] += 1
                        t0 = time.perf_counter()
                        for st in streams:
                            st.submit(t=t[0], **data)
                        done.wait(t[0], 10)
                        if i >= 20:
                            samples.append(time.perf_counter() - t0)
                    res[way] = med_us(samples)
                    if way != "vram":          # the vram way never moves x: its input is whatever vx holds
                        got = np.frombuffer(out.read(), np.float32)
                        ok.append(bool(np.all(got == reuse * ((reps + 19) % 7 + 1.0))))
                print(f"{size_B:10d} {reuse:5d} " + " ".join(f"{res[w]:10.1f}" for w in ways) + f"  {all(ok)}",
                      flush=True)
            for b in (hx, hy, vx, vy):
                b.free()
    finally:
        dev.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.host_io", description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("model", "sizes"))
    p.add_argument("--model", default="mlp", help="a model of bench/e2e/models.py")
    p.add_argument("--image", default="/tmp/kernelos-host-io.kimg", help="built here unless it exists")
    p.add_argument("--device", default="nv:0")
    p.add_argument("--modes", default="default")
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--variant", default="", choices=("", "pb_vram", "no_intr"),
                   help="nv driver variant: I2M pushbuffers in BAR1 VRAM; releases without the non-stall interrupt")
    args = p.parse_args(argv)
    if args.variant == "pb_vram":
        from drivers.nvidia import queue
        queue.INLINE_PB_IN_HOST_MEMORY = False
    elif args.variant == "no_intr":
        from drivers.nvidia import pushbuf
        pushbuf.RELEASE_NON_STALL_INTERRUPT = False
    if args.variant:
        print(f"variant: {args.variant}")
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, python {sys.version.split()[0]}")
    if args.what == "sizes":
        bench_sizes(args.device)
    else:
        onnx_model = image_for(args.model, args.image, args.device)
        for mode in args.modes.split(","):
            bench_model(onnx_model, args.image, args.device, mode, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
