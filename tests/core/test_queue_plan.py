"""Scheduler queue plan (no device): on random DAGs of launches and copies, both queues always
finish (no cross-queue wait cycle) and every pair of items on different queues that touch the same
arena bytes (one writing) is ordered by the waits, including bytes the planner reuses."""

import random

import pytest

from kernelos.dag import BufArg, Copy, Kernel, KernelDAG, Launch
from kernelos.planner import plan_memory
from kernelos.scheduler import queue_plan

from .models import CPU_TARGET


def random_dag(rng: random.Random, n_nodes: int) -> KernelDAG:
    dag = KernelDAG("random")
    dag.add_kernel(Kernel("k", ("ptr", "ptr"), {CPU_TARGET: b"so"}))
    names = []
    for i in range(2):
        dag.add_buffer(f"in{i}", "input", (rng.randint(1, 100),), "float32")
        names.append(f"in{i}")
    for i in range(n_nodes):
        src = rng.choice(names[-6:])
        name = f"b{i}"
        size = dag.buffers[src].shape[0]
        dag.add_buffer(name, "output" if rng.random() < 0.25 else "scratch", (size,), "float32")
        if rng.random() < 0.4:
            dag.add_node(Copy(f"n{i}", name, src, size * 4))
        else:
            dag.add_node(Launch(f"n{i}", "k", [BufArg(src), BufArg(name)], {CPU_TARGET: ((1,), (1,))}, (src,), (name,)))
        names.append(name)
    return dag


def memory_of(dag, plan, item):
    """[(lo, hi, writes)] arena ranges an item touches."""
    def rng_of(b):
        return plan.offsets[b], plan.offsets[b] + dag.buffers[b].size_B
    if item.op in ("launch", "copy_node"):
        node = next(n for n in dag.nodes if n.name == item.name)
        return [(*rng_of(b), False) for b in node.reads] + [(*rng_of(b), True) for b in node.writes]
    return [(*rng_of(item.name), item.op == "copy_in")]


def simulate(compute, copy):
    """Run both queues with any interleaving allowed; return the happens-before sets, or fail on deadlock."""
    queues = {"compute": compute, "copy": copy}
    other = {"compute": "copy", "copy": "compute"}
    pc = {"compute": 0, "copy": 0}
    hb = {}
    while pc["compute"] < len(compute) or pc["copy"] < len(copy):
        moved = False
        for q in ("compute", "copy"):
            i = pc[q]
            if i == len(queues[q]):
                continue
            item = queues[q][i]
            if pc[other[q]] < item.wait:
                continue
            before = set(hb.get((q, i - 1), set())) | ({(q, i - 1)} if i else set())
            if item.wait:
                j = item.wait - 1
                before |= hb[(other[q], j)] | {(other[q], j)}
            hb[(q, i)] = before
            pc[q] += 1
            moved = True
        assert moved, f"deadlock at compute {pc['compute']}, copy {pc['copy']}"
    return hb


def io_names(dag) -> list:
    """Every input and output: all staged through the copy queue."""
    return [b.name for b in dag.buffers.values() if b.role in ("input", "output")]


@pytest.mark.parametrize("staging", ["none", "some", "all"])
@pytest.mark.parametrize("seed", range(25))
def test_random_dags_never_deadlock_or_race(seed, staging):
    """staging: which inputs and outputs go through the copy queue (the others are used in place)."""
    dag = random_dag(random.Random(seed), 40)
    dag.validate(CPU_TARGET)
    plan = plan_memory(dag, CPU_TARGET)
    staged = {"none": [], "some": io_names(dag)[::2], "all": io_names(dag)}[staging]
    compute, copy = queue_plan(dag, staged)
    assert len(compute) == sum(isinstance(n, Launch) for n in dag.nodes)
    read = {b for n in dag.nodes for b in n.reads}
    assert len(copy) == sum(isinstance(n, Copy) for n in dag.nodes) + \
        sum(b.name in read and b.name in staged for b in dag.by_role("input")) + \
        sum(b.name in staged for b in dag.by_role("output"))
    hb = simulate(compute, copy)
    for i, a in enumerate(compute):
        for j, b in enumerate(copy):
            clash = any(lo < hi2 and lo2 < hi and (wa or wb)
                        for lo, hi, wa in memory_of(dag, plan, a) for lo2, hi2, wb in memory_of(dag, plan, b))
            if clash:
                assert ("compute", i) in hb[("copy", j)] or ("copy", j) in hb[("compute", i)], (a, b)
    # Signals are only emitted where someone waits on them.
    for mine, theirs in ((compute, copy), (copy, compute)):
        waited = {x.wait - 1 for x in theirs if x.wait}
        assert {k for k, x in enumerate(mine) if x.signal} == waited


def test_output_copies_overlap_with_later_compute():
    """An output written early is copied out while later launches still run: its copy waits only for
    its writer, not for the end of the compute queue."""
    dag = random_dag(random.Random(3), 0)
    dims = {CPU_TARGET: ((1,), (1,))}
    dag.add_buffer("early", "output", (4,), "float32")
    dag.add_buffer("mid", "scratch", (4,), "float32")
    dag.add_buffer("late", "output", (4,), "float32")
    dag.add_node(Launch("a", "k", [BufArg("in0"), BufArg("early")], dims, ("in0",), ("early",)))
    dag.add_node(Launch("b", "k", [BufArg("in1"), BufArg("mid")], dims, ("in1",), ("mid",)))
    dag.add_node(Launch("c", "k", [BufArg("mid"), BufArg("late")], dims, ("mid",), ("late",)))
    compute, copy = queue_plan(dag, io_names(dag))
    outs = {x.name: x.wait for x in copy if x.op == "copy_out"}
    assert outs == {"early": 1, "late": 3}
    # launch b waits for in1's copy only, launch a for in0's only; in0 is used first so copied first
    assert [x.name for x in copy if x.op == "copy_in"] == ["in0", "in1"]
    assert [x.wait for x in compute] == [1, 2, 0]
