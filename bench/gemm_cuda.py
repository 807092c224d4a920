"""GPU time of the builder's tiled fp32 GEMM kernels against PyTorch on the GPT-2-small and ResNet-18
GEMM shapes, in one run on one card.

Each shape is a one-node ONNX model (MatMul + bias with a constant weight, a batched MatMul of two
inputs, or Conv + bias) that kernelos.builder lowers for the card's arch. Its generated CUDA kernel is
compiled by NVRTC (hal.compile: the cubin a device image carries) and launched through libcuda
(ctypes) on PyTorch's stream, so CUDA events time the kernel alone, as they time the baseline:
torch.addmm / torch.matmul / F.conv2d with TF32 off (cuBLAS / cuDNN fp32). A batch of BATCH launches
is queued behind a GPU sleep (torch.cuda._sleep), so the host's launch cost is hidden and they run
back to back as in a CUDA graph or a kernelos command stream; events around the batch, a host sync
after it; the figure is the median over RUNS batches of the time per launch, after WARMUP launches. Outputs (ours into a NaN-poisoned
buffer) are checked against float64 numpy: max |out - ref| / max |ref| <= 1e-4.

    python -m bench gemm_cuda                     # every shape, the builder's own tile choice
    python -m bench.gemm_cuda --shapes gpt2.qkv,gpt2.fc2 --sweep 6   # and 5 runners-up of other kinds
    python -m bench.gemm_cuda --fit OUTPUT...     # refit the tile cost model to such tables (no GPU)

Needs torch with CUDA and the NVRTC that hal.compile uses; prints why it skips otherwise.
"""

import argparse
import ctypes
import datetime
import re
import subprocess
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

RUNS = 15           # timed batches
BATCH = 20          # launches per batch, queued behind a GPU sleep so they run back to back
WARMUP = 10
SLEEP_CYCLES = 2_000_000   # about 1 ms: longer than the host takes to queue a batch
CLOCK_GHZ = 1.98    # the cost model's clocks per microsecond / 1000 (H100 / H200 SXM boost clock)
ROW = re.compile(r"\|\s*(\S+)(?: cand \d+)? \| \d+x\d+x\d+x\d+ \| ([\d.]+) \|.*\| (\d+)x(\d+)x(\d+) t(\d)x(\d) "
                 r"g(\d+)(?:own)? \d+thr grid\d+( vA)?( vB)?")
TOLERANCE = 1e-4
# name -> ("linear", M, K, N) | ("bmm", Z, M, K, N) | ("conv", C, H, W, OC, kernel, stride, pad)
SHAPES = {
    "gpt2.qkv": ("linear", 128, 768, 2304),
    "gpt2.proj": ("linear", 128, 768, 768),
    "gpt2.fc1": ("linear", 128, 768, 3072),
    "gpt2.fc2": ("linear", 128, 3072, 768),
    "gpt2.scores": ("bmm", 12, 128, 64, 128),
    "gpt2.attn_v": ("bmm", 12, 128, 128, 64),
    "resnet.conv1": ("conv", 3, 224, 224, 64, 7, 2, 3),
    "resnet.l1": ("conv", 64, 56, 56, 64, 3, 1, 1),
    "resnet.l2_s2": ("conv", 64, 56, 56, 128, 3, 2, 1),
    "resnet.l2": ("conv", 128, 28, 28, 128, 3, 1, 1),
    "resnet.l3": ("conv", 256, 14, 14, 256, 3, 1, 1),
    "resnet.l4_s2": ("conv", 256, 14, 14, 512, 3, 2, 1),
    "resnet.l4": ("conv", 512, 7, 7, 512, 3, 1, 1),
    "resnet.l4_ds": ("conv", 256, 14, 14, 512, 1, 2, 0),
}


def onnx_model(shape, rng):
    """(model, inputs, float64 reference, torch callable factory, FLOPs) of one shape."""
    f = TensorProto.FLOAT
    kind = shape[0]
    if kind == "linear":
        _, m, k, n = shape
        w, b = rng.standard_normal((k, n)).astype(np.float32), rng.standard_normal(n).astype(np.float32)
        x = rng.standard_normal((m, k)).astype(np.float32)
        nodes = [helper.make_node("MatMul", ["x", "w"], ["t"], name="MatMul_0"),
                 helper.make_node("Add", ["t", "b"], ["y"], name="Add_1")]
        inits, inputs = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")], {"x": x}
        ref = x.astype(np.float64) @ w + b
        flops = 2 * m * k * n

        def torch_fn(torch, F, dev):
            xt, wt, bt = (torch.from_numpy(a).to(dev) for a in (x, w, b))
            return lambda: torch.addmm(bt, xt, wt)
    elif kind == "bmm":
        _, z, m, k, n = shape
        a, c = rng.standard_normal((z, m, k)).astype(np.float32), rng.standard_normal((z, k, n)).astype(np.float32)
        nodes = [helper.make_node("MatMul", ["a", "c"], ["y"], name="MatMul_0")]
        inits, inputs = [], {"a": a, "c": c}
        ref = np.matmul(a.astype(np.float64), c)
        flops = 2 * z * m * k * n

        def torch_fn(torch, F, dev):
            at, ct = torch.from_numpy(a).to(dev), torch.from_numpy(c).to(dev)
            return lambda: torch.matmul(at, ct)
    else:
        _, c, h, wd, oc, ks, st, pad = shape
        x = rng.standard_normal((1, c, h, wd)).astype(np.float32)
        w = (rng.standard_normal((oc, c, ks, ks)) / np.sqrt(c * ks * ks)).astype(np.float32)
        b = rng.standard_normal(oc).astype(np.float32)
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="Conv_0", strides=[st, st], pads=[pad] * 4)]
        inits, inputs = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")], {"x": x}
        ref = _conv_ref(x.astype(np.float64), w.astype(np.float64), st, pad) + b[None, :, None, None]
        flops = 2 * ref.size * c * ks * ks

        def torch_fn(torch, F, dev):
            xt, wt, bt = (torch.from_numpy(a_).to(dev) for a_ in (x, w, b))
            return lambda: F.conv2d(xt, wt, bt, stride=st, padding=pad)
    ins = [helper.make_tensor_value_info(k_, f, v.shape) for k_, v in inputs.items()]
    g = helper.make_graph(nodes, "gemm", ins, [helper.make_tensor_value_info("y", f, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, inputs, ref, torch_fn, flops


def _conv_ref(x, w, st, pad):
    """Direct 2-D convolution in float64 (one image, one group), as a sum over the kernel window."""
    _, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // st + 1, (wd + 2 * pad - kw) // st + 1
    out = np.zeros((1, oc, oh, ow))
    for i in range(kh):
        for j in range(kw):
            win = xp[:, :, i: i + (oh - 1) * st + 1: st, j: j + (ow - 1) * st + 1: st]
            out += np.einsum("nchw,oc->nohw", win, w[:, :, i, j])
    return out


class CudaLib:
    """The few libcuda calls that load a cubin and launch a kernel in PyTorch's context."""

    def __init__(self):
        self.lib = ctypes.CDLL("libcuda.so.1")
        self.lib.cuLaunchKernel.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [ctypes.c_void_p] * 3

    def _check(self, rc, what):
        if rc:
            raise RuntimeError(f"{what} failed: CUresult {rc}")

    def function(self, cubin: bytes, name: str):
        mod, fn = ctypes.c_void_p(), ctypes.c_void_p()
        self._check(self.lib.cuModuleLoadData(ctypes.byref(mod), ctypes.c_char_p(cubin)), "cuModuleLoadData")
        self._check(self.lib.cuModuleGetFunction(ctypes.byref(fn), mod, name.encode()), "cuModuleGetFunction")
        return fn

    def launcher(self, fn, grid, block, pointers, stream: int):
        ptrs = (ctypes.c_uint64 * len(pointers))(*pointers)
        params = (ctypes.c_void_p * len(pointers))(*[ctypes.addressof(ptrs) + 8 * i for i in range(len(pointers))])

        def launch():
            self._check(self.lib.cuLaunchKernel(fn, *grid, *block, 0, ctypes.c_void_p(stream), params, None),
                        "cuLaunchKernel")
        launch.keep = (ptrs, params)
        return launch


def median_us(torch, fn, batch=BATCH, sleep_cycles=SLEEP_CYCLES) -> float:
    """Median over RUNS batches of the GPU time per fn() call, `batch` calls queued behind a GPU
    sleep of sleep_cycles (longer than the host takes to queue them)."""
    for _ in range(WARMUP):
        fn()
    start, end, times = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True), []
    for _ in range(RUNS):
        torch.cuda._sleep(sleep_cycles)
        start.record()
        for _ in range(batch):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / batch)
    return float(np.median(times))


def rel_error(out, ref) -> float:
    return float(np.max(np.abs(out.astype(np.float64) - ref)) / max(np.max(np.abs(ref)), 1e-30))


def run_ours(torch, cuda, model, inputs, ref, arch, tl_override=None):
    """(median us, rel. error, (TiledGemm, TileLaunch)) of the builder's tiled kernel for the model
    (with the tiling tl_override instead of the builder's choice, if given)."""
    import hal
    from kernelos.builder import codegen
    from kernelos.builder.build import lower_model
    from kernelos.dag import Launch
    chosen = codegen.tile_launch
    if tl_override is not None:
        codegen.tile_launch = lambda t: tl_override
    try:
        low = lower_model(model, [arch])
    finally:
        codegen.tile_launch = chosen
    launches = [n for n in low.dag.nodes if isinstance(n, Launch)]
    assert len(launches) == 1, [n.name for n in launches]
    node = launches[0]
    spec = low.specs[node.kernel]
    if spec.cuda_variant != "tiled":
        raise RuntimeError(f"the builder chose the {spec.cuda_variant} template, not the tiled one")
    fn = cuda.function(hal.compile(spec.source("cuda", node.kernel), node.kernel, arch), node.kernel)
    bufs = {b.name: torch.empty(b.size_B, dtype=torch.uint8, device="cuda") for b in low.dag.buffers.values()}
    for name, arr in list(low.weights.items()) + list(inputs.items()):
        bufs[name].copy_(torch.from_numpy(np.array(arr, copy=True).view(np.uint8).reshape(-1)))
    bufs["y"].fill_(0xFF)                       # NaN poison: every output must be written
    grid, block = node.dims[arch]
    launch = cuda.launcher(fn, grid, block, [bufs[a.buffer].data_ptr() for a in node.args],
                           torch.cuda.current_stream().cuda_stream)
    launch()
    torch.cuda.synchronize()
    out = bufs["y"].cpu().numpy().view(np.float32).reshape(ref.shape)
    return median_us(torch, launch), rel_error(out, ref), spec.tiled


def _gemm_dims(shape):
    if shape[0] == "linear":
        return 1, shape[1], shape[3], shape[2]
    if shape[0] == "bmm":
        return shape[1], shape[2], shape[4], shape[3]
    _, c, h, wd, oc, ks, st, pad = shape
    oh, ow = (h + 2 * pad - ks) // st + 1, (wd + 2 * pad - ks) // st + 1
    return 1, oc, oh * ow, c * ks * ks


def sweep_candidates(t, count) -> list:
    """The cost model's runners-up after its choice, best first, one per kind: (thread tile, k groups
    1 / 2-4 / 5-8 / more, tile area below 1024 / 4096 / more), so a sweep measures different designs."""
    from kernelos.builder import codegen

    def kind(tl):
        return (tl.tm, tl.tn, (tl.ks > 1) + (tl.ks > 4) + (tl.ks > 8), (tl.bm * tl.bn >= 1024) + (tl.bm * tl.bn >= 4096),
                tl.own_barrier, tl.bk)
    ranked = codegen.ranked_tiles(t)
    seen, out = {kind(ranked[0])}, []
    # the best per area, barrier kind, panel depth, thread tile, then per kind
    for level in (lambda key: key[3], lambda key: key[4], lambda key: key[5], lambda key: key[:2], lambda key: key):
        got = {level(kind(ranked[0]))}
        for tl in ranked[1:]:
            if level(kind(tl)) not in got and kind(tl) not in seen and len(out) < count:
                got.add(level(kind(tl)))
                seen.add(kind(tl))
                out.append(tl)
    return out


def describe(tl) -> str:
    return (f"{tl.bm}x{tl.bn}x{tl.bk} t{tl.tm}x{tl.tn} g{tl.ks}{'own' if tl.own_barrier else ''} {tl.threads}thr "
            f"grid{tl.grid}{' vA' if tl.vec_a else ''}{' vB' if tl.vec_b else ''}")


def fit(paths) -> dict:
    """Least-squares weights of the tile cost model's terms (codegen.tile_cost_terms) for the timed
    rows of these bench outputs, minimising the relative error, weights kept non-negative (a term
    whose weight comes out negative is dropped); prints them, the error and each shape's pick."""
    from kernelos.builder import codegen
    rows = []
    for path in paths:
        for line in open(path):
            m = ROW.match(line)
            if m and m.group(1) in SHAPES:
                bm, bn, bk, tm, tn, ks = (int(v) for v in m.group(3, 4, 5, 6, 7, 8))
                z, mm, n, k = _gemm_dims(SHAPES[m.group(1)])
                terms, _ = codegen.tile_cost_terms(z, mm, n, k, tm, tn, bm // tm, bn // tn, ks, bk, bool(m.group(9)),
                                                   bool(m.group(10)), SHAPES[m.group(1)][0] == "conv")
                rows.append((m.group(1), float(m.group(2)) * CLOCK_GHZ * 1e3, terms))
    if not rows:
        raise SystemExit("no timed rows found")
    names = list(codegen.CUDA_COST_CLK)
    x = np.array([[r[2][t] for t in names] for r in rows], float)
    y = np.array([r[1] for r in rows])
    keep = list(range(len(names)))
    while True:
        w, *_ = np.linalg.lstsq(x[:, keep] / y[:, None], np.ones(len(y)), rcond=None)
        if (w >= 0).all():
            break
        keep.pop(int(np.argmin(w)))
    weights = dict.fromkeys(names, 0.0)
    weights.update({names[j]: float(v) for j, v in zip(keep, w)})
    err = np.abs(x @ np.array([weights[t] for t in names]) - y) / y
    print(f"{len(rows)} timed tilings; median relative error {np.median(err):.1%}, 90th percentile "
          f"{np.quantile(err, 0.9):.1%}\nCUDA_COST_CLK = {{{', '.join(f'{t!r}: {v:.3g}' for t, v in weights.items())}}}")
    return weights


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gemm_cuda")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated subset of: " + ", ".join(SHAPES))
    ap.add_argument("--sweep", type=int, default=1, help="also time the cost model's next N-1 candidate tilings")
    ap.add_argument("--fit", nargs="+", metavar="OUTPUT", help="refit the cost model to these outputs instead")
    args = ap.parse_args(argv)
    if args.fit:
        fit(args.fit)
        return 0
    try:
        import torch
        import torch.nn.functional as F
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.zeros(1, device="cuda")           # PyTorch's context, current on this thread
        cuda = CudaLib()
    except Exception as e:  # ImportError, no GPU, no libcuda
        print(f"skipped: needs torch with CUDA and libcuda ({type(e).__name__}: {e})")
        return 0
    from kernelos.builder import codegen
    arch = "sm_{}{}".format(*torch.cuda.get_device_capability(0))
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        driver = "?"
    print(f"card {torch.cuda.get_device_name(0)} ({arch}), driver {driver}, torch {torch.__version__}, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"command: python -m bench.gemm_cuda {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print(f"us per launch: median of {RUNS} CUDA-event-timed batches of {BATCH} back-to-back launches; "
          "error = max|out-ref|/max|ref| vs float64; PyTorch fp32 (TF32 off)")
    print("| shape | GEMM z x M x N x K | ours us | ours TFLOP/s | torch us | torch TFLOP/s | ours/torch | "
          "err ours | err torch | tiling (tile x bk, thread tile, k groups) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    failed = 0
    for name in args.shapes.split(","):
        shape = SHAPES[name]
        model, inputs, ref, torch_fn, flops = onnx_model(shape, rng)
        z, m, n, k = _gemm_dims(shape)
        fn = torch_fn(torch, F, "cuda")
        t_us = median_us(torch, fn)
        t_err = rel_error(fn().cpu().numpy(), ref)
        cands, t = [None], None
        while cands:
            cand = cands.pop(0)
            try:
                o_us, o_err, (t_, tl) = run_ours(torch, cuda, model, inputs, ref, arch, cand)
            except Exception as e:
                print(f"| {name} | {z}x{m}x{n}x{k} | error: {type(e).__name__}: {e} |")
                failed += 1
                continue
            if t is None:       # the builder's choice first, then the runners-up
                t = t_
                cands = sweep_candidates(t, args.sweep - 1)
            failed += not o_err <= TOLERANCE
            est = codegen.tile_cost_clk(t, tl)
            label = name if cand is None else f"  {name} cand {args.sweep - 1 - len(cands)}"
            print(f"| {label} | {z}x{m}x{n}x{k} | {o_us:.1f} | {flops / o_us / 1e6:.1f} | {t_us:.1f} | "
                  f"{flops / t_us / 1e6:.1f} | {o_us / t_us:.2f} | {o_err:.1e}{'' if o_err <= TOLERANCE else ' FAIL'} | "
                  f"{t_err:.1e} | {describe(tl)} est {est / CLOCK_GHZ / 1e3:.1f} us |", flush=True)
    print(f"{failed} kernel(s) failed" if failed else "all outputs within tolerance")
    return 1 if failed else 0


def run():
    """`python -m bench` entry."""
    main([])


if __name__ == "__main__":
    sys.exit(main())
