"""End to end: `kernelos build` an ONNX model, `kernelos run` the image on a device with fresh random
inputs and compare with onnxruntime (CPU); also the image's boot self-test and a run with poisoned
activations through the Python API. Models: MLP, small CNN, transformer block (tests/builder/models.py)."""

import numpy as np
import onnx
import pytest

from kernelos.model import load_model
from tools.cli import main as kernelos

from .conftest import ort_run, rel_error
from .models import MODELS, random_inputs

RUNS = 3


def _compare(out, ref) -> float:
    assert out.shape == ref.shape and out.dtype == ref.dtype
    return rel_error(out, ref)


def _build_and_compare(tmp_path, name, target, device):
    """Max relative error over RUNS `kernelos run` inferences and one poisoned API run."""
    model = MODELS[name]()
    onnx_path, image = tmp_path / f"{name}.onnx", tmp_path / f"{name}.kimg"
    onnx.save(model, onnx_path)
    assert kernelos(["build", str(onnx_path), "-o", str(image), "--target", target]) == 0
    rng = np.random.default_rng(1234)
    errors = []
    for k in range(RUNS):
        x = random_inputs(model, rng)
        args = ["run", str(image), "--device", device, "--output-dir", str(tmp_path / f"out{k}")]
        for n, v in x.items():
            np.save(tmp_path / f"{n}{k}.npy", v)
            args += ["--input", f"{n}={tmp_path / f'{n}{k}.npy'}"]
        assert kernelos(args) == 0
        errors += [_compare(np.load(tmp_path / f"out{k}" / f"{o}.npy"), r) for o, r in ort_run(model, x).items()]
    with load_model(str(image), device) as m:
        assert m.self_test().passed
        x = random_inputs(model, rng)
        out = m.run(x, poison=True)
        errors += [_compare(out[o], r) for o, r in ort_run(model, x).items()]
    return max(errors)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_matches_onnxruntime_on_cpu(tmp_path, name, capsys):
    err = _build_and_compare(tmp_path, name, "cpu", "cpu")
    captured = capsys.readouterr()
    assert "compile [" in captured.err and "image write" in captured.err       # progress on stderr
    assert "cpu-x86_64:" in captured.out and "arena" in captured.out            # the summary
    print(f"{name}: max relative error vs onnxruntime {err:.2e}")
    assert err <= 1e-4


@pytest.mark.nvidia
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_matches_onnxruntime_on_nvidia(tmp_path, name, nvidia_device):
    spec, arch = nvidia_device
    err = _build_and_compare(tmp_path, name, arch, spec)
    print(f"{name} on {spec} ({arch}): max relative error vs onnxruntime {err:.2e}")
    assert err <= 1e-4
