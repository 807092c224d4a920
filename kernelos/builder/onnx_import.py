"""ONNX -> Graph: initializers, inputs/outputs with static shapes, opset 13+ nodes, attributes.

Every unsupported node (op type, attribute, domain) is collected and reported in one
UnsupportedModel error. Dynamic input dims must be fixed with `shapes` ({"x": (1, 3, 224, 224)}).
"""

import os

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hal.errors import GraphError

from . import ops
from .codegen import CTYPES
from .graph import Graph, Node, UnsupportedModel

MIN_OPSET = 13
VERIFIED_MAX_OPSET = 21   # newest opset the op semantics were checked against
MAX_OPSET = onnx.defs.onnx_opset_version()


def _attr(a):
    v = helper.get_attribute_value(a)
    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode() for x in v]
    if isinstance(v, (onnx.GraphProto, onnx.SparseTensorProto)) or (isinstance(v, list) and v and not isinstance(v[0], (int, float, str))):
        raise GraphError(f"attribute {a.name!r} of type {onnx.AttributeProto.AttributeType.Name(a.type)}")
    return v


def _old_definition(op_type: str, opset: int):
    """Below opset 13 an op is accepted only where its definition is the one of opset 13."""
    if opset >= MIN_OPSET:
        return None
    try:
        old = onnx.defs.get_schema(op_type, opset).since_version
        new = onnx.defs.get_schema(op_type, MIN_OPSET).since_version
    except onnx.defs.SchemaError:
        return f"no definition at opset {opset}"
    if old != new:
        return (f"opset {opset} has its pre-{MIN_OPSET} definition (version {old}); "
                "convert the model with onnx.version_converter")
    return None


def _dtype(elem_type: int) -> str:
    return helper.tensor_dtype_to_np_dtype(elem_type).name


def read_model(model) -> onnx.ModelProto:
    """A ModelProto as given, or read from a path (GraphError when it cannot be read)."""
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        return onnx.load(os.fspath(model))
    except Exception as e:  # onnx raises protobuf DecodeError, OSError, ...
        raise GraphError(f"cannot read ONNX model {model}: {type(e).__name__}: {e}") from None


def load(model, shapes: dict | None = None, constants: dict | None = None) -> Graph:
    """Import a model (a path or a ModelProto) into a Graph. shapes fixes dynamic input dims;
    constants binds inputs to fixed arrays at build time (e.g. a Reshape's shape given as an input)."""
    model = read_model(model)
    shapes = dict(shapes or {})
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset > MAX_OPSET:
        raise GraphError(f"model uses ONNX opset {opset}; the builder supports opsets {MIN_OPSET}-{MAX_OPSET} "
                         f"(verified up to {VERIFIED_MAX_OPSET}); convert it with onnx.version_converter")
    g = model.graph
    graph = Graph(g.name or "model")
    graph.opset = opset
    for init in g.initializer:
        graph.add_value(init.name, const=numpy_helper.to_array(init))
    problems = []
    for name, array in (constants or {}).items():
        if name not in {i.name for i in g.input}:
            raise GraphError(f"cannot bind constant {name!r}: the model has no input of that name")
        if name not in graph.values:
            graph.add_value(name, const=np.asarray(array))
    for inp in g.input:
        if inp.name in graph.values:
            continue
        if inp.type.WhichOneof("value") != "tensor_type":
            problems.append(("(input)", inp.name, f"{inp.type.WhichOneof('value')} inputs are not supported (tensors only)"))
            continue
        tt = inp.type.tensor_type
        dtype = _dtype(tt.elem_type)
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if inp.name in shapes:
            fixed = tuple(int(d) for d in shapes.pop(inp.name))
            if len(fixed) != len(dims) or any(d is not None and d != f for d, f in zip(dims, fixed)):
                raise GraphError(f"--shape {inp.name}={','.join(map(str, fixed))} does not fit the model's "
                                 f"declared shape {['?' if d is None else d for d in dims]}")
            dims = list(fixed)
        if None in dims:
            sym = [d.dim_param or "?" if not d.HasField("dim_value") else d.dim_value for d in tt.shape.dim]
            raise GraphError(f"input {inp.name!r} has dynamic shape {sym}; fix it with "
                             f"--shape {inp.name}={','.join('1' if not isinstance(d, int) else str(d) for d in sym)}")
        if dtype not in CTYPES:
            problems.append(("(input)", inp.name, f"dtype {dtype} is not supported"))
        graph.add_value(inp.name, dims, dtype)
        graph.inputs.append(inp.name)
    if shapes:
        raise GraphError(f"--shape names unknown input(s) {sorted(shapes)}; inputs are {graph.inputs}")
    for k, n in enumerate(g.node):
        name = n.name or f"{n.op_type}_{k}"
        if n.domain not in ("", "ai.onnx"):
            problems.append((n.op_type, name, f"domain {n.domain!r} is not supported (only the default ONNX domain)"))
            continue
        op = ops.REGISTRY.get(n.op_type)
        if op is None:
            problems.append((n.op_type, name, "op is not supported"))
            continue
        try:
            attrs = {a.name: _attr(a) for a in n.attribute}
        except GraphError as e:
            problems.append((n.op_type, name, f"unsupported {e}"))
            continue
        outputs = list(n.output)
        while outputs and not outputs[-1]:     # trailing omitted optional outputs
            outputs.pop()
        node = Node(n.op_type, name, list(n.input), outputs, attrs)
        why = _old_definition(n.op_type, opset) or ops.unsupported_attrs(node) or op.check(node)
        if why:
            problems.append((n.op_type, name, why))
        graph.nodes.append(node)
    if problems:
        raise UnsupportedModel(problems)
    graph.outputs = [o.name for o in g.output]
    return graph

