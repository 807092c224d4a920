"""The build-time math precision (`kernelos build --precision fp32|tf32`): recorded per target in the
image manifest (a cpu target in a tf32 image computes fp32), shown by `kernelos inspect` and the boot
log, with the looser TF32 self-test tolerance; older images without the field read as fp32; bad
values are typed errors."""

import json

import numpy as np
import onnx
import pytest

from hal.errors import GraphError, ImageError
from kernelos.builder.build import CPU_TARGET, build_image, lower_model
from kernelos.image import read_image, write_image
from kernelos.image import manifest as mf
from kernelos.image import writer
from kernelos.model import load_model
from tools.cli import main as kernelos

from .conftest import ort_run, rel_error
from .models import MODELS, random_inputs


def test_tf32_image_records_precision_per_target_and_cpu_stays_fp32(tmp_path, nvrtc, capsys):  # noqa: F811
    model = MODELS["cnn"]()
    onnx.save(model, tmp_path / "cnn.onnx")
    fp32 = build_image(model, tmp_path / "fp32.kimg", ["cpu", "sm_90"])
    assert kernelos(["build", str(tmp_path / "cnn.onnx"), "-o", str(tmp_path / "tf32.kimg"), "--target", "cpu",
                     "--target", "sm_90", "--precision", "tf32"]) == 0     # and the cpu self-test passed
    out = capsys.readouterr().out
    assert f"{CPU_TARGET}:" in out and "math fp32" in out and "sm_90:" in out and "math tf32" in out
    with read_image(tmp_path / "tf32.kimg") as im, read_image(tmp_path / "fp32.kimg") as im32:
        assert im.precision == {CPU_TARGET: "fp32", "sm_90": "tf32"} == im.manifest["precision"]
        assert im32.precision == {CPU_TARGET: "fp32", "sm_90": "fp32"}
        scale = max(float(np.abs(g).max()) for g in im.golden_outputs.values())
        assert im.golden_rtol == mf.TF32_REL_TOL and im.golden_atol == pytest.approx(mf.TF32_REL_TOL * scale)
        assert (im32.golden_atol, im32.golden_rtol) == (mf.DEFAULT_ATOL, mf.DEFAULT_RTOL)
    # the cpu kernels are the fp32 build's (cpu computes fp32); the GPU GEMMs are TF32
    low = {p: lower_model(model, [CPU_TARGET, "sm_90"], precision=p) for p in ("fp32", "tf32")}
    kernels = {p: [lo.specs[n.kernel] for n in lo.dag.nodes if hasattr(n, "kernel")] for p, lo in low.items()}
    assert [s.sources["cpu"] for s in kernels["fp32"]] == [s.sources["cpu"] for s in kernels["tf32"]]
    assert {s.cuda_variant for s in kernels["tf32"]} - {s.cuda_variant for s in kernels["fp32"]} == {"tf32"}
    assert fp32.precision == {CPU_TARGET: "fp32", "sm_90": "fp32"}
    assert kernelos(["inspect", str(tmp_path / "tf32.kimg")]) == 0
    assert f"math   {CPU_TARGET} fp32, sm_90 tf32" in capsys.readouterr().out
    assert kernelos(["inspect", "--json", str(tmp_path / "tf32.kimg")]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == {CPU_TARGET: "fp32", "sm_90": "tf32"}
    x = random_inputs(model, np.random.default_rng())
    with load_model(str(tmp_path / "tf32.kimg"), "cpu") as m:
        ref = ort_run(model, x)
        out = m.run(x, poison=True)
        assert max(rel_error(out[k], r) for k, r in ref.items()) <= 1e-4     # fp32 on the cpu


def test_split_k_gemm_nodes_compute_fp32_on_the_cpu(tmp_path, monkeypatch):
    """A tf32 image with cross-block split-K GEMMs (forced): on the cpu the first node of each split
    GEMM does nothing and its reduce node, right after, runs the whole fp32 GEMM (the fp32 build's
    cpu kernel), so the cpu output stays within fp32 accuracy of onnxruntime."""
    from kernelos.builder import gemm_tf32
    monkeypatch.setattr(gemm_tf32, "FORCE", "32x32w4s3k16")
    model = MODELS["cnn"]()
    low = {p: lower_model(model, [CPU_TARGET, "sm_90"], precision=p) for p in ("fp32", "tf32")}
    kernels = {p: [lo.specs[n.kernel] for n in lo.dag.nodes if hasattr(n, "kernel")] for p, lo in low.items()}
    split = [s for s in kernels["tf32"] if s.then is not None]
    assert split and all("KOS_KERNEL" in s.sources["cpu"] and "args_t" not in s.sources["cpu"] for s in split)
    assert [s.sources["cpu"] for s in kernels["fp32"]] == [s.sources["cpu"] for s in kernels["tf32"] if s.then is None]
    build_image(model, tmp_path / "split.kimg", ["cpu"], precision="tf32")
    x = random_inputs(model, np.random.default_rng())
    with load_model(str(tmp_path / "split.kimg"), "cpu") as m:
        out, ref = m.run(x, poison=True), ort_run(model, x)
        assert max(rel_error(out[k], r) for k, r in ref.items()) <= 1e-4


def test_tf32_build_for_the_cpu_alone_keeps_fp32_math_and_tolerance(tmp_path):
    result = build_image(MODELS["mlp"](), tmp_path / "m.kimg", ["cpu"], precision="tf32", verify=True)
    assert result.precision == {CPU_TARGET: "fp32"}
    with read_image(result.path) as im:
        assert (im.golden_atol, im.golden_rtol) == (mf.DEFAULT_ATOL, mf.DEFAULT_RTOL)


def test_boot_log_states_the_precision(tmp_path, capsys):
    build_image(MODELS["mlp"](), tmp_path / "m.kimg", ["cpu"])
    assert kernelos(["boot", str(tmp_path / "m.kimg"), "--device", "cpu", "--count", "0"]) == 0
    assert f"for {CPU_TARGET} (math fp32)" in capsys.readouterr().out


def test_image_without_precision_reads_as_fp32(tmp_path, monkeypatch, capsys):
    """An image written before the field existed (the manifest without "precision")."""
    encode = mf.encode
    monkeypatch.setattr(writer.mf, "encode", lambda doc: encode({k: v for k, v in doc.items() if k != "precision"}))
    build_image(MODELS["mlp"](), tmp_path / "old.kimg", ["cpu"])
    with read_image(tmp_path / "old.kimg") as im:
        assert "precision" not in im.manifest and im.precision == {CPU_TARGET: "fp32"}
    assert kernelos(["inspect", str(tmp_path / "old.kimg")]) == 0
    assert f"math   {CPU_TARGET} fp32 (no precision field: an older image, fp32)" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [{"cpu-x86_64": "fp16"}, {"cpu-x86_64": 32}, ["tf32"], {}, {"sm_90": "tf32"}])
def test_manifest_precision_must_name_each_target_with_a_known_value(bad):
    with pytest.raises(ImageError, match="manifest.precision"):
        mf.target_precisions({"targets": ["cpu-x86_64"], "precision": bad})


def test_bad_precision_is_a_clear_error(tmp_path, capsys):
    model = MODELS["mlp"]()
    with pytest.raises(GraphError, match="unknown math precision 'fp16'.*fp32, tf32"):
        build_image(model, tmp_path / "m.kimg", ["cpu"], precision="fp16")
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(SystemExit) as e:
        kernelos(["build", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.kimg"), "--precision", "bf16"])
    assert e.value.code == 2 and "invalid choice: 'bf16'" in capsys.readouterr().err
    low_args = build_image(model, tmp_path / "ok.kimg", ["cpu"])
    with read_image(low_args.path) as im:
        dag, weights = im.dag, dict(im.weights)
        gin, gout = im.golden_inputs, im.golden_outputs
        with pytest.raises(ImageError, match="one of fp32, tf32"):
            write_image(tmp_path / "bad.kimg", dag, weights, gin, gout, precision={CPU_TARGET: "fp16"})
        with pytest.raises(ImageError, match="not built for"):
            write_image(tmp_path / "bad.kimg", dag, weights, gin, gout, precision={"sm_90": "tf32"})
    assert not (tmp_path / "bad.kimg").exists()
