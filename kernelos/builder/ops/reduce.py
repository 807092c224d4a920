"""Reductions and the normalizations built from them: ReduceSum, ReduceMean, Softmax and
LayerNormalization. Softmax and LayerNormalization emit small statistics kernels (row max and sum,
mean and inverse std) and then one pointwise kernel that reads them broadcast, which is also the
anchor that later elementwise nodes fuse into."""

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
    def infer(self, node, ins):
        norm_axis(node.attr("axis", -1), len(ins[0].shape), node)
        return [(ins[0].shape, ins[0].dtype)]

    def prepare(self, node, ctx):
        x = ctx.graph.value(node.inputs[0])
        axis = norm_axis(node.attr("axis", -1), len(x.shape), node)
        stats = _stats_shape(x.shape, [axis])
        mx = ctx.new_value(stats, x.dtype, f"{node.name}.max")
        sm = ctx.new_value(stats, x.dtype, f"{node.name}.sum")
        ctx.emit_pointwise(f"{node.name}.max", mx, lambda b: reduce_into(b, mx, x.name, [axis], True, "max"))
        exp = math_fn("exp", x.dtype)
        ctx.emit_pointwise(f"{node.name}.sum", sm, lambda b: reduce_into(
            b, sm, x.name, [axis], True, "sum", lambda v: f"{exp}({v} - {b.val(mx)})"))
        node.attrs["_stats"] = (mx, sm)

    def anchor(self, node, b):
        mx, sm = node.attrs["_stats"]
        dt = b.dtype(node.outputs[0])
        x = b.val(node.inputs[0])
        b.define(node.outputs[0], f"{math_fn('exp', dt)}({x} - {b.val(mx)}) / {b.val(sm)}")


@register("LayerNormalization")
class LayerNorm(Op):
    def check(self, node):
        if node.attr("stash_type", 1) != 1:
            return f"stash_type={node.attr('stash_type')} (only 1, float32 statistics)"
        return None

    def infer(self, node, ins):
        x = ins[0].shape
        axis = norm_axis(node.attr("axis", -1), len(x), node)
        stats = _stats_shape(x, range(axis, len(x)))
        return [(x, ins[0].dtype), (stats, "float32"), (stats, "float32")][:len(node.outputs)]

    def prepare(self, node, ctx):
        x = ctx.graph.value(node.inputs[0])
        axis = norm_axis(node.attr("axis", -1), len(x.shape), node)
        axes = list(range(axis, len(x.shape)))
        stats = _stats_shape(x.shape, axes)
        count = int(np.prod(x.shape[axis:]))
        outs = list(node.outputs) + [""] * (3 - len(node.outputs))
        mean = outs[1] or ctx.new_value(stats, "float32", f"{node.name}.mean")
        inv = outs[2] or ctx.new_value(stats, "float32", f"{node.name}.invstd")
        eps = literal(node.attr("epsilon", 1e-5), "float32")
        ctx.emit_pointwise(f"{node.name}.mean", mean, lambda b: reduce_into(
            b, mean, x.name, axes, True, "sum", lambda v: f"(float){v}", f"acc / {count}.0f", "float32"))

        def var(b):
            m = b.val(mean)
            reduce_into(b, inv, x.name, axes, True, "sum", lambda v: f"((float){v} - {m}) * ((float){v} - {m})",
                        f"1.0f / sqrtf(acc / {count}.0f + {eps})", "float32")
        ctx.emit_pointwise(f"{node.name}.invstd", inv, var)
        node.attrs["_stats"] = (mean, inv)

    def anchor(self, node, b):
        mean, inv = node.attrs["_stats"]
        dt = b.dtype(node.outputs[0])
        y = f"(({ctype(dt)})(((float){b.val(node.inputs[0])} - {b.val(mean)}) * {b.val(inv)}) * {b.val(node.inputs[1])})"
        if len(node.inputs) > 2 and node.inputs[2]:
            y = f"({y} + {b.val(node.inputs[2])})"
        b.define(node.outputs[0], y)
