"""Loaded models on the cpu device: replay correctness against numpy float64 over 10,000 fresh
inputs, staged and unstaged I/O, self-test, input checks, O(1) host cost per replay, recovery after
an injected timeout and an injected fault, node-by-node stepping."""

import numpy as np
import pytest

import hal
from hal.errors import DeviceClosed, DeviceFault, DeviceTimeout, ImageError, InvalidArgument
from kernelos.image import write_image
from kernelos.model import load_model

from .models import (chain_image, compile_mlp_kernels, misbehave_image, mlp_dag, mlp_inputs, mlp_reference,
                     mlp_weights)

SUBMIT_ROUNDS, SUBMITS_PER_ROUND = 6, 50
MAX_SUBMIT_SLOPE_S = 50e-9  # per launch; 252 extra launches may add 12.6 us (Python work per launch: >= 1 us)


def _check(out, ref):
    assert sorted(out) == sorted(ref)
    for name in ref:
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_replay_10000_inferences_with_fresh_inputs(mlp_image):
    path, weights = mlp_image
    rng = np.random.default_rng(1234)
    with load_model(path, "cpu") as model:
        assert model.submits_per_inference == 2  # compute queue + copy queue (the DAG has a copy)
        for i in range(10_000):
            x = mlp_inputs(4, rng)
            _check(model.run(x, poison=(i % 97 == 0)), mlp_reference(x["x"], weights))
        assert model.count == 10_000


def test_staged_io_through_the_copy_queue(mlp_image):
    path, weights = mlp_image
    rng = np.random.default_rng(99)
    with load_model(path, "cpu", stage_io=True) as model:
        for _ in range(1000):
            x = mlp_inputs(4, rng)
            _check(model.run(x, poison=True), mlp_reference(x["x"], weights))


def test_inputs_written_by_the_stream_and_outputs_in_place(mlp_image):
    """stage_io=False: the compute stream writes the input (CommandStream.write) and the kernel and the
    DAG copy write the outputs straight into the host-visible I/O buffer (the GPU's small-model path)."""
    path, weights = mlp_image
    rng = np.random.default_rng(98)
    with load_model(path, "cpu", stage_io=False) as model:
        assert not model._stage and set(model._written) == set(model.inputs)
        assert set(model._places) == set(model.outputs)
        assert model.submits_per_inference == 2  # the DAG's copy still runs on the copy queue
        for i in range(1000):
            x = mlp_inputs(4, rng)
            _check(model.run(x, poison=i % 10 == 0), mlp_reference(x["x"], weights))


def test_self_test_passes_and_detects_a_wrong_golden(mlp_image, tmp_path):
    path, _ = mlp_image
    with load_model(path, "cpu") as model:
        result = model.self_test()
        assert result.passed and result.max_abs_error < 1e-5 and "PASS" in str(result)
    # Same kernels and weights, golden output computed with other weights: the self-test must fail.
    bad = tmp_path / "bad.kimg"
    x = mlp_inputs(4, np.random.default_rng(1))
    wrong = {k: v.astype(np.float32) for k, v in mlp_reference(x["x"], mlp_weights(seed=7)).items()}
    write_image(bad, mlp_dag(4, compile_mlp_kernels()), mlp_weights(seed=0), x, wrong)
    with load_model(bad, "cpu") as model:
        result = model.self_test()
        assert not result.passed and result.max_abs_error > 1e-3 and "FAIL" in str(result)


@pytest.mark.parametrize("inputs, message", [
    ({}, r"takes inputs \{x: float32\[4, 16\]\}; got \[\]"),
    ({"x": np.zeros((4, 16), np.float32), "z": np.zeros(1)}, r"got \['x', 'z'\]"),
    ({"y": np.zeros((4, 16), np.float32)}, r"takes inputs \{x: float32\[4, 16\]\}; got \['y'\]"),
    ({"x": np.zeros((4, 16), np.float64)}, r"input 'x' is float64\[4, 16\]; model 'mlp2' takes \{x: float32\[4, 16\]\}"),
    ({"x": np.zeros((16, 4), np.float32)}, r"input 'x' is float32\[16, 4\]"),
    ({"x": [[0.0] * 16] * 4}, r"input 'x' is list"),
    ([np.zeros((4, 16), np.float32)], r"got list"),
    ({"x": np.zeros((4, 16), np.float32), 0: np.zeros(1)}, r"got \[0, 'x'\]"),  # keys that do not sort together
])
def test_wrong_inputs_name_the_expected_ones(mlp_image, inputs, message):
    path, weights = mlp_image
    with load_model(path, "cpu") as model:
        with pytest.raises(InvalidArgument, match=message):
            model.run(inputs)
        x = mlp_inputs(4, np.random.default_rng(0))
        _check(model.run(x), mlp_reference(x["x"], weights))  # still usable


def test_image_without_kernels_for_the_device_is_refused(tmp_path, cpu_ready):
    path = tmp_path / "gpu.kimg"
    dag = mlp_dag(4, {"dense": {"sm_90": b"cubin"}}, target="sm_90")
    x = {"x": np.ones((4, 16), np.float32)}
    write_image(path, dag, mlp_weights(), x, {k: v.astype(np.float32) for k, v in mlp_reference(x["x"], mlp_weights()).items()})
    with pytest.raises(ImageError, match=r"has kernels for \['sm_90'\]; the device runs \['cpu-x86_64'\]"):
        load_model(path, "cpu")


def test_non_contiguous_inputs_are_accepted(mlp_image):
    path, weights = mlp_image
    with load_model(path, "cpu") as model:
        big = np.random.default_rng(3).standard_normal((16, 8), dtype=np.float32).T.copy()  # (8, 16)
        x = {"x": big[::2]}  # strided view of shape (4, 16)
        assert not x["x"].flags.c_contiguous
        _check(model.run(x), mlp_reference(x["x"], weights))


def test_host_cost_of_a_replay_does_not_grow_with_kernels(tmp_path, cpu_ready):
    """Time in submit() for a 4-launch and a 256-launch chain: the same O(1) work, so the extra host
    cost per extra launch stays under MAX_SUBMIT_SLOPE_S (encoding or pushing each launch at submit
    costs over 1 us a launch). Each chain's cost is the fastest of its submits: load on a shared
    machine only ever adds time (medians of a whole round reached 35 us on the 2-core dev VM under
    load), while work done per launch is in every submit, the fastest included. Both models replay
    in alternating rounds so a burst of load does not fall on one of them only."""
    ks = (4, 256)
    models = {}
    try:
        for k in ks:
            chain_image(tmp_path / f"chain{k}.kimg", k)
            models[k] = load_model(tmp_path / f"chain{k}.kimg", "cpu")
            assert models[k].submits_per_inference == 1
        x = {"x": np.random.default_rng().standard_normal(16, dtype=np.float32)}
        fastest = dict.fromkeys(ks, float("inf"))
        for _ in range(SUBMIT_ROUNDS):
            for k, model in models.items():
                for _ in range(SUBMITS_PER_ROUND):
                    out = model.run(x)
                    fastest[k] = min(fastest[k], model._recorded.submit_s)
                np.testing.assert_allclose(out["y"], x["x"].astype(np.float64) + k, rtol=1e-5)
    finally:
        for model in models.values():
            model.close()
    slope_s = (fastest[256] - fastest[4]) / (256 - 4)
    assert slope_s < MAX_SUBMIT_SLOPE_S, fastest


def test_timeout_surfaces_typed_and_next_inference_is_correct(tmp_path, cpu_ready):
    path = tmp_path / "misbehave.kimg"
    misbehave_image(path)
    x = np.random.default_rng(5).standard_normal(64, dtype=np.float32)
    with load_model(path, "cpu", timeout_s=0.5) as model:
        np.testing.assert_allclose(model.run({"mode": np.array([0], np.int32), "x": x})["y"], 2 * x.astype(np.float64) + 1, rtol=1e-6)
        with pytest.raises(DeviceTimeout):
            model.run({"mode": np.array([1], np.int32), "x": x})
        x2 = -x
        out = model.run({"mode": np.array([0], np.int32), "x": x2}, poison=True)
        np.testing.assert_allclose(out["y"], 2 * x2.astype(np.float64) + 1, rtol=1e-6)
        assert model.recoveries == 1


def test_fault_surfaces_typed_and_next_inference_is_correct(tmp_path, cpu_ready):
    path = tmp_path / "misbehave.kimg"
    misbehave_image(path)
    x = np.random.default_rng(6).standard_normal(64, dtype=np.float32)
    with load_model(path, "cpu", timeout_s=5.0) as model:
        with pytest.raises(DeviceFault):
            model.run({"mode": np.array([2], np.int32), "x": x})
        for i in range(3):
            xi = x * (i + 1)
            out = model.run({"mode": np.array([0], np.int32), "x": xi}, poison=True)
            np.testing.assert_allclose(out["y"], 2 * xi.astype(np.float64) + 1, rtol=1e-6)
        assert model.recoveries == 1 and model.self_test().passed


def test_a_model_that_does_not_own_its_device_recovers_on_it_and_leaves_it_open(tmp_path, cpu_ready):
    path = tmp_path / "misbehave.kimg"
    misbehave_image(path)
    x = np.random.default_rng(7).standard_normal(64, dtype=np.float32)
    with hal.open("cpu") as dev:
        model = load_model(path, dev, timeout_s=5.0, owns_device=False)
        with pytest.raises(DeviceFault):
            model.run({"mode": np.array([2], np.int32), "x": x})
        out = model.run({"mode": np.array([0], np.int32), "x": x}, poison=True)
        np.testing.assert_allclose(out["y"], 2 * x.astype(np.float64) + 1, rtol=1e-6)
        assert model.recoveries == 1 and model.device is dev
        model.close()
        assert not dev.closed and dev.memory_map() == []  # everything the model allocated was freed
        with pytest.raises(DeviceClosed):
            model.run({"mode": np.array([0], np.int32), "x": x})


def test_stepping_node_by_node(mlp_image):
    path, weights = mlp_image
    x = mlp_inputs(4, np.random.default_rng(11))
    ref = mlp_reference(x["x"], weights)
    with load_model(path, "cpu") as model:
        steps = list(model.steps(x))
        assert [s.node.name for s in steps] == [n.name for n in model.nodes()] == ["layer1", "layer2", "copy_hidden"]
        np.testing.assert_array_equal(steps[0].reads["x"], x["x"])
        np.testing.assert_allclose(steps[0].writes["h"], ref["hidden"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(steps[1].writes["y"], ref["y"], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(steps[2].writes["hidden"], steps[0].writes["h"])
        _check(model.run(x), ref)  # the recorded path still works after stepping


def test_a_kernel_that_never_returns_times_out_and_the_model_moves_to_a_fresh_device(tmp_path, cpu_ready):
    """The hung device cannot close (its executor never comes back): recovery abandons it."""
    path = tmp_path / "misbehave.kimg"
    misbehave_image(path)
    x = np.random.default_rng(7).standard_normal(64, dtype=np.float32)
    with load_model(path, "cpu", timeout_s=0.5) as model:
        model.close_timeout_s = 0.3
        hung = model.device
        with pytest.raises(DeviceTimeout):
            model.run({"mode": np.array([3], np.int32), "x": x})
        out = model.run({"mode": np.array([0], np.int32), "x": x}, poison=True)
        np.testing.assert_allclose(out["y"], 2 * x.astype(np.float64) + 1, rtol=1e-6)
        assert model.device is not hung and model.abandoned_devices == 1 and model.recoveries == 1
