"""Shape inference and constant folding, in one pass over the nodes in order.

Each op infers its outputs' static shapes and dtypes; where all of a node's inputs are constants
(or, for Shape, its input's shape is known) the node is evaluated at build time with numpy and
dropped, its outputs becoming constants. Only build-time constants are evaluated here; everything
that depends on a model input runs as a compiled kernel.
"""

import numpy as np

from hal.errors import GraphError

from . import ops
from .graph import Graph, UnsupportedModel


def infer_and_fold(graph: Graph) -> Graph:
    kept = []
    for node in graph.nodes:
        op = ops.get(node.op)
        ins = []
        for name in node.inputs:
            if not name:
                ins.append(None)
                continue
            if name not in graph.values:
                raise GraphError(f"{node.describe()} reads {name!r}, which no node or input defines")
            ins.append(graph.values[name])
        try:
            results = op.infer(node, ins)
            arrays = _fold(op, node, ins)
        except GraphError as e:
            raise GraphError(str(e) if node.name in str(e) else f"{node.describe()}: {e}") from None
        except (ValueError, TypeError, IndexError, KeyError) as e:
            raise GraphError(f"{node.describe()}: bad attributes or inputs: {type(e).__name__}: {e}") from None
        empty = [v for v in ins if v is not None and v.const is None and 0 in v.shape]
        if arrays is None and empty:
            raise UnsupportedModel([(node.op, node.name, f"input {empty[0].name!r} is an empty tensor "
                                     f"{list(empty[0].shape)}; zero-size tensors are not supported")])
        for k, (name, (shape, dtype)) in enumerate(zip(node.outputs, results)):
            if not name:
                continue
            const = None
            if arrays is not None:
                const = np.ascontiguousarray(np.asarray(arrays[k]).astype(dtype, copy=False))
                if tuple(const.shape) != tuple(shape):
                    raise GraphError(f"{node.describe()}: folded output {name!r} has shape {const.shape}, inferred {shape}")
            if 0 in shape and (const is None or name in graph.outputs):
                raise UnsupportedModel([(node.op, node.name, f"output {name!r} is an empty tensor {list(shape)}; "
                                         "zero-size tensors are not supported")])
            graph.add_value(name, shape, dtype, const)
        if arrays is None:
            kept.append(node)
    graph.nodes = kept
    graph.remove_dead()
    return graph


def _fold(op, node, ins):
    if node.op == "Shape":
        return op.fold_shape(node, ins[0].shape)
    if op.kind == "fold" or all(v is None or v.const is not None for v in ins):
        return op.fold(node, [None if v is None else v.const for v in ins])
    return None
