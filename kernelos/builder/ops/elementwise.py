"""Elementwise ops with numpy broadcasting: arithmetic, activations, Where, Cast, and inference
BatchNormalization (per-channel affine). Each gives a C expression (the same for C and CUDA)."""

import math

import numpy as np

from ..codegen import CTYPES, FLOAT_DTYPES, ctype, literal, math_fn
from . import Op, register

ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
               9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64"}


def _bshape(ins):
    return tuple(np.broadcast_shapes(*[v.shape for v in ins if v is not None]))


class Elementwise(Op):
    kind = "elementwise"

    def infer(self, node, ins):
        return [(_bshape(ins), ins[0].dtype)]


_erf = np.vectorize(math.erf, otypes=[np.float64])

BINARY = {
    "Add": ("({a} + {b})", np.add), "Sub": ("({a} - {b})", np.subtract), "Mul": ("({a} * {b})", np.multiply),
    "Div": ("({a} / {b})", None),
}


@register(*BINARY)
class Binary(Elementwise):
    def expr(self, node, args, b):
        a, c = args
        if self.name == "Div" and b.dtype(node.outputs[0]) not in FLOAT_DTYPES:
            return f"({c} == 0 ? 0 : {a} / {c})"      # integer division by zero would trap (SIGFPE)
        return BINARY[self.name][0].format(a=a, b=c)

    def fold(self, node, arrays):
        a, c = arrays
        if self.name == "Div":
            out = a / c if a.dtype.kind == "f" else np.trunc(a / c)
            return [out.astype(a.dtype)]
        return [BINARY[self.name][1](a, c).astype(a.dtype)]


@register("Pow")
class Pow(Elementwise):
    def expr(self, node, args, b):
        a, e = args
        dt, et = b.dtype(node.inputs[0]), b.dtype(node.inputs[1])
        if dt in FLOAT_DTYPES:
            return f"{math_fn('pow', dt)}({a}, ({ctype(dt)})({e}))"
        if et in FLOAT_DTYPES:
            return f"(({ctype(dt)})pow((double)({a}), (double)({e})))"
        return f"(({ctype(dt)})kos_ipow((int64_t)({a}), (int64_t)({e})))"

    def fold(self, node, arrays):
        return [np.power(arrays[0], arrays[1]).astype(arrays[0].dtype)]


UNARY = {
    "Sqrt": (lambda x, dt, n: f"{math_fn('sqrt', dt)}({x})", np.sqrt),
    "Exp": (lambda x, dt, n: f"{math_fn('exp', dt)}({x})", np.exp),
    "Erf": (lambda x, dt, n: f"{math_fn('erf', dt)}({x})", _erf),
    "Tanh": (lambda x, dt, n: f"{math_fn('tanh', dt)}({x})", np.tanh),
    "Relu": (lambda x, dt, n: f"({x} > 0 ? {x} : ({ctype(dt)})0)", lambda x: np.maximum(x, 0)),
    "Sigmoid": (lambda x, dt, n: f"(({ctype(dt)})1 / (({ctype(dt)})1 + {math_fn('exp', dt)}(-{x})))",
                lambda x: 1 / (1 + np.exp(-x))),
    "LeakyRelu": (lambda x, dt, n: f"({x} >= 0 ? {x} : {x} * {literal(n.attr('alpha', 0.01), dt)})", None),
    "Gelu": (None, None),
    "Neg": (lambda x, dt, n: f"(({ctype(dt)})(-{x}))", np.negative),
    "Abs": (lambda x, dt, n: f"({x} < 0 ? ({ctype(dt)})(-{x}) : {x})", np.abs),
    "Reciprocal": (lambda x, dt, n: f"(({ctype(dt)})1 / {x})", np.reciprocal),
    "Log": (lambda x, dt, n: f"{math_fn('log', dt)}({x})", np.log),
    "Not": (lambda x, dt, n: f"((uint8_t)!{x})", np.logical_not),
    "HardSigmoid": (lambda x, dt, n: _clamp01(f"({literal(n.attr('alpha', 0.2), dt)} * {x} + {literal(n.attr('beta', 0.5), dt)})", dt), None),
    "HardSwish": (lambda x, dt, n: f"({x} * {_clamp01(f'({x} * {literal(1 / 6, dt)} + {literal(0.5, dt)})', dt)})", None),
}


def _clamp01(v, dt):
    zero, one = literal(0, dt), literal(1, dt)
    return f"({v} < {zero} ? {zero} : ({v} > {one} ? {one} : {v}))"


COMPARE = {"Equal": ("==", np.equal), "Less": ("<", np.less), "Greater": (">", np.greater),
           "LessOrEqual": ("<=", np.less_equal), "GreaterOrEqual": (">=", np.greater_equal)}


@register(*COMPARE)
class Compare(Elementwise):
    def infer(self, node, ins):
        return [(_bshape(ins), "bool")]

    def expr(self, node, args, b):
        return f"((uint8_t)({args[0]} {COMPARE[self.name][0]} {args[1]}))"

    def fold(self, node, arrays):
        return [COMPARE[self.name][1](*arrays)]


@register("Max", "Min")
class MaxMin(Elementwise):
    """Variadic, broadcasting; NaN propagates like numpy's maximum/minimum."""

    def expr(self, node, args, b):
        op = ">" if self.name == "Max" else "<"
        out = args[0]
        for a in args[1:]:
            out = f"(({out} {op} {a} || {out} != {out}) ? {out} : {a})"
        return out

    def fold(self, node, arrays):
        fn = np.maximum if self.name == "Max" else np.minimum
        out = arrays[0]
        for a in arrays[1:]:
            out = fn(out, a)
        return [out]


@register("Clip")
class Clip(Elementwise):
    """Clip(x, min, max) with optional bounds (inputs 1 and 2, opset 11+)."""

    def infer(self, node, ins):
        return [(ins[0].shape, ins[0].dtype)]

    def expr(self, node, args, b):
        x, out = args[0], args[0]
        names = list(node.inputs) + ["", ""]
        vals = iter(args[1:])
        lo = next(vals) if names[1] else None
        hi = next(vals) if names[2] else None
        if lo is not None:
            out = f"({out} < {lo} ? {lo} : {out})"
        if hi is not None:
            out = f"({out} > {hi} ? {hi} : {out})"
        return out if out is not x else f"({x})"

    def fold(self, node, arrays):
        x = arrays[0]
        lo = arrays[1] if len(arrays) > 1 and arrays[1] is not None else None
        hi = arrays[2] if len(arrays) > 2 and arrays[2] is not None else None
        return [np.clip(x, lo, hi).astype(x.dtype) if lo is not None or hi is not None else x]


@register(*UNARY)
class Unary(Elementwise):
    def check(self, node):
        if self.name == "Gelu" and node.attr("approximate", "none") not in ("none", "tanh"):
            return f"approximate={node.attr('approximate')!r} (expected 'none' or 'tanh')"
        return None

    def expr(self, node, args, b):
        (x,) = args
        dt = b.dtype(node.outputs[0])
        if self.name == "Gelu":
            half, one = literal(0.5, dt), literal(1.0, dt)
            if node.attr("approximate", "none") == "tanh":
                k0, k1 = literal(math.sqrt(2 / math.pi), dt), literal(0.044715, dt)
                return f"({half} * {x} * ({one} + {math_fn('tanh', dt)}({k0} * ({x} + {k1} * {x} * {x} * {x}))))"
            return f"({half} * {x} * ({one} + {math_fn('erf', dt)}({x} * {literal(1 / math.sqrt(2), dt)})))"
        return UNARY[self.name][0](x, dt, node)

    def fold(self, node, arrays):
        fn = UNARY[self.name][1]
        return None if fn is None else [np.asarray(fn(arrays[0])).astype(arrays[0].dtype)]


@register("Where")
class Where(Elementwise):
    def infer(self, node, ins):
        return [(_bshape(ins), ins[1].dtype)]

    def expr(self, node, args, b):
        c, x, y = args
        return f"({c} ? {x} : {y})"

    def fold(self, node, arrays):
        return [np.where(*arrays)]


@register("Cast")
class Cast(Elementwise):
    def check(self, node):
        to = ONNX_DTYPES.get(node.attr("to"))
        if to not in CTYPES:
            return f"cast to ONNX dtype {node.attr('to')} ({to or 'unknown'}) is not supported"
        if node.attr("saturate", 1) != 1:
            return "saturate=0 applies to float8 only, which is not supported"
        return None

    def infer(self, node, ins):
        return [(ins[0].shape, ONNX_DTYPES[node.attr("to")])]

    def expr(self, node, args, b):
        (x,) = args
        dst = b.dtype(node.outputs[0])
        if dst == "bool":
            return f"((uint8_t)({x} != 0))"
        # float -> int truncates; out-of-range values are undefined in C as in numpy
        return f"(({ctype(dst)})({x}))"

    def fold(self, node, arrays):
        return [arrays[0].astype(ONNX_DTYPES[node.attr("to")])]


@register("BatchNormalization")
class BatchNorm(Elementwise):
    """Inference form: y = (x - mean) / sqrt(var + eps) * scale + bias, per channel (axis 1)."""

    def check(self, node):
        if node.attr("training_mode", 0):
            return "training_mode=1 is not supported (inference only)"
        if len([o for o in node.outputs if o]) > 1:
            return "running mean/var outputs are training-mode only"
        return None

    def infer(self, node, ins):
        return [(ins[0].shape, ins[0].dtype)]

    def expr(self, node, args, b):
        x = args[0]
        dt = b.dtype(node.outputs[0])
        scale, bias, mean, var = (b.load(v, "c1") for v in node.inputs[1:5])
        eps = literal(node.attr("epsilon", 1e-5), dt)
        return f"(({x} - {mean}) / {math_fn('sqrt', dt)}({var} + {eps}) * {scale} + {bias})"
