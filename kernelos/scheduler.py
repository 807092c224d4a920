"""Scheduler: a kernel DAG mapped onto a device's compute and copy queues, recorded once, replayed
per inference with one submit per queue and a host cost independent of the number of kernels.

Queue assignment: launches go to the compute queue, after the writes of the inputs the compute
stream carries itself (CommandStream.write: "written" inputs); DAG copies, and the staging copies of
the inputs and outputs that are staged, go to the copy queue. kernelos/model.py picks which inputs
are written or staged and which outputs kernels write in place in host-visible memory (neither
written nor staged); a DAG without copies and staged buffers is one compute submit per inference.
Each queue advances its own progress signal: after item i of inference n it may signal
base(n) + i + 1, where base(n) = n * stride is the submit's Var("t"). Cross-queue order:

- a launch waits for the copies it reads (input staging copies, DAG copies) and, because the memory
  planner reuses memory by lifetime, for every DAG copy before it in topological order;
- a DAG copy waits for every launch before it in topological order (same reason);
- an output's staging copy waits only for the output's writer, so early outputs leave while later
  kernels still compute, and input copies run ahead of the launches that do not read them.

Copy-queue items are ordered so the compute progress they wait for never decreases, and launches
only wait for copy items before them in topological order: neither queue can wait on the other in
a cycle. The host submits the copy stream first (staged inputs start moving while the compute stream
is being submitted) and waits for both queues' final progress value.

Profiling (`Recorded(..., profile=True)`, used by kernelos/profile.py): each stream also records a
timestamp at its start and one before and one after every item (after the item's cross-queue wait),
each into its own signal, so a replay leaves the device time of every node's start and end. The
timestamps serialise the work on each queue (on NVIDIA they end launch chains with a wait-for-idle),
so a profiled replay is slower than a plain one by about two timestamps per node.
"""

import time
from dataclasses import dataclass

import hal

from .dag import Copy, KernelDAG, Launch


@dataclass
class Item:
    """One command group on a queue. op: launch | copy_node | copy_in | copy_out | write_in; name: the
    node or buffer; wait: progress value (relative to the inference's base) of the other queue to wait for,
    0 for none; signal: whether the other queue waits on this item (so it signals its progress)."""

    op: str
    name: str
    wait: int = 0
    signal: bool = False


def queue_plan(dag: KernelDAG, staged=(), written=()) -> tuple:
    """(compute items, copy items) for one inference; staged: names of the inputs and outputs staged
    through the copy queue; written: inputs the compute stream writes first. See the module doc."""
    staged = set(staged)
    order = dag.topo_order()
    writer = dag.writers()
    compute, copy = [Item("write_in", name) for name in written], []
    copy_index = {}  # copy item name -> its index in `copy`
    if staged:
        first_use = {}
        for step, node in enumerate(order):
            for b in node.reads:
                first_use.setdefault(b, step)
        # Inputs no node reads are not copied: the planner may give their bytes to a later buffer.
        for b in sorted((b for b in dag.by_role("input") if b.name in first_use and b.name in staged),
                       key=lambda b: first_use[b.name]):
            copy_index["in:" + b.name] = len(copy)
            copy.append(Item("copy_in", b.name))
    last_copy_node = -1  # index in `copy` of the latest DAG copy so far in topological order
    for node in order:
        if isinstance(node, Launch):
            needs = [last_copy_node] + [copy_index.get("in:" + b, -1) for b in node.reads] + \
                    [copy_index.get("node:" + writer[b].name, -1) for b in node.reads if b in writer]
            wait = max(needs) + 1
            if wait:
                copy[wait - 1].signal = True
            compute.append(Item("launch", node.name, wait))
        else:
            if compute:
                compute[-1].signal = True
            copy_index["node:" + node.name] = last_copy_node = len(copy)
            copy.append(Item("copy_node", node.name, len(compute)))
        for b in node.writes:
            if b in staged and dag.buffers[b].role == "output":
                launch_wait = len(compute) if isinstance(node, Launch) else 0
                if launch_wait:
                    compute[-1].signal = True
                copy.append(Item("copy_out", b, launch_wait))
    return compute, copy


class Recorded:
    """The streams of one DAG on one device, recorded once; `run(n)` replays them for inference n.

    arena: the device buffer planned by `plan`; programs: kernel name -> hal.Program;
    stage: {buffer name: (host-visible Buffer, offset_B)} for the inputs and outputs staged through
    the copy queue; places: {buffer name: (Buffer, offset_B)} for buffers that live outside the arena
    (outputs kernels write in place in host-visible memory); written: {input name: host memoryview}
    for the inputs the compute stream writes from those bytes at each submit. Every other buffer
    lives in the arena at its planned offset.
    """

    def __init__(self, device, dag: KernelDAG, plan, target: str, arena, programs: dict, stage: dict,
                 places: dict, written: dict, profile: bool = False):
        self.device, self.dag = device, dag
        compute_items, copy_items = queue_plan(dag, stage, written)
        # submit() values: the progress base "t", and per written input the host bytes to write
        data_names = {name: f"input{i}" for i, name in enumerate(written)}
        self.values = {"t": 0, **{data_names[name]: view for name, view in written.items()}}
        self.stride = max(len(compute_items), len(copy_items)) + 1
        self.compute_progress, self.copy_progress = device.signal(0), device.signal(0)
        self.final = (len(compute_items), len(copy_items))
        self.submit_s = self.wait_s = 0.0
        # profile: queue kind -> (start signal, [(Item, before signal, after signal)]); see the module doc
        self.stamps = {}
        t = hal.Var("t")
        by_name = {n.name: n for n in dag.nodes}

        def at(buf: str, offset_B: int = 0):
            where, base_B = places.get(buf, (arena, plan.offsets[buf]))
            return where, base_B + offset_B

        def stamp(s):
            """Profiling: a timestamp into a fresh signal (None when not profiling)."""
            if not profile:
                return None
            sig = device.signal(0)
            s.timestamp(sig)
            return sig

        self.streams = []
        if compute_items:
            s = device.queue("compute").stream()
            start, rows = stamp(s), []
            for i, item in enumerate(compute_items):
                if item.op == "write_in":
                    before, (buf, off) = stamp(s), at(item.name)
                    s.write(buf, dag.buffers[item.name].nbytes, data_names[item.name], off)
                else:
                    node = by_name[item.name]
                    if item.wait:
                        s.wait(self.copy_progress, t + item.wait)
                    args = [at(a.buffer, a.offset_B) if hasattr(a, "buffer") else a for a in node.args]
                    grid, block = node.dims[target]
                    before = stamp(s)
                    s.launch(programs[node.kernel], args, grid, block)
                rows.append((item, before, stamp(s)))
                if item.signal or i == len(compute_items) - 1:
                    s.signal(self.compute_progress, t + i + 1)
            self.streams.append(s)
            if profile:
                self.stamps["compute"] = (start, rows)
        if copy_items:
            s = device.queue("copy").stream()
            start, rows = stamp(s), []
            for i, item in enumerate(copy_items):
                if item.wait:
                    s.wait(self.compute_progress, t + item.wait)
                before = stamp(s)
                if item.op == "copy_node":
                    node: Copy = by_name[item.name]
                    dst, dst_off = at(node.dst, node.dst_offset_B)
                    src, src_off = at(node.src, node.src_offset_B)
                    s.copy(dst, src, node.size_B, dst_off, src_off)
                else:
                    size_B = dag.buffers[item.name].nbytes
                    (sbuf, soff), (abuf, aoff) = stage[item.name], at(item.name)
                    if item.op == "copy_in":
                        s.copy(abuf, sbuf, size_B, aoff, soff)
                    else:
                        s.copy(sbuf, abuf, size_B, soff, aoff)
                rows.append((item, before, stamp(s)))
                if item.signal or i == len(copy_items) - 1:
                    s.signal(self.copy_progress, t + i + 1)
            self.streams.insert(0, s)      # submitted first: staged inputs start moving while the compute one is submitted
            if profile:
                self.stamps["copy"] = (start, rows)

    @property
    def submits_per_inference(self) -> int:
        return len(self.streams)

    def run(self, n: int, timeout_s: float):
        """Replay for inference n (n >= 1, increasing) and wait for it; DeviceTimeout / DeviceFault
        from the device propagate unchanged."""
        base = n * self.stride
        values = self.values
        values["t"] = base
        t0 = time.perf_counter()
        for s in self.streams:
            s.submit(**values)
        t1 = time.perf_counter()
        self.submit_s = t1 - t0  # host cost of the replay, for tests, benchmarks and the profiler
        if self.final[0]:
            self.compute_progress.wait(base + self.final[0], timeout_s)
        if self.final[1]:
            self.copy_progress.wait(base + self.final[1], timeout_s)
        self.wait_s = time.perf_counter() - t1

    def close(self):
        sigs = [self.compute_progress, self.copy_progress]
        for start, items in self.stamps.values():
            sigs += [start] + [sig for _, before, after in items for sig in (before, after)]
        for sig in sigs:
            sig.close()
