"""Memory planner: lifetimes, sharing by lifetime, a checked report, and verify_plan on bad plans."""

import random

import pytest

from hal.errors import GraphError
from kernelos.dag import Copy, KernelDAG
from kernelos.planner import MemoryPlan, lifetimes, plan_memory, verify_plan

from .models import CPU_TARGET, mlp_dag, placeholder_kernels
from .test_dag import chain


def _independent_overlap_check(dag, plan):
    """Pairwise: buffers live at the same step never share a byte (written apart from verify_plan)."""
    lives = lifetimes(dag)
    names = list(dag.buffers)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            la, lb = lives.get(a, (-1, 10**9)), lives.get(b, (-1, 10**9))
            if la[0] <= lb[1] and lb[0] <= la[1]:
                oa, ob = plan.offsets[a], plan.offsets[b]
                assert oa + dag.buffers[a].size_B <= ob or ob + dag.buffers[b].size_B <= oa, (a, b)
    for name, off in plan.offsets.items():
        assert off % plan.alignment_B == 0 and off + dag.buffers[name].size_B <= plan.arena_B


def test_mlp_lifetimes_and_plan():
    dag = mlp_dag(4, placeholder_kernels())
    assert lifetimes(dag) == {"x": (0, 1), "h": (1, 3), "y": (2, 4), "hidden": (3, 4)}
    plan = plan_memory(dag, CPU_TARGET)
    _independent_overlap_check(dag, plan)
    verify_plan(dag, plan)
    assert plan.weights_B == 3584 and all(plan.offsets[w] < plan.weights_B for w in ("w1", "b1", "w2", "b2"))
    # x dies at layer1 and hidden is born at step 3: they may share; the planner shares them.
    assert plan.offsets["x"] == plan.offsets["hidden"]
    assert plan.buffers_B == sum(b.size_B for b in dag.buffers.values())


def test_chain_of_scratch_reuses_two_slots():
    dag = chain(100)  # 100 copies, 16 B each: at any step at most two buffers live
    plan = plan_memory(dag, CPU_TARGET)
    _independent_overlap_check(dag, plan)
    assert plan.arena_B == 2 * 256
    assert plan.buffers_B == 101 * 16
    assert "arena 512 B" in plan.report() and "1616 B sum of buffer sizes" in plan.report()


def random_dag(rng: random.Random, n_nodes: int) -> KernelDAG:
    """Copies between random earlier buffers, random sizes; some buffers are outputs."""
    dag = KernelDAG("random")
    names = []
    for i in range(3):
        dag.add_buffer(f"in{i}", "input", (rng.randint(1, 300),), "float32")
        names.append(f"in{i}")
    for i in range(n_nodes):
        src = rng.choice(names)
        size = dag.buffers[src].size_B // 4
        name = f"b{i}"
        dag.add_buffer(name, "output" if rng.random() < 0.2 else "scratch", (size + rng.randint(0, 200),), "float32")
        dag.add_node(Copy(f"n{i}", name, src, rng.randint(0, size) * 4))
        names.append(name)
    return dag


@pytest.mark.parametrize("seed", range(20))
def test_random_dags_plan_without_overlap(seed):
    dag = random_dag(random.Random(seed), 60)
    plan = plan_memory(dag, CPU_TARGET)
    _independent_overlap_check(dag, plan)
    verify_plan(dag, MemoryPlan.from_dict(plan.to_dict()))
    assert plan.arena_B <= plan.weights_B + sum(-(-b.size_B // 256) * 256 for b in dag.buffers.values())


def _tampered(fn):
    dag = mlp_dag(4, placeholder_kernels())
    d = plan_memory(dag, CPU_TARGET).to_dict()
    fn(d)
    return dag, MemoryPlan.from_dict(d)


@pytest.mark.parametrize("fn, message", [
    (lambda d: d["offsets"].__setitem__("y", d["offsets"]["h"]), "buffers '(h|y)' and '(h|y)' are live together"),
    (lambda d: d["offsets"].__setitem__("y", d["offsets"]["y"] + 4), "buffer 'y' .* misaligned"),
    (lambda d: d["offsets"].__setitem__("w1", d["weights_B"]), "buffer 'w1' .* outside its region"),
    (lambda d: d["offsets"].pop("y"), "places \\['y'\\] wrongly"),
    (lambda d: d.__setitem__("arena_B", 1024), "bad alignment|outside its region"),
    (lambda d: d["lifetimes"].__setitem__("h", [1, 1]), "lifetimes do not match"),
])
def test_verify_plan_rejects_bad_plans(fn, message):
    dag, plan = _tampered(fn)
    with pytest.raises(GraphError, match=message):
        verify_plan(dag, plan)


def test_malformed_plan_document():
    with pytest.raises(GraphError, match="malformed memory plan"):
        MemoryPlan.from_dict({"target": "cpu"})
    with pytest.raises(GraphError, match="must be ints"):
        MemoryPlan.from_dict({"target": "t", "alignment_B": "256", "weights_B": 0, "arena_B": 0, "buffers_B": 0,
                              "offsets": {}, "lifetimes": {}})
