"""Memory planner: one arena per device, scratch buffers sharing space by lifetime.

Layout of the arena (offsets relative to its base, every one a multiple of alignment_B):

    [ weights region: every weight buffer, always live ][ activations: inputs, outputs, scratch ]

Activations are placed by lifetime over the steps of one inference:

    step 0            input copies (host -> arena)
    step i + 1        node i of the topological order
    step N + 1        output copies (arena -> host)

An input lives from step 0 to its last read, an output from its writer to step N + 1, a scratch
buffer from its writer to its last read. Two buffers whose lifetimes overlap (inclusive: a node
never reads and writes the same memory) never share bytes; the others may. Placement is greedy:
largest buffer first, into the best-fitting gap among the buffers it conflicts with.
Inferences run one after another, so lifetimes never cross an inference boundary.
"""

from dataclasses import dataclass

from hal.errors import GraphError

from .dag import KernelDAG

DEFAULT_ALIGNMENT_B = 256


def align_up(n: int, alignment_B: int) -> int:
    return (n + alignment_B - 1) // alignment_B * alignment_B


@dataclass
class MemoryPlan:
    """Where each buffer of a DAG lives in the device arena for one target.

    offsets: buffer name -> offset_B in the arena; lifetimes: activation name -> (first, last) step.
    weights_B: size of the weights region at the start; arena_B: the whole arena;
    buffers_B: the sum of every buffer's size (what the arena would be without sharing).
    """

    target: str
    alignment_B: int
    weights_B: int
    arena_B: int
    buffers_B: int
    offsets: dict
    lifetimes: dict

    def report(self) -> str:
        saved = 100.0 * (1 - self.arena_B / self.buffers_B) if self.buffers_B else 0.0
        return (f"{self.target}: arena {self.arena_B} B (weights {self.weights_B} B + activations "
                f"{self.arena_B - self.weights_B} B) vs {self.buffers_B} B sum of buffer sizes ({saved:.1f}% saved)")

    def to_dict(self) -> dict:
        return {"target": self.target, "alignment_B": self.alignment_B, "weights_B": self.weights_B,
                "arena_B": self.arena_B, "buffers_B": self.buffers_B, "offsets": dict(self.offsets),
                "lifetimes": {k: list(v) for k, v in self.lifetimes.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "MemoryPlan":
        """Inverse of to_dict; GraphError on a malformed description (check it with verify_plan)."""
        try:
            ints = [d["alignment_B"], d["weights_B"], d["arena_B"], d["buffers_B"], *d["offsets"].values()]
            lifetimes = {str(k): tuple(v) for k, v in d["lifetimes"].items()}
            ints += [x for v in lifetimes.values() for x in v]
            if any(isinstance(x, bool) or not isinstance(x, int) for x in ints) or \
                    any(len(v) != 2 for v in lifetimes.values()):
                raise GraphError(f"memory plan fields must be ints, lifetimes pairs: {d!r:.200}")
            return cls(str(d["target"]), d["alignment_B"], d["weights_B"], d["arena_B"], d["buffers_B"],
                       {str(k): v for k, v in d["offsets"].items()}, lifetimes)
        except (KeyError, TypeError, AttributeError) as e:
            raise GraphError(f"malformed memory plan: {type(e).__name__}: {e}") from None


def lifetimes(dag: KernelDAG) -> dict:
    """Activation buffer (input, output, scratch) -> (first step, last step); see the module doc."""
    order = dag.topo_order()
    end = len(order) + 1
    first, last = {}, {}
    for b in dag.buffers.values():
        if b.role == "input":
            first[b.name] = last[b.name] = 0
    for step, node in enumerate(order, start=1):
        for name in node.writes:
            first.setdefault(name, step)
            last[name] = max(last.get(name, step), step)
        for name in node.reads:
            if name in first:  # weights are not activations
                last[name] = max(last[name], step)
    out = {}
    for b in dag.buffers.values():
        if b.role == "weight":
            continue
        if b.name not in first:
            raise GraphError(f"{b.role} buffer {b.name!r} is never written or copied in; nothing to plan")
        out[b.name] = (first[b.name], end if b.role == "output" else last[b.name])
    return out


def _overlap(a: tuple, b: tuple) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def plan_memory(dag: KernelDAG, target: str, alignment_B: int = DEFAULT_ALIGNMENT_B) -> MemoryPlan:
    """Plan the arena of `dag` for `target` (the DAG must validate; GraphError otherwise)."""
    if alignment_B < 1 or alignment_B & (alignment_B - 1):
        raise GraphError(f"alignment_B must be a power of two, got {alignment_B}")
    dag.validate()
    offsets, pos = {}, 0
    for b in dag.by_role("weight"):
        offsets[b.name] = pos
        pos = align_up(pos + b.size_B, alignment_B)
    weights_B = pos
    lives = lifetimes(dag)
    placed = []  # (offset_B, size_B, lifetime)
    for name in sorted(lives, key=lambda n: (-dag.buffers[n].size_B, n)):
        size_B, life = align_up(dag.buffers[name].size_B, alignment_B), lives[name]
        busy = sorted((o, o + s) for o, s, lf in placed if _overlap(life, lf))
        best, best_gap, cursor = None, None, 0
        for lo, hi in busy:
            gap = lo - cursor
            if gap >= size_B and (best_gap is None or gap < best_gap):
                best, best_gap = cursor, gap
            cursor = max(cursor, hi)
        offset_B = cursor if best is None else best
        placed.append((offset_B, size_B, life))
        offsets[name] = weights_B + offset_B
    activations_B = max((o + s for o, s, _ in placed), default=0)
    return MemoryPlan(target, alignment_B, weights_B, weights_B + activations_B,
                      sum(b.size_B for b in dag.buffers.values()), offsets, lives)


def verify_plan(dag: KernelDAG, plan: MemoryPlan):
    """Check a plan (e.g. one read from an image) against its DAG without trusting it: every buffer
    placed, aligned, inside the arena, weights in the weights region, lifetimes as the DAG says, and
    no two buffers with overlapping lifetimes sharing bytes. GraphError names the buffer."""
    a = plan.alignment_B
    if a < 1 or a & (a - 1) or not 0 <= plan.weights_B <= plan.arena_B:
        raise GraphError(f"plan for {plan.target!r}: bad alignment {a} or region sizes {plan.weights_B}/{plan.arena_B}")
    if set(plan.offsets) != set(dag.buffers):
        raise GraphError(f"plan for {plan.target!r} places {sorted(set(plan.offsets) ^ set(dag.buffers))} wrongly "
                         "(missing or unknown buffers)")
    lives = lifetimes(dag)
    if {k: tuple(v) for k, v in plan.lifetimes.items()} != lives:
        raise GraphError(f"plan for {plan.target!r}: lifetimes do not match the DAG")
    spans = []
    for name, off in plan.offsets.items():
        b = dag.buffers[name]
        lo, hi = (0, plan.weights_B) if b.role == "weight" else (plan.weights_B, plan.arena_B)
        if off % a or off < lo or off + b.size_B > hi:
            raise GraphError(f"plan for {plan.target!r}: buffer {name!r} at [{off}, {off + b.size_B}) is misaligned "
                             f"or outside its region [{lo}, {hi})")
        spans.append((off, off + b.size_B, lives.get(name, (-1, 1 << 62)), name))
    spans.sort()
    for i, (lo, hi, life, name) in enumerate(spans):
        for lo2, hi2, life2, name2 in spans[i + 1:]:
            if lo2 >= hi:
                break
            if _overlap(life, life2):
                raise GraphError(f"plan for {plan.target!r}: buffers {name!r} and {name2!r} are live together "
                                 f"but share bytes [{lo2}, {min(hi, hi2)})")
