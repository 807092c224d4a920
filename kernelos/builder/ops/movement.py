"""Data movement as index maps (each output element reads one input element): Transpose, Slice,
Concat, Gather. They are anchors, so elementwise consumers fuse into the same kernel. Split is one
kernel storing into all its outputs. A Transpose or Split output only MatMuls read is a strided
view instead (views.py): no kernel; a Transpose of a value only it reads is stored transposed by
that value's producer (fusion.py)."""

import numpy as np

from hal.errors import GraphError

from . import Op, const_of, norm_axis, register
from .linalg import lin


@register("Transpose")
class Transpose(Op):
    def perm_of(self, node, rank):
        perm = node.attr("perm")
        return list(range(rank))[::-1] if perm is None else [int(p) for p in perm]

    def infer(self, node, ins):
        x = ins[0].shape
        perm = self.perm_of(node, len(x))
        if sorted(perm) != list(range(len(x))):
            raise GraphError(f"{node.describe()}: perm {perm} is not a permutation of rank {len(x)}")
        return [(tuple(x[p] for p in perm), ins[0].dtype)]

    def fold(self, node, arrays):
        return [np.transpose(arrays[0], self.perm_of(node, arrays[0].ndim))]

    def anchor(self, node, b):
        x = b.ctx.graph.value(node.inputs[0]).shape
        perm = self.perm_of(node, len(x))
        coords = [None] * len(x)
        for j, p in enumerate(perm):
            coords[p] = b.coord(j)
        b.define(node.outputs[0], b.load(node.inputs[0], lin(x, coords)))


def _slice_params(node, shape, starts, ends, axes, steps):
    """Per input dim (start, step, length) with numpy slicing semantics (clamped, negative wrap)."""
    rank = len(shape)
    out = [(0, 1, d) for d in shape]
    axes = list(range(len(starts))) if axes is None else [norm_axis(int(a), rank, node) for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    for a, s, e, st in zip(axes, starts, ends, steps):
        if st == 0:
            raise GraphError(f"{node.describe()}: step 0 on axis {a}")
        s, e = int(max(min(int(s), 2**62), -2**62)), int(max(min(int(e), 2**62), -2**62))
        r = range(*slice(s, e, st).indices(shape[a]))
        out[a] = (r.start, st, len(r))
    return out


@register("Slice")
class Slice(Op):
    def _params(self, node, ins_or_arrays, shape, get):
        starts, ends = get(1, "starts"), get(2, "ends")
        axes, steps = get(3, "axes"), get(4, "steps")
        return _slice_params(node, shape, np.ravel(starts), np.ravel(ends),
                             None if axes is None else np.ravel(axes), None if steps is None else np.ravel(steps))

    def infer(self, node, ins):
        p = self._params(node, ins, ins[0].shape, lambda i, w: const_of(ins, i, node, w))
        return [(tuple(n for _, _, n in p), ins[0].dtype)]

    def fold(self, node, arrays):
        p = self._params(node, arrays, arrays[0].shape, lambda i, w: arrays[i] if i < len(arrays) else None)
        return [arrays[0][tuple(slice(s, s + st * n, st) if n else slice(0, 0) for s, st, n in p)]]

    def anchor(self, node, b):
        g = b.ctx.graph
        x = g.value(node.inputs[0]).shape
        ins = [g.value(i) if i else None for i in node.inputs]
        p = self._params(node, ins, x, lambda i, w: const_of(ins, i, node, w))
        coords = [f"({s} + {b.coord(j)} * {st})" for j, (s, st, _) in enumerate(p)]
        b.define(node.outputs[0], b.load(node.inputs[0], lin(x, coords)))


@register("Concat")
class Concat(Op):
    def infer(self, node, ins):
        first = ins[0].shape
        axis = norm_axis(node.attr("axis"), len(first), node)
        for v in ins:
            if len(v.shape) != len(first) or any(a != c for j, (a, c) in enumerate(zip(v.shape, first)) if j != axis):
                raise GraphError(f"{node.describe()}: input {v.name!r} {v.shape} does not fit {first} on axis {axis}")
        return [(first[:axis] + (sum(v.shape[axis] for v in ins),) + first[axis + 1:], ins[0].dtype)]

    def fold(self, node, arrays):
        return [np.concatenate(arrays, axis=node.attr("axis"))]

    def anchor(self, node, b):
        g = b.ctx.graph
        axis = norm_axis(node.attr("axis"), b.rank, node)
        c = b.coord(axis)
        parts, off = [], 0
        for name in node.inputs:
            shape = g.value(name).shape
            if shape[axis] == 0:
                continue
            coords = [b.coord(j) if j != axis else f"({c} - {off})" for j in range(b.rank)]
            parts.append((off + shape[axis], b.load(name, lin(shape, coords))))
            off += shape[axis]
        expr = parts[-1][1]
        for end, load in reversed(parts[:-1]):
            expr = f"({c} < {end} ? {load} : {expr})"
        b.define(node.outputs[0], expr)


@register("Split")
class Split(Op):
    kind = "multi"

    def sizes(self, node, shape, split):
        axis = norm_axis(node.attr("axis", 0), len(shape), node)
        n = len(node.outputs)
        if split is None:
            split = node.attr("split")
        if split is None:
            parts = node.attr("num_outputs", n)
            each = -(-shape[axis] // parts)
            split = [min(each, shape[axis] - each * k) for k in range(parts)]
        split = [int(s) for s in np.ravel(split)]
        if sum(split) != shape[axis] or len(split) != n:
            raise GraphError(f"{node.describe()}: split {split} does not divide dim {shape[axis]} into {n} outputs")
        return axis, split

    def infer(self, node, ins):
        x = ins[0].shape
        axis, split = self.sizes(node, x, const_of(ins, 1, node, "split"))
        return [(x[:axis] + (s,) + x[axis + 1:], ins[0].dtype) for s in split]

    def fold(self, node, arrays):
        axis, split = self.sizes(node, arrays[0].shape, arrays[1] if len(arrays) > 1 else None)
        return np.split(arrays[0], np.cumsum(split)[:-1], axis=axis)

    def lower(self, node, ctx):
        """One kernel over the input: each element is stored into the output its position on the
        axis falls in. Outputs that are strided views (views.py) are not stored."""
        g = ctx.graph
        x = g.value(node.inputs[0])
        split_in = g.value(node.inputs[1]).const if len(node.inputs) > 1 and node.inputs[1] else None
        axis, split = self.sizes(node, x.shape, split_in)
        parts, off = [], 0
        for out, size in zip(node.outputs, split):
            if out and size and out not in ctx.views:
                parts.append((out, off, size))
            off += size
        if not parts:
            return

        def body(b):
            v, c = b.val(x.name), b.coord(axis)
            for out, start, size in parts:
                coords = [b.coord(j) if j != axis else f"({c} - {start})" for j in range(b.rank)]
                b.stmt(f"if ({c} >= {start} && {c} < {start + size}) "
                       f"{b.param(out, out=True)}[{lin(g.value(out).shape, coords)}] = {v};")
        ctx.emit_kernel(node.name, x.shape, body)


@register("Gather")
class Gather(Op):
    def infer(self, node, ins):
        data, idx = ins[0].shape, ins[1].shape
        axis = norm_axis(node.attr("axis", 0), len(data), node)
        return [(data[:axis] + idx + data[axis + 1:], ins[0].dtype)]

    def fold(self, node, arrays):
        return [np.take(arrays[0], arrays[1], axis=node.attr("axis", 0))]

    def anchor(self, node, b):
        g = b.ctx.graph
        data, idx = g.value(node.inputs[0]).shape, g.value(node.inputs[1]).shape
        axis = norm_axis(node.attr("axis", 0), len(data), node)
        coords = [b.coord(j) for j in range(b.rank)]
        ix = b.load(node.inputs[1], lin(idx, coords[axis:axis + len(idx)]) if idx else "0")
        # negative indices count from the end; out-of-range ones are clamped so a bad index can never
        # read outside the tensor (ONNX leaves them undefined)
        n = data[axis]
        b.stmt(f"int64_t gi = (int64_t){ix}; if (gi < 0) gi += {n}; gi = gi < 0 ? 0 : (gi >= {n} ? {n - 1} : gi);")
        dcoords = coords[:axis] + ["gi"] + coords[axis + len(idx):]
        b.define(node.outputs[0], b.load(node.inputs[0], lin(data, dcoords)))


@register("Expand")
class Expand(Op):
    """Broadcast to a shape given as a constant input (numpy rules, both ways)."""

    def infer(self, node, ins):
        shape = [int(d) for d in np.ravel(const_of(ins, 1, node, "shape"))]
        return [(tuple(np.broadcast_shapes(ins[0].shape, tuple(shape))), ins[0].dtype)]

    def fold(self, node, arrays):
        return [np.ascontiguousarray(arrays[0] * np.ones(tuple(int(d) for d in arrays[1]), arrays[0].dtype))]

    def anchor(self, node, b):
        b.define(node.outputs[0], b.val(node.inputs[0]))
