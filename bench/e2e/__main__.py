"""`python -m bench.e2e --out DIR [--device nv:0] [--models mlp,resnet18,gpt2] [--quick]`: issue 9's
end-to-end harness. Builds images for the models and runs, on the same inputs in the same run,
kernelos on the GPU (--device; fp32 images, and tf32 images for the CNN and GPT-2: a TF32 column)
and on the cpu device, PyTorch eager / CUDA graph (fp32, TF32) where torch is installed, and
onnxruntime (CPU; CUDA where installed); checks every output against a float64 reference; writes
DIR/table.md, DIR/results.json, DIR/logs/*.log.

Each stage (bench/e2e/stages.py) runs in its own process under a hard timeout, bounded also by the
whole run's --budget-s; a stage that fails, hangs or is skipped leaves the reason in the table and
the run goes on. The table is rewritten after every stage.
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from . import report

REPO = Path(__file__).resolve().parents[2]
STAGE_TIMEOUT_S = {"env": 60, "prepare": 90, "build": 180, "kernelos": 90, "ort": 90, "torch": 150,
                   "first_result": 90}
MIN_STAGE_S = 5.0
TF32_MODELS = ("resnet18", "gpt2")   # also built as tf32 images (a TF32 column vs PyTorch's TF32 graph);
                                     # the batch-1 MLP is GEMVs, fp32 in either image


class Harness:
    def __init__(self, args):
        self.args, self.out = args, Path(args.out).resolve()
        self.deadline = time.monotonic() + args.budget_s
        self.stages, self.models = [], args.models.split(",")
        self.command = "python -m bench.e2e " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        for stale in ("results", "outputs"):    # a table only ever shows this run's results
            shutil.rmtree(self.out / stale, ignore_errors=True)
        (self.out / "logs").mkdir(parents=True, exist_ok=True)

    def run(self, stage: str, model: str = "all", device: str = "", extra=(), result_name: str = "") -> bool:
        """Run one stage in a child process; record its status; True when it finished without error."""
        name = result_name or stage
        log = self.out / "logs" / f"{model}.{name}.log"
        entry = {"stage": stage, "model": model, "device": device, "log": str(log.relative_to(self.out)), "seconds": 0.0}
        timeout_s = min(STAGE_TIMEOUT_S[stage], self.deadline - time.monotonic())
        if timeout_s < MIN_STAGE_S:
            entry["status"] = "skipped: the run's time budget (--budget-s) is spent"
            return self._done(entry, model, stage, name)
        cmd = [sys.executable, "-m", "bench.e2e.stages", stage, "--dir", str(self.out), "--model", model,
               "--result-name", name, *extra] + (["--device", device] if device else []) + (["--quick"] if self.args.quick else [])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        t0 = time.monotonic()
        print(f"[{self._elapsed():6.1f} s] {stage} {model} {device} (timeout {timeout_s:.0f} s) -> {entry['log']}", flush=True)
        with open(log, "w") as f:
            p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                rc = p.wait(timeout=timeout_s)
                entry["status"] = "ok" if rc == 0 else f"error (exit {rc})"
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)       # the stage and anything it started
                p.wait()
                entry["status"] = f"timeout after {timeout_s:.0f} s (killed)"
        entry["seconds"] = time.monotonic() - t0
        return self._done(entry, model, stage, name)

    def _done(self, entry, model, stage, name) -> bool:
        result = self.out / "results" / f"{model}.{name}.json"
        if result.exists():
            data = json.loads(result.read_text())
            failed = [c["key"] for c in data.get("columns", []) if c.get("error")]
            if data.get("info", {}).get("error"):
                entry["error"] = data["info"]["error"]
                entry["status"] = f"error: {entry['error'][:120]}"
            elif failed:
                entry["status"] = f"error: column(s) {', '.join(failed)} failed (see the table's notes)"
        elif entry["status"] == "ok":
            entry["status"] = "error: no results file"
        if not entry["status"].startswith(("ok", "skipped")):
            self._mark_columns(model, stage, name, entry["status"])
        print(f"[{self._elapsed():6.1f} s]   {entry['status']} ({entry['seconds']:.1f} s)", flush=True)
        self.stages.append(entry)
        self.write_report()
        return entry["status"] == "ok"

    def write_report(self):
        """Rewrite the table; a bug in the report must not stop the measurements (the stage results
        stay in results/*.json)."""
        try:
            report.write(self.out, self.models, self.stages, self.command)
        except Exception:
            traceback.print_exc()
            (self.out / "results.json").write_text(json.dumps({"command": self.command, "stages": self.stages,
                                                               "report_error": traceback.format_exc()}, indent=1))

    def _mark_columns(self, model, stage, name, status):
        """A stage that died leaves a results file whose columns say why (so the table shows it)."""
        if stage == "kernelos":     # result name kernelos.SPEC[.tf32]
            _, spec, *prec = name.split(".")
            keys = [(f"kernelos {spec.replace('-', ':')}", prec[0] if prec else "fp32")]
        else:
            keys = {"torch": [("PyTorch CUDA graph", "fp32"), ("PyTorch CUDA graph TF32", "tf32")],
                    "ort": [("onnxruntime CPU", "fp32")]}.get(stage, [])
        result = self.out / "results" / f"{model}.{name}.json"
        data = json.loads(result.read_text()) if result.exists() else {"model": model, "stage": name, "columns": [], "info": {}}
        have = {c["key"] for c in data["columns"]}
        for label, prec in keys:
            k = label if prec == "fp32" or label.startswith("PyTorch") else f"{label} {prec}"
            if k not in have:
                data["columns"].append({"key": k, "label": label.replace(" TF32", ""), "precision": prec,
                                        "error": f"stage {stage} {status}; see logs/{model}.{name}.log"})
        result.parent.mkdir(parents=True, exist_ok=True)
        result.write_text(json.dumps(data, indent=1, default=str))

    def _elapsed(self) -> float:
        return self.args.budget_s - (self.deadline - time.monotonic())

    def gpu_arch(self) -> str:
        env = self.out / "results" / "all.env.json"
        if self.args.device == "cpu" or not env.exists():
            return ""
        devices = json.loads(env.read_text()).get("info", {}).get("devices", [])
        return next((d["arch"] for d in devices if d["spec"] == self.args.device), "")

    def main(self) -> int:
        self.run("env")
        gpu = self.args.device if self.args.device != "cpu" else ""
        arch = self.gpu_arch()
        if gpu and not arch:
            print(f"device {gpu} not found by hal.probe (see logs/all.env.log): GPU columns will fail", flush=True)
        for m in self.models:
            if not self.run("prepare", m):
                continue
            built = self.run("build", m, extra=["--gpu-arch", arch] if arch else [])
            if built and m == "mlp":
                self.run("first_result", m, gpu or "cpu")
            if built and gpu:
                self.run("kernelos", m, gpu, result_name=f"kernelos.{gpu.replace(':', '-')}")
            if gpu and arch and m in TF32_MODELS and self.run("build", m, extra=["--gpu-arch", arch, "--precision", "tf32"],
                                                              result_name="build.tf32"):
                self.run("kernelos", m, gpu, extra=["--precision", "tf32"], result_name=f"kernelos.{gpu.replace(':', '-')}.tf32")
            self.run("torch", m)
            self.run("ort", m)
            if built and not self.args.no_cpu:
                self.run("kernelos", m, "cpu", result_name="kernelos.cpu")
        table = self.out / "table.md"
        print(table.read_text() if table.exists() else "no table.md (see results.json's report_error)", flush=True)
        return 0 if all(s["status"] == "ok" for s in self.stages) else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="directory for table.md, results.json, logs/, images/, ...")
    p.add_argument("--device", default="cpu", help="the GPU for the kernelos GPU column (nv:0); cpu: cpu columns only")
    p.add_argument("--models", default="mlp,resnet18,gpt2")
    p.add_argument("--quick", action="store_true", help="few timed runs (a smoke run)")
    p.add_argument("--no-cpu", action="store_true", help="skip the kernelos cpu-device columns")
    p.add_argument("--budget-s", type=float, default=540.0, help="the whole run's time limit; later stages are skipped")
    args = p.parse_args(argv)
    unknown = set(args.models.split(",")) - set(report.MODEL_TITLES)
    if unknown:
        p.error(f"unknown model(s) {sorted(unknown)}; have {sorted(report.MODEL_TITLES)}")
    return Harness(args).main()


if __name__ == "__main__":
    sys.exit(main())
