"""Fusion: group each anchor (matmul, conv, pool, reduction, index map, or a first elementwise node)
with the chain of elementwise nodes that consume it, so the chain runs in the anchor's epilogue and
the intermediate tensors never reach memory (bias, activation, residual add, scaling...)."""

from dataclasses import dataclass, field

from . import ops
from .graph import Graph, Node


@dataclass
class Group:
    anchor: Node
    epilogue: list = field(default_factory=list)

    @property
    def nodes(self) -> list:
        return [self.anchor] + self.epilogue

    @property
    def out(self) -> str:
        return self.nodes[-1].outputs[0]


def fuse(graph: Graph, enabled: bool = True) -> list:
    """Groups in graph order; alias and fold nodes form no group (they emit no kernel)."""
    consumers = graph.consumers()
    taken, groups = set(), []
    for node in graph.nodes:
        kind = ops.get(node.op).kind
        if id(node) in taken or kind in ("alias", "fold"):
            continue
        group = Group(node)
        taken.add(id(node))
        while enabled and kind != "multi" and len(group.nodes[-1].outputs) == 1:
            out = group.out
            users = consumers.get(out, [])
            if len(users) != 1 or users[0] is None:
                break
            nxt = users[0]
            if (ops.get(nxt.op).kind != "elementwise" or id(nxt) in taken
                    or graph.value(nxt.outputs[0]).shape != graph.value(out).shape
                    or nxt.inputs.count(out) != 1):
                break
            group.epilogue.append(nxt)
            taken.add(id(nxt))
        groups.append(group)
    return groups
