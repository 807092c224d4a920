"""Which batch-1 GEMV kernel design runs the MLP's 8 x (1024x1024 fp32 GEMV + bias + ReLU) chain
fastest on this card, against PyTorch's CUDA graph of the same chain, in one run.

Each variant is a CUDA kernel y[n] = relu(dot(W[n, 0:K], x) + b[n]) (W row-major [N, K], as the
builder stores a transposed weight) generated here from a few design knobs (Variant): output rows
per block, threads per row (a half warp, a warp, or 2 / 4 warps combined through shared memory),
rows per thread group (x read once, reused for several rows), float4 loads all issued before any
FMA or in batches of `unroll`, 32- or 64-bit index math, the weights' load instruction (plain,
__ldg, ld.global.nc.L1::no_allocate, a createpolicy L2 evict_last policy (sm_90 has no .v4 ld with the
plain .L2::evict_last qualifier), an
L2 256-byte prefetch), x staged in shared memory, a grid-stride loop over fewer blocks, launch
bounds' min blocks, and programmatic dependent launch (PDL: a layer's weight loads issued while the
previous layer still runs; then griddepcontrol.wait, then x is read). The builder's own kernel for the
layer (kernelos.builder) runs as the row "builder", and in other KOS_CUDA_GEMV shapes of its
template (cuda/gemv.cu) as rows "builder RxL" (group "builder"). All compile with NVRTC (hal.compile) and launch
through libcuda on PyTorch's stream (bench.gemm_cuda's CudaLib / median_us), so CUDA events time
the kernels alone: "layer us" is one launch, "chain us" the 8 layers back to back (8 distinct
weights, 32 MB: L2-resident between chains on a 50 MB L2), both medians over batches of back-to-back
launches queued behind a GPU sleep. "same-W chain" runs layer 0's weights 8 times (4 MB, surely in
L2), which tells an L2 capacity limit apart from a latency limit; "empty" is a do-nothing kernel of
the builder's grid, the launch floor. Every output (NaN-poisoned first) is checked against float64:
max |out - ref| / max |ref| <= 1e-4.

    python -m bench.gemv_variants                       # every group, the table to stdout
    python -m bench.gemv_variants --group hints --out F # one group, rows appended to F as they come

Needs torch with CUDA and libcuda; prints why it skips otherwise.
"""

import argparse
import ctypes
import datetime
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from bench.gemm_cuda import CudaLib, median_us, rel_error

N = K = 1024
LAYERS = 8
TOLERANCE = 1e-4
CHAIN_BATCH = 25            # chains per timed batch (200 launches, queued behind a longer sleep)
CHAIN_SLEEP_CYCLES = 6_000_000
PDL_ATTRIBUTE = 6           # CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION


@dataclass(frozen=True)
class Variant:
    rpb: int = 8            # output rows per block
    tpr: int = 32           # threads per row: 16, 32, 64 or 128 (above 32: shared-memory combine)
    rpt: int = 1            # rows per thread group (x loaded once, reused for each)
    unroll: int = 0         # float4 steps per batch of loads; 0: every load issued before any FMA
    ix: str = "int"         # index type
    load: str = "plain"     # the weights' load: see LOADS
    xsmem: bool = False     # x staged in shared memory by the block first
    grid: int = 0           # 0: one block per rpb rows; else a grid-stride loop over this many blocks
    minb: int = 0           # __launch_bounds__ min blocks per SM (0: none)
    pdl: bool = False       # programmatic dependent launch
    bulk: int = 0           # the block's weight rows copied to shared memory by TMA (cp.async.bulk):
                            # 1 copy per block or (2) one per row; no grid-stride, plain loads only

    @property
    def threads(self) -> int:
        return self.rpb // self.rpt * self.tpr

    @property
    def blocks(self) -> int:
        return self.grid or -(-N // self.rpb)

    @property
    def label(self) -> str:
        base = Variant()
        parts = [f"rpb{self.rpb}", f"tpr{self.tpr}"]
        parts += [f"{k}={getattr(self, k)}" for k in ("rpt", "unroll", "ix", "load", "xsmem", "grid", "minb", "pdl", "bulk")
                  if getattr(self, k) != getattr(base, k)]
        return " ".join(parts)


# the weights' float4 load: C expression of a `const float4 *` p (pol: a createpolicy register)
_V4 = 'asm volatile("{ins} {{%0, %1, %2, %3}}, [%4]{pol};" : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "l"(p){arg});'
LOADS = {
    "plain": None,
    "ldg": None,
    "nc": ("ld.global.nc.v4.f32", False),     # as ldg, but asm volatile: stays before griddepcontrol.wait
    "nc_na": ("ld.global.nc.L1::no_allocate.v4.f32", False),
    "policy": ("ld.global.nc.L2::cache_hint.v4.f32", True),          # createpolicy evict_last
    "policy_coherent": ("ld.global.L2::cache_hint.v4.f32", True),
    "policy_nc_na": ("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.f32", True),
    "prefetch256": ("ld.global.nc.L2::256B.v4.f32", False),
}


# x's float4 load: with PDL a coherent ld.global in asm, because ptxas moves the ld.global.nc that
# a const __restrict__ pointer gets above griddepcontrol.wait (seen in the SASS), before x is written
_X_LOAD = {False: "__device__ __forceinline__ float4 ldx(const float4 *p) { return *p; }",
           True: "__device__ __forceinline__ float4 ldx(const float4 *p) { float4 v; "
                 + _V4.format(ins="ld.global.v4.f32", pol="", arg="") + " return v; }"}


def _load_fn(load: str) -> str:
    if load == "plain":
        return "__device__ __forceinline__ float4 ldw(const float4 *p, uint64_t) { return *p; }"
    if load == "ldg":
        return "__device__ __forceinline__ float4 ldw(const float4 *p, uint64_t) { return __ldg(p); }"
    ins, pol = LOADS[load]
    body = _V4.format(ins=ins, pol=", %5" if pol else "", arg=', "l"(pol)' if pol else "")
    return f"__device__ __forceinline__ float4 ldw(const float4 *p, uint64_t pol) {{ float4 v; {body} return v; }}"


def source(v: Variant, name: str = "gemv", relu: bool = True) -> str:
    """CUDA source of variant v for this N x K layer."""
    k4 = K // 4
    steps, tail = divmod(k4, v.tpr)
    nblk = -(-N // v.rpb)
    bounds = f"{v.threads}, {v.minb}" if v.minb else f"{v.threads}"
    lines = ["typedef unsigned long long uint64_t;", "typedef long long int64_t;", _load_fn(v.load), _X_LOAD[v.pdl],
             "__device__ __forceinline__ float dot4(float4 a, float4 b, float acc) {",
             "    return fmaf(a.w, b.w, fmaf(a.z, b.z, fmaf(a.y, b.y, fmaf(a.x, b.x, acc)))); }",
             f'extern "C" __global__ void __launch_bounds__({bounds}) {name}(const float *__restrict__ x, '
             "const float *__restrict__ w, const float *__restrict__ b, float *__restrict__ y) {",
             f"    typedef {v.ix} ix;"]
    if v.pdl:
        lines.append('    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");')
    lines.append("    uint64_t pol = 0; (void)pol;")
    if v.load.startswith("policy"):
        lines.append('    asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(pol));')
    lines += [f"    const ix g = threadIdx.x / {v.tpr}, l = threadIdx.x % {v.tpr};",
              "    const float4 *w4 = (const float4 *)w;" if not v.bulk else "    const float4 *w4;"]
    wait = '    asm volatile("griddepcontrol.wait;" ::: "memory");' if v.pdl else ""
    if v.xsmem:
        lines += [wait, f"    __shared__ float4 xs[{k4}];",
                  f"    for (int j = threadIdx.x; j < {k4}; j += {v.threads}) xs[j] = ldx((const float4 *)x + j);",
                  "    __syncthreads();", "    const float4 *x4 = xs;"]
        wait = ""
    else:
        lines.append("    const float4 *x4 = (const float4 *)x;")
    if v.tpr > 32:
        lines.append(f"    __shared__ float part[{v.threads // 32}][{v.rpt}];")
    lines += [f"    for (ix blk = blockIdx.x; blk < {nblk}; blk += {v.blocks}) {{",
              f"    const ix row0 = blk * {v.rpb} + g * {v.rpt};",
              f"    float acc[{v.rpt}];",
              f"    const float4 *wr[{v.rpt}];"]
    if v.bulk:
        lines += _bulk_copy(v, wait)
        wait = ""
        row = f"(g * {v.rpt} + r) * {k4}"
    else:
        row = f"(ix)min((int)(row0 + r), {N - 1}) * {k4}"
    lines += ["    #pragma unroll",
              f"    for (int r = 0; r < {v.rpt}; r++) {{ acc[r] = 0.0f; wr[r] = w4 + {row} + l; }}"]
    if v.unroll == 0:     # every load first (registers: rpt * steps float4)
        lines += [f"    float4 wv[{v.rpt}][{max(steps, 1)}];",
                  "    #pragma unroll", f"    for (int s = 0; s < {steps}; s++)",
                  "        #pragma unroll", f"        for (int r = 0; r < {v.rpt}; r++) wv[r][s] = ldw(wr[r] + {v.tpr} * s, pol);",
                  _wait_after_loads(v, steps) if wait else "",
                  "    #pragma unroll", f"    for (int s = 0; s < {steps}; s++) {{",
                  f"        const float4 xv = ldx(x4 + l + {v.tpr} * s);",
                  "        #pragma unroll", f"        for (int r = 0; r < {v.rpt}; r++) acc[r] = dot4(xv, wv[r][s], acc[r]);",
                  "    }"]
    else:
        lines += [wait, f"    #pragma unroll {v.unroll}", f"    for (int s = 0; s < {steps}; s++) {{",
                  f"        const float4 xv = ldx(x4 + l + {v.tpr} * s);",
                  "        #pragma unroll", f"        for (int r = 0; r < {v.rpt}; r++) acc[r] = dot4(xv, ldw(wr[r] + {v.tpr} * s, pol), acc[r]);",
                  "    }"]
    if tail:
        lines += [f"    if (l < {tail}) {{", f"        const float4 xv = ldx(x4 + l + {v.tpr * steps});",
                  "        #pragma unroll",
                  f"        for (int r = 0; r < {v.rpt}; r++) acc[r] = dot4(xv, ldw(wr[r] + {v.tpr * steps}, pol), acc[r]);",
                  "    }"]
    width = min(v.tpr, 32)
    lines += ["    #pragma unroll", f"    for (int r = 0; r < {v.rpt}; r++)",
              f"        for (int o = {width // 2}; o > 0; o >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);"]
    if v.tpr > 32:
        lines += ["    if ((threadIdx.x & 31) == 0)", f"        for (int r = 0; r < {v.rpt}; r++) part[threadIdx.x >> 5][r] = acc[r];",
                  "    __syncthreads();",
                  "    if (l == 0)", f"        for (int r = 0; r < {v.rpt}; r++) {{",
                  f"            float s = 0.0f; for (int j = 0; j < {v.tpr // 32}; j++) s += part[(threadIdx.x >> 5) + j][r];",
                  "            acc[r] = s; }",
                  "    __syncthreads();"]
    act = "fmaxf(t, 0.0f)" if relu else "t"
    lines += ["    if (l == 0)", "        #pragma unroll", f"        for (int r = 0; r < {v.rpt}; r++)",
              f"            if (row0 + r < {N}) {{ const float t = acc[r] + b[row0 + r]; y[row0 + r] = {act}; }}",
              "    }", "}"]
    return "\n".join(ln for ln in lines if ln)


def _wait_after_loads(v: Variant, steps: int) -> str:
    """griddepcontrol.wait after a store that depends on every loaded weight (and never happens: a
    sum of floats never has this NaN payload), so ptxas cannot sink the loads past the wait."""
    return (f"    float dep = 0.0f;\n    #pragma unroll\n    for (int s = 0; s < {steps}; s++)\n        #pragma unroll\n"
            f"        for (int r = 0; r < {v.rpt}; r++) dep += wv[r][s].x;\n"
            "    if (__float_as_uint(dep) == 0x7fc00001u) y[0] = dep;\n"
            '    asm volatile("griddepcontrol.wait;" ::: "memory");')


def _bulk_copy(v: Variant, wait: str) -> list:
    """Thread 0 copies the block's rows of W into shared memory with cp.async.bulk (TMA), completing
    on an mbarrier every thread then waits on; w4 then points at the shared copy."""
    if v.grid or v.load != "plain":
        raise ValueError("bulk copies need one block per rpb rows and plain loads")
    row_B = K * 4
    copies = ([("0", f"rows * {row_B}")] if v.bulk == 1 else
              [(f"{r} * {row_B}", f"{row_B}") for r in range(v.rpb)])
    issue = []
    for off, size in copies:
        cond = "" if v.bulk == 1 else f"if ({off} < rows * {row_B}) "
        issue.append(f'        {cond}asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes '
                     f'[%0], [%1], %2, [%3];" :: "r"(ws_a + {off}), "l"(w + (blk * {v.rpb}) * {K} + ({off}) / 4), '
                     f'"r"({size}), "r"(bar_a) : "memory");')
    return [f"    __shared__ __align__(128) float4 ws[{v.rpb * K // 4}];",
            "    __shared__ __align__(8) unsigned long long bar;",
            "    const unsigned ws_a = (unsigned)__cvta_generic_to_shared(ws), bar_a = (unsigned)__cvta_generic_to_shared(&bar);",
            f"    const unsigned rows = min({v.rpb}, {N} - (int)blk * {v.rpb});",
            "    if (threadIdx.x == 0) {",
            '        asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(bar_a) : "memory");',
            '        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");',
            '        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");',
            "    }",
            "    __syncthreads();",
            "    if (threadIdx.x == 0) {",
            f'        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(bar_a), "r"(rows * {row_B}) : "memory");',
            *issue,
            "    }",
            wait,
            "    for (unsigned done = 0; !done;)",
            '        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0; selp.u32 %0, 1, 0, p; }"',
            '                     : "=r"(done) : "r"(bar_a) : "memory");',
            "    w4 = ws;"]


def empty_source(name="empty") -> str:
    return (f'extern "C" __global__ void {name}(const float *x, const float *w, const float *b, float *y) '
            "{ if (x == y) y[0] = w[0] + b[0]; }")


GROUPS = {
    # rows per block, threads per row, rows per thread group (a warp per row, all loads first)
    "shape": [Variant(rpb=r) for r in (1, 2, 4, 8, 16, 32)]
    + [Variant(rpb=r, tpr=t) for t in (16, 64, 128) for r in (2, 4, 8) if r * t <= 1024]
    + [Variant(rpb=r, rpt=p, tpr=t) for p in (2, 4) for r in (8, 16, 32) for t in (16, 32)
       if r // p * t >= 64 and p * (K // 4 // t) <= 32],
    # load batching, index width, x in shared memory, grid-stride, launch bounds
    "loop": [Variant(rpb=r, unroll=u) for r in (4, 8) for u in (1, 2, 4)]
    + [Variant(rpb=r, ix="int64_t") for r in (4, 8)] + [Variant(rpb=8, ix="int64_t", unroll=8)]
    + [Variant(rpb=r, xsmem=True) for r in (4, 8, 16)] + [Variant(rpb=16, rpt=2, xsmem=True)]
    + [Variant(rpb=r, grid=g) for r, g in ((4, 132), (4, 66), (2, 264), (8, 64), (1, 528))]
    + [Variant(rpb=r, minb=m) for r, m in ((4, 4), (8, 2), (2, 8))],
    # the weights' load instruction
    "hints": [Variant(rpb=r, load=ld) for ld in LOADS if ld != "plain" for r in (4, 8)],
    # programmatic dependent launch: weights loaded while the previous layer runs
    "pdl": [Variant(rpb=r, pdl=True, load="nc") for r in (2, 4, 8, 16)]
    + [Variant(rpb=8, tpr=16, pdl=True, load="nc"), Variant(rpb=8, rpt=2, pdl=True, load="nc"),
       Variant(rpb=16, rpt=2, pdl=True, load="nc"), Variant(rpb=4, pdl=True, load="nc_na"),
       Variant(rpb=4, pdl=True, load="policy"), Variant(rpb=8, pdl=True, load="policy"), Variant(rpb=8, pdl=True)],
    # the block's weight rows fetched by TMA bulk copies into shared memory
    "bulk": [Variant(rpb=r, bulk=c) for r in (4, 8) for c in (1, 2)] + [Variant(rpb=8, bulk=2, pdl=True),
                                                                      Variant(rpb=4, bulk=1, pdl=True)],
}


class Bench:
    """The layer's buffers on the GPU, the float64 references and the launch helpers."""

    def __init__(self, torch, cuda, arch):
        self.torch, self.cuda, self.arch = torch, cuda, arch
        rng = np.random.default_rng(0)
        self.w = [(rng.standard_normal((N, K)) / np.sqrt(K)).astype(np.float32) for _ in range(LAYERS)]
        self.b = [rng.standard_normal(N).astype(np.float32) * 0.1 for _ in range(LAYERS)]
        self.x = rng.standard_normal(K).astype(np.float32)
        h = self.x.astype(np.float64)
        self.refs = []
        for w, b in zip(self.w, self.b):
            h = np.maximum(w.astype(np.float64) @ h + b, 0.0)
            self.refs.append(h)
        h = self.x.astype(np.float64)
        for _ in range(LAYERS):
            h = np.maximum(self.w[0].astype(np.float64) @ h + self.b[0], 0.0)
        self.same_ref = h
        dev = "cuda"
        self.wd = [torch.from_numpy(w).to(dev) for w in self.w]
        self.bd = [torch.from_numpy(b).to(dev) for b in self.b]
        self.acts = [torch.from_numpy(self.x).to(dev)] + [torch.empty(N, device=dev) for _ in range(LAYERS)]
        self.stream = torch.cuda.current_stream().cuda_stream
        self._ex = None

    def launcher(self, fn, v_grid, v_block, layer, same_w=False, pdl=False):
        wl = 0 if same_w else layer
        ptrs = [self.acts[layer].data_ptr(), self.wd[wl].data_ptr(), self.bd[wl].data_ptr(),
                self.acts[layer + 1].data_ptr()]
        if not pdl:
            return self.cuda.launcher(fn, v_grid, v_block, ptrs, self.stream)
        return self._pdl_launcher(fn, v_grid, v_block, ptrs)

    def _pdl_launcher(self, fn, grid, block, pointers):
        """cuLaunchKernelEx with programmatic stream serialisation allowed."""
        class Attr(ctypes.Structure):
            _fields_ = [("id", ctypes.c_int), ("pad", ctypes.c_char * 4), ("value", ctypes.c_int * 16)]

        class Config(ctypes.Structure):
            _fields_ = [("dims", ctypes.c_uint * 7), ("stream", ctypes.c_void_p), ("attrs", ctypes.POINTER(Attr)),
                        ("num_attrs", ctypes.c_uint)]
        lib = self.cuda.lib
        lib.cuLaunchKernelEx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        attr = Attr(PDL_ATTRIBUTE)
        attr.value[0] = 1
        cfg = Config((ctypes.c_uint * 7)(*grid, *block, 0), self.stream, ctypes.pointer(attr), 1)
        ptrs = (ctypes.c_uint64 * len(pointers))(*pointers)
        params = (ctypes.c_void_p * len(pointers))(*[ctypes.addressof(ptrs) + 8 * i for i in range(len(pointers))])

        def launch():
            rc = lib.cuLaunchKernelEx(ctypes.byref(cfg), fn, params, None)
            if rc:
                raise RuntimeError(f"cuLaunchKernelEx failed: CUresult {rc}")
        launch.keep = (attr, cfg, ptrs, params)
        return launch

    def poison(self):
        for a in self.acts[1:]:
            a.fill_(float("nan"))

    def out(self, layer):
        return self.acts[layer + 1].cpu().numpy()

    def measure(self, fn, grid, block, pdl=False):
        """(layer us, chain us, same-W chain us, error) of a kernel taking (x, W, b, y)."""
        torch = self.torch
        self.poison()
        layer0 = self.launcher(fn, grid, block, 0, pdl=pdl)
        layer0()
        torch.cuda.synchronize()
        err = rel_error(self.out(0), self.refs[0])
        chain = [self.launcher(fn, grid, block, i, pdl=pdl) for i in range(LAYERS)]
        same = [self.launcher(fn, grid, block, i, same_w=True, pdl=pdl) for i in range(LAYERS)]
        self.poison()
        run_chain = _seq(chain)
        run_chain()
        torch.cuda.synchronize()
        err = max(err, rel_error(self.out(LAYERS - 1), self.refs[-1]))
        layer_us = median_us(torch, layer0)
        chain_us = median_us(torch, run_chain, CHAIN_BATCH, CHAIN_SLEEP_CYCLES)
        same_us = median_us(torch, _seq(same), CHAIN_BATCH, CHAIN_SLEEP_CYCLES)
        self.poison()
        _seq(same)()
        torch.cuda.synchronize()
        err = max(err, rel_error(self.out(LAYERS - 1), self.same_ref))
        return layer_us, chain_us, same_us, err

    def torch_graph(self):
        """(layer us, chain us, error) of PyTorch's relu(x @ W.T + b) chain captured in a CUDA graph."""
        torch = self.torch
        F = torch.nn.functional

        def chain(layers):
            h = self.acts[0]
            for i in range(layers):
                h = torch.relu(F.linear(h, self.wd[i], self.bd[i]))
            return h
        out = {}
        for layers in (1, LAYERS):
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    chain(layers)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                y = chain(layers)
            g.replay()
            torch.cuda.synchronize()
            out[layers] = (median_us(torch, g.replay), y.cpu().numpy(), g)
        return out[1][0], out[LAYERS][0], rel_error(out[LAYERS][1], self.refs[-1])


def _seq(fns):
    def run():
        for f in fns:
            f()
    return run


def builder_kernel(arch, shape=None):
    """(source, name, grid, block) of the builder's kernel for one ReLU layer of the demo MLP (with
    the GEMV template shaped `shape`, as KOS_CUDA_GEMV, instead of the default, if given)."""
    from kernelos.builder import codegen
    from kernelos.builder.build import lower_model
    from kernelos.builder.demo_model import demo_mlp
    from kernelos.dag import Launch
    default = codegen.CUDA_GEMV_SHAPE
    codegen.CUDA_GEMV_SHAPE = shape or default
    try:
        low = lower_model(demo_mlp(width=N, layers=2), [arch])
    finally:
        codegen.CUDA_GEMV_SHAPE = default
    node = [n for n in low.dag.nodes if isinstance(n, Launch)][0]
    if [a.buffer for a in node.args] != ["x", "w0.T", "b0", "h0"]:
        raise RuntimeError(f"unexpected builder kernel args {[a.buffer for a in node.args]}")
    grid, block = node.dims[arch]
    return low.specs[node.kernel].source("cuda", node.kernel), node.kernel, tuple(grid), tuple(block)


# KOS_CUDA_GEMV shapes (outputs per block x lanes per output) of the builder's GEMV template (group "builder")
BUILDER_SHAPES = ["1x32", "2x32", "4x32", "16x32", "2x16", "4x16", "8x16", "16x16", "4x8", "8x8", "16x8"]


def compile_all(arch, groups):
    """{label: (cubin or exception, name, grid, block, pdl)} compiled in parallel."""
    import hal
    jobs = {"empty": (empty_source(), "empty", (-(-N // 8), 1, 1), (256, 1, 1), False)}
    for shape in [None] + (BUILDER_SHAPES if "builder" in groups else []):
        try:
            src, name, grid, block = builder_kernel(arch, shape)
            jobs[f"builder {shape}" if shape else "builder"] = (src, name, grid, block, False)
        except Exception as e:
            print(f"builder kernel {shape} unavailable: {type(e).__name__}: {e}")
    for g in (g for g in groups if g != "builder"):
        for v in GROUPS[g]:
            jobs[v.label] = (source(v), "gemv", (v.blocks, 1, 1), (v.threads, 1, 1), v.pdl)

    def one(item):
        label, (src, name, grid, block, pdl) = item
        try:
            return label, (hal.compile(src, name, arch), name, grid, block, pdl)
        except Exception as e:
            return label, (e, name, grid, block, pdl)
    with ThreadPoolExecutor(8) as ex:
        return dict(ex.map(one, jobs.items()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gemv_variants")
    ap.add_argument("--group", action="append", choices=list(GROUPS) + ["builder"],
                    help="variant groups (default: all); builder: the builder's GEMV template in each BUILDER_SHAPES")
    ap.add_argument("--out", help="also append the table rows to this file as they come")
    ap.add_argument("--budget-s", type=float, default=150.0, help="stop starting variants after this long")
    ap.add_argument("--list", action="store_true",
                    help="compile the variants for sm_90 and print their registers and local memory (no GPU)")
    args = ap.parse_args(argv)
    groups = args.group or ["builder"] + list(GROUPS)
    t0 = time.monotonic()
    if args.list:
        from drivers.nvidia.cubin import Cubin
        bad = 0
        for label, (cubin, name, grid, block, _) in compile_all("sm_90", groups).items():
            if isinstance(cubin, bytes):
                attrs = Cubin(cubin).kernel(name)
                bad += attrs.local_B > 0
                print(f"{label}: ok, {grid[0]}x{block[0]}, {attrs.regs} registers, {attrs.local_B} B local")
            else:
                bad += 1
                print(f"{label}: {type(cubin).__name__}: {cubin}")
        return 1 if bad else 0
    sink = open(args.out, "a") if args.out else None

    def emit(line):
        print(line, flush=True)
        if sink:
            sink.write(line + "\n")
            sink.flush()
    try:
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.zeros(1, device="cuda")
        torch.cuda.set_stream(torch.cuda.Stream())    # a created stream: PDL launches need one (not the legacy one)
        cuda = CudaLib()
    except Exception as e:
        print(f"skipped: needs torch with CUDA and libcuda ({type(e).__name__}: {e})")
        return 0
    arch = "sm_{}{}".format(*torch.cuda.get_device_capability(0))
    emit(f"card {torch.cuda.get_device_name(0)} ({arch}), torch {torch.__version__}, "
         f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, groups {','.join(groups)}")
    bench = Bench(torch, cuda, arch)
    compiled = compile_all(arch, groups)
    emit(f"compiled {len(compiled)} kernels in {time.monotonic() - t0:.1f} s")
    try:
        t_layer, t_chain, t_err = bench.torch_graph()
        emit(f"| torch CUDA graph | {t_layer:.2f} | {t_chain:.2f} | {t_chain / LAYERS:.2f} | - | {t_err:.1e} | - |")
    except Exception as e:
        emit(f"| torch CUDA graph | error: {type(e).__name__}: {e} |")
    emit("| variant | layer us | chain us | chain us / layer | same-W chain us | err | grid x block |")
    emit("|---|---|---|---|---|---|---|")
    failed = 0
    for label, (cubin, name, grid, block, pdl) in compiled.items():
        if time.monotonic() - t0 > args.budget_s:
            emit(f"budget of {args.budget_s} s spent: stopped before {label}")
            break
        try:
            if not isinstance(cubin, bytes):
                raise cubin
            fn = cuda.function(cubin, name)
            layer_us, chain_us, same_us, err = bench.measure(fn, grid, block, pdl)
            bad = label != "empty" and not err <= TOLERANCE
            failed += bad
            emit(f"| {label} | {layer_us:.2f} | {chain_us:.2f} | {chain_us / LAYERS:.2f} | {same_us:.2f} | "
                 f"{'-' if label == 'empty' else f'{err:.1e}'}{' FAIL' if bad else ''} | {grid[0]}x{block[0]} |")
        except Exception as e:
            failed += 1
            emit(f"| {label} | error: {type(e).__name__}: {str(e)[:300]} |")
    emit(f"{failed} variant(s) failed; {time.monotonic() - t0:.1f} s")
    return 1 if failed else 0


def run():
    """`python -m bench` entry."""
    main([])


if __name__ == "__main__":
    sys.exit(main())
