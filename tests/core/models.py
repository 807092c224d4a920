"""Small hand-written models for the core tests: a 2-layer MLP over C kernels for the cpu device.

mlp_dag(batch, binaries) builds the DAG; `binaries` maps kernel name -> {target: bytes} (real
shared objects from compile_mlp_kernels(), or placeholder bytes for tests that never launch).
mlp_reference() is the independent numpy float64 reference.
"""

import numpy as np

from kernelos.dag import BufArg, Copy, Kernel, KernelDAG, Launch

IN, HIDDEN, OUT = 16, 32, 8
CPU_TARGET = "cpu-x86_64"

# y[m, :] = act(x[m, :] @ w + b) for the rows m of this block range; one block per row.
DENSE_C = r"""
#include "kos_kernel.h"
typedef struct { const float *x, *w, *b; float *y; int32_t K, N, relu; } dense_args;
KOS_KERNEL(dense) {
    const dense_args *a = (const dense_args *)args;
    for (uint64_t m = block_begin; m < block_end; m++)
        for (int32_t n = 0; n < a->N; n++) {
            float acc = a->b[n];
            for (int32_t k = 0; k < a->K; k++) acc += a->x[m * a->K + k] * a->w[(int64_t)k * a->N + n];
            a->y[m * a->N + n] = (a->relu && acc < 0.0f) ? 0.0f : acc;
        }
}
"""
DENSE_PARAMS = ("ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32")


def compile_mlp_kernels(target: str = CPU_TARGET) -> dict:
    import hal

    return {"dense": {target: hal.compile(DENSE_C, "dense", target)}}


def placeholder_kernels(target: str = CPU_TARGET) -> dict:
    """Bytes that are never loaded: for tests of the DAG, planner and image format only."""
    return {"dense": {target: b"\x7fELF placeholder dense kernel " * 40}}


def mlp_dag(batch: int, binaries: dict, target: str = CPU_TARGET) -> KernelDAG:
    """x[batch, IN] -> h = relu(x @ w1 + b1) -> y = h @ w2 + b2; h is also copied out as an output."""
    dag = KernelDAG("mlp2")
    dag.add_buffer("x", "input", (batch, IN), "float32")
    dag.add_buffer("w1", "weight", (IN, HIDDEN), "float32")
    dag.add_buffer("b1", "weight", (HIDDEN,), "float32")
    dag.add_buffer("w2", "weight", (HIDDEN, OUT), "float32")
    dag.add_buffer("b2", "weight", (OUT,), "float32")
    dag.add_buffer("h", "scratch", (batch, HIDDEN), "float32")
    dag.add_buffer("y", "output", (batch, OUT), "float32")
    dag.add_buffer("hidden", "output", (batch, HIDDEN), "float32")
    dag.add_kernel(Kernel("dense", DENSE_PARAMS, dict(binaries["dense"]), {target: {"max_threads": 1}}))
    dims = {target: ((batch,), (1,))}

    def whole(name):  # the kernel touches the whole buffer
        return BufArg(name, 0, dag.buffers[name].nbytes)

    dag.add_node(Launch("layer1", "dense", [whole("x"), whole("w1"), whole("b1"), whole("h"), IN, HIDDEN, 1],
                        dims, reads=("x", "w1", "b1"), writes=("h",)))
    dag.add_node(Launch("layer2", "dense", [whole("h"), whole("w2"), whole("b2"), whole("y"), HIDDEN, OUT, 0],
                        dims, reads=("h", "w2", "b2"), writes=("y",)))
    dag.add_node(Copy("copy_hidden", "hidden", "h", batch * HIDDEN * 4))
    return dag


def mlp_weights(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"w1": rng.standard_normal((IN, HIDDEN), dtype=np.float32) / 4,
            "b1": rng.standard_normal(HIDDEN, dtype=np.float32) / 4,
            "w2": rng.standard_normal((HIDDEN, OUT), dtype=np.float32) / 4,
            "b2": rng.standard_normal(OUT, dtype=np.float32) / 4}


def mlp_reference(x: np.ndarray, w: dict) -> dict:
    """numpy float64 reference of the MLP."""
    f = {k: v.astype(np.float64) for k, v in w.items()}
    h = np.maximum(x.astype(np.float64) @ f["w1"] + f["b1"], 0)
    return {"y": h @ f["w2"] + f["b2"], "hidden": h}


def mlp_inputs(batch: int, rng) -> dict:
    return {"x": rng.standard_normal((batch, IN), dtype=np.float32)}


def write_mlp_image(path, batch: int = 4, binaries: dict | None = None, seed: int = 0):
    """An MLP image at path (placeholder kernels unless binaries are given); returns the weights."""
    from kernelos.image import write_image

    weights = mlp_weights(seed)
    x = mlp_inputs(batch, np.random.default_rng(seed + 1))
    golden = {k: v.astype(np.float32) for k, v in mlp_reference(x["x"], weights).items()}
    write_image(path, mlp_dag(batch, binaries or placeholder_kernels()), weights, x, golden, {"source": "tests/core/models.py"})
    return weights


# --- a kernel that misbehaves on demand: mode 0 runs, 1 sleeps 1 s (timeouts), 2 faults, 3 never returns
MISBEHAVE_C = r"""
#include "kos_kernel.h"
#include <time.h>
typedef struct { const int32_t *mode; const float *x; float *y; } misbehave_args;
KOS_KERNEL(misbehave) {
    const misbehave_args *a = (const misbehave_args *)args;
    if (block_begin == 0 && a->mode[0] == 1) { struct timespec t = {1, 0}; nanosleep(&t, 0); }
    if (block_begin == 0 && a->mode[0] == 2) *(volatile int *)8 = 1;
    if (block_begin == 0 && a->mode[0] == 3) for (;;) { struct timespec t = {1, 0}; nanosleep(&t, 0); }
    for (uint64_t i = block_begin; i < block_end; i++) a->y[i] = 2.0f * a->x[i] + 1.0f;
}
"""


def misbehave_image(path, n: int = 64):
    import hal
    from kernelos.image import write_image

    dag = KernelDAG("misbehave")
    dag.add_buffer("mode", "input", (1,), "int32")
    dag.add_buffer("x", "input", (n,), "float32")
    dag.add_buffer("y", "output", (n,), "float32")
    dag.add_kernel(Kernel("misbehave", ("ptr", "ptr", "ptr"), {CPU_TARGET: hal.compile(MISBEHAVE_C, "misbehave", CPU_TARGET)}))
    dag.add_node(Launch("run", "misbehave", [BufArg("mode"), BufArg("x"), BufArg("y")], {CPU_TARGET: ((n,), (1,))},
                        ("mode", "x"), ("y",)))
    x = np.arange(n, dtype=np.float32)
    write_image(path, dag, {}, {"mode": np.zeros(1, np.int32), "x": x}, {"y": 2 * x + 1})


# --- a chain of k tiny launches, for the host cost of a replay --------------------------------------
ADD_ONE_C = r"""
#include "kos_kernel.h"
typedef struct { const float *x; float *y; int32_t n; } add_one_args;
KOS_KERNEL(add_one) {
    const add_one_args *a = (const add_one_args *)args;
    for (int32_t i = 0; i < a->n; i++) a->y[i] = a->x[i] + 1.0f;
}
"""


def chain_image(path, k: int, n: int = 16):
    """x -> (+1) k times -> y."""
    import hal
    from kernelos.image import write_image

    dag = KernelDAG(f"chain{k}")
    dag.add_buffer("x", "input", (n,), "float32")
    for i in range(1, k + 1):
        dag.add_buffer("y" if i == k else f"a{i}", "output" if i == k else "scratch", (n,), "float32")
    dag.add_kernel(Kernel("add_one", ("ptr", "ptr", "i32"), {CPU_TARGET: hal.compile(ADD_ONE_C, "add_one", CPU_TARGET)}))
    for i in range(1, k + 1):
        src, dst = "x" if i == 1 else f"a{i - 1}", "y" if i == k else f"a{i}"
        dag.add_node(Launch(f"add{i}", "add_one", [BufArg(src), BufArg(dst), n], {CPU_TARGET: ((1,), (1,))}, (src,), (dst,)))
    x = np.arange(n, dtype=np.float32)
    write_image(path, dag, {}, {"x": x}, {"y": x + k})
