"""Ops that only change how bytes are viewed (Reshape, Flatten, Squeeze, Unsqueeze, Identity: no
kernel, the output aliases the input's buffer) and ops that always fold at build time (Shape,
Constant)."""

import numpy as np

from hal.errors import GraphError

from . import Op, const_of, norm_axis, register


class Alias(Op):
    kind = "alias"

    def fold(self, node, arrays):
        return [arrays[0].reshape(self.infer_shape(node, arrays[0].shape, arrays[1:]))]

    def infer(self, node, ins):
        rest = [const_of(ins, i, node, "shape/axes") for i in range(1, len(ins))]
        return [(self.infer_shape(node, ins[0].shape, rest), ins[0].dtype)]


@register("Reshape")
class Reshape(Alias):
    def infer_shape(self, node, shape, rest):
        target = [int(d) for d in np.ravel(rest[0])]
        allowzero = node.attr("allowzero", 0)
        out = [shape[j] if d == 0 and not allowzero else d for j, d in enumerate(target)]
        if out.count(-1) > 1:
            raise GraphError(f"{node.describe()}: more than one -1 in shape {target}")
        if -1 in out:
            known = int(np.prod([d for d in out if d != -1]))
            total = int(np.prod(shape))
            if known == 0 or total % known:
                raise GraphError(f"{node.describe()}: cannot reshape {shape} to {target}")
            out[out.index(-1)] = total // known
        if int(np.prod(out)) != int(np.prod(shape)):
            raise GraphError(f"{node.describe()}: cannot reshape {shape} ({int(np.prod(shape))} elements) to {target}")
        return tuple(out)


@register("Flatten")
class Flatten(Alias):
    def infer_shape(self, node, shape, rest):
        axis = node.attr("axis", 1)
        axis = axis + len(shape) if axis < 0 else axis
        if not 0 <= axis <= len(shape):
            raise GraphError(f"{node.describe()}: axis {node.attr('axis')} out of range for rank {len(shape)}")
        return (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))


def _axes_of(node, rest):
    axes = rest[0] if rest and rest[0] is not None else node.attr("axes")
    return None if axes is None else [int(a) for a in np.ravel(axes)]


@register("Squeeze")
class Squeeze(Alias):
    def infer_shape(self, node, shape, rest):
        axes = _axes_of(node, rest)
        if axes is None:
            return tuple(d for d in shape if d != 1)
        axes = {norm_axis(a, len(shape), node) for a in axes}
        if any(shape[a] != 1 for a in axes):
            raise GraphError(f"{node.describe()}: cannot squeeze non-1 dims {sorted(axes)} of {shape}")
        return tuple(d for j, d in enumerate(shape) if j not in axes)


@register("Unsqueeze")
class Unsqueeze(Alias):
    def infer_shape(self, node, shape, rest):
        axes = _axes_of(node, rest)
        rank = len(shape) + len(axes)
        axes = {norm_axis(a, rank, node) for a in axes}
        it = iter(shape)
        return tuple(1 if j in axes else next(it) for j in range(rank))


@register("Identity")
class Identity(Alias):
    def infer_shape(self, node, shape, rest):
        return shape


@register("Shape")
class Shape(Op):
    kind = "fold"

    def infer(self, node, ins):
        return [((len(self._slice(node, ins[0].shape)),), "int64")]

    def _slice(self, node, shape):
        rank = len(shape)
        start, end = node.attr("start", 0), node.attr("end", rank)
        start = min(max(start + rank if start < 0 else start, 0), rank)
        end = min(max(end + rank if end < 0 else end, 0), rank)
        return shape[start:end]

    def fold_shape(self, node, shape):
        return [np.array(self._slice(node, shape), dtype=np.int64)]


@register("Constant")
class Constant(Op):
    kind = "fold"
    KEYS = ("value", "value_float", "value_floats", "value_int", "value_ints")

    def check(self, node):
        keys = [k for k in node.attrs if not k.startswith("_")]
        if not keys or keys[0] not in self.KEYS:
            return f"attribute {keys[0] if keys else None!r} is not supported (value, value_float(s), value_int(s))"
        return None

    def _value(self, node):
        key = next(k for k in self.KEYS if k in node.attrs)
        v = node.attrs[key]
        if key in ("value_float", "value_floats"):
            return np.array(v, dtype=np.float32)
        if key in ("value_int", "value_ints"):
            return np.array(v, dtype=np.int64)
        return np.asarray(v)

    def infer(self, node, ins):
        v = self._value(node)
        return [(v.shape, v.dtype.name)]

    def fold(self, node, arrays):
        return [self._value(node)]
