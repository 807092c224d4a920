"""Kernel DAG: launches and copies over named buffers, with dependencies from read/write sets.

The DAG is in single-assignment form: every non-input, non-weight buffer has exactly one writer
node, and a node depends on the writers of the buffers it reads. So node order in `nodes` does
not matter; the scheduler orders them (`topo_order`). Everything here is plain data that
round-trips through JSON (`to_dict` / `from_dict`) for the image manifest.
"""

from dataclasses import dataclass, field

import numpy as np

from hal.errors import GraphError
from hal.program import PARAM_TYPES

ROLES = ("input", "output", "weight", "scratch")
# Roles whose contents come from the host; nodes may read them but never write them.
HOST_WRITTEN = ("input", "weight")


def dtype_size_B(dtype: str) -> int:
    try:
        return np.dtype(dtype).itemsize
    except TypeError:
        raise GraphError(f"unknown dtype {dtype!r}") from None


@dataclass
class BufferSpec:
    """A tensor the graph reads or writes. size_B may exceed the tensor (alignment), never fall short."""

    name: str
    role: str
    shape: tuple
    dtype: str
    size_B: int = -1

    def __post_init__(self):
        self.shape = tuple(int(d) for d in self.shape)
        if self.size_B < 0:
            self.size_B = self.nbytes

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * dtype_size_B(self.dtype)


@dataclass
class Kernel:
    """A kernel entry with its binary per target ("cpu-x86_64", "sm_90"), compiled ahead of time.

    params: parameter types (keys of hal.program.PARAM_TYPES); meta: per target, the launch
    metadata besides params ({"max_threads", "shared_B", "regs"}).
    """

    name: str
    params: tuple
    binaries: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


@dataclass
class BufArg:
    """A pointer argument: the address of `buffer` plus offset_B."""

    buffer: str
    offset_B: int = 0


@dataclass
class Launch:
    """Run `kernel` with `args` (BufArg or plain numbers, matching the kernel's params).

    dims: per target, (grid3, block3). reads/writes: buffer names; every BufArg buffer must be
    in one of them.
    """

    name: str
    kernel: str
    args: list
    dims: dict
    reads: tuple = ()
    writes: tuple = ()


@dataclass
class Copy:
    """Copy size_B bytes from src to dst (device to device)."""

    name: str
    dst: str
    src: str
    size_B: int
    dst_offset_B: int = 0
    src_offset_B: int = 0

    @property
    def reads(self):
        return (self.src,)

    @property
    def writes(self):
        return (self.dst,)


class KernelDAG:
    def __init__(self, name: str = "model"):
        self.name = name
        self.buffers: dict = {}
        self.kernels: dict = {}
        self.nodes: list = []

    # --- building -----------------------------------------------------------------------
    def add_buffer(self, name, role, shape, dtype, size_B=-1) -> BufferSpec:
        if name in self.buffers:
            raise GraphError(f"buffer {name!r} is defined twice")
        if role not in ROLES:
            raise GraphError(f"buffer {name!r}: role {role!r} is not one of {ROLES}")
        dtype_size_B(dtype)
        spec = BufferSpec(name, role, tuple(shape), dtype, size_B)
        self.buffers[name] = spec
        return spec

    def add_kernel(self, kernel: Kernel) -> Kernel:
        if kernel.name in self.kernels:
            raise GraphError(f"kernel {kernel.name!r} is defined twice")
        self.kernels[kernel.name] = kernel
        return kernel

    def add_node(self, node):
        if any(n.name == node.name for n in self.nodes):
            raise GraphError(f"node {node.name!r} is defined twice")
        self.nodes.append(node)
        return node

    def by_role(self, role: str) -> list:
        return [b for b in self.buffers.values() if b.role == role]

    # --- dependencies -------------------------------------------------------------------
    def writers(self) -> dict:
        """buffer name -> the one node that writes it."""
        out = {}
        for node in self.nodes:
            for b in node.writes:
                if b in out:
                    raise GraphError(f"buffer {b!r} is written by nodes {out[b].name!r} and {node.name!r}; "
                                     "each buffer has one writer")
                out[b] = node
        return out

    def deps(self) -> dict:
        """node name -> names of the nodes it depends on (the writers of what it reads)."""
        writers = self.writers()
        return {n.name: sorted({writers[b].name for b in n.reads if b in writers} - {n.name}) for n in self.nodes}

    def topo_order(self) -> list:
        """Nodes in an order that respects dependencies (stable: ties keep list order)."""
        deps = self.deps()
        by_name = {n.name: n for n in self.nodes}
        done, order, visiting = set(), [], []

        def visit(name):
            if name in done:
                return
            if name in visiting:
                cycle = visiting[visiting.index(name):] + [name]
                raise GraphError(f"cycle through nodes {' -> '.join(cycle)}")
            visiting.append(name)
            for d in deps[name]:
                visit(d)
            visiting.pop()
            done.add(name)
            order.append(by_name[name])

        for n in self.nodes:
            visit(n.name)
        return order

    # --- validation ---------------------------------------------------------------------
    def validate(self, target: str | None = None):
        """Raise GraphError naming the node and buffer at the first problem; with `target`,
        also require every launched kernel to have a binary and launch dims for it."""
        for b in self.buffers.values():
            if b.size_B < b.nbytes:
                raise GraphError(f"buffer {b.name!r} is {b.size_B} B but its {b.dtype}{list(b.shape)} needs {b.nbytes} B")
        for node in self.nodes:
            self._validate_node(node, target)
        writers = self.writers()
        for b in self.buffers.values():
            if b.role in HOST_WRITTEN and b.name in writers:
                raise GraphError(f"node {writers[b.name].name!r} writes {b.role} buffer {b.name!r}; {b.role}s are read-only")
            if b.role in ("output", "scratch") and b.name not in writers:
                raise GraphError(f"{b.role} buffer {b.name!r} is never written by any node")
        self.topo_order()

    def _validate_node(self, node, target):
        for b in tuple(node.reads) + tuple(node.writes):
            if b not in self.buffers:
                raise GraphError(f"node {node.name!r} uses unknown buffer {b!r}")
        if isinstance(node, Copy):
            self._check_range(node, node.dst, node.dst_offset_B, node.size_B)
            self._check_range(node, node.src, node.src_offset_B, node.size_B)
            return
        if not isinstance(node, Launch):
            raise GraphError(f"node {getattr(node, 'name', node)!r} is neither a Launch nor a Copy")
        kernel = self.kernels.get(node.kernel)
        if kernel is None:
            raise GraphError(f"node {node.name!r} launches unknown kernel {node.kernel!r}")
        if len(node.args) != len(kernel.params):
            raise GraphError(f"node {node.name!r}: kernel {kernel.name!r} takes {len(kernel.params)} args, got {len(node.args)}")
        touched = set(node.reads) | set(node.writes)
        for i, (arg, ptype) in enumerate(zip(node.args, kernel.params)):
            if isinstance(arg, BufArg):
                if ptype != "ptr":
                    raise GraphError(f"node {node.name!r} arg {i}: buffer {arg.buffer!r} passed for a {ptype} param")
                if arg.buffer not in touched:
                    raise GraphError(f"node {node.name!r} arg {i}: buffer {arg.buffer!r} is not in its reads or writes")
                self._check_range(node, arg.buffer, arg.offset_B, 0)
            elif ptype == "ptr" or ptype not in PARAM_TYPES:
                raise GraphError(f"node {node.name!r} arg {i}: {arg!r} passed for a {ptype} param")
        if target is not None:
            if target not in kernel.binaries:
                raise GraphError(f"node {node.name!r}: kernel {kernel.name!r} has no binary for target {target!r} "
                                 f"(has {sorted(kernel.binaries)})")
            if target not in node.dims:
                raise GraphError(f"node {node.name!r} has no launch dims for target {target!r}")

    def _check_range(self, node, buf_name, offset_B, size_B):
        b = self.buffers.get(buf_name)
        if b is None:
            raise GraphError(f"node {node.name!r} uses unknown buffer {buf_name!r}")
        if offset_B < 0 or size_B < 0 or offset_B + size_B > b.size_B:
            raise GraphError(f"node {node.name!r}: range [{offset_B}, {offset_B + size_B}) is outside "
                             f"buffer {buf_name!r} of {b.size_B} B")

    # --- serialisation (binaries travel separately, in the image's kernel sections) ---------
    def to_dict(self) -> dict:
        def node_dict(n):
            if isinstance(n, Copy):
                return {"op": "copy", "name": n.name, "dst": n.dst, "src": n.src, "size_B": n.size_B,
                        "dst_offset_B": n.dst_offset_B, "src_offset_B": n.src_offset_B}
            args = [{"buffer": a.buffer, "offset_B": a.offset_B} if isinstance(a, BufArg) else {"value": a} for a in n.args]
            dims = {t: [list(g), list(b)] for t, (g, b) in n.dims.items()}
            return {"op": "launch", "name": n.name, "kernel": n.kernel, "args": args, "dims": dims,
                    "reads": list(n.reads), "writes": list(n.writes)}

        return {
            "name": self.name,
            "buffers": [{"name": b.name, "role": b.role, "shape": list(b.shape), "dtype": b.dtype, "size_B": b.size_B}
                        for b in self.buffers.values()],
            "kernels": [{"name": k.name, "params": list(k.params), "targets": sorted(k.binaries), "meta": k.meta}
                        for k in self.kernels.values()],
            "nodes": [node_dict(n) for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, d: dict, binaries: dict | None = None) -> "KernelDAG":
        """Inverse of to_dict. binaries: {(kernel, target): bytes}. Malformed input raises GraphError."""
        try:
            dag = cls(str(d["name"]))
            for b in d["buffers"]:
                dag.add_buffer(b["name"], b["role"], b["shape"], b["dtype"], int(b["size_B"]))
            for k in d["kernels"]:
                bins = {t: (binaries or {}).get((k["name"], t), b"") for t in k["targets"]}
                dag.add_kernel(Kernel(k["name"], tuple(k["params"]), bins, dict(k.get("meta", {}))))
            for n in d["nodes"]:
                if n["op"] == "copy":
                    dag.add_node(Copy(n["name"], n["dst"], n["src"], int(n["size_B"]),
                                      int(n["dst_offset_B"]), int(n["src_offset_B"])))
                elif n["op"] == "launch":
                    args = [BufArg(a["buffer"], int(a["offset_B"])) if "buffer" in a else a["value"] for a in n["args"]]
                    dims = {t: (tuple(g), tuple(b)) for t, (g, b) in n["dims"].items()}
                    dag.add_node(Launch(n["name"], n["kernel"], args, dims, tuple(n["reads"]), tuple(n["writes"])))
                else:
                    raise GraphError(f"node {n.get('name')!r} has unknown op {n['op']!r}")
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise GraphError(f"malformed DAG description: {type(e).__name__}: {e}") from None
        return dag
