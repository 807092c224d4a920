"""The profiler (kernelos/profile.py) on the cpu device: a timeline row per node and staged copy,
positive kernel durations, gaps and durations that add up to each queue's span, stamps inside the
host's window (the cpu device's timer is CLOCK_MONOTONIC), unchanged outputs, and `kernelos boot
--profile` printing it."""

import re

import numpy as np
import pytest

from kernelos.model import load_model
from kernelos.profile import profile

from .models import mlp_inputs, mlp_reference
from .test_cli import kernelos


@pytest.mark.parametrize("stage_io", [None, False, True])
def test_timeline_adds_up_and_lies_inside_the_host_window(mlp_image, stage_io):
    """Rows beyond the DAG's nodes: a staged copy per input and output (True), a write per input (False)."""
    path, weights = mlp_image
    x = mlp_inputs(4, np.random.default_rng(11))
    with load_model(path, "cpu", stage_io=stage_io) as model:
        tl = profile(model, x, runs=5)
        staged = {None: 0, False: len(model.inputs), True: len(model.inputs) + len(model.outputs)}[stage_io]
        names = [n.name for n in model.dag.nodes]
    assert tl.runs == 5 and len(tl.nodes) == len(names) + staged
    assert {n.name for n in tl.nodes if n.op in ("launch", "copy_node")} == set(names)
    assert {n.queue for n in tl.nodes} == set(tl.span_us) == {"compute", "copy"}
    assert all(n.duration_us > 0 for n in tl.nodes if n.op == "launch")
    assert all(n.duration_us >= 0 and n.gap_us >= 0 and n.start_us >= 0 for n in tl.nodes)
    for q, span in tl.span_us.items():
        mine = [n for n in tl.nodes if n.queue == q]
        assert sum(n.duration_us + n.gap_us for n in mine) == pytest.approx(span, abs=1e-3)
        assert max(n.start_us + n.duration_us for n in mine) <= tl.device_us + 1e-3
    assert tl.same_clock and tl.host_window_ok            # every stamp between run()'s start and end
    assert 0 < tl.device_us <= tl.run_us and tl.submit_us > 0 and tl.plain_run_us > 0
    launches = [n for n in tl.nodes if n.op == "launch"]
    assert launches[0].start_us < launches[1].start_us    # layer1 before layer2 on the compute queue
    text = tl.format()
    assert all(name in text for name in names) and "span" in text


def test_profiled_run_gives_the_same_outputs(mlp_image):
    path, weights = mlp_image
    x = mlp_inputs(4, np.random.default_rng(12))
    ref = mlp_reference(x["x"], weights)
    with load_model(path, "cpu") as model:
        out, recorded = model.run_profiled(x)
        plain = model.run(x)
        assert recorded.stamps and recorded is not model._recorded
    for name in ref:
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(out[name], plain[name])


def test_profile_refuses_a_bad_run_count(mlp_image):
    from hal.errors import InvalidArgument
    with load_model(mlp_image[0], "cpu") as model:
        with pytest.raises(InvalidArgument, match="positive int"):
            profile(model, runs=0)


def test_boot_profile_prints_a_row_per_node(mlp_image):
    path, _ = mlp_image
    r = kernelos("boot", path, "--device", "cpu", "--profile", "--count", 3)
    assert r.returncode == 0, r.stderr
    assert "self-test PASS" in r.stdout and "3 profiled inference(s)" in r.stdout
    for node in ("layer1", "layer2", "copy_hidden"):
        assert re.search(rf"^\s+\d+ (compute|copy)\s+{node}\s", r.stdout, re.M), r.stdout
    assert re.search(r"compute: 2 nodes, busy [0-9.]+ us \+ gaps [0-9.]+ us = span [0-9.]+ us", r.stdout)
    assert "host per inference: submit" in r.stdout
