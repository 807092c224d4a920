"""Lowering: fused groups of the inferred graph -> a KernelDAG of generated kernels.

Buffers: graph inputs are "input", graph outputs "output", constants that kernels read "weight",
everything else "scratch" (the core's planner shares scratch space by lifetime). Alias ops
(Reshape, Squeeze, ...) emit nothing: their output reads the input's buffer. Strided views
(views.py: a Transpose / Split / reshape only MatMuls read) emit nothing either: the MatMul reads
their base buffer through the view. A graph output that is an alias or a constant gets a copy
kernel into its own output buffer.
"""

import numpy as np

from hal.errors import GraphError
from kernelos.dag import BufArg, Kernel, KernelDAG, Launch

from . import ops
from .codegen import PointwiseBuilder
from .fusion import Group, fuse
from .graph import Graph
from .ops.linalg import lin
from .rowkernel import RowBuilder
from .views import View, contiguous, find_views


def target_family(target: str) -> str:
    if target.startswith("cpu-"):
        return "cpu"
    if target.startswith("sm_"):
        return "cuda"
    raise GraphError(f"unknown target {target!r}: expected cpu-x86_64 or sm_80..sm_100")


class Lowering:
    """precision: the build's math precision (fp32 | tf32), read by the kernel generator (codegen)."""

    def __init__(self, graph: Graph, targets, precision: str = "fp32"):
        self.graph, self.targets, self.precision = graph, list(targets), precision
        self.dag = KernelDAG(graph.name)
        self.weights: dict = {}
        self.specs: dict = {}        # kernel name -> KernelSpec
        self.alias_of: dict = {}     # value -> the value whose buffer it reads
        self.views: dict = {}        # value -> View: read through its base's buffer, never stored
        self._fresh = 0
        self._launch_names: set = set()

    # --- values and buffers -------------------------------------------------------------------
    def new_value(self, shape, dtype, hint) -> str:
        name = self._unique(hint)
        self.graph.add_value(name, shape, dtype)
        return name

    def const_value(self, array, hint) -> str:
        name = self._unique(hint)
        self.graph.add_value(name, const=array)
        return name

    def _unique(self, hint) -> str:
        name = hint
        while name in self.graph.values or name in self.dag.buffers:
            self._fresh += 1
            name = f"{hint}.{self._fresh}"
        return name

    def buffer_of(self, value: str) -> str:
        """The DAG buffer holding `value` (following aliases), created on first use."""
        while value in self.alias_of:
            value = self.alias_of[value]
        if value in self.views:
            raise GraphError(f"internal: {value!r} is a strided view; its reader must go through view()")
        if value in self.dag.buffers:
            return value
        v = self.graph.value(value)
        if v.const is not None:
            role = "weight"
            self.weights[value] = np.ascontiguousarray(v.const)
        elif value in self.graph.inputs:
            role = "input"
        else:
            role = "output" if value in self.graph.outputs else "scratch"
        self.dag.add_buffer(value, role, v.shape, v.dtype)
        return value

    def view(self, value: str) -> View:
        """How to read `value`: its strided view, or its own buffer as a contiguous one."""
        return self.views.get(value) or contiguous(value, self.graph.value(value).shape)

    # --- kernels ------------------------------------------------------------------------------
    def emit_pointwise(self, name: str, out: str, fill, builder=None, store=None):
        """A kernel over `out`'s shape (a PointwiseBuilder unless `builder` is given): fill(builder)
        defines `out`; it is stored, or where store = (value, perm) stored as value =
        Transpose(out, perm) instead (the transpose folded into the producer's store)."""
        b = builder or PointwiseBuilder(self.graph.value(out).shape, self)
        fill(b)
        if store is None:
            b.store(out)
        else:
            target, perm = store
            b.define(target, b.val(out))
            b.store(target, lin(self.graph.value(target).shape, [b.coord(p) for p in perm]))
        self._launch(name, b)

    def emit_kernel(self, name: str, shape, fill):
        """A pointwise kernel over `shape` whose fill(builder) stores its outputs itself."""
        b = PointwiseBuilder(shape, self)
        fill(b)
        self._launch(name, b)

    def _launch(self, name, b: PointwiseBuilder):
        spec = b.spec()
        self._emit(name, spec)
        if spec.then is not None:      # e.g. the reduce + epilogue node of a split-K GEMM
            self._emit(f"{name}.{spec.then.cuda_variant}", spec.then)

    def _emit(self, name, spec):
        kname = f"k_{spec.key}"
        if kname not in self.specs:
            self.specs[kname] = spec
            self.dag.add_kernel(Kernel(kname, tuple("ptr" for _ in spec.params)))
        dims = {t: spec.dims[target_family(t)] for t in self.targets}
        lname = name
        while lname in self._launch_names:
            self._fresh += 1
            lname = f"{name}.{self._fresh}"
        self._launch_names.add(lname)
        reads = tuple(dict.fromkeys(p.buffer for p in spec.params if not p.out))
        writes = tuple(dict.fromkeys(p.buffer for p in spec.params if p.out))
        self.dag.add_node(Launch(lname, kname, [BufArg(p.buffer) for p in spec.params], dims, reads, writes))

    def lower_group(self, group: Group):
        anchor = group.anchor
        op = ops.get(anchor.op)
        if op.kind == "multi":
            op.lower(anchor, self)
            return
        builder = None
        if op.kind == "row":
            shape = self.graph.value(anchor.inputs[0]).shape
            builder = RowBuilder(shape, self, *op.row_axes(anchor, shape))

        def fill(b):
            if op.kind == "elementwise":
                b.define(anchor.outputs[0], op.expr(anchor, [b.val(i) for i in anchor.inputs if i], b))
            elif op.kind == "row":
                op.row(anchor, b)
            else:
                op.anchor(anchor, b)
            for node in group.epilogue:
                b.define(node.outputs[0], ops.get(node.op).expr(node, [b.val(i) for i in node.inputs if i], b))
        self.emit_pointwise(anchor.name, group.out, fill, builder, group.store)

    # --- the whole graph ----------------------------------------------------------------------
    def run(self, fusion: bool = True) -> KernelDAG:
        """fusion=False: no epilogues, views or transposed stores (a kernel per node, for comparison)."""
        g = self.graph
        self.views = find_views(g) if fusion else {}
        for node in g.nodes:
            if node.outputs[0] in self.views:
                continue
            if ops.get(node.op).kind == "alias":
                self.alias_of[node.outputs[0]] = node.inputs[0]
            elif ops.get(node.op).kind == "fold":
                raise GraphError(f"{node.describe()} could not be folded at build time")
        for name in g.inputs:
            self.buffer_of(name)
        for group in fuse(g, fusion, self.views):
            self.lower_group(group)
        self._outputs()
        self.dag.validate()
        return self.dag

    def _outputs(self):
        """Outputs no kernel wrote (aliases of other values, constants) get a copy kernel into their
        own buffer, reading the source as flat elements (an alias has the same bytes)."""
        for name in dict.fromkeys(self.graph.outputs):
            if name in self.dag.buffers and self.dag.buffers[name].role == "output":
                continue
            if name in self.graph.inputs:
                raise GraphError(f"graph output {name!r} is the graph input of the same name; "
                                 "an input returned unchanged is not supported")
            src = name
            while src in self.alias_of:
                src = self.alias_of[src]
            self.alias_of.pop(name, None)
            if src == name:      # a constant output: its bytes come from a weight of another name
                src = self.const_value(self.graph.value(name).const, f"{name}.const")
            v = self.graph.value(name)
            self.dag.add_buffer(name, "output", v.shape, v.dtype)
            self.emit_pointwise(f"copy.{name}", name, lambda b, src=src, name=name: b.define(name, b.load(src, "i")))
