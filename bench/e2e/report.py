"""The harness's report: DIR/table.md (the tables for BENCHMARKS.md) and DIR/results.json, rebuilt
from DIR/results/*.json and the stage log after every stage, so a run cut short still leaves what it
measured. Rows are models, columns frameworks (each states its math precision); a cell is the
median latency per inference in µs and the output's max relative error vs the float64 reference
(max |out - ref| / max |ref|), flagged FAIL above the column's tolerance (fp32 1e-4, TF32 1e-2)."""

import json
from pathlib import Path

import numpy as np

from .measure import rel_error

MODEL_TITLES = {"mlp": "MLP 8x1024, batch 1", "resnet18": "ResNet-18 shape, 224x224, batch 1",
                "gpt2": "GPT-2-small shape, 12 x d768, seq 128, batch 1"}
TARGET_MLP_US, TARGET_FIRST_RESULT_S, TARGET_CPU_RATIO = 20.0, 0.25, 1.0


def _column_rank(key: str) -> tuple:
    """kernelos on a GPU, PyTorch CUDA, onnxruntime CUDA, then the cpu columns."""
    gpu = not (key.endswith(" cpu") or key.startswith("onnxruntime CPU") or key == "PyTorch eager cpu")
    order = ("kernelos", "PyTorch CUDA graph", "PyTorch CUDA graph TF32", "PyTorch eager", "onnxruntime")
    family = next((i for i, p in reversed(list(enumerate(order))) if key.startswith(p)), len(order))
    return (0 if gpu else 1, family, key)


def collect(out: Path, models) -> dict:
    """model -> {column key -> column dict with rel_error / ok added}; plus the stages' infos."""
    table, infos = {}, {}
    for m in models:
        ref_path = out / "models" / f"{m}.ref64.npy"
        ref = np.load(ref_path) if ref_path.exists() else None
        cols = {}
        for f in sorted((out / "results").glob(f"{m}.*.json")):
            data = json.loads(f.read_text())
            infos[f.stem] = data.get("info", {})
            for col in data.get("columns", []):
                if col.get("output") and ref is not None:
                    col["rel_error"] = rel_error(np.load(out / col["output"]), ref)
                    col["ok"] = col["rel_error"] <= col["tolerance"]
                cols[col["key"]] = col
        table[m] = cols
    env = out / "results" / "all.env.json"
    if env.exists():
        infos["env"] = json.loads(env.read_text()).get("info", {})
    return {"table": table, "infos": infos}


def _cell(col, notes: list) -> str:
    if col is None:
        return ""
    if col.get("median_us") is not None:
        err = col.get("rel_error")
        err_s = "no reference" if err is None else f"err {err:.1e}" + ("" if col.get("ok") else " **FAIL**")
        return f"**{col['median_us']:.1f}** µs ({err_s})"
    note = col.get("error") or col.get("skipped") or "no result"
    if note not in notes:
        notes.append(note)
    return f"{'failed' if col.get('error') else 'skipped'} [{notes.index(note) + 1}]"


def _ratio(a, b) -> str:
    if not a or not b or a.get("median_us") is None or b.get("median_us") is None:
        return "n/a"
    return f"{a['median_us'] / b['median_us']:.2f}x"


def _gpu_kernelos(cols: dict):
    return next((c for k, c in cols.items() if k.startswith("kernelos ") and not k.endswith(" cpu")), None)


def targets(data: dict) -> list:
    """[(target, figure, verdict)] for issue 9's targets, from this run's cells."""
    t, rows = data["table"], []
    fr = data["infos"].get("mlp.first_result", {})

    def met(ok):
        return "met" if ok else "NOT met"
    mlp = t.get("mlp", {})
    k = _gpu_kernelos(mlp)
    if k and k.get("median_us") is not None:
        rows.append((f"MLP on the GPU <= {TARGET_MLP_US:.0f} µs", f"{k['median_us']:.1f} µs", met(k["median_us"] <= TARGET_MLP_US)))
    for m in ("resnet18", "gpt2"):
        cols = t.get(m, {})
        k = _gpu_kernelos(cols)
        for ref_key in ("PyTorch CUDA graph", "PyTorch CUDA graph TF32"):
            ref = cols.get(ref_key)
            if k and k.get("median_us") is not None and ref and ref.get("median_us") is not None:
                rows.append((f"{m}: below {ref_key} ({ref['precision']})", f"{k['median_us']:.1f} vs {ref['median_us']:.1f} µs",
                             met(k["median_us"] < ref["median_us"])))
    if fr.get("first_result_s") is not None:
        rows.append((f"process start -> first correct MLP output ({fr.get('device')}) <= {TARGET_FIRST_RESULT_S} s",
                     f"{fr['first_result_s']:.3f} s", met(fr["first_result_s"] <= TARGET_FIRST_RESULT_S)))
    for m in ("mlp", "resnet18"):
        cols = t.get(m, {})
        k, o = cols.get("kernelos cpu"), cols.get("onnxruntime CPU")
        if k and o and k.get("median_us") is not None and o.get("median_us") is not None:
            r = k["median_us"] / o["median_us"]
            rows.append((f"{m} on the cpu device <= {TARGET_CPU_RATIO:.1f}x onnxruntime CPU", f"{r:.2f}x",
                         met(r <= TARGET_CPU_RATIO)))
    return rows


def markdown(data: dict, stages: list, command: str) -> str:
    env = data["infos"].get("env", {})
    gpus = [d for d in env.get("devices", []) if d.get("vendor") != "cpu"]
    card = "; ".join(f"{d['name']} ({d['arch']}; " + ", ".join(f"{k} {v}" for k, v in d.get("extra", {}).items()) + ")"
                     for d in gpus) or "no GPU"
    lines = [f"Date: {env.get('date_utc', '?')}. Host {env.get('host', '?')}: {env.get('cpu', '?')}, {env.get('cores', '?')} cores; "
             f"GPU: {card}; nvidia-smi: {env.get('nvidia_smi', 'n/a')}.",
             f"Python {env.get('python', '?')}, numpy {env.get('numpy', '?')}, onnxruntime {env.get('onnxruntime', '?')}, "
             f"torch {env.get('torch', '?')}.", f"Command: `{command}`", ""]
    table, notes = data["table"], []
    keys = sorted({k for cols in table.values() for k in cols}, key=_column_rank)
    header = {k: next(c for cols in table.values() for kk, c in cols.items() if kk == k) for k in keys}
    # columns skipped for every model (no torch, no CUDA provider) are listed once instead of shown
    not_run = {k: header[k]["skipped"] for k in keys
               if all(cols.get(k, {}).get("skipped") for cols in table.values())}
    keys = [k for k in keys if k not in not_run]
    lines.append("| model | " + " | ".join(f"{header[k]['label']} ({header[k]['precision']})" for k in keys) + " |")
    lines.append("|---|" + "---|" * len(keys))
    for m, cols in table.items():
        lines.append(f"| {MODEL_TITLES.get(m, m)} | " + " | ".join(_cell(cols.get(k), notes) for k in keys) + " |")
    lines.append("")
    lines.append("Cells: median latency per inference (host sync each time) and max |out - ref| / max |ref| vs the "
                 "float64 reference (bench/e2e/reference.py). kernelos figures include the input copy in and the "
                 "output copy out; PyTorch's CUDA columns keep input and output on the GPU.")
    lines += [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    lines += [f"Not run: {header[k]['label']} ({header[k]['precision']}): {why}." for k, why in not_run.items()]
    lines += ["", "| model | kernelos GPU / PyTorch CUDA graph fp32 | / TF32 | kernelos cpu / onnxruntime CPU |", "|---|---|---|---|"]
    for m, cols in table.items():
        k = _gpu_kernelos(cols)
        lines.append(f"| {m} | {_ratio(k, cols.get('PyTorch CUDA graph'))} | {_ratio(k, cols.get('PyTorch CUDA graph TF32'))} "
                     f"| {_ratio(cols.get('kernelos cpu'), cols.get('onnxruntime CPU'))} |")
    lines += ["", "| target (issue 9) | this run | |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in targets(data)]
    fr = data["infos"].get("mlp.first_result", {})
    if fr.get("first_result_s") is not None:
        lines += ["", f"First result: `{fr.get('command')}`, {fr.get('repeats')} fresh processes: median "
                      f"{fr['first_result_s']:.3f} s from process start (boot's own clock), {fr['process_wall_s']:.3f} s "
                      f"wall around the process; a bare `python -S -c pass` takes {fr['bare_python_s']:.3f} s."]
        if fr.get("site_first_result_s") is not None:
            lines.append(f"Without -S (site initialisation of this interpreter): {fr['site_first_result_s']:.3f} s.")
        if fr.get("cli_first_result_s") is not None:
            lines.append(f"Through the whole CLI (`python -m kernelos boot`): {fr['cli_first_result_s']:.3f} s.")
        elif fr.get("cli_error"):
            lines.append(f"Through the whole CLI (`python -m kernelos boot`): {fr['cli_error']}.")
        if fr.get("imports_top"):
            lines.append("Start-up imports (one `-X importtime` run, cumulative ms): "
                         + ", ".join(f"{m} {ms:.0f}" for m, ms in fr["imports_top"])
                         + " (numpy and kernelos.model load on boot's helper thread, beside the image check and "
                           "the device bring-up: see the log's 'waited ... for numpy' line for any time they cost).")
    prof = [(name, info["profile"]) for name, info in data["infos"].items() if "profile" in info]
    if prof:
        lines += ["", "| kernelos stage | device time (profiled) | run() profiled | run() plain | submit | wait | top kernels (µs) |",
                  "|---|---|---|---|---|---|---|"]
        for name, p in prof:
            top = ", ".join(f"{first} ({k[:10]}) x{c} {t:.0f}" for k, c, t, first in p.get("by_kernel_top", [])[:3])
            lines.append(f"| {name} | {p['device_us']:.1f} | {p['run_us']:.1f} | {p['plain_run_us']:.1f} | "
                         f"{p['submit_us']:.1f} | {p['wait_us']:.1f} | {top} |")
        lines.append("Per-node timelines: logs/MODEL.profile.DEVICE.txt (`kernelos boot IMAGE --profile`).")
    lines += ["", "| stage | model | device | status | s | log |", "|---|---|---|---|---|---|"]
    lines += [f"| {s['stage']} | {s['model']} | {s.get('device', '')} | {s['status']} | {s['seconds']:.1f} | {s['log']} |"
              for s in stages]
    return "\n".join(lines) + "\n"


def write(out: Path, models, stages: list, command: str):
    data = collect(out, models)
    (out / "table.md").write_text(markdown(data, stages, command))
    (out / "results.json").write_text(json.dumps({"command": command, "stages": stages, "targets": targets(data), **data},
                                                 indent=1, default=str))
