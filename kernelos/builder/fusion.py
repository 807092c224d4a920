"""Fusion: group each anchor (matmul, conv, pool, reduction, index map, or a first elementwise node)
with the elementwise nodes downstream of it, so they run in the anchor's epilogue and their
intermediate tensors never reach memory (bias, activation, residual add, a GELU's five nodes...).

A group may be any DAG of same-shape elementwise nodes hanging off the anchor, as long as exactly
one of its values is needed outside it (that one is stored) and no outside node both depends on
the group and feeds it (which would be a cycle).

A Transpose whose input only it reads, the stored value of another group, folds into that group's
store (the group writes the transposed layout; no copy kernel). Nodes whose outputs are all strided
views (views.py) form no group."""

from dataclasses import dataclass, field

from . import ops
from .graph import Graph, Node


@dataclass
class Group:
    anchor: Node
    epilogue: list = field(default_factory=list)   # in graph order
    store: tuple | None = None      # (value, perm): store Transpose(out, perm) as value instead of out

    @property
    def nodes(self) -> list:
        return [self.anchor] + self.epilogue

    @property
    def out(self) -> str:
        return self.nodes[-1].outputs[0]


def fuse(graph: Graph, enabled: bool = True, views=()) -> list:
    """Groups in graph order; alias and fold nodes and nodes producing only views form no group
    (they emit no kernel)."""
    consumers, producers = graph.consumers(), graph.producers()
    order = {id(n): k for k, n in enumerate(graph.nodes)}
    taken, groups = set(), []
    for node in graph.nodes:
        kind = ops.get(node.op).kind
        if id(node) in taken or kind in ("alias", "fold") or all(o in views for o in node.outputs if o):
            continue
        epilogue = []
        if enabled and kind != "multi" and len(node.outputs) == 1:
            epilogue = _epilogue(graph, node, consumers, producers, order, taken)
        taken.update(id(n) for n in [node] + epilogue)
        groups.append(Group(node, epilogue))
    return _transposed_stores(graph, groups, consumers) if enabled else groups


def _transposed_stores(graph, groups, consumers) -> list:
    """Fold each Transpose group (no epilogue) whose input is only its own into the group storing
    that input."""
    by_out = {g.out: g for g in groups if ops.get(g.anchor.op).kind != "multi"}
    kept = []
    for g in groups:
        t, src = g.anchor, by_out.get(g.anchor.inputs[0])
        if (t.op == "Transpose" and not g.epilogue and src is not None and src.store is None
                and len(consumers[t.inputs[0]]) == 1):
            src.store = (t.outputs[0], ops.get("Transpose").perm_of(t, len(graph.value(t.inputs[0]).shape)))
            by_out.pop(g.out)       # folded away: a Transpose after it has no group to fold into
            continue
        kept.append(g)
    return kept


def _epilogue(graph, anchor, consumers, producers, order, taken) -> list:
    shape = graph.value(anchor.outputs[0]).shape
    # every same-shape elementwise node reachable from the anchor through elementwise nodes
    cands, frontier = [], [anchor.outputs[0]]
    while frontier:
        for user in consumers.get(frontier.pop(), []):
            if (user is not None and id(user) not in taken and user is not anchor and all(user is not c for c in cands)
                    and ops.get(user.op).kind == "elementwise" and graph.value(user.outputs[0]).shape == shape):
                cands.append(user)
                frontier.append(user.outputs[0])
    cands.sort(key=lambda n: order[id(n)])
    # drop the latest candidate until the group is closed: one escaping value, no cycle through outside
    while cands:
        members = [anchor] + cands
        ok = all(i in _values(members) or not _depends_on(i, members, producers) for n in cands for i in n.inputs if i)
        escaping = [v for v in _values(members) if any(c is None or all(c is not m for m in members) for c in consumers.get(v, []))]
        if ok and escaping == [cands[-1].outputs[0]]:
            return cands
        cands.pop()
    return []


def _values(nodes) -> set:
    return {o for n in nodes for o in n.outputs}


def _depends_on(value, members, producers) -> bool:
    """Whether `value` (produced outside the group) is computed from any of the group's values."""
    group_values, seen, stack = _values(members), set(), [value]
    while stack:
        v = stack.pop()
        if v in group_values:
            return True
        if v in seen or v not in producers:
            continue
        seen.add(v)
        stack.extend(i for i in producers[v].inputs if i)
    return False
