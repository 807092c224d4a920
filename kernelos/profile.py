"""The profiler: a per-node timeline of an inference from the device's own timestamps.

    timeline = profile(model, inputs, runs=20)     # model: a LoadedModel
    print(timeline.format())

A profiled recording (kernelos/scheduler.py, profile=True) stamps the device time at each stream's
start and before and after every node (after its cross-queue wait). Per node: its start offset
from the earliest stream start, its duration (after - before: the kernel or copy, plus the device's
own cost of one launch), and the gap before it (from the previous node's end on the same queue, or
the stream's start: a cross-queue wait, the timestamp itself, the queue's fetch of the next command).
On each queue the gaps and durations add up exactly to the queue's span. Host figures per inference:
the submit calls, the wait for both queues, the whole run() (input copy in, outputs out).
The node rows come from the profiled inference of median device time among `runs` (so they add up);
host figures are medians; the same number of plain (unprofiled) inferences give the latency without
the timestamps' cost, in the same call.
"""

import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from hal.errors import DeviceError, InvalidArgument


@dataclass
class NodeTime:
    """One node of the timeline; times in microseconds (medians over the profiled runs)."""

    queue: str
    op: str            # launch | copy_node | copy_in | copy_out | write_in
    name: str          # the DAG node, or the input or output buffer for the others
    what: str          # the kernel with grid/block, or the copy's size
    start_us: float
    gap_us: float
    duration_us: float


@dataclass
class Timeline:
    model: str
    device: str
    target: str
    runs: int
    nodes: list
    span_us: dict                      # queue -> its stream's device time, start stamp to last end stamp
    device_us: float                   # earliest start stamp to latest end stamp, across queues
    submit_us: float                   # host: the submit() calls of one inference
    wait_us: float                     # host: waiting for both queues
    run_us: float                      # host: the whole profiled run(), inputs in to outputs out
    plain_run_us: float                # host: run() without timestamps (same call, same inputs)
    same_clock: bool = False           # the device's timer is the host's CLOCK_MONOTONIC (cpu device)
    host_window_ok: bool = True        # same_clock: every stamp fell inside its run()'s host window
    notes: list = field(default_factory=list)

    def by_kernel(self) -> list:
        """[(kernel or copy kind, count, total duration us, first node using it)], largest total first."""
        total = defaultdict(lambda: [0, 0.0, ""])
        for n in self.nodes:
            row = total[n.what.split(" ")[0] if n.op == "launch" else n.op]
            row[0] += 1
            row[1] += n.duration_us
            row[2] = row[2] or n.name
        return sorted(((k, c, t, first) for k, (c, t, first) in total.items()), key=lambda r: -r[2])

    def as_dict(self) -> dict:
        return asdict(self)

    def format(self, top: int = 10) -> str:
        lines = [f"profile of {self.model!r} on {self.device} ({self.target}): {self.runs} profiled "
                 "inference(s), device timestamps around every node",
                 f"{'#':>4} {'queue':7} {'node':32} {'kernel grid/block or copy':44} {'start us':>10} {'gap us':>9} {'dur us':>10}"]
        for i, n in enumerate(self.nodes):
            lines.append(f"{i:4d} {n.queue:7} {n.name[:32]:32} {n.what[:44]:44} {n.start_us:10.1f} "
                         f"{n.gap_us:9.1f} {n.duration_us:10.1f}")
        for q in sorted(self.span_us):
            mine = [n for n in self.nodes if n.queue == q]
            busy, gaps = sum(n.duration_us for n in mine), sum(n.gap_us for n in mine)
            lines.append(f"{q}: {len(mine)} nodes, busy {busy:.1f} us + gaps {gaps:.1f} us = span {self.span_us[q]:.1f} us")
        lines.append(f"device: {self.device_us:.1f} us from the first stream start to the last node end")
        lines.append(f"host per inference: submit {self.submit_us:.1f} us, wait {self.wait_us:.1f} us, whole run() "
                     f"{self.run_us:.1f} us profiled; {self.plain_run_us:.1f} us unprofiled (median, same call)")
        lines.append(f"time by kernel (top {top}):")
        device_busy = sum(n.duration_us for n in self.nodes) or 1.0
        for key, count, t, first in self.by_kernel()[:top]:
            lines.append(f"  {key[:24]:24} x{count:<4d} {t:10.1f} us  {100 * t / device_busy:5.1f} %   (first: {first})")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _describe(dag, target: str, item) -> str:
    if item.op == "launch":
        node = next(n for n in dag.nodes if n.name == item.name)
        grid, block = node.dims[target]
        return f"{node.kernel} {'x'.join(map(str, grid))}/{'x'.join(map(str, block))}"
    if item.op == "copy_node":
        node = next(n for n in dag.nodes if n.name == item.name)
        return f"copy {node.size_B} B"
    return f"{item.op} {dag.buffers[item.name].nbytes} B"


def _read(recorded) -> dict:
    """queue -> (start ns, [(item, before ns, after ns)]) of the last profiled run."""
    out = {}
    for q, (start, rows) in recorded.stamps.items():
        out[q] = (start.value, [(item, before.value, after.value) for item, before, after in rows])
        values = [out[q][0]] + [v for _, b, a in out[q][1] for v in (b, a)]
        if 0 in values:
            raise DeviceError(f"profile: a timestamp on the {q} queue was not written by the device")
    return out


def _reset(recorded):
    for start, rows in recorded.stamps.values():
        for sig in [start] + [s for _, b, a in rows for s in (b, a)]:
            sig.set(0)


def _inside(stamps: dict, t0_ns: int, t1_ns: int) -> bool:
    return all(t0_ns <= start and all(start <= b <= a <= t1_ns for _, b, a in rows) for start, rows in stamps.values())


def profile(model, inputs: dict | None = None, runs: int = 10) -> Timeline:
    """Run `runs` profiled and `runs` plain inferences of a LoadedModel (default inputs: the image's
    golden inputs) and return the median timeline."""
    if not isinstance(runs, int) or runs < 1:
        raise InvalidArgument(f"profile runs must be a positive int, got {runs!r}")
    inputs = model.image.golden_inputs if inputs is None else inputs
    _, recorded = model.run_profiled(inputs)      # records the profiled streams and warms up
    _reset(recorded)
    t0 = time.monotonic_ns()
    model.run_profiled(inputs)
    # A device whose timer is the host's CLOCK_MONOTONIC (the cpu device) stamps inside the host's
    # window: then every run is checked against its window.
    same_clock = _inside(_read(recorded), t0, time.monotonic_ns())
    samples, host, window_ok = [], [], True
    for _ in range(runs):
        _reset(recorded)
        t0 = time.monotonic_ns()
        _, recorded = model.run_profiled(inputs)
        t1 = time.monotonic_ns()
        stamps = _read(recorded)
        samples.append(stamps)
        host.append((recorded.submit_s, recorded.wait_s, model.last_latency_s))
        window_ok &= not same_clock or _inside(stamps, t0, t1)
    plain = []
    for _ in range(runs):
        model.run(inputs)
        plain.append(model.last_latency_s)
    return _timeline(model, samples, host, plain, window_ok, same_clock)


def _timeline(model, samples, host, plain, window_ok: bool, same_clock: bool) -> Timeline:
    """The node rows of the run whose device time is the median (so its gaps and durations add up to
    its spans exactly); host figures are medians over all runs."""
    med = statistics.median

    def device_ns(stamps):
        origin = min(start for start, _ in stamps.values())
        return max((rows[-1][2] if rows else start) for start, rows in stamps.values()) - origin, origin

    stamps = sorted(samples, key=lambda st: device_ns(st)[0])[len(samples) // 2]
    device, origin = device_ns(stamps)
    nodes, spans = [], {}
    for q, (start, rows) in stamps.items():
        prev = start
        for item, before, after in rows:
            nodes.append(NodeTime(q, item.op, item.name, _describe(model.dag, model.target, item),
                                  (before - origin) / 1e3, (before - prev) / 1e3, (after - before) / 1e3))
            prev = after
        spans[q] = (prev - start) / 1e3
    nodes.sort(key=lambda n: (n.start_us, n.queue))
    notes = [f"node rows: the profiled run of median device time (of {len(samples)}); timestamps serialise each "
             "queue and cost device time of their own (inside the gaps), so a profiled run is slower than a plain one"]
    if same_clock:
        notes.append("the device's timer is the host's CLOCK_MONOTONIC: every stamp was "
                     + ("inside" if window_ok else "NOT inside") + " its run()'s host window")
    return Timeline(model.image.name, model.device.spec, model.target, len(samples), nodes, spans, device / 1e3,
                    med(h[0] for h in host) * 1e6, med(h[1] for h in host) * 1e6, med(h[2] for h in host) * 1e6,
                    med(plain) * 1e6, same_clock, window_ok, notes)
