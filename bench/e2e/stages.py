"""The harness's stages, each run in its own process by bench/e2e/__main__.py (with a hard timeout,
so a hang or crash in one framework costs only its own cells; torch/libcuda and kernelos's own
driver never share a process):

    python -m bench.e2e.stages STAGE --dir DIR [--model M] [--device SPEC] [--quick]

Files under DIR: models/M.onnx, M.input.npy, M.ref64.npy (prepare); images/M.kimg (build);
outputs/M.COLUMN.npy (every framework); results/M.STAGE[.SPEC].json: the stage's columns, each
{key, label, precision, tolerance, median_us, p10_us, p90_us, min_us, runs, output, error, notes}.
A column that fails records its error and the stage goes on with the next.
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from .measure import FULL, QUICK, measure

FP32_TOL, TF32_TOL = 1e-4, 1e-2       # max relative error vs the float64 reference (issue 9)
INFERENCE_TIMEOUT_S = 5.0   # a kernelos inference that takes longer is a hang (DeviceTimeout), not a result
PROFILE_MIN_RUNS, PROFILE_MAX_RUNS, PROFILE_BUDGET_S = 3, 20, 1.0   # profiled runs: about 1 s of inferences
TORCH_GPU_COLUMNS = (("PyTorch CUDA graph", "fp32"), ("PyTorch CUDA graph TF32", "tf32"))
FIRST_RESULT_RE = re.compile(r"time from process start to first result: ([0-9.]+) (ms|us)")


class Stage:
    def __init__(self, args):
        self.args, self.dir, self.model = args, Path(args.dir), args.model
        self.policy = QUICK if args.quick else FULL
        self.columns, self.info = [], {}

    def path(self, *parts) -> Path:
        p = self.dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def onnx_model(self):
        import onnx
        return onnx.load(str(self.path("models", f"{self.model}.onnx")))

    def inputs(self) -> dict:
        return {"x": np.load(self.path("models", f"{self.model}.input.npy"))}

    def column(self, key: str, label: str, precision: str, fn, notes: str = ""):
        """Run fn() -> (timing dict, output array); record it, or its error, as one column."""
        col = {"key": key, "label": label, "precision": precision,
               "tolerance": FP32_TOL if precision == "fp32" else TF32_TOL, "notes": notes, "error": None}
        t0 = time.perf_counter()
        try:
            timing, out = fn()
            out_path = self.path("outputs", f"{self.model}.{_slug(key)}.npy")
            np.save(out_path, np.asarray(out))
            col.update(timing, output=str(out_path.relative_to(self.dir)))
            print(f"{self.model} | {label} ({precision}): median {timing['median_us']:.1f} us over {timing['runs']} runs",
                  flush=True)
        except Exception as e:  # every failure becomes the column's error; the next column still runs
            traceback.print_exc()
            col["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        col["stage_s"] = round(time.perf_counter() - t0, 2)
        self.columns.append(col)

    def skip(self, key: str, label: str, precision: str, why: str):
        """A column that cannot run here (no torch, no CUDA provider), with the reason."""
        self.columns.append({"key": key, "label": label, "precision": precision, "error": None, "skipped": why})

    def save(self, name: str):
        out = {"model": self.model, "stage": name, "columns": self.columns, "info": self.info}
        self.path("results", f"{self.model}.{name}.json").write_text(json.dumps(out, indent=1, default=str))


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-")


# --- stages ---------------------------------------------------------------------------------------
def prepare(st: Stage):
    """The ONNX model, its input and the float64 reference output."""
    import onnx

    from .models import MODELS, make_input
    from .reference import run_float64
    model = MODELS[st.model]()
    onnx.save(model, str(st.path("models", f"{st.model}.onnx")))
    x = make_input(model)["x"]
    np.save(st.path("models", f"{st.model}.input.npy"), x)
    t0 = time.perf_counter()
    ref = run_float64(model, {"x": x})["y"]
    np.save(st.path("models", f"{st.model}.ref64.npy"), ref)
    st.info = {"nodes": len(model.graph.node), "input": list(x.shape), "output": list(ref.shape),
               "weights_B": int(sum(np.prod(i.dims) * 4 for i in model.graph.initializer)),
               "reference_s": round(time.perf_counter() - t0, 2)}
    print(f"prepared {st.model}: {st.info}", flush=True)


def build(st: Stage):
    """`kernelos build` of the model for the cpu and the GPU target of --device (if any). If that
    fails, each target is tried alone (GPU first), so one target's failure leaves the other's columns."""
    from kernelos.builder.build import build_image
    from kernelos.builder.progress import Progress
    targets = ([st.args.gpu_arch] if st.args.gpu_arch else []) + ["cpu"]
    src, dst = st.path("models", f"{st.model}.onnx"), st.path("images", f"{st.model}.kimg")
    attempts = [targets] + ([[t] for t in targets] if len(targets) > 1 else [])
    t0 = time.perf_counter()
    for attempt in attempts:
        try:
            result = build_image(str(src), str(dst), attempt, progress=Progress())
            break
        except Exception as e:
            traceback.print_exc()
            st.info.setdefault("build_errors", {})["+".join(attempt)] = f"{type(e).__name__}: {str(e)[:300]}"
            print(f"build for {attempt} failed: {type(e).__name__}: {e}", flush=True)
    else:
        raise RuntimeError(f"no build succeeded: {st.info['build_errors']}")
    st.info.update(build_s=round(time.perf_counter() - t0, 2), targets=result.targets, launches=result.launches,
                   kernels=result.kernels, image_B=result.image_B)
    print(result.summary_text(), flush=True)


def kernelos_run(st: Stage):
    """kernelos on one device: load the image, check the output, time model.run (input copy in,
    one submit, wait, output read), then a short profile of the timeline."""
    from kernelos.model import load_model
    from kernelos.profile import profile
    spec = st.args.device
    key = f"kernelos {spec}"
    x = st.inputs()
    holder = {}

    def go():
        t0 = time.perf_counter()
        model = holder["model"] = load_model(str(st.path("images", f"{st.model}.kimg")), spec,
                                             timeout_s=INFERENCE_TIMEOUT_S)
        st.info["load_s"] = round(time.perf_counter() - t0, 3)
        st.info["device"] = f"{model.device.info.name} ({model.target})"
        st.info["submits_per_inference"] = model.submits_per_inference
        out = model.run(x, poison=True)["y"]
        timing = holder["timing"] = measure(lambda: model.run(x), st.policy)
        return timing, out
    st.column(key, key, "fp32", go, notes="includes the input copy in and the output copy out")
    model = holder.get("model")
    if model is None:
        return
    try:
        if "timing" in holder:      # the column worked: profile it
            per_run_s = holder["timing"]["median_us"] / 1e6
            runs = max(PROFILE_MIN_RUNS, min(PROFILE_MAX_RUNS // (3 if st.args.quick else 1), int(PROFILE_BUDGET_S / per_run_s)))
            timeline = profile(model, x, runs=runs)
            st.path("logs", f"{st.model}.profile.{_slug(spec)}.txt").write_text(timeline.format(top=15) + "\n")
            st.info["profile"] = {k: getattr(timeline, k) for k in ("device_us", "submit_us", "wait_us", "run_us",
                                                                    "plain_run_us")}
            st.info["profile"]["by_kernel_top"] = timeline.by_kernel()[:5]
            print(timeline.format(top=15), flush=True)
    except Exception as e:
        traceback.print_exc()
        st.info["profile_error"] = f"{type(e).__name__}: {e}"
    finally:
        model.close()


def ort_run(st: Stage):
    """onnxruntime: CPU provider with the cpu device's thread count; CUDA provider where installed."""
    import onnxruntime as ort
    x = st.inputs()
    cores = len(os.sched_getaffinity(0))
    st.info["onnxruntime"] = ort.__version__
    providers = ort.get_available_providers()
    for provider, label in (("CPUExecutionProvider", f"onnxruntime CPU ({cores} threads)"),
                            ("CUDAExecutionProvider", "onnxruntime CUDA")):
        key = "onnxruntime CPU" if provider.startswith("CPU") else "onnxruntime CUDA"
        if provider not in providers:
            st.skip(key, label, "fp32", f"{provider} not in this onnxruntime ({', '.join(providers)})")
            continue

        def go(provider=provider):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = cores
            opts.log_severity_level = 3
            sess = ort.InferenceSession(str(st.path("models", f"{st.model}.onnx")), opts, providers=[provider])
            out = sess.run(None, x)[0]
            return measure(lambda: sess.run(None, x), st.policy), out
        st.column(key, label, "fp32", go)


def torch_run(st: Stage):
    """PyTorch on the GPU: eager (fp32), CUDA graph (fp32), CUDA graph (TF32); without CUDA, eager on
    the CPU only (so the code path is exercised) and the GPU columns skipped with the reason."""
    try:
        import torch
    except ImportError as e:
        for key, prec in (("PyTorch eager", "fp32"), *TORCH_GPU_COLUMNS):
            st.skip(key, key.replace(" TF32", ""), prec, f"torch is not installed ({e})")
        return

    from .models import weights
    from .torch_models import BUILDERS, set_tf32
    st.info["torch"] = torch.__version__
    w, x_np = weights(st.onnx_model()), st.inputs()["x"]
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    st.info["torch_device"] = torch.cuda.get_device_name() if cuda else "cpu"
    torch.backends.cudnn.benchmark = True

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def build_fn(tf32: bool):
        st.info[f"precision_{'tf32' if tf32 else 'fp32'}"] = set_tf32(tf32)
        kwargs = {"sdpa": True} if (st.model == "gpt2" and tf32) else {}
        return BUILDERS[st.model](w, dev, **kwargs)

    def eager():
        fn = build_fn(False)
        x = torch.from_numpy(x_np).to(dev)
        with torch.inference_mode():
            out = fn(x).cpu().numpy()

            def call():
                fn(x)
                sync()
            return measure(call, st.policy), out

    def graph(tf32: bool):
        def go():
            fn = build_fn(tf32)
            with torch.inference_mode():
                static_x = torch.from_numpy(x_np).to(dev)
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(3):       # cuDNN picks its algorithms before capture
                        fn(static_x)
                torch.cuda.current_stream().wait_stream(side)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    static_y = fn(static_x)
                g.replay()
                sync()
                out = static_y.cpu().numpy()

                def call():
                    g.replay()
                    sync()
                return measure(call, st.policy), out
        return go

    note = "input already on the device, output left there; host sync after each"
    st.column(f"PyTorch eager {'cuda' if cuda else 'cpu'}", f"PyTorch eager ({'CUDA' if cuda else 'CPU'})", "fp32",
              eager, notes=note)
    if not cuda:
        for key, prec in TORCH_GPU_COLUMNS:
            st.skip(key, key.replace(" TF32", ""), prec, "torch.cuda.is_available() is False")
        return
    st.column("PyTorch CUDA graph", "PyTorch CUDA graph", "fp32", graph(False), notes=note)
    st.column("PyTorch CUDA graph TF32", "PyTorch CUDA graph", "tf32", graph(True),
              notes=note + ("; attention by F.scaled_dot_product_attention" if st.model == "gpt2" else ""))
    set_tf32(False)


def first_result(st: Stage):
    """Process start -> first correct output of the model's image, in fresh processes that verify the
    image, open the device, load, run the self-test against the golden output and exit (--count 0).
    The headline is the appliance's command (boot/vm/init.sh): `python -S -m boot IMAGE`, the boot
    entry alone, with no site initialisation (PYTHONPATH names the package folders instead: the repo
    and this interpreter's site-packages) and with bytecode compiled beforehand, as the system image
    ships it (boot/vm/rootfs.py). Also measured: the same without -S, and the whole CLI
    (`python -m kernelos boot IMAGE`). The figure is boot's own (/proc/self/stat starttime); the wall
    time around the process and a bare interpreter start are kept too, and one `-X importtime` run
    lists where the start-up imports go."""
    import site
    image, spec = str(st.path("images", f"{st.model}.kimg")), st.args.device
    path = [os.getcwd(), os.environ.get("PYTHONPATH"), *site.getsitepackages()]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, path)))
    tail = [image, "--device", spec, "--count", "0"]
    entries = {"boot": [sys.executable, "-S", "-m", "boot", *tail], "site": [sys.executable, "-m", "boot", *tail],
               "cli": [sys.executable, "-m", "kernelos", "boot", *tail]}
    repeats = 2 if st.args.quick else 5
    compile_bytecode()
    subprocess.run(entries["boot"], env=env, capture_output=True, timeout=60)     # fills the drivers' disk caches
    st.info.update(device=spec, repeats=repeats, command=" ".join(["python", *entries["boot"][1:]]))
    for name, cmd in entries.items():
        try:
            ages, walls = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
                walls.append(time.perf_counter() - t0)
                print(p.stdout + p.stderr, flush=True)
                m = FIRST_RESULT_RE.search(p.stdout)
                if p.returncode or not m or "self-test PASS" not in p.stdout:
                    last = (p.stderr.strip() or p.stdout.strip() or "no output").splitlines()[-1][:200]
                    raise RuntimeError(f"{' '.join(cmd[1:4])} exited {p.returncode} without a passing self-test: {last}")
                ages.append(float(m.group(1)) / (1e3 if m.group(2) == "ms" else 1e6))
            prefix = "" if name == "boot" else f"{name}_"
            st.info.update({f"{prefix}first_result_s": statistics.median(ages), f"{prefix}process_wall_s": statistics.median(walls),
                            f"{prefix}all_first_result_s": ages})
        except Exception as e:
            traceback.print_exc()
            st.info[f"{name}_error" if name != "boot" else "error"] = f"{type(e).__name__}: {e}"
    bare = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-S", "-c", "pass"], timeout=30)
        bare.append(time.perf_counter() - t0)
    st.info["bare_python_s"] = statistics.median(bare)
    trace = subprocess.run([sys.executable, "-S", "-m", "bench.startup_trace", *tail], capture_output=True, text=True,
                           env=dict(env, STARTUP_TRACE_SPAWN_NS=str(time.time_ns())), timeout=60)
    print(trace.stderr, flush=True)                            # the start-up timeline, into the stage's log
    p = subprocess.run([entries["boot"][0], "-X", "importtime", *entries["boot"][1:]], env=env, capture_output=True,
                       text=True, timeout=60)
    st.info["imports_top"] = _top_imports(p.stderr)


def compile_bytecode():
    """Byte-compile the repo's packages and the third-party packages boot imports (numpy, cffi,
    pycparser; where their folders are writable), as the system image ships them (boot/vm/rootfs.py
    compiles everything). Without it, PYTHONDONTWRITEBYTECODE (set on the GPU machines) or a
    package installed with --no-compile makes every measured process compile those sources again:
    numpy's import took 190 ms instead of 110 ms on the H200 host (2026-11-26)."""
    import importlib.util
    folders = ["hal", "drivers", "kernelos", "boot", "bench"]
    for name in THIRD_PARTY_BOOT_PACKAGES:
        spec = importlib.util.find_spec(name)
        folders += [d for d in (spec.submodule_search_locations or []) if os.access(d, os.W_OK)] if spec else []
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j0", *folders], capture_output=True, timeout=120)


THIRD_PARTY_BOOT_PACKAGES = ("numpy", "cffi", "pycparser")


IMPORTS_OF_INTEREST = ("site", "numpy", "cffi", "hal", "kernelos.image", "kernelos.model", "kernelos.profile",
                       "boot.server", "drivers.cpu", "drivers.nvidia", "boot.command")


def _top_imports(importtime: str) -> list:
    """[(module, cumulative ms)] from `python -X importtime` output for the modules of interest
    (each counted where it is first imported, so nested ones are inside their importer's figure)."""
    found = {}
    for line in importtime.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].strip()
            if name in IMPORTS_OF_INTEREST and name not in found:
                found[name] = int(parts[1]) / 1e3
    return sorted(found.items(), key=lambda r: -r[1])


def environment(st: Stage):
    """Machine, card, driver and library versions for the report."""
    import hal
    devices, absent = hal.probe_report()
    st.info.update(date_utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), host=platform.node(),
                   cpu=next((d.name for d in devices if d.vendor == "cpu"), platform.machine()), cores=len(os.sched_getaffinity(0)), python=platform.python_version(),
                   numpy=np.__version__, devices=[d.as_dict() for d in devices], absent=absent)
    for mod in ("onnxruntime", "torch", "onnx"):
        try:
            st.info[mod] = __import__(mod).__version__
        except Exception as e:
            st.info[mod] = f"not available ({type(e).__name__})"
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        st.info["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
    except (OSError, subprocess.SubprocessError) as e:
        st.info["nvidia_smi"] = f"not available ({type(e).__name__})"
    print(json.dumps(st.info, indent=1, default=str), flush=True)


STAGES = {"env": environment, "prepare": prepare, "build": build, "kernelos": kernelos_run, "ort": ort_run,
          "torch": torch_run, "first_result": first_result}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.e2e.stages")
    p.add_argument("stage", choices=sorted(STAGES))
    p.add_argument("--dir", required=True)
    p.add_argument("--model", default="all")
    p.add_argument("--device", default="cpu", help="device spec for kernelos / first_result")
    p.add_argument("--gpu-arch", default="", help="build: the GPU target to compile for besides cpu (sm_90)")
    p.add_argument("--result-name", help="results file name (default: the stage)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    st = Stage(args)
    try:
        STAGES[args.stage](st)
    except Exception as e:
        traceback.print_exc()
        st.info["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    st.save(args.result_name or args.stage)
    return 1 if "error" in st.info or any(c.get("error") for c in st.columns) else 0


if __name__ == "__main__":
    sys.exit(main())
