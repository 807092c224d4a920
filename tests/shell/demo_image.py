"""A two-node device image for the shell's README transcript: out = relu(x * w + b).

    PYTHONPATH=. python -m tests.shell.demo_image [PATH]     (default out/shell-demo.kimg)

Kernels are C for cpu targets and CUDA for sm_* targets; the golden output comes from numpy in float64.
"""

import sys
from pathlib import Path

import numpy as np

import hal
from kernelos.dag import BufArg, Kernel, KernelDAG, Launch
from kernelos.image import write_image

DEFAULT_PATH = Path("out/shell-demo.kimg")
ROWS, COLS = 2, 4
# Element i of o from a[i] and v[i % cols] (a row-broadcast vector), in C and in CUDA.
BODIES = {
    "mul_cols": "o[i] = a[i] * v[i % cols];",
    "add_cols_relu": "o[i] = a[i] + v[i % cols] > 0.0f ? a[i] + v[i % cols] : 0.0f;",
}
C_TEMPLATE = """#include "kos_kernel.h"
struct args { const float *a; const float *v; float *o; uint32_t n; uint32_t cols; };
KOS_KERNEL(%s) {  /* one element per thread */
    const struct args *p = args;
    const float *a = p->a, *v = p->v;
    float *o = p->o;
    const uint32_t n = p->n, cols = p->cols;
    for (uint64_t b = block_begin; b < block_end; b++)
        for (uint32_t t = 0; t < L->block[0]; t++) {
            uint64_t i = b * L->block[0] + t;
            if (i < n) %s
        }
}
"""
CUDA_TEMPLATE = """extern "C" __global__ void %s(const float *a, const float *v, float *o, unsigned n, unsigned cols) {
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) %s
}
"""
PARAMS = ("ptr", "ptr", "ptr", "u32", "u32")


def build_dag(target: str) -> KernelDAG:
    dag = KernelDAG("relu_affine")
    dag.add_buffer("x", "input", (ROWS, COLS), "float32")
    dag.add_buffer("w", "weight", (COLS,), "float32")
    dag.add_buffer("b", "weight", (COLS,), "float32")
    dag.add_buffer("h", "scratch", (ROWS, COLS), "float32")
    dag.add_buffer("y", "output", (ROWS, COLS), "float32")
    template = CUDA_TEMPLATE if target.startswith("sm_") else C_TEMPLATE
    for name, body in BODIES.items():
        binary = hal.compile(template % (name, body), name, target)
        dag.add_kernel(Kernel(name, PARAMS, {target: binary}, {target: {"max_threads": 1024}}))
    dims = {target: ((2,), (COLS,))}
    n = ROWS * COLS
    dag.add_node(Launch("scale", "mul_cols", [BufArg("x"), BufArg("w"), BufArg("h"), n, COLS], dims, ("x", "w"), ("h",)))
    dag.add_node(Launch("bias_relu", "add_cols_relu", [BufArg("h"), BufArg("b"), BufArg("y"), n, COLS], dims,
                        ("h", "b"), ("y",)))
    return dag


def demo_arrays():
    """x (the golden input), w, b (the weights): small exact binary fractions, so float32 is exact."""
    x = np.array([[1.0, -2.0, 3.0, -4.0], [0.5, 0.25, -0.75, 2.0]], dtype=np.float32)
    w = np.array([2.0, 1.0, -1.0, 0.5], dtype=np.float32)
    b = np.array([-1.0, 0.5, 1.0, 0.0], dtype=np.float32)
    return x, w, b


def cpu_target() -> str:
    return next(d.arch for d in hal.probe() if d.vendor == "cpu")


def write_demo_image(path=DEFAULT_PATH, target: str | None = None):
    """Write the demo image with fixed inputs (the transcript shows their values), for the cpu by default."""
    target = target or cpu_target()
    x, w, b = demo_arrays()
    y = np.maximum(x.astype(np.float64) * w + b, 0.0).astype(np.float32)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, build_dag(target), {"w": w, "b": b}, {"x": x}, {"y": y})


if __name__ == "__main__":
    print(write_demo_image(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PATH))
