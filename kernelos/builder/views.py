"""Strided views: a Transpose, a Split output or a reshape (Reshape, Flatten, Squeeze, Unsqueeze)
whose result only MatMuls read emits no kernel; the MatMul reads the producer's buffer through the
view's offset and strides instead (the layout change folded into the consumer's loads).

A value becomes a view only where every reader can take it: a MatMul operand whose rows stay
contiguous along k for A (k or n for B), so the cpu dot-product kernels and the CUDA tiled panel
loads keep their fast paths, or another view op whose outputs are all views. A reshape of a strided
view exists only where the dims it merges are laid out contiguously (numpy's no-copy reshape rule);
where it does not, the view's source is materialised by its kernel as before.
"""

from dataclasses import dataclass

from . import ops
from .codegen import strides as contiguous_strides
from .graph import Graph


@dataclass(frozen=True)
class View:
    base: str           # the value whose buffer holds the elements
    offset: int         # in elements
    strides: tuple      # in elements, one per dim of the viewed value's shape

    def is_contiguous(self, shape) -> bool:
        return self.offset == 0 and all(s == c for s, c, d in zip(self.strides, contiguous_strides(shape), shape) if d != 1)


def contiguous(name: str, shape) -> View:
    return View(name, 0, tuple(contiguous_strides(shape)))


def strided_index(shape, strides, offset: int, coords) -> str:
    """Element index of C coordinate expressions through a strided view (coords right-aligned, dims
    of size 1 skipped: broadcasting). With offset 0 and contiguous strides the same string as
    ops.linalg.lin gives, so unchanged kernels keep their sources."""
    coords = list(coords)[len(coords) - len(shape):]
    terms = [c if s == 1 else f"{c} * {s}" for c, s, d in zip(coords, strides, shape) if d != 1 and c != "0"]
    if offset:
        terms.append(str(offset))
    return " + ".join(terms) or "0"


def reshape_strides(shape, strides, new_shape):
    """Strides of `new_shape` over the same elements as (shape, strides) in C order, or None where
    the reshape merges dims that are not laid out contiguously (numpy's no-copy reshape rule)."""
    old = [(d, s) for d, s in zip(shape, strides) if d != 1]
    new = [int(d) for d in new_shape]
    out = [0] * len(new)
    live = [j for j, d in enumerate(new) if d != 1]
    oi = ni = 0
    while oi < len(old) and ni < len(live):
        oj, nj = oi + 1, ni + 1
        o_size, n_size = old[oi][0], new[live[ni]]
        while o_size != n_size:
            if o_size < n_size:
                o_size *= old[oj][0]
                oj += 1
            else:
                n_size *= new[live[nj]]
                nj += 1
        if any(old[k][1] != old[k + 1][0] * old[k + 1][1] for k in range(oi, oj - 1)):
            return None
        stride = old[oj - 1][1]
        for k in reversed(range(ni, nj)):
            out[live[k]] = stride
            stride *= new[live[k]]
        oi, ni = oj, nj
    return tuple(out)


def _is_view_op(node) -> bool:
    return node.op in ("Transpose", "Split") or ops.get(node.op).kind == "alias"


def _apply(graph: Graph, node, src: View, out: str):
    """The view of `out` (an output of view op `node`) given its input's view, or None."""
    x = graph.value(node.inputs[0]).shape
    if node.op == "Transpose":
        perm = ops.get("Transpose").perm_of(node, len(x))
        return View(src.base, src.offset, tuple(src.strides[p] for p in perm))
    if node.op == "Split":
        split = graph.value(node.inputs[1]).const if len(node.inputs) > 1 and node.inputs[1] else None
        axis, sizes = ops.get("Split").sizes(node, x, split)
        start = sum(sizes[:node.outputs.index(out)])
        return View(src.base, src.offset + start * src.strides[axis], src.strides)
    st = reshape_strides(x, src.strides, graph.value(out).shape)
    return None if st is None else View(src.base, src.offset, st)


def _matmul_reads(view: View, shape, operand: int) -> bool:
    """Whether a MatMul can read this operand through the view on its fast paths."""
    st = dict(zip(range(-len(shape), 0), view.strides))
    dims = dict(zip(range(-len(shape), 0), shape))
    unit = lambda j: dims.get(j, 1) == 1 or st[j] == 1      # noqa: E731
    if operand == 0:                    # A[.., m, k]: k contiguous
        return unit(-1)
    if len(shape) == 1:                 # B[k]
        return unit(-1)
    return unit(-2) or unit(-1)         # B[.., k, n]: k or n contiguous


def find_views(graph: Graph) -> dict:
    """value -> View for every value that needs no kernel of its own (see the module docstring)."""
    consumers = graph.consumers()
    outputs = set(graph.outputs)
    nodes = [n for n in graph.nodes if _is_view_op(n) and graph.value(n.inputs[0]).const is None]
    keep = {o for n in nodes for o in n.outputs if o and o not in outputs}
    while True:
        views = {}
        for n in nodes:
            src = views.get(n.inputs[0])
            if src is None and ops.get(n.op).kind == "alias":
                continue            # a reshape of a materialised value is an ordinary alias
            src = src or contiguous(n.inputs[0], graph.value(n.inputs[0]).shape)
            for o in n.outputs:
                if o in keep:
                    v = _apply(graph, n, src, o)
                    if v is not None:
                        views[o] = v
        dropped = {v for v in keep if v not in views or not _readable(graph, v, views[v], consumers[v], views)}
        if not dropped:
            return views
        keep -= dropped


def _readable(graph, value, view, readers, views) -> bool:
    if not readers:
        return False
    for r in readers:
        if r is None:
            return False
        if r.op == "MatMul":
            if not all(_matmul_reads(view, graph.value(value).shape, j) for j, i in enumerate(r.inputs) if i == value):
                return False
        elif not (_is_view_op(r) and r.inputs[0] == value and value not in r.inputs[1:]
                  and all(o in views for o in r.outputs if o)):
            return False
    return True
