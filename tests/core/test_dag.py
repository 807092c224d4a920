"""Kernel DAG: dependencies from read/write sets, topological order, validation errors that name the
node and the buffer, JSON round trip."""

import json

import pytest

from hal.errors import GraphError
from kernelos.dag import BufArg, Copy, Kernel, KernelDAG, Launch

from .models import CPU_TARGET, mlp_dag, placeholder_kernels


def mlp():
    return mlp_dag(4, placeholder_kernels())


def chain(n: int) -> KernelDAG:
    """n copies in a chain a0 -> a1 -> ... listed in reverse order, so the list order is wrong."""
    dag = KernelDAG("chain")
    dag.add_buffer("a0", "input", (4,), "float32")
    for i in range(1, n + 1):
        dag.add_buffer(f"a{i}", "output" if i == n else "scratch", (4,), "float32")
    for i in reversed(range(1, n + 1)):
        dag.add_node(Copy(f"c{i}", f"a{i}", f"a{i - 1}", 16))
    return dag


def test_mlp_validates_and_orders_by_dependencies():
    dag = mlp()
    dag.validate(CPU_TARGET)
    assert dag.deps() == {"layer1": [], "layer2": ["layer1"], "copy_hidden": ["layer1"]}
    order = [n.name for n in dag.topo_order()]
    assert order.index("layer1") < order.index("layer2") and order.index("layer1") < order.index("copy_hidden")


def test_topo_order_of_a_long_reversed_chain_without_recursion_limit():
    dag = chain(5000)
    dag.validate()
    assert [n.name for n in dag.topo_order()] == [f"c{i}" for i in range(1, 5001)]


def test_cycle_is_rejected_naming_the_nodes():
    dag = KernelDAG()
    dag.add_buffer("x", "input", (4,), "float32")
    dag.add_buffer("a", "scratch", (4,), "float32")
    dag.add_buffer("b", "scratch", (4,), "float32")
    dag.add_node(Copy("ab", "b", "a", 16))
    dag.add_node(Copy("ba", "a", "b", 16))
    with pytest.raises(GraphError, match=r"cycle through nodes (ab -> ba -> ab|ba -> ab -> ba)"):
        dag.validate()


def _mutated(fn):
    dag = mlp()
    fn(dag)
    return dag


def _node(dag, name):
    return next(n for n in dag.nodes if n.name == name)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: setattr(_node(d, "layer1"), "reads", ("x", "w1", "nope")), r"node 'layer1' uses unknown buffer 'nope'"),
    (lambda d: setattr(d.buffers["h"], "size_B", 64), r"buffer 'h' is 64 B but its float32\[4, 32\] needs 512 B"),
    (lambda d: setattr(_node(d, "copy_hidden"), "size_B", 4096),
     r"node 'copy_hidden': range \[0, 4096\) is outside buffer 'hidden' of 512 B"),
    (lambda d: _node(d, "layer2").args.__setitem__(0, BufArg("h", 600)),
     r"node 'layer2': range \[600, 600\) is outside buffer 'h' of 512 B"),
    (lambda d: _node(d, "layer2").args.__setitem__(0, BufArg("h", 256, 512)),
     r"node 'layer2': range \[256, 768\) is outside buffer 'h' of 512 B"),
    (lambda d: setattr(d.buffers["y"], "size_B", 4 * 8 * 4 - 4),
     r"buffer 'y' is 124 B but its float32\[4, 8\] needs 128 B"),
    (lambda d: _node(d, "layer2").args.__setitem__(0, BufArg("w1")),
     r"node 'layer2' arg 0: buffer 'w1' is not in its reads or writes"),
    (lambda d: _node(d, "layer2").args.__setitem__(4, BufArg("h")), r"node 'layer2' arg 4: buffer 'h' passed for a i32 param"),
    (lambda d: _node(d, "layer2").args.__setitem__(4, "32"), r"node 'layer2' arg 4: '32' passed for a i32 param"),
    (lambda d: _node(d, "layer2").args.__setitem__(4, 1 << 40), r"node 'layer2' arg 4: 1099511627776 does not fit a i32"),
    (lambda d: _node(d, "layer2").args.pop(), r"node 'layer2': kernel 'dense' takes 7 args, got 6"),
    (lambda d: setattr(_node(d, "layer2"), "kernel", "conv"), r"node 'layer2' launches unknown kernel 'conv'"),
    (lambda d: setattr(_node(d, "layer2"), "writes", ("y", "x")), r"node 'layer2' writes input buffer 'x'"),
    (lambda d: setattr(_node(d, "layer2"), "writes", ("y", "w2")), r"node 'layer2' writes weight buffer 'w2'"),
    (lambda d: setattr(_node(d, "layer2"), "writes", ("y", "h")), r"buffer 'h' is written by nodes 'layer1' and 'layer2'"),
    (lambda d: d.add_buffer("t", "scratch", (2,), "float32"), r"scratch buffer 't' is never written"),
    (lambda d: setattr(_node(d, "layer1"), "dims", {CPU_TARGET: ((0,), (1,))}), r"node 'layer1' grid for 'cpu-x86_64'"),
    (lambda d: setattr(_node(d, "layer1"), "dims", {CPU_TARGET: ((4,), (2,))}),
     r"node 'layer1': block \(2, 1, 1\) for 'cpu-x86_64' exceeds the max_threads 1 of kernel 'dense'"),
    (lambda d: setattr(d.kernels["dense"], "params", DENSE_BAD_PARAMS), r"kernel 'dense' has unknown parameter type"),
    (lambda d: setattr(_node(d, "layer1"), "reads", "xw1"), r"node 'layer1' reads must be a list of buffer names"),
])
def test_validation_names_node_and_buffer(mutate, message):
    with pytest.raises(GraphError, match=message):
        _mutated(mutate).validate()


DENSE_BAD_PARAMS = ("ptr", "ptr", "ptr", "ptr", "i32", "i32", "float")


def test_missing_kernel_binary_or_dims_for_a_target():
    dag = mlp()
    dag.validate(CPU_TARGET)
    with pytest.raises(GraphError, match=r"node 'layer1': kernel 'dense' has no binary for target 'sm_90' \(has \['cpu-x86_64'\]\)"):
        dag.validate("sm_90")
    dag.kernels["dense"].binaries["sm_90"] = b"cubin"
    with pytest.raises(GraphError, match=r"node 'layer1' has no launch dims for target 'sm_90'"):
        dag.validate("sm_90")
    dag.kernels["dense"].binaries[CPU_TARGET] = b""  # an empty binary is a missing one
    with pytest.raises(GraphError, match=r"no binary for target 'cpu-x86_64'"):
        dag.validate(CPU_TARGET)


@pytest.mark.parametrize("args, message", [
    (("x", "input", (4,), "object"), "unknown dtype 'object'"),
    (("x", "input", (4,), ">f4"), "unknown dtype '>f4'"),
    (("x", "input", (4, 0), "float32"), "shape must be a list of positive ints"),
    (("x", "input", (4, -1), "float32"), "shape must be a list of positive ints"),
    (("x", "input", "44", "float32"), "shape must be a list of positive ints"),
    (("x", "tensor", (4,), "float32"), "role 'tensor' is not one of"),
    (("", "input", (4,), "float32"), "buffer name must be a non-empty string"),
])
def test_bad_buffers_are_rejected(args, message):
    with pytest.raises(GraphError, match=message):
        KernelDAG().add_buffer(*args)


def test_duplicates_are_rejected():
    dag = mlp()
    with pytest.raises(GraphError, match="buffer 'x' is defined twice"):
        dag.add_buffer("x", "input", (1,), "float32")
    with pytest.raises(GraphError, match="kernel 'dense' is defined twice"):
        dag.add_kernel(Kernel("dense", ()))
    with pytest.raises(GraphError, match="node 'layer1' is defined twice"):
        dag.add_node(Copy("layer1", "y", "x", 4))


def test_json_round_trip_keeps_everything():
    dag = mlp()
    doc = json.loads(json.dumps(dag.to_dict()))
    back = KernelDAG.from_dict(doc, {("dense", CPU_TARGET): dag.kernels["dense"].binaries[CPU_TARGET]})
    back.validate(CPU_TARGET)
    assert back.to_dict() == dag.to_dict()
    assert back.kernels["dense"].binaries == dag.kernels["dense"].binaries
    assert back.buffers == dag.buffers and [n.name for n in back.topo_order()] == [n.name for n in dag.topo_order()]


@pytest.mark.parametrize("path, value", [
    (("buffers", 0, "shape"), [[4]]), (("buffers", 0, "size_B"), "big"), (("buffers", 0, "dtype"), "V8"),
    (("nodes", 0, "op"), "conv"), (("nodes", 0, "dims"), [1, 2]), (("nodes", 0, "args"), [{"buffer": [1]}]),
    (("nodes", 0, "reads"), "x"), (("kernels", 0, "params"), 7), (("kernels", 0, "meta"), {"cpu": 3}),
    (("name",), None), (("nodes",), {"a": 1}),
    (("nodes", 0, "args", 0, "offset_B"), "8"), (("nodes", 0, "args", 0, "size_B"), None),
])
def test_from_dict_rejects_malformed_documents_with_graph_error(path, value):
    doc = mlp().to_dict()
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(GraphError):
        KernelDAG.from_dict(doc).validate()


def test_numpy_integers_and_floats_are_accepted_and_serialise_as_json():
    import numpy as np

    dag = KernelDAG("np")
    dag.add_buffer("x", "input", (np.int64(4), np.int32(2)), np.dtype("float32"), np.int64(-1))
    dag.add_buffer("y", "output", [np.int64(8)], "f4")
    dag.add_kernel(Kernel("scale", ("ptr", "ptr", "f32", "i32"), {CPU_TARGET: b"so"}))
    dag.add_node(Launch("s", "scale", [BufArg("x", np.int64(0), np.int64(32)), BufArg("y"), np.float32(2.5), np.int32(8)],
                        {CPU_TARGET: ((np.int64(1),), (1,))}, ("x",), ("y",)))
    dag.validate(CPU_TARGET)
    assert dag.buffers["x"].shape == (4, 2) and type(dag.buffers["x"].shape[0]) is int and dag.buffers["y"].dtype == "float32"
    back = KernelDAG.from_dict(json.loads(json.dumps(dag.to_dict())))
    back.validate()
    assert back.to_dict() == dag.to_dict() and back.nodes[0].args[2] == 2.5
