"""`python -m bench.tf32_gemm [--shapes gpt2.qkv,...] [--configs heuristic,nosplit,64x64w8s6,...] [--out DIR]`:
GPU time of the tf32 build's GEMM nodes -- one TF32 kernel, or a cross-block split-K GEMM's two (partial
products, then reduce + epilogue) -- per GEMM shape of bench/gemm_cuda.py and per tile configuration
(heuristic: the builder's choice; nosplit: its choice without split-K; else a KOS_TF32_TILE value),
against PyTorch with TF32 on (torch.backends.cuda.matmul.allow_tf32 / cudnn.allow_tf32), in one
process on one card. The kernels (NVRTC, hal.compile) run through libcuda on PyTorch's stream in the
DAG's order, timed as bench/gemm_cuda.py times (batches of back-to-back launches behind a GPU sleep,
CUDA events, median per launch sequence). Outputs and scratch are NaN-poisoned first; each output is
checked against float64: 1e-5 < max|out-ref|/max|ref| <= 1e-2 (TF32 ran, within issue 9's bound).
Each result is appended to DIR/tf32_gemm.jsonl as it is measured; a failing configuration is reported
and skipped."""

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench import gemm_cuda

TF32_BOUND, TF32_SEEN = 1e-2, 1e-5
SHAPES = ("gpt2.qkv", "gpt2.proj", "gpt2.fc1", "gpt2.fc2", "gpt2.scores", "gpt2.attn_v", "resnet.l2", "resnet.l3",
          "resnet.l4_s2", "resnet.l4")
CONFIGS = ("heuristic", "nosplit", "64x64w8s2", "64x64w8s3", "64x64w8s4", "64x64w8s6", "64x64w8s8", "64x64w8s12",
           "64x64w8s16", "64x64w8s24", "64x64w8s6k16", "64x64w8s12k16", "64x32w8s4", "64x32w8s8", "32x32w4s8",
           "64x64w4/2s4", "64x64w4s6", "32x64w8s6")


def lower(model, arch: str, cfg: str):
    """The tf32 lowering of `model` under configuration `cfg`."""
    from kernelos.builder import gemm_tf32
    from kernelos.builder.build import lower_model
    force, split = gemm_tf32.FORCE, gemm_tf32.SPLIT_BLOCKS
    gemm_tf32.FORCE = "" if cfg in ("heuristic", "nosplit") else cfg
    gemm_tf32.SPLIT_BLOCKS = 0 if cfg == "nosplit" else split
    try:
        return lower_model(model, [arch], precision="tf32")
    finally:
        gemm_tf32.FORCE, gemm_tf32.SPLIT_BLOCKS = force, split


def describe(low) -> str:
    """The TF32 launch of the lowering (tile, k groups, splits, stages, grid)."""
    tls = [s.tiled[1] for s in low.specs.values() if s.cuda_variant == "tf32"]
    return " ".join(f"{tl.name}k{tl.bk} s{tl.stages} grid{tl.grid}x{tl.threads}" for tl in tls)


def runner(torch, cuda, low, arch, inputs, functions):
    """A function launching every node of the lowering in order on fresh torch buffers, and the output buffer."""
    from kernelos.dag import Launch
    bufs = {b.name: torch.empty(b.size_B, dtype=torch.uint8, device="cuda") for b in low.dag.buffers.values()}
    for name, arr in list(low.weights.items()) + list(inputs.items()):
        bufs[name].copy_(torch.from_numpy(np.array(arr, copy=True).view(np.uint8).reshape(-1)))
    for b in low.dag.buffers.values():
        if b.role in ("output", "scratch"):
            bufs[b.name].fill_(0xFF)            # NaN: every element must be written before it is read
    stream = torch.cuda.current_stream().cuda_stream
    launches = [cuda.launcher(functions[n.kernel], *n.dims[arch], [bufs[a.buffer].data_ptr() for a in n.args], stream)
                for n in low.dag.nodes if isinstance(n, Launch)]

    def run():
        for launch in launches:
            launch()
    run.keep = bufs
    return run, bufs["y"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.tf32_gemm", description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--out", default="/tmp/kernelos-tf32-gemm")
    ap.add_argument("--budget-s", type=float, default=1e9, help="stop starting new shapes after this long")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    try:
        import torch
        import torch.nn.functional as F
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.zeros(1, device="cuda")
        cuda = gemm_cuda.CudaLib()
    except Exception as e:  # ImportError, no GPU, no libcuda
        print(f"skipped: needs torch with CUDA and libcuda ({type(e).__name__}: {e})")
        return 0
    import hal
    arch = "sm_{}{}".format(*torch.cuda.get_device_capability(0))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = open(out_dir / "tf32_gemm.jsonl", "a")
    print(f"card {torch.cuda.get_device_name(0)} ({arch}), torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; python -m bench.tf32_gemm "
          f"{' '.join(argv if argv is not None else sys.argv[1:])}; torch with allow_tf32 = True", flush=True)
    print("| shape | config | us | TFLOP/s | torch us | ours/torch | err | launch |\n|---|---|---|---|---|---|---|---|", flush=True)
    rng = np.random.default_rng(0)
    configs = args.configs.split(",")
    failed = 0
    for name in args.shapes.split(","):
        if time.perf_counter() - t_start > args.budget_s:
            print(f"budget spent: {name} and later shapes not run", flush=True)
            break
        shape = gemm_cuda.SHAPES[name]
        model, inputs, ref, torch_fn, flops = gemm_cuda.onnx_model(shape, rng)
        fn = torch_fn(torch, F, "cuda")
        t_us = gemm_cuda.median_us(torch, fn)
        t_err = gemm_cuda.rel_error(fn().float().cpu().numpy(), ref)
        lows, sources = {}, {}
        for cfg in configs:
            try:
                lows[cfg] = lower(model, arch, cfg)
            except Exception as e:
                print(f"| {name} | {cfg} | lowering failed: {type(e).__name__}: {e} |", flush=True)
                continue
            sources.update({k: s.source("cuda", k) for k, s in lows[cfg].specs.items()})
        with ThreadPoolExecutor(16) as pool:       # NVRTC runs outside the GIL
            cubins = dict(zip(sources, pool.map(lambda k: _try_compile(hal, sources[k], k, arch), sources)))
        row = {"shape": name, "gemm": gemm_cuda._gemm_dims(shape), "torch_us": t_us, "torch_err": t_err, "arch": arch}
        log.write(json.dumps(dict(row, config="torch")) + "\n")
        for cfg, low in lows.items():
            try:
                bad = [k for k in low.specs if isinstance(cubins.get(k), Exception)]
                if bad:
                    raise cubins[bad[0]]
                functions = {k: cuda.function(cubins[k], k) for k in low.specs}
                run, y = runner(torch, cuda, low, arch, inputs, functions)
                run()
                torch.cuda.synchronize()
                err = gemm_cuda.rel_error(y.cpu().numpy().view(np.float32)[:ref.size].reshape(ref.shape), ref)
                us = gemm_cuda.median_us(torch, run)
            except Exception as e:  # a compile or launch failing leaves the other configurations
                print(f"| {name} | {cfg} | error: {type(e).__name__}: {str(e)[:200]} |", flush=True)
                failed += 1
                continue
            ok = TF32_SEEN < err <= TF32_BOUND
            failed += not ok
            log.write(json.dumps(dict(row, config=cfg, us=us, err=err, launch=describe(low))) + "\n")
            log.flush()
            print(f"| {name} | {cfg} | {us:.1f} | {flops / us / 1e6:.1f} | {t_us:.1f} | {us / t_us:.2f} | "
                  f"{err:.1e}{'' if ok else ' FAIL'} | {describe(low)} |", flush=True)
    print(f"{failed} configuration(s) failed" if failed else "all outputs within bounds", flush=True)
    return 1 if failed else 0


def _try_compile(hal, source, name, arch):
    try:
        return hal.compile(source, name, arch)
    except Exception as e:
        return e


if __name__ == "__main__":
    sys.exit(main())
