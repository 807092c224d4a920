"""`python -m bench.tf32_tiles [--device nv:0] [--models resnet18,gpt2] [--out DIR]`: the TF32 tile
sweep. Builds tf32 images of the bench models with every tile shape / k-group count of
kernelos/builder/gemm_tf32.py forced (KOS_TF32_TILE), plus the heuristic's choice and the fp32 image
as the baseline of the same run, profiles each on the device and prints, per GEMM shape, the kernel
time of every configuration (median over the nodes of that shape), the best one and the heuristic's.
GPT-2 is cut to 2 blocks (the same GEMM shapes as 12). Writes DIR/tf32_tiles.json and .txt."""

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

CONFIGS = ("fp32", "", "64x64w8", "64x64w4", "64x32w8", "64x32w8/2", "64x32w4/2", "32x64w8/2", "32x32w8/2", "32x32w8/4",
           "32x32w4/4", "32x16w4/2", "32x16w4/4")
WARMUP_S = 0.3


def _shapes(proto, arch) -> dict:
    """GEMM launch name -> (z, m, n, k) and the heuristic's launch, from a tf32 lowering."""
    from kernelos.builder.build import lower_model
    low = lower_model(proto, [arch], precision="tf32")
    out = {}
    for n in low.dag.nodes:
        spec = low.specs.get(getattr(n, "kernel", None))
        if spec is not None and spec.cuda_variant == "tf32":
            t, tl = spec.tiled
            out[n.name] = ((t.z, t.m, t.n, t.k), f"{tl.name} s{tl.stages}")
    return out


def sweep(name: str, device: str, arch: str, work: Path, runs: int, log, configs=CONFIGS) -> dict:
    from bench.e2e import models
    from kernelos.builder import gemm_tf32
    from kernelos.builder.build import build_image
    from kernelos.model import load_model
    from kernelos.profile import profile
    if name == "gpt2":
        models.GPT2["blocks"] = 2
    proto = models.MODELS[name]()
    x = models.make_input(proto)
    shapes = _shapes(proto, arch)
    times, totals = defaultdict(dict), {}
    for cfg in configs:
        gemm_tf32.FORCE = "" if cfg == "fp32" else cfg
        path = work / f"{name}.{cfg.replace('/', 'k') or 'heuristic'}.kimg"
        t0 = time.perf_counter()
        try:
            build_image(proto, path, [arch], precision="fp32" if cfg == "fp32" else "tf32")
            with load_model(str(path), device) as m:
                warm_until = time.perf_counter() + WARMUP_S      # the clocks up before the timeline
                while time.perf_counter() < warm_until:
                    m.run(x)
                tl = profile(m, x, runs=runs)
        except Exception as e:     # one configuration failing (a compile, a fault) leaves the others
            log(f"{name} {cfg or 'heuristic'}: {type(e).__name__}: {e}")
            continue
        finally:
            path.unlink(missing_ok=True)
        per_gemm, by_shape = defaultdict(float), defaultdict(list)
        for node in tl.nodes:       # a split-K GEMM's reduce node counts with its GEMM node
            gemm = node.name.removesuffix(".splitk_reduce")
            if node.op == "launch" and gemm in shapes:
                per_gemm[gemm] += node.duration_us
        for gemm, us in per_gemm.items():
            by_shape[shapes[gemm][0]].append(us)
        for shape, durs in by_shape.items():
            times[shape][cfg or "heuristic"] = statistics.median(durs)
        totals[cfg or "heuristic"] = tl.device_us
        log(f"{name} {cfg or 'heuristic'}: device {tl.device_us:.1f} us ({time.perf_counter() - t0:.1f} s)")
    gemm_tf32.FORCE = ""
    chosen = {s: c for s, c in shapes.values()}
    return {"times": {str(s): v for s, v in times.items()}, "device_us": totals, "heuristic": {str(s): c for s, c in chosen.items()},
            "count": {str(s): sum(1 for v in shapes.values() if v[0] == s) for s in chosen}}


def report(results: dict) -> str:
    lines = []
    for name, r in results.items():
        lines.append(f"{name}: device time per inference " + ", ".join(f"{c} {us:.0f}" for c, us in r["device_us"].items()))
        for shape, t in r["times"].items():
            tf = {c: us for c, us in t.items() if c != "fp32"}
            best = min(tf, key=tf.get) if tf else "-"
            lines.append(f"  {shape} x{r['count'][shape]}: fp32 {t.get('fp32', float('nan')):.1f} us; heuristic "
                         f"({r['heuristic'][shape]}) {t.get('heuristic', float('nan')):.1f}; best {best} {tf.get(best, float('nan')):.1f}; "
                         + " ".join(f"{c}={us:.1f}" for c, us in tf.items() if c != "heuristic"))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tf32_tiles", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="nv:0")
    p.add_argument("--models", default="resnet18,gpt2")
    p.add_argument("--out", default="/tmp/kernelos-tf32-tiles")
    p.add_argument("--runs", type=int, default=5, help="profiled inferences per configuration")
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help="comma-separated: fp32, heuristic, or KOS_TF32_TILE values (default: all of CONFIGS)")
    args = p.parse_args(argv)
    import hal
    devices, absent = hal.probe_report()
    arch = next((d.arch for d in devices if d.spec == args.device), None)
    if arch is None:
        print(f"device {args.device} not found: {absent}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(msg, flush=True)   # noqa: E731
    log(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.device}: "
        + next(f"{d.name} ({d.arch})" for d in devices if d.spec == args.device))
    configs = ["" if c == "heuristic" else c for c in args.configs.split(",")]
    results = {m: sweep(m, args.device, arch, out, args.runs, log, configs) for m in args.models.split(",")}
    (out / "tf32_tiles.json").write_text(json.dumps(results, indent=1))
    text = report(results)
    (out / "tf32_tiles.txt").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
