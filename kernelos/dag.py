"""Kernel DAG: launches and copies over named buffers, with dependencies from read/write sets.

The DAG is in single-assignment form: every non-input, non-weight buffer has exactly one writer
node, and a node depends on the writers of the buffers it reads. So node order in `nodes` does
not matter; the scheduler orders them (`topo_order`). Everything here is plain data that
round-trips through JSON (`to_dict` / `from_dict`) for the image manifest.
"""

import struct
import sys
from dataclasses import dataclass, field

from hal.errors import GraphError
from hal.program import PARAM_TYPES
from hal.queue import as_int

ROLES = ("input", "output", "weight", "scratch")
# Roles whose contents come from the host; nodes may read them but never write them.
HOST_WRITTEN = ("input", "weight")
# Tensor element types a buffer may hold (numpy names; no object, string or void types), with their size.
DTYPE_SIZE_B = {"float16": 2, "float32": 4, "float64": 8, "int8": 1, "int16": 2, "int32": 4, "int64": 8,
                "uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8, "bool": 1}
DTYPES = tuple(DTYPE_SIZE_B)


def canonical_dtype(dtype) -> str:
    """numpy's name for dtype ("f4" -> "float32"); GraphError unless it is one of DTYPES.
    Canonical names (what images store) need no numpy, so reading a manifest does not import it."""
    if type(dtype) is str and dtype in DTYPE_SIZE_B:
        return dtype
    import numpy as np
    try:
        dt = np.dtype(dtype)
        name = dt.name if dt.byteorder in "=|<" else None  # images are little-endian
    except (TypeError, ValueError):
        name = None
    if name not in DTYPES:
        raise GraphError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    return name


def dtype_size_B(dtype: str) -> int:
    return DTYPE_SIZE_B[canonical_dtype(dtype)]


def _is_numpy(value, kind: str) -> bool:
    """isinstance(value, numpy.<kind>) without importing numpy: a value cannot be a numpy scalar
    unless numpy is loaded (getattr: numpy may be half-imported by the boot's import thread)."""
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, getattr(np, kind, ()))


def _name(value, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise GraphError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _names(values, what: str) -> tuple:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise GraphError(f"{what} must be a list of buffer names, got {values!r}")
    return tuple(_name(v, what) for v in values)


def _dims3(dims, what: str) -> tuple:
    ints = [as_int(d) for d in dims] if isinstance(dims, (list, tuple)) else []
    if not 1 <= len(ints) <= 3 or any(d is None or not 1 <= d <= 0x7FFFFFFF for d in ints):
        raise GraphError(f"{what} must be 1 to 3 positive ints, got {dims!r}")
    return tuple(ints) + (1,) * (3 - len(ints))


@dataclass
class BufferSpec:
    """A tensor the graph reads or writes. size_B may exceed the tensor (alignment), never fall short."""

    name: str
    role: str
    shape: tuple
    dtype: str
    size_B: int = -1

    def __post_init__(self):
        self.name = _name(self.name, "buffer name")
        shape = [as_int(d) for d in self.shape] if isinstance(self.shape, (list, tuple)) else [None]
        if any(d is None or d < 1 for d in shape):
            raise GraphError(f"buffer {self.name!r}: shape must be a list of positive ints, got {self.shape!r}")
        self.shape = tuple(shape)
        self.dtype = canonical_dtype(self.dtype)
        if as_int(self.size_B) is None:
            raise GraphError(f"buffer {self.name!r}: size_B must be an int, got {self.size_B!r}")
        self.size_B = as_int(self.size_B)
        if self.size_B < 0:
            self.size_B = self.nbytes

    @property
    def nbytes(self) -> int:
        n = dtype_size_B(self.dtype)
        for d in self.shape:  # Python ints: no silent overflow for absurd shapes
            n *= d
        return n


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
    """A pointer argument: the address of `buffer` plus offset_B. size_B: how many bytes from there
    the kernel may touch, checked against the buffer's size (0: not declared, only the offset is)."""

    buffer: str
    offset_B: int = 0
    size_B: int = 0


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
        self._node_names: set = set()

    # --- building -----------------------------------------------------------------------
    def add_buffer(self, name, role, shape, dtype, size_B=-1) -> BufferSpec:
        if name in self.buffers:
            raise GraphError(f"buffer {name!r} is defined twice")
        if role not in ROLES:
            raise GraphError(f"buffer {name!r}: role {role!r} is not one of {ROLES}")
        spec = BufferSpec(name, role, shape, dtype, size_B)
        self.buffers[name] = spec
        return spec

    def add_kernel(self, kernel: Kernel) -> Kernel:
        _name(kernel.name, "kernel name")
        if kernel.name in self.kernels:
            raise GraphError(f"kernel {kernel.name!r} is defined twice")
        self.kernels[kernel.name] = kernel
        return kernel

    def add_node(self, node):
        if not isinstance(node, (Launch, Copy)):
            raise GraphError(f"node {getattr(node, 'name', node)!r} is neither a Launch nor a Copy")
        _name(node.name, "node name")
        if node.name in self._node_names:
            raise GraphError(f"node {node.name!r} is defined twice")
        self._node_names.add(node.name)
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
        """Nodes in an order that respects dependencies (stable: ties keep list order).
        Iterative depth-first post-order, so long chains do not hit Python's recursion limit."""
        deps = self.deps()
        by_name = {n.name: n for n in self.nodes}
        done, order = set(), []
        for root in self.nodes:
            if root.name in done:
                continue
            path, on_path = [(root.name, iter(deps[root.name]))], {root.name}
            while path:
                name, pending = path[-1]
                nxt = next((d for d in pending if d not in done), None)
                if nxt is None:
                    path.pop()
                    on_path.discard(name)
                    done.add(name)
                    order.append(by_name[name])
                elif nxt in on_path:
                    names = [p for p, _ in path]
                    cycle = names[names.index(nxt):] + [nxt]
                    raise GraphError(f"cycle through nodes {' -> '.join(cycle)}")
                else:
                    path.append((nxt, iter(deps[nxt])))
                    on_path.add(nxt)
        return order

    # --- validation ---------------------------------------------------------------------
    def validate(self, target: str | None = None):
        """Raise GraphError naming the node and buffer at the first problem; with `target`,
        also require every launched kernel to have a binary and launch dims for it."""
        for b in self.buffers.values():
            if b.size_B < b.nbytes:
                raise GraphError(f"buffer {b.name!r} is {b.size_B} B but its {b.dtype}{list(b.shape)} needs {b.nbytes} B")
        for k in self.kernels.values():
            unknown = [p for p in k.params if p not in PARAM_TYPES]
            if unknown:
                raise GraphError(f"kernel {k.name!r} has unknown parameter type(s) {unknown}; known: {sorted(PARAM_TYPES)}")
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
        if not isinstance(node, (Launch, Copy)):
            raise GraphError(f"node {getattr(node, 'name', node)!r} is neither a Launch nor a Copy")
        for b in _names(node.reads, f"node {node.name!r} reads") + _names(node.writes, f"node {node.name!r} writes"):
            if b not in self.buffers:
                raise GraphError(f"node {node.name!r} uses unknown buffer {b!r}")
        if isinstance(node, Copy):
            self._check_range(node, node.dst, node.dst_offset_B, node.size_B)
            self._check_range(node, node.src, node.src_offset_B, node.size_B)
            return
        if not isinstance(node.args, (list, tuple)) or not isinstance(node.dims, dict):
            raise GraphError(f"node {node.name!r}: args must be a list and dims a dict")
        kernel = self.kernels.get(_name(node.kernel, f"node {node.name!r} kernel"))
        if kernel is None:
            raise GraphError(f"node {node.name!r} launches unknown kernel {node.kernel!r}")
        if len(node.args) != len(kernel.params):
            raise GraphError(f"node {node.name!r}: kernel {kernel.name!r} takes {len(kernel.params)} args, got {len(node.args)}")
        touched = set(node.reads) | set(node.writes)
        for i, (arg, ptype) in enumerate(zip(node.args, kernel.params)):
            if isinstance(arg, BufArg):
                _name(arg.buffer, f"node {node.name!r} arg {i} buffer")
                if ptype != "ptr":
                    raise GraphError(f"node {node.name!r} arg {i}: buffer {arg.buffer!r} passed for a {ptype} param")
                if arg.buffer not in touched:
                    raise GraphError(f"node {node.name!r} arg {i}: buffer {arg.buffer!r} is not in its reads or writes")
                self._check_range(node, arg.buffer, arg.offset_B, arg.size_B)
            else:
                self._check_scalar(node, i, arg, ptype)
        for t, gb in node.dims.items():
            if not isinstance(gb, (list, tuple)) or len(gb) != 2:
                raise GraphError(f"node {node.name!r} dims for {t!r} must be (grid, block), got {gb!r}")
            block = _dims3(gb[1], f"node {node.name!r} block for {t!r}")
            _dims3(gb[0], f"node {node.name!r} grid for {t!r}")
            max_threads = kernel.meta.get(t, {}).get("max_threads")
            if isinstance(max_threads, int) and block[0] * block[1] * block[2] > max_threads:
                raise GraphError(f"node {node.name!r}: block {block} for {t!r} exceeds the "
                                 f"max_threads {max_threads} of kernel {kernel.name!r}")
        if target is not None:
            if not kernel.binaries.get(target):
                raise GraphError(f"node {node.name!r}: kernel {kernel.name!r} has no binary for target {target!r} "
                                 f"(has {sorted(t for t, b in kernel.binaries.items() if b)})")
            if target not in node.dims:
                raise GraphError(f"node {node.name!r} has no launch dims for target {target!r}")

    @staticmethod
    def _check_scalar(node, i, arg, ptype):
        integer = as_int(arg) is not None
        real = integer or isinstance(arg, float) or _is_numpy(arg, "floating")
        if ptype == "ptr" or not (integer if ptype not in ("f32", "f64") else real):
            raise GraphError(f"node {node.name!r} arg {i}: {arg!r} passed for a {ptype} param")
        try:
            struct.pack("<" + PARAM_TYPES[ptype][0], arg)
        except (struct.error, OverflowError):
            raise GraphError(f"node {node.name!r} arg {i}: {arg!r} does not fit a {ptype} param") from None

    def _check_range(self, node, buf_name, offset_B, size_B):
        b = self.buffers.get(buf_name)
        if b is None:
            raise GraphError(f"node {node.name!r} uses unknown buffer {buf_name!r}")
        if as_int(offset_B) is None or as_int(size_B) is None:
            raise GraphError(f"node {node.name!r}: offset_B {offset_B!r:.40} and size_B {size_B!r:.40} "
                             f"in buffer {buf_name!r} must be ints")
        if offset_B < 0 or size_B < 0 or offset_B + size_B > b.size_B:
            raise GraphError(f"node {node.name!r}: range [{offset_B}, {offset_B + size_B}) is outside "
                             f"buffer {buf_name!r} of {b.size_B} B")

    # --- serialisation (binaries travel separately, in the image's kernel sections) ---------
    def to_dict(self) -> dict:
        """Plain JSON-ready data (numpy scalars become Python numbers)."""
        def plain(v):
            return v.item() if _is_numpy(v, "generic") else v

        def node_dict(n):
            if isinstance(n, Copy):
                return {"op": "copy", "name": n.name, "dst": n.dst, "src": n.src, "size_B": plain(n.size_B),
                        "dst_offset_B": plain(n.dst_offset_B), "src_offset_B": plain(n.src_offset_B)}
            args = [{"buffer": a.buffer, "offset_B": plain(a.offset_B), "size_B": plain(a.size_B)}
                    if isinstance(a, BufArg) else {"value": plain(a)} for a in n.args]
            dims = {t: [[plain(d) for d in g], [plain(d) for d in b]] for t, (g, b) in n.dims.items()}
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
            dag = cls(_name(d["name"], "DAG name"))
            for b in d["buffers"]:
                dag.add_buffer(b["name"], b["role"], b["shape"], b["dtype"], b["size_B"])
            for k in d["kernels"]:
                meta = dict(k.get("meta", {}))
                if not all(isinstance(m, dict) for m in meta.values()):
                    raise GraphError(f"kernel {k['name']!r}: meta must map targets to dicts, got {meta!r}")
                bins = {t: (binaries or {}).get((k["name"], t), b"") for t in _names(k["targets"], "kernel targets")}
                dag.add_kernel(Kernel(k["name"], _names(k["params"], "kernel params"), bins, meta))
            for n in d["nodes"]:
                if n["op"] == "copy":
                    dag.add_node(Copy(n["name"], n["dst"], n["src"], n["size_B"], n["dst_offset_B"], n["src_offset_B"]))
                elif n["op"] == "launch":
                    args = [BufArg(a["buffer"], a["offset_B"], a.get("size_B", 0)) if "buffer" in a else a["value"]
                            for a in n["args"]]
                    dims = {t: (tuple(g), tuple(b)) for t, (g, b) in n["dims"].items()}
                    dag.add_node(Launch(n["name"], n["kernel"], args, dims, _names(n["reads"], "node reads"),
                                        _names(n["writes"], "node writes")))
                else:
                    raise GraphError(f"node {n.get('name')!r} has unknown op {n['op']!r}")
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise GraphError(f"malformed DAG description: {type(e).__name__}: {e}") from None
        return dag
