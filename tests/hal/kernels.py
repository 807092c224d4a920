"""The conformance suite's test kernels: the same operations as C for cpu targets (kos_kernel.h)
and CUDA C for sm_* targets, each with its parameter list.

Every kernel is written over global thread coordinates (gx, gy, gz) so the launch geometry is
checked too: cpu kernels loop over their block range and the block's threads; CUDA kernels use
blockIdx * blockDim + threadIdx.
"""

from dataclasses import dataclass

C_PRELUDE = r"""
#include "kos_kernel.h"
/* THREADS_BEGIN ... THREADS_END: the body runs once per thread of blocks [block_begin, block_end),
 * with global coordinates gx, gy, gz (blocks linearised x fastest, as kos_kernel.h says). */
#define THREADS_BEGIN \
    for (uint64_t b_ = block_begin; b_ < block_end; b_++) { \
        uint64_t bx_ = b_ % L->grid[0], by_ = b_ / L->grid[0] % L->grid[1], bz_ = b_ / ((uint64_t)L->grid[0] * L->grid[1]); \
        for (uint32_t tz = 0; tz < L->block[2]; tz++) \
        for (uint32_t ty = 0; ty < L->block[1]; ty++) \
        for (uint32_t tx = 0; tx < L->block[0]; tx++) { \
            uint64_t gx = bx_ * L->block[0] + tx, gy = by_ * L->block[1] + ty, gz = bz_ * L->block[2] + tz; \
            (void)gx; (void)gy; (void)gz;
#define THREADS_END }}
#define KERNEL_ARGS(T) const T *a = (const T *)args
"""

CUDA_PRELUDE = r"""
typedef unsigned int uint32_t; typedef unsigned long long uint64_t; typedef int int32_t; typedef long long int64_t;
#define GLOBAL_COORDS \
    uint64_t gx = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; \
    uint64_t gy = blockIdx.y * (uint64_t)blockDim.y + threadIdx.y; \
    uint64_t gz = blockIdx.z * (uint64_t)blockDim.z + threadIdx.z; (void)gy; (void)gz;
"""


@dataclass(frozen=True)
class TestKernel:
    params: tuple
    c: str       # body of KOS_KERNEL(name), args struct named by the kernel
    cuda: str    # full extern "C" __global__ definition


KERNELS = {
    # y[i] = a * x[i] + y[i] for i < n
    "saxpy": TestKernel(
        ("ptr", "ptr", "f32", "u32"),
        c="""typedef struct { float *y; const float *x; float alpha; uint32_t n; } saxpy_args;
KOS_KERNEL(saxpy) { KERNEL_ARGS(saxpy_args);
    THREADS_BEGIN if (gx < a->n) a->y[gx] = a->alpha * a->x[gx] + a->y[gx]; THREADS_END }""",
        cuda="""extern "C" __global__ void saxpy(float *y, const float *x, float alpha, uint32_t n) {
    GLOBAL_COORDS if (gx < n) y[gx] = alpha * x[gx] + y[gx]; }"""),
    # every scalar type, in an order that needs padding, copied back out by thread 0
    "scalars": TestKernel(
        ("ptr", "i32", "ptr", "u32", "f32", "i64", "f64", "u64"),
        c="""typedef struct { uint64_t *out_u; int32_t i; double *out_f; uint32_t u; float f; int64_t q; double d; uint64_t uq; } scalars_args;
KOS_KERNEL(scalars) { KERNEL_ARGS(scalars_args);
    THREADS_BEGIN if (gx == 0 && gy == 0 && gz == 0) {
        a->out_u[0] = (uint64_t)(int64_t)a->i; a->out_u[1] = a->u; a->out_u[2] = (uint64_t)a->q; a->out_u[3] = a->uq;
        a->out_f[0] = a->f; a->out_f[1] = a->d; } THREADS_END }""",
        cuda="""extern "C" __global__ void scalars(uint64_t *out_u, int32_t i, double *out_f, uint32_t u, float f, int64_t q, double d, uint64_t uq) {
    GLOBAL_COORDS if (gx == 0 && gy == 0 && gz == 0) {
        out_u[0] = (uint64_t)(int64_t)i; out_u[1] = u; out_u[2] = (uint64_t)q; out_u[3] = uq; out_f[0] = f; out_f[1] = d; } }"""),
    # out[z][y][x] = x + 1000 y + 1000000 z inside (nx, ny, nz)
    "index3": TestKernel(
        ("ptr", "u32", "u32", "u32"),
        c="""typedef struct { uint32_t *out; uint32_t nx, ny, nz; } index3_args;
KOS_KERNEL(index3) { KERNEL_ARGS(index3_args);
    THREADS_BEGIN if (gx < a->nx && gy < a->ny && gz < a->nz)
        a->out[(gz * a->ny + gy) * a->nx + gx] = (uint32_t)(gx + 1000 * gy + 1000000 * gz); THREADS_END }""",
        cuda="""extern "C" __global__ void index3(uint32_t *out, uint32_t nx, uint32_t ny, uint32_t nz) {
    GLOBAL_COORDS if (gx < nx && gy < ny && gz < nz) out[(gz * ny + gy) * nx + gx] = (uint32_t)(gx + 1000 * gy + 1000000 * gz); }"""),
    # p[i] += 1 for i < n
    "increment": TestKernel(
        ("ptr", "u32"),
        c="""typedef struct { uint32_t *p; uint32_t n; } increment_args;
KOS_KERNEL(increment) { KERNEL_ARGS(increment_args);
    THREADS_BEGIN if (gx < a->n) a->p[gx] += 1; THREADS_END }""",
        cuda="""extern "C" __global__ void increment(uint32_t *p, uint32_t n) { GLOBAL_COORDS if (gx < n) p[gx] += 1; }"""),
    "empty": TestKernel(
        (),
        c="KOS_KERNEL(empty) { (void)L; (void)block_begin; (void)block_end; (void)args; }",
        cuda='extern "C" __global__ void empty() {}'),
    # stores to an address that is not mapped: the device must fault, not hang or corrupt
    "bad_store": TestKernel(
        ("u64",),
        c="""typedef struct { uint64_t addr; } bad_store_args;
KOS_KERNEL(bad_store) { KERNEL_ARGS(bad_store_args);
    THREADS_BEGIN *(volatile uint32_t *)(uintptr_t)a->addr = 1; THREADS_END }""",
        cuda="""extern "C" __global__ void bad_store(uint64_t addr) { *(volatile uint32_t *)addr = 1; }"""),
}


def source(name: str, arch: str):
    """The kernel's source for a target arch, or None when the suite has none for it."""
    k = KERNELS[name]
    if arch.startswith("cpu-"):
        return C_PRELUDE + k.c + "\n"
    if arch.startswith("sm_"):
        return CUDA_PRELUDE + k.cuda + "\n"
    return None
