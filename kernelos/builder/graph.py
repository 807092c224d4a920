"""The builder's graph IR: named values (static shape, dtype, optional constant) and op nodes.

A Graph is what the ONNX importer produces and what shape inference, constant folding, fusion and
lowering work on. Values are single-assignment; a value with `const` set is known at build time
(an initializer, a Constant, or a folded subgraph) and becomes a weight if a kernel reads it.
"""

from dataclasses import dataclass, field

import numpy as np

from hal.errors import GraphError


@dataclass
class Value:
    name: str
    shape: tuple | None = None
    dtype: str | None = None       # numpy dtype name: "float32", "int64", "bool", ...
    const: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class Node:
    op: str
    name: str
    inputs: list            # value names; "" for an omitted optional input
    outputs: list
    attrs: dict = field(default_factory=dict)

    def attr(self, key, default=None):
        return self.attrs.get(key, default)

    def describe(self) -> str:
        return f"{self.op} node {self.name!r}"


class UnsupportedModel(GraphError):
    """The model uses ops or attributes the builder cannot lower; lists every offending node."""

    def __init__(self, problems: list):
        self.problems = problems    # [(op, node name, why)]
        lines = "\n".join(f"  - {op} {name!r}: {why}" for op, name, why in problems)
        super().__init__(f"{len(problems)} unsupported node(s):\n{lines}")


class Graph:
    def __init__(self, name: str = "model"):
        self.name = name
        self.values: dict = {}
        self.nodes: list = []
        self.inputs: list = []      # value names fed by the user
        self.outputs: list = []     # value names returned to the user

    def value(self, name: str) -> Value:
        try:
            return self.values[name]
        except KeyError:
            raise GraphError(f"unknown value {name!r}") from None

    def add_value(self, name: str, shape=None, dtype=None, const=None) -> Value:
        if name in self.values:
            raise GraphError(f"value {name!r} is defined twice")
        if const is not None:
            const = np.asarray(const)
            shape, dtype = tuple(const.shape), const.dtype.name
        v = Value(name, tuple(int(d) for d in shape) if shape is not None else None, dtype, const)
        self.values[name] = v
        return v

    def consumers(self) -> dict:
        """value name -> nodes reading it (graph outputs count as a consumer named None)."""
        out = {name: [] for name in self.values}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    out.setdefault(i, []).append(n)
        for o in self.outputs:
            out.setdefault(o, []).append(None)
        return out

    def producers(self) -> dict:
        return {o: n for n in self.nodes for o in n.outputs}

    def remove_dead(self):
        """Drop nodes whose outputs nobody reads, and values nobody produces or reads."""
        live = set(self.outputs)
        kept = []
        for n in reversed(self.nodes):
            if any(o in live for o in n.outputs):
                kept.append(n)
                live.update(i for i in n.inputs if i)
        self.nodes = kept[::-1]
        live.update(self.inputs)
        self.values = {k: v for k, v in self.values.items() if k in live}
