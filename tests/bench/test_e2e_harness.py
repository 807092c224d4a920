"""The end-to-end harness (bench/e2e) on this machine: its float64 reference against onnxruntime,
the PyTorch versions of the models against the reference (where torch is installed), a quick run
of the whole harness on the MLP with the cpu device, and a stage that overruns its timeout."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.e2e import models
from bench.e2e.measure import rel_error
from bench.e2e.reference import run_float64

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["mlp", "resnet18"])
def test_float64_reference_agrees_with_onnxruntime(name):
    ort = pytest.importorskip("onnxruntime")
    model = models.MODELS[name]()
    x = models.make_input(model)
    assert np.abs(x["x"]).max() > 0
    ref = run_float64(model, x)["y"]
    assert ref.dtype == np.float64
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    assert rel_error(got, ref) < 1e-5
    assert rel_error(got + 1e-3 * np.abs(ref).max(), ref) > 1e-4     # the measure notices a real difference


def test_models_have_the_issue_shapes():
    ops = lambda m: [n.op_type for n in m.graph.node]  # noqa: E731
    mlp, resnet, gpt2 = models.mlp(), models.resnet18(), models.gpt2()
    assert ops(mlp).count("MatMul") == 8 and ops(mlp).count("Relu") == 7
    assert models.weights(mlp)["w0"].shape == (1024, 1024)
    assert ops(resnet).count("Conv") == 20 and ops(resnet).count("Gemm") == 1      # 17 + 3 projections
    assert ops(gpt2).count("LayerNormalization") == 25 and ops(gpt2).count("Softmax") == 12
    assert models.weights(gpt2)["h11.mlp.fc.w"].shape == (768, 3072)


def test_torch_models_match_the_reference():
    torch = pytest.importorskip("torch", reason="torch is not installed here (the GPU machine has it)")
    from bench.e2e.torch_models import BUILDERS
    for name in ("mlp", "resnet18"):
        model = models.MODELS[name]()
        x = models.make_input(model)
        with torch.inference_mode():
            y = BUILDERS[name](models.weights(model), "cpu")(torch.from_numpy(x["x"])).numpy()
        assert rel_error(y, run_float64(model, x)["y"]) < 1e-5


def test_quick_harness_run_on_the_cpu_device(tmp_path):
    r = subprocess.run([sys.executable, "-m", "bench.e2e", "--out", str(tmp_path), "--models", "mlp", "--quick"],
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=300)
    results = json.loads((tmp_path / "results.json").read_text())
    stages = {s["stage"]: s["status"] for s in results["stages"]}
    for stage in ("env", "prepare", "build", "first_result", "ort", "kernelos", "torch"):
        assert stages[stage] == "ok", (stage, stages, r.stdout[-3000:])
    cols = results["table"]["mlp"]
    for key in ("kernelos cpu", "onnxruntime CPU"):
        assert cols[key]["median_us"] > 0 and cols[key]["runs"] >= 3 and cols[key]["rel_error"] < 1e-4, cols[key]
    assert results["infos"]["mlp.first_result"]["first_result_s"] > 0
    assert any("cpu device" in t[0] for t in results["targets"])
    table = (tmp_path / "table.md").read_text()
    assert "kernelos cpu (fp32)" in table and "µs (err" in table
    assert (tmp_path / "logs" / "mlp.profile.cpu.txt").read_text().count("compute") >= 8


def test_a_stage_past_its_timeout_is_killed_and_reported(tmp_path, monkeypatch):
    from bench.e2e import __main__ as harness
    monkeypatch.setattr(harness, "MIN_STAGE_S", 0.0)
    monkeypatch.setitem(harness.STAGE_TIMEOUT_S, "env", 0.01)
    args = harness.argparse.Namespace(out=str(tmp_path), models="mlp", quick=True, budget_s=60.0, device="cpu", no_cpu=False)
    h = harness.Harness(args)
    assert h.run("env") is False
    assert h.stages[0]["status"].startswith("timeout after")
    assert "timeout after" in (tmp_path / "table.md").read_text()


def test_a_broken_report_does_not_stop_the_run(tmp_path, monkeypatch):
    from bench.e2e import __main__ as harness

    def broken(*args):
        raise ValueError("report bug")
    monkeypatch.setattr(harness.report, "write", broken)
    args = harness.argparse.Namespace(out=str(tmp_path), models="mlp", quick=True, budget_s=60.0, device="cpu", no_cpu=False)
    h = harness.Harness(args)
    assert h.run("env") is True
    assert "report bug" in json.loads((tmp_path / "results.json").read_text())["report_error"]


def _fake_results(out: Path, model: str, columns: dict, ref: np.ndarray):
    """results/MODEL.fake.json with one column per key: (median_us, precision, output offset)."""
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "outputs").mkdir(exist_ok=True)
    (out / "results").mkdir(exist_ok=True)
    np.save(out / "models" / f"{model}.ref64.npy", ref)
    cols = []
    for i, (key, (median_us, precision, offset)) in enumerate(columns.items()):
        np.save(out / "outputs" / f"{model}.{i}.npy", (ref + offset).astype(np.float32))
        cols.append({"key": key, "label": key.replace(" TF32", "").replace(" tf32", ""), "precision": precision, "tolerance": 1e-4 if precision == "fp32" else 1e-2,
                     "median_us": median_us, "runs": 100, "output": f"outputs/{model}.{i}.npy", "error": None})
    (out / "results" / f"{model}.fake.json").write_text(json.dumps({"columns": cols, "info": {}}))


def test_report_judges_the_gpu_targets_and_flags_wrong_outputs(tmp_path):
    """The report's GPU paths on made-up cells (no GPU here): targets met / not met, FAIL above tolerance."""
    from bench.e2e import report
    ref = np.linspace(-1, 1, 64)
    _fake_results(tmp_path, "mlp", {"kernelos nv:0": (18.0, "fp32", 0.0), "PyTorch CUDA graph": (51.0, "fp32", 0.0),
                                    "kernelos cpu": (900.0, "fp32", 0.0), "onnxruntime CPU": (1000.0, "fp32", 0.0)}, ref)
    _fake_results(tmp_path, "resnet18", {"kernelos nv:0": (600.0, "fp32", 1e-3), "PyTorch CUDA graph": (1200.0, "fp32", 0.0),
                                         "PyTorch CUDA graph TF32": (480.0, "tf32", 1e-3)}, ref)
    # a TF32 column: compared with the TF32 graph (the fp32 column with the fp32 graph)
    _fake_results(tmp_path, "gpt2", {"kernelos nv:0": (2000.0, "fp32", 0.0), "kernelos nv:0 tf32": (700.0, "tf32", 2e-3),
                                     "PyTorch CUDA graph": (2300.0, "fp32", 0.0), "PyTorch CUDA graph TF32": (800.0, "tf32", 1e-3)}, ref)
    data = report.collect(tmp_path, ["mlp", "resnet18", "gpt2"])
    targets = {t[0]: t[1:] for t in report.targets(data)}
    verdicts = {k: v[1] for k, v in targets.items()}
    assert verdicts["MLP on the GPU <= 20 µs"] == "met"
    # faster than the fp32 graph, but its output is over the fp32 bound: not met
    assert targets["resnet18: below PyTorch CUDA graph (fp32)"] == ("kernelos fp32 600.0 vs 1200.0 µs (output over its error bound)", "NOT met")
    assert verdicts["resnet18: below PyTorch CUDA graph TF32 (tf32)"] == "NOT met"
    assert targets["gpt2: below PyTorch CUDA graph (fp32)"] == ("kernelos fp32 2000.0 vs 2300.0 µs", "met")
    assert targets["gpt2: below PyTorch CUDA graph TF32 (tf32)"] == ("kernelos tf32 700.0 vs 800.0 µs", "met")
    assert verdicts["mlp on the cpu device <= 1.0x onnxruntime CPU"] == "met"
    res = data["table"]["resnet18"]
    assert res["kernelos nv:0"]["ok"] is False and res["PyTorch CUDA graph TF32"]["ok"] is True   # 1e-3 vs 1e-4 / 1e-2
    text = report.markdown(data, [], "cmd")
    assert "**FAIL**" in text and "| mlp | 0.35x |" in text and "| gpt2 | 0.87x | 0.88x |" in text
    assert "kernelos nv:0 (tf32)" in text


def test_a_dead_tf32_stage_leaves_its_column_with_the_reason(tmp_path):
    """The GPU's TF32 column (tf32 image, result kernelos.nv-0.tf32) is marked like the fp32 one."""
    from bench.e2e import __main__ as harness
    args = harness.argparse.Namespace(out=str(tmp_path), models="gpt2", quick=True, budget_s=60.0, device="nv:0", no_cpu=True)
    h = harness.Harness(args)
    for name in ("kernelos.nv-0", "kernelos.nv-0.tf32"):
        h._mark_columns("gpt2", "kernelos", name, "timeout after 90 s (killed)")
    cols = {c["key"]: c for n in ("kernelos.nv-0", "kernelos.nv-0.tf32")
            for c in json.loads((tmp_path / "results" / f"gpt2.{n}.json").read_text())["columns"]}
    assert {k: (c["label"], c["precision"]) for k, c in cols.items()} == \
        {"kernelos nv:0": ("kernelos nv:0", "fp32"), "kernelos nv:0 tf32": ("kernelos nv:0", "tf32")}
    assert all("timeout after 90 s" in c["error"] for c in cols.values())
