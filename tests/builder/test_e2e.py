"""End to end: `kernelos build` an ONNX model, load the image on a device, run fresh random inputs
and compare with onnxruntime (CPU). Models: MLP, small CNN, transformer block (tests/builder/models.py)."""

import numpy as np
import pytest

from kernelos.model import load_model
from tools.cli import main as kernelos

from .conftest import ort_run, rel_error
from .models import MODELS, random_inputs

RUNS = 3


def _build_and_compare(tmp_path, name, target, device, capsys=None):
    model = MODELS[name]()
    onnx_path, image = tmp_path / f"{name}.onnx", tmp_path / f"{name}.kimg"
    import onnx
    onnx.save(model, onnx_path)
    assert kernelos(["build", str(onnx_path), "-o", str(image), "--target", target]) == 0
    rng = np.random.default_rng(1234)
    errors = []
    with load_model(str(image), device) as m:
        assert m.self_test().passed
        for _ in range(RUNS):
            x = random_inputs(model, rng)
            ref = ort_run(model, x)
            out = m.run(x, poison=True)
            for k in ref:
                assert out[k].shape == ref[k].shape and out[k].dtype == ref[k].dtype
                errors.append(rel_error(out[k], ref[k]))
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
