"""Reductions and the normalizations built from them: ReduceSum, ReduceMean, Softmax and
LayerNormalization. Softmax and LayerNormalization are row kernels (rowkernel.py): one kernel
computes each row's statistics and then its elements, and is the anchor that later elementwise
nodes fuse into."""

import numpy as np

from ..codegen import Reduction, acc_ctype, ctype, literal, math_fn
from . import Op, const_of, norm_axis, register
from .linalg import lin


def reduce_into(b, out, x_name, axes, keepdims, combine, term_fn=None, finish="acc", acc_dtype=None):
    """out = finish(combine over `axes` of term_fn(x at the loop position)) at the output coords."""
    x = b.ctx.graph.value(x_name)
    kept = iter([b.coord(j) for j in range(b.rank)])
    coords, loops = [], []
    for j, d in enumerate(x.shape):
        if j in axes:
            coords.append(f"r{len(loops)}")
            loops.append((f"r{len(loops)}", d))
            if keepdims:
                next(kept)
        else:
            coords.append(next(kept))
    load = b.load(x_name, lin(x.shape, coords))
    dt = acc_dtype or b.dtype(out)
    term = term_fn(load) if term_fn else load
    init = literal(0, dt) if combine == "sum" else literal(-np.inf, dt)
    b.reduce(out, Reduction(loops, term, combine, acc_ctype(dt), init), finish)


def _axes(node, axes, rank):
    """Reduce axes from the `axes` input (opset 18, ReduceSum 13) or else the attribute; None means
    the identity (empty axes with noop_with_empty_axes)."""
    axes = node.attr("axes") if axes is None else axes
    if axes is None or len(axes) == 0:
        return None if node.attr("noop_with_empty_axes", 0) else list(range(rank))
    return sorted({norm_axis(int(a), rank, node) for a in np.ravel(axes)})


class ReduceOp(Op):
    """ReduceSum / ReduceMean (self.name tells which)."""

    def infer(self, node, ins):
        x = ins[0].shape
        axes = _axes(node, const_of(ins, 1, node, "axes"), len(x))
        if axes is None:
            return [(x, ins[0].dtype)]
        keep = node.attr("keepdims", 1)
        return [(tuple(1 if j in axes else d for j, d in enumerate(x) if keep or j not in axes), ins[0].dtype)]

    def fold(self, node, arrays):
        axes = _axes(node, arrays[1] if len(arrays) > 1 else None, arrays[0].ndim)
        if axes is None:
            return [arrays[0]]
        fn = np.mean if self.name == "ReduceMean" else np.sum
        return [fn(arrays[0], axis=tuple(axes), keepdims=bool(node.attr("keepdims", 1))).astype(arrays[0].dtype)]

    def anchor(self, node, b):
        g = b.ctx.graph
        x = g.value(node.inputs[0])
        axes_in = g.value(node.inputs[1]).const if len(node.inputs) > 1 and node.inputs[1] else None
        axes = _axes(node, axes_in, len(x.shape))
        if axes is None:
            b.define(node.outputs[0], b.val(node.inputs[0]))
            return
        count = int(np.prod([x.shape[a] for a in axes]))
        dt = b.dtype(node.outputs[0])
        finish = f"acc / ({acc_ctype(dt)}){count}" if self.name == "ReduceMean" else "acc"
        reduce_into(b, node.outputs[0], node.inputs[0], axes, node.attr("keepdims", 1), "sum", finish=finish)


register("ReduceSum", "ReduceMean")(ReduceOp)


def _stats_shape(shape, axes):
    return tuple(1 if j in axes else d for j, d in enumerate(shape))


@register("Softmax")
class Softmax(Op):
    """One row kernel: max, then the sum of exp(x - max) (in the accumulation type, each term
    kept), then each element exp(x - max) / sum."""
    kind = "row"

    def infer(self, node, ins):
        norm_axis(node.attr("axis", -1), len(ins[0].shape), node)
        return [(ins[0].shape, ins[0].dtype)]

    def row_axes(self, node, shape):
        axis = norm_axis(node.attr("axis", -1), len(shape), node)
        return axis, axis + 1

    def row(self, node, b):
        dt = b.dtype(node.inputs[0])
        exp = math_fn("exp", dt)
        b.row_input(node.inputs[0])
        mx = b.row_pass("max", "kos_x", acc_ctype(dt), literal(-np.inf, dt))
        sm = b.row_pass("sum", f"{exp}(kos_x - {mx})", acc_ctype(dt), literal(0, dt), keep=True)
        b.define(node.outputs[0], f"(({ctype(dt)})({b.row_term(sm)} / {sm}))")


@register("LayerNormalization")
class LayerNorm(Op):
    """One row kernel: the float32 mean, then the inverse std from the centred squares (two
    passes, as accurate as the textbook form), then each element, scaled and shifted."""
    kind = "row"

    def check(self, node):
        if node.attr("stash_type", 1) != 1:
            return f"stash_type={node.attr('stash_type')} (only 1, float32 statistics)"
        return None

    def infer(self, node, ins):
        x = ins[0].shape
        axis = norm_axis(node.attr("axis", -1), len(x), node)
        stats = _stats_shape(x, range(axis, len(x)))
        return [(x, ins[0].dtype), (stats, "float32"), (stats, "float32")][:len(node.outputs)]

    def row_axes(self, node, shape):
        return norm_axis(node.attr("axis", -1), len(shape), node), len(shape)

    def row(self, node, b):
        dt = b.dtype(node.outputs[0])
        first, last = self.row_axes(node, b.out_shape)
        count = int(np.prod(b.out_shape[first:last]))
        eps = literal(node.attr("epsilon", 1e-5), "float32")
        zero = literal(0, "float32")
        b.row_input(node.inputs[0])
        mean = b.row_pass("sum", "(float)kos_x", "float", zero, f"acc / {count}.0f")
        inv = b.row_pass("sum", f"((float)kos_x - {mean}) * ((float)kos_x - {mean})", "float", zero,
                         f"1.0f / sqrtf(acc / {count}.0f + {eps})")
        for k, var in ((1, mean), (2, inv)):
            if len(node.outputs) > k and node.outputs[k]:
                b.row_store(node.outputs[k], var)
        y = f"(({ctype(dt)})(((float)kos_x - {mean}) * {inv}) * {b.val(node.inputs[1])})"
        if len(node.inputs) > 2 and node.inputs[2]:
            y = f"({y} + {b.val(node.inputs[2])})"
        b.define(node.outputs[0], y)
