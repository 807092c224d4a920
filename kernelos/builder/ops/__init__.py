"""Op definitions: for each supported ONNX op, how to check its attributes, infer its output shapes
and dtypes, fold it when its inputs are constants, and lower it onto generated kernels.

Kinds:
- "alias": no kernel; the output is the input's bytes with a new shape (Reshape, Squeeze, ...).
- "elementwise": `expr()` gives the output at the current coordinates from the inputs' values there;
  such nodes fuse into a producer's epilogue or into one elementwise kernel.
- "anchor": `anchor()` defines the output inside a PointwiseBuilder (an index map or a reduction);
  elementwise consumers fuse into its epilogue.
- "row": `row()` defines the output inside a RowBuilder (rowkernel.py) from statistics passes over
  each row (`row_axes()` says which dims form a row): one kernel per normalisation; elementwise
  consumers fuse into its epilogue.
- "multi": `lower()` emits its own kernels (several outputs, no fusion).
- "fold": only ever constant-folded (Shape, Constant); reaching lowering is a bug in the model.
"""

from hal.errors import GraphError

REGISTRY: dict = {}

# The attributes each op's lowering honours; any other attribute on a node makes it unsupported
# (rather than silently ignored).
_POOL = {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides"}
KNOWN_ATTRS = {
    "Gemm": {"alpha", "beta", "transA", "transB"}, "LeakyRelu": {"alpha"}, "Gelu": {"approximate"},
    "Softmax": {"axis"}, "LayerNormalization": {"axis", "epsilon", "stash_type"},
    "ReduceMean": {"axes", "keepdims", "noop_with_empty_axes"}, "ReduceSum": {"keepdims", "noop_with_empty_axes"},
    "Conv": {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"},
    "ConvTranspose": {"auto_pad", "dilations", "group", "kernel_shape", "output_padding", "output_shape", "pads",
                      "strides"},
    "BatchNormalization": {"epsilon", "momentum", "training_mode"},
    "MaxPool": _POOL | {"storage_order"}, "AveragePool": _POOL | {"count_include_pad"},
    "Reshape": {"allowzero"}, "Flatten": {"axis"}, "Transpose": {"perm"}, "Squeeze": set(), "Unsqueeze": set(),
    "Concat": {"axis"}, "Split": {"axis", "num_outputs"}, "Gather": {"axis"}, "Cast": {"saturate", "to", "round_mode"},
    "Shape": {"start", "end"}, "HardSigmoid": {"alpha", "beta"},
    "Constant": {"value", "value_float", "value_floats", "value_int", "value_ints"},
}


def unsupported_attrs(node) -> str | None:
    """Why a node's attributes are unsupported (unknown ones), or None."""
    extra = sorted(set(node.attrs) - KNOWN_ATTRS.get(node.op, set()))
    return f"attribute(s) {', '.join(extra)} not supported" if extra else None


class Op:
    kind = "anchor"

    def __init__(self, name: str):
        self.name = name


    def check(self, node):
        """None if supported, else why not (a short sentence)."""
        return None

    def infer(self, node, ins):
        """[(shape, dtype)] for each output from the input Values (None for omitted inputs)."""
        raise NotImplementedError

    def fold(self, node, arrays):
        """Output arrays from constant inputs, or None where the op is not folded."""
        return None

    def anchor(self, node, b):
        raise NotImplementedError

    def row_axes(self, node, shape):
        """(first, last): the dims [first, last) of the input that form a row (kind "row")."""
        raise NotImplementedError

    def row(self, node, b):
        raise NotImplementedError

    def expr(self, node, args, b):
        raise NotImplementedError

    def lower(self, node, ctx):
        raise NotImplementedError


def register(*names):
    def deco(cls):
        for n in names:
            REGISTRY[n] = cls(n)
        return cls
    return deco


def get(op_type: str) -> Op:
    try:
        return REGISTRY[op_type]
    except KeyError:
        raise GraphError(f"op {op_type} is not supported") from None


def norm_axis(axis: int, rank: int, node) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < max(rank, 1):
        raise GraphError(f"{node.describe()}: axis {axis} is out of range for rank {rank}")
    return a


def const_of(ins, i, node, what):
    """The constant array of input i, or a GraphError saying it must be one."""
    v = ins[i] if i < len(ins) else None
    if v is None:
        return None
    if v.const is None:
        raise GraphError(f"{node.describe()}: input {i} ({what}) must be a build-time constant; "
                         f"{v.name!r} is computed at run time (an input can be bound with --const {v.name}=FILE.npy)")
    return v.const


from . import elementwise, linalg, conv, reduce, shape_ops, movement  # noqa: E402,F401  (registers the ops)
