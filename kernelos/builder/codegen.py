"""Kernel source generation: the same computation rendered as cpu C and as CUDA C.

Every generated kernel is a *pointwise* kernel: for each output element i it computes the output
coordinates c0..c{r-1}, runs an anchor (an expression, an index map, or a reduction over nested
loops), applies the fused elementwise epilogue and stores. How the outputs map onto hardware is the
template's choice per target: on cpu, blocks are chunks of outputs (cpu/pointwise.c) or groups of
output rows that an anchor accumulates with vectorised inner loops (cpu/rows.c: convolution, GEMV);
on CUDA, a thread, a warp or a block per output (cuda/pointwise*.cu) by reduction length, a group of
lanes per output for float4 dot products (cuda/gemv.cu: batch-1 GEMV), and fp32
reductions that are GEMMs (matmul, one-group 2-D conv as an implicit GEMM: `TiledGemm`) a block per
output tile, split along k over groups of threads inside the block, that runs the same epilogue per
output (cuda/gemm_tiled.cu; the tiling from a fitted cost model, tile_launch). Constants
(shapes, strides, scalars) are baked into the source so the compilers fold index arithmetic;
identical sources compile once (compile.py).
"""

import functools
import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import numpy as np

from hal.errors import GraphError

KERNELS_DIR = Path(__file__).resolve().parent.parent / "kernels"
NAME_PLACEHOLDER = "KOS_KERNEL_NAME"
CPU_CHUNK = 2048            # output elements per cpu block (a unit of work for one executor thread)
CPU_REDUCE_CHUNK = 16       # for kernels with a reduction per output element
CUDA_THREADS = 256
CUDA_WARP_MIN_REDUCE = 64   # reductions at least this long get a warp per output on CUDA...
CUDA_BLOCK_MIN_REDUCE = 1024  # ...and these a block per output, where there are few outputs:
CUDA_BLOCK_MAX_OUTPUTS = 8192  # a batch-1 layer's weights then stream with enough loads in flight...
CUDA_GEMV_BLOCK_MAX_OUTPUTS = 512  # ...but a float4 dot product needs a block only below this many
                                   # outputs; more get a group of lanes each, loads unrolled (in flight
                                   # together): the GEMV template cuda/gemv.cu, shaped by
CUDA_GEMV_SHAPE = os.environ.get("KOS_CUDA_GEMV", "8x32")  # "ROWSxLANES": outputs per block x lanes per
                                   # output (8, 16 or 32); bench/gemv_variants.py times the choices
CUDA_TILED_MIN_MN = 16      # fp32 GEMMs (matmul, conv as implicit GEMM) at least this big in M and N
                            # run the tiled template; smaller ones (batch-1 GEMV) a warp per output
CUDA_THREAD_TILES = ((8, 8), (8, 4), (4, 8), (4, 4))   # (tm, tn) outputs per thread of the tiled template
CUDA_TILE_MAX = 128         # bm, bn at most this
CUDA_TILE_KS = (16, 8, 4)   # panel depths bk
CUDA_TILE_MAX_THREADS = 512  # per block: 128 registers per thread still leave one block per SM
CUDA_TILE_MAX_GROUPS = 16   # k groups per block (in-block split-K)
CUDA_TILE_SMEM_B = 48 * 1024  # static shared memory per block
CUDA_FILL_BLOCKS = 132      # SMs of an H100 / H200 (the cost model spreads the grid over these)
# The cost model (_tile_cost_clk): clocks of the busiest SM as a sum of terms (tile_cost_terms) times
# these weights, fitted (`python -m bench.gemm_cuda --fit TABLE...`) to 168 tilings of the GPT-2 and
# ResNet-18 GEMM shapes timed by bench/gemm_cuda.py on an H200 (2026-11-26, driver 580.159.04; the
# table: bench/gemm_cuda_h200.txt, sweep 2; median error 9%): per panel step a fixed part (barriers,
# load latency not hidden), the floats the SM loads into its panels (float4 loads, scalar loads, a
# convolution's gathered window elements) and its issue slots (FFMA and float4 shared reads per
# scheduler); per pass and warp of the k groups' reduction; per launch. These weights chose the
# tilings that passed bench/e2e (sweep 3 of that file); they were fitted before 8x8 thread tiles got
# 160 registers, and a refit to sweep 2 alone now gives step 409, vec_float 0.219, scalar_float
# 0.904, gathered_float 0.565, issue 0.899, combine 103, launch 3820, which moves one pick (the
# attention scores GEMM: 2 k groups instead of 4, not timed).
CUDA_COST_CLK = {"step": 433.0, "vec_float": 0.22, "scalar_float": 0.99, "gathered_float": 0.56, "issue": 0.90,
                 "combine": 100.0, "launch": 3813.0}
# Build-time knob: KOS_CUDA_TILED=2 (default) renders GEMMs (matmul, conv) with the tiled template in
# all its forms, 1 with one k group per block only, 0 with the reduction templates (a warp or block per
# output). The first tiled template at level 2 passed `pytest -m nvidia tests/builder` and bench/e2e on
# an H200 (driver 580.159.04, 2026-11-26): ResNet-18 shape 6746 -> 928 us, GPT-2 shape 8043 -> 4357 us;
# bench/gemm_cuda.py times the current one per GEMM shape against PyTorch.
CUDA_TILED_LEVEL = int(os.environ.get("KOS_CUDA_TILED", "2"))

# numpy dtype name -> C type (the same spelling for C and CUDA: the CUDA prelude typedefs them)
CTYPES = {
    "float32": "float", "float64": "double", "int64": "int64_t", "int32": "int32_t", "int16": "int16_t",
    "int8": "int8_t", "uint8": "uint8_t", "uint16": "uint16_t", "uint32": "uint32_t", "uint64": "uint64_t",
    "bool": "uint8_t", "float16": "kos_half",
}
FLOAT_DTYPES = ("float16", "float32", "float64")


def ctype(dtype: str) -> str:
    try:
        return CTYPES[dtype]
    except KeyError:
        raise GraphError(f"dtype {dtype} is not supported by the kernel library (supported: {', '.join(CTYPES)})") from None


def acc_ctype(dtype: str) -> str:
    """C type to accumulate or compute a dtype in: float16 works in float, the rest in themselves."""
    return "float" if dtype == "float16" else ctype(dtype)


def math_fn(name: str, dtype: str) -> str:
    """C math function for a dtype: expf for float32 (and float16, computed in float), exp for float64."""
    return name if dtype == "float64" else name + "f"


def literal(value, dtype: str) -> str:
    """A C literal of `value` as `dtype`, exact (hex floats), inf/nan through the prelude macros."""
    if dtype in FLOAT_DTYPES:
        v = float(np.asarray(value, dtype=dtype))
        if math.isnan(v):
            return f"(({ctype(dtype)})KOS_NAN)"
        if math.isinf(v):
            return f"(({ctype(dtype)})({'-' if v < 0 else ''}KOS_INF))"
        return f"(({ctype(dtype)}){v.hex()})"
    if dtype == "bool":
        return "((uint8_t)1)" if bool(value) else "((uint8_t)0)"
    v = int(np.asarray(value).astype(dtype))
    if dtype == "int64" and v == -2**63:
        return "((int64_t)(-9223372036854775807LL - 1))"
    suffix = "ULL" if dtype.startswith("uint") else "LL"
    return f"(({ctype(dtype)}){v}{suffix})"


def strides(shape) -> list:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= int(d)
    return out[::-1]


def _template(rel: str) -> Template:
    return Template((KERNELS_DIR / rel).read_text())


def _prelude(family: str) -> str:
    return (KERNELS_DIR / ("cpu/prelude.h" if family == "cpu" else "cuda/prelude.cuh")).read_text()


@dataclass
class Param:
    cname: str
    buffer: str      # DAG buffer name
    ctype: str
    out: bool


@dataclass
class TiledGemm:
    """The reduction is a GEMM: acc(z, m, n) = sum_k A(z, m, k) * B(z, k, n), the output element
    at linear index (z * m + m) * n + n. The loads are C expressions over int64 gz, gm, gn, gk (and
    also valid Python after / -> //: every divided operand is non-negative), read only in range."""
    z: int
    m: int
    n: int
    k: int
    a_load: str             # A(gz, gm, gk)
    b_load: str             # B(gz, gk, gn), read where every condition of b_valid holds (else 0)
    b_k_fastest: bool       # B's memory runs along k (a transposed weight) rather than along n
    b_valid: tuple = ()


@dataclass(frozen=True)
class TileLaunch:
    """How the tiled template covers a TiledGemm: (bm x bn) tiles, each computed by ks k groups of
    tg = (bm / tm) * (bn / tn) threads, a thread owning tm x tn outputs (tm, tn in 4, 8)."""
    bm: int
    bn: int
    bk: int
    tm: int
    tn: int
    tiles_m: int
    tiles_n: int
    grid: int
    ks: int = 1             # k groups per block (in-block split-K)
    k_tiles: int = 0        # bk-deep panels along K
    min_blocks: int = 1     # blocks per SM the register budget is set for (__launch_bounds__)
    vec_a: bool = False     # A's panel loads as float4 along k (A runs contiguously along k)
    vec_b: bool = False     # B's as float4 along its fast axis (k or n, as b_k_fastest)

    @property
    def lanes_m(self) -> int:
        return self.bm // self.tm

    @property
    def lanes_n(self) -> int:
        return self.bn // self.tn

    @property
    def tg(self) -> int:
        """Threads of one k group."""
        return self.lanes_m * self.lanes_n

    @property
    def threads(self) -> int:
        return self.tg * self.ks

    @property
    def steps(self) -> int:
        """Panels each group multiplies (the last ones may lie past K, all zero)."""
        return -(-self.k_tiles // self.ks)

    @property
    def pa(self) -> int:
        """A elements each thread loads per panel (element e = tid + tg j, those past bm * bk none)."""
        return -(-self.bm * self.bk // self.tg)

    @property
    def pb(self) -> int:
        return -(-self.bn * self.bk // self.tg)

    @property
    def sa(self) -> int:
        """Row length of an A panel in shared memory (padded; a multiple of 4 for float4 reads)."""
        return self.bm + 4

    @property
    def sb(self) -> int:
        return self.bn + 4

    @property
    def slab(self) -> int:
        """Accumulators per thread each pass of the groups' reduction moves through shared memory:
        the most (a multiple of 4 dividing tm * tn) that fit the panels' space or the budget."""
        cap = max(self.panel_floats, CUDA_TILE_SMEM_B // 4) // (self.ks * self.tg)
        return max(s for s in range(4, self.tm * self.tn + 1, 4) if (self.tm * self.tn) % s == 0 and s <= max(cap, 4))

    @property
    def own_barrier(self) -> bool:
        """k groups of whole warps synchronise on their own barrier (bar.sync 1 + group, or a warp's
        __syncwarp), so one group's stall leaves the SM to the others; else all on __syncthreads."""
        return self.ks > 1 and self.tg % 32 == 0 and (self.tg == 32 or self.ks <= 15)

    @property
    def panel_floats(self) -> int:
        return self.ks * self.bk * (self.sa + self.sb)

    @property
    def smem_floats(self) -> int:
        return max(self.panel_floats, self.ks * self.slab * self.tg if self.ks > 1 else 0)


def _regs_needed(outs: int) -> int:
    """Register budget per thread the tiled kernel fits in without spilling: its outputs plus their
    operands, the next panels' elements and the index arithmetic (scalar loads of a transposed
    operand take the most); tests/builder/test_cuda_gemm_model.py checks that no tiled kernel of any
    form uses local memory."""
    return 160 if outs == 64 else 128


def tile_cost_terms(z, m, n, k, tm, tn, lm, ln, ks, bk, vec_a=False, vec_b=False, gather=False) -> tuple:
    """({term: count} of the cost model, TileLaunch) for one candidate, or None where it does not fit:
    the next panels' elements in registers (16 per thread with 64 outputs, else 24), the panels in
    shared memory. The grid spreads over CUDA_FILL_BLOCKS SMs, as many blocks at once as registers
    allow; the terms count, on the busiest SM, the steps, floats loaded and issue slots of its steps,
    its warps' reduction passes, and the launch."""
    bm, bn, tg = lm * tm, ln * tn, lm * ln
    threads = tg * ks
    k_tiles = -(-k // bk)
    if ks > k_tiles:
        return None
    tiles_m, tiles_n = -(-m // bm), -(-n // bn)
    tl = TileLaunch(bm, bn, bk, tm, tn, tiles_m, tiles_n, z * tiles_m * tiles_n, ks, k_tiles)
    if tl.pa + tl.pb > (16 if tm * tn == 64 else 24) or 4 * tl.smem_floats > CUDA_TILE_SMEM_B:
        return None
    regs = _regs_needed(tm * tn)
    per_sm = max(1, min(65536 // (threads * regs), 2048 // threads, 228 * 1024 // (4 * tl.smem_floats + 1024)))
    tl = TileLaunch(bm, bn, bk, tm, tn, tiles_m, tiles_n, tl.grid, ks, k_tiles, per_sm, vec_a, vec_b)
    blocks = -(-tl.grid // CUDA_FILL_BLOCKS)          # on the busiest SM
    together = min(blocks, per_sm)
    waves = -(-blocks // together)
    warps = together * threads / 32
    fa, fb = together * ks * bm * bk, together * ks * bn * bk
    vec = fa * vec_a + fb * vec_b
    gathered = fb if gather else 0
    steps = waves * tl.steps
    return {"step": steps, "vec_float": steps * vec, "scalar_float": steps * (fa + fb - vec - gathered),
            "gathered_float": steps * gathered, "issue": steps * warps * bk * (tm * tn + tm / 4 + tn / 4) / 4,
            "combine": waves * (tm * tn // tl.slab) * warps if ks > 1 else 0, "launch": 1}, tl


def _tile_cost_clk(*args) -> tuple:
    """(estimated clocks, TileLaunch) of tile_cost_terms(*args), or None."""
    got = tile_cost_terms(*args)
    return got and (sum(CUDA_COST_CLK[term] * count for term, count in got[0].items()), got[1])


@functools.lru_cache(maxsize=None)
def tile_candidates(z, m, n, k, level, vec_a=False, vec_b=False, gather=False) -> list:
    """[(estimated clocks, TileLaunch)] of every tiling that fits, best first (ties: fewer threads,
    then bigger thread tiles); vec_a, vec_b: which operands load as float4, gather: B is a
    convolution's window (see vector_loads)."""
    found = []
    for tm, tn in CUDA_THREAD_TILES:
        for lm in (1, 2, 4, 8, 16, 32):
            if lm * tm > CUDA_TILE_MAX or (lm > 1 and lm * tm >= 2 * m):
                continue
            for ln in range(1, CUDA_TILE_MAX // tn + 1):
                if ln > 1 and ln * tn >= n + tn:
                    break
                for ks in range(1, (CUDA_TILE_MAX_GROUPS if level >= 2 else 1) + 1):
                    threads = lm * ln * ks
                    if threads > CUDA_TILE_MAX_THREADS:
                        break
                    for bk in CUDA_TILE_KS if threads % 32 == 0 else ():
                        got = _tile_cost_clk(z, m, n, k, tm, tn, lm, ln, ks, bk, vec_a, vec_b, gather)
                        if got is not None:
                            found.append(((got[0], threads, -tm * tn, -bk), got[1]))
    found.sort(key=lambda c: c[0])
    return [(key[0], tl) for key, tl in found]


def tile_cost_clk(t: TiledGemm, tl: TileLaunch) -> float:
    """The cost model's estimate for a chosen tiling (clocks of the busiest SM)."""
    return _tile_cost_clk(t.z, t.m, t.n, t.k, tl.tm, tl.tn, tl.lanes_m, tl.lanes_n, tl.ks, tl.bk, tl.vec_a, tl.vec_b,
                          bool(t.b_valid))[0]


def tile_launch(t: TiledGemm) -> TileLaunch:
    """The tile, thread tile, k groups and panel depth of least estimated time (_tile_cost_clk) among
    all that fit (KOS_CUDA_TILED=1 keeps to one k group), with float4 loads where they read the same."""
    return ranked_tiles(t)[0]


def ranked_tiles(t: TiledGemm) -> list:
    """Every tiling of t that fits, best estimate first, with its vector loads."""
    return [tl for _, tl in tile_candidates(t.z, t.m, t.n, t.k, CUDA_TILED_LEVEL, *vector_loads(t), bool(t.b_valid))]


def vector_loads(t: TiledGemm) -> tuple:
    """(A, B) load as float4: each operand that runs contiguously by 4 along its panel's fast axis."""
    b_axes = (("gn", t.n), ("gk", t.k)) if t.b_k_fastest else (("gk", t.k), ("gn", t.n))
    return (runs_by_4(t.a_load, t.z, ("gm", t.m), ("gk", t.k)),
            not t.b_valid and runs_by_4(t.b_load, t.z, *b_axes))


class _Index:
    """Stands for a pointer in a load expression: p[idx] evaluates to idx."""

    def __getitem__(self, idx):
        return idx


VECTOR_CHECK_MAX = 1 << 22  # loads checked at most; a bigger operand stays scalar


@functools.lru_cache(maxsize=256)
def runs_by_4(load: str, z: int, slow: tuple, fast: tuple) -> bool:
    """Whether load (an expression p[index] over gz and the slow and fast coordinates) reads 16-byte
    aligned runs of 4 consecutive floats along the fast one: index(fast + c) = index(fast) + c and
    index(fast) % 4 == 0 wherever fast % 4 == 0, checked over the whole domain (the buffers
    themselves are 256-byte aligned)."""
    (sv, se), (fv, fe) = slow, fast
    if fe % 4 or z * se * fe // 4 > VECTOR_CHECK_MAX or not re.fullmatch(r"\w+\[.*\]", load):
        return False
    names = set(re.findall(r"[A-Za-z_]\w*", load)) - {"gz", sv, fv}
    gz, row, col = np.meshgrid(np.arange(z), np.arange(se), np.arange(0, fe, 4), indexing="ij")
    env = {name: _Index() for name in names}
    try:
        base = np.asarray(eval(load.replace("/", "//"), {"__builtins__": {}}, dict(env, gz=gz, **{sv: row, fv: col})))
        runs = [np.asarray(eval(load.replace("/", "//"), {"__builtins__": {}}, dict(env, gz=gz, **{sv: row, fv: col + c})))
                for c in (1, 2, 3)]
    except Exception:       # anything but plain index arithmetic over these names
        return False
    return bool((base % 4 == 0).all() and all((r == base + c).all() for c, r in zip((1, 2, 3), runs)))


@dataclass
class Reduction:
    """acc = combine over nested loops [(var, extent)] of `term` (where `cond` holds)."""
    loops: list
    term: str
    combine: str            # "sum" | "max" (max propagates NaN)
    acc_ctype: str
    init: str
    cond: str | None = None
    cpu_code: str | None = None   # a faster cpu replacement for the loops (e.g. a vector dot)
    vec4: tuple | None = None     # (a, b, k): the reduction is dot(a[0:k], b[0:k]) of 16-byte aligned
                                  # float rows, read as float4 by the CUDA warp/block templates
    pre: str = ""                 # statements at the top of the loop body (window positions)
    # cpu row template: (rows, row_len, code filling accrow[rows][row_len] for block `row`, the
    # linear output index of accrow[j][o])
    cpu_rows: tuple | None = None
    tiled: TiledGemm | None = None    # set (fp32 only) where the reduction is a GEMM
    # a whole cpu kernel of its own: callable(fields, unpack, epilogue statements) -> (source, grid);
    # the epilogue reads `acc` and the coordinates c0.. and linear index i, which the kernel defines
    cpu_kernel: object = None

    @property
    def length(self) -> int:
        return int(np.prod([e for _, e in self.loops], dtype=np.int64))


def _combine(kind: str, acc: str, term: str) -> str:
    if kind == "sum":
        return f"{acc} += {term};"
    return f"{{ {acc}_t = {term}; if ({acc}_t > {acc} || {acc}_t != {acc}_t) {acc} = {acc}_t; }}"


@dataclass
class KernelSpec:
    """One generated kernel: pointer params in order, sources per family with the name left as a
    placeholder, launch dims per family. `key` identifies identical kernels across nodes."""
    params: list
    sources: dict
    dims: dict
    max_threads: dict = field(default_factory=dict)
    shared_B: dict = field(default_factory=dict)     # static shared memory per block, per family
    cuda_variant: str = "thread"                     # thread | warp | block | tiled | tf32 (for reports, tests)
    tiled: tuple | None = None                       # (TiledGemm, TileLaunch) of a tiled kernel
    then: "KernelSpec | None" = None                 # a second kernel the node needs, launched right after

    @property
    def key(self) -> str:
        h = hashlib.sha256()
        for fam in sorted(self.sources):
            h.update(fam.encode() + b"\0" + self.sources[fam].encode() + b"\0")
        return h.hexdigest()[:16]

    def source(self, family: str, name: str) -> str:
        return self.sources[family].replace(NAME_PLACEHOLDER, name)


class PointwiseBuilder:
    """Builds the body of a pointwise kernel over `out_shape`.

    The lowering of each op calls `val(value)` / `load(value, index)` to read tensors (registering
    pointer params on the way), `define(value, expr)` to bind a value computed at the current
    coordinates to a temporary, `reduce(...)` for an anchor with a reduction, and finally
    `store(value)` for each value written to memory.
    """

    def __init__(self, out_shape, ctx):
        self.out_shape = tuple(int(d) for d in out_shape)
        self.rank = len(self.out_shape)
        self.n = int(np.prod(self.out_shape, dtype=np.int64))
        self.ctx = ctx
        self.params: list = []
        self._param_of: dict = {}
        self.temps: dict = {}       # value name -> C temp
        self.pre: list = []         # statements before the reduction (prologue)
        self.reduction: Reduction | None = None
        self.post: list = []        # statements after it (anchor result, epilogue, stores)

    # --- coordinates ----------------------------------------------------------------------
    def coord(self, j: int) -> str:
        return f"c{j}"

    def coords_code(self) -> str:
        lines, st = [], strides(self.out_shape)
        for j, d in enumerate(self.out_shape):
            expr = "i" if self.rank == 1 else (f"i / {st[j]}" if j == 0 else f"i / {st[j]} % {d}" if st[j] > 1 else f"i % {d}")
            lines.append(f"const int64_t c{j} = {expr}; (void)c{j};")
        return " ".join(lines)

    def bcast_index(self, shape) -> str:
        """Linear index into a tensor of `shape` broadcast (numpy rules) to the output coordinates;
        plain `i` where no broadcasting happens, so same-shape elementwise loops vectorise."""
        if (1,) * (self.rank - len(shape)) + tuple(shape) == self.out_shape:
            return "i"
        coords = [self.coord(j) for j in range(self.rank)]
        off = len(coords) - len(shape)
        terms = [f"{coords[j + off]} * {s}" if s != 1 else coords[j + off]
                 for j, s in enumerate(strides(shape)) if shape[j] != 1]
        return " + ".join(terms) or "0"

    # --- reading ----------------------------------------------------------------------------
    def param(self, value: str, out: bool = False) -> str:
        buf = self.ctx.buffer_of(value)
        key = (buf, out)
        if key not in self._param_of:
            v = self.ctx.graph.value(value)
            cname = f"{'y' if out else 'p'}{len(self.params)}"
            self.params.append(Param(cname, buf, ctype(v.dtype), out))
            self._param_of[key] = cname
        return self._param_of[key]

    def load(self, value: str, index: str) -> str:
        return f"{self.param(value)}[{index}]"

    def val(self, value: str) -> str:
        """The value at the output coordinates: a temp, an inline scalar constant, or a broadcast load."""
        if value in self.temps:
            return self.temps[value]
        v = self.ctx.graph.value(value)
        if v.const is not None and v.const.size == 1:
            return literal(v.const.reshape(()), v.dtype)
        return self.load(value, self.bcast_index(v.shape))

    def dtype(self, value: str) -> str:
        return self.ctx.graph.value(value).dtype

    # --- computing ----------------------------------------------------------------------------
    def define(self, value: str, expr: str) -> str:
        t = f"t{len(self.temps)}"
        self.temps[value] = t
        (self.post if self.reduction else self.pre).append(f"const {ctype(self.dtype(value))} {t} = {expr};")
        return t

    def stmt(self, code: str):
        (self.post if self.reduction else self.pre).append(code)

    def reduce(self, value: str, red: Reduction, finish: str = "acc"):
        """The anchor `value` = finish(acc) where acc is the reduction's result."""
        if self.reduction is not None:
            raise GraphError("a pointwise kernel has at most one reduction")
        self.reduction = red
        t = f"t{len(self.temps)}"
        self.temps[value] = t
        self.post.append(f"const {ctype(self.dtype(value))} {t} = {finish};")

    def store(self, value: str, index: str = "i"):
        out = self.param(value, out=True)
        self.post.append(f"{out}[{index}] = {self.val(value)};")

    # --- rendering --------------------------------------------------------------------------
    def _cuda_mode(self) -> str:
        """thread, warp or block per output element, by reduction length and output count (gemv: a
        float4 dot product, a group of lanes per output)."""
        red = self.reduction
        if red is None or red.length < CUDA_WARP_MIN_REDUCE:
            return "thread"
        if self._tiled() is not None:
            return "tiled"
        limit = CUDA_GEMV_BLOCK_MAX_OUTPUTS if red.vec4 is not None else CUDA_BLOCK_MAX_OUTPUTS
        if red.length >= CUDA_BLOCK_MIN_REDUCE and self.n <= limit:
            return "block"
        return "gemv" if red.vec4 is not None else "warp"

    def _tiled(self) -> TiledGemm | None:
        """The reduction's GEMM form where the tiled template applies: fp32, M and N not tiny, the
        output exactly the (z, m, n) elements."""
        red = self.reduction
        t = red.tiled if red is not None else None
        if (t is None or CUDA_TILED_LEVEL < 1 or red.acc_ctype != "float" or red.combine != "sum"
                or min(t.m, t.n) < CUDA_TILED_MIN_MN or t.z * t.m * t.n != self.n):
            return None
        return t

    def _tiled_index_fits_32(self) -> bool:
        """Whether every index of the tiled kernel (the operands' elements, the GEMM's extents and
        the padded tile edges) stays below 2**31 - 2**16, so it can count in 32-bit ints."""
        t = self.reduction.tiled
        elems = [int(np.prod(self.ctx.graph.value(p.buffer).shape, dtype=np.int64)) for p in self.params]
        return max(elems + [t.z * t.m * t.n, t.z * t.m * t.k, t.z * t.k * t.n]) < 2**31 - 2**16

    def _reduction_loops(self, family: str, mode: str) -> list:
        red = self.reduction
        acc_decl = f"{red.acc_ctype} acc = {red.init}, acc_t; (void)acc_t;"
        step = _combine(red.combine, "acc", red.term)
        if red.cond:
            step = f"if ({red.cond}) {step}"
        step = f"{red.pre} {step}".strip()
        if family == "cpu" and red.cpu_code:
            return [acc_decl, red.cpu_code]
        if mode == "thread":
            opens = [f"for (int64_t {v} = 0; {v} < {e}; {v}++) {{" for v, e in red.loops]
            return [acc_decl, " ".join(opens), f"    {step}", "}" * len(opens)]
        if mode == "gemv":
            return [acc_decl] + gemv_loop(*red.vec4, gemv_shape()[1]) + ["if (lane != 0 || !kos_live) return;"]
        stride = 32 if mode == "warp" else CUDA_THREADS
        if red.vec4 is not None:
            a, b, k = red.vec4
            loop = [f"const float4 *va = (const float4 *)({a}), *vb = (const float4 *)({b});",
                    f"for (int64_t r = lane; r < {k // 4}; r += {stride}) {{",
                    "    const float4 x = va[r], y = vb[r]; acc += x.x * y.x + x.y * y.y + x.z * y.z + x.w * y.w;", "}"]
        else:
            st = strides([e for _, e in red.loops])
            decomp = " ".join(f"const int64_t {v} = r / {s} % {e};" if s > 1 else f"const int64_t {v} = r % {e};"
                              for (v, e), s in zip(red.loops, st))
            loop = [f"for (int64_t r = lane; r < {red.length}; r += {stride}) {{ {decomp}", f"    {step}", "}"]
        if mode == "warp":
            combine = f"acc = {'kos_warp_sum' if red.combine == 'sum' else 'kos_warp_max'}(acc);"
        else:
            combine = f"acc = {'kos_block_sum' if red.combine == 'sum' else 'kos_block_max'}(acc, kos_part);"
        return [acc_decl] + loop + [combine, "if (lane != 0) return;"]

    def _body(self, family: str, mode: str, rows: bool = False) -> str:
        lines = [self.coords_code()] + self.pre
        if self.reduction and not rows:
            lines += self._reduction_loops(family, mode)
        lines += self.post
        indent = " " * (12 if family == "cpu" else 4)
        return "\n".join(indent + ln for ln in lines)

    def _cpu_source(self, fields, unpack) -> tuple:
        """(source, grid) for the cpu: the row template where the anchor offers one, else pointwise."""
        red = self.reduction
        if red is not None and red.cpu_kernel is not None:
            return red.cpu_kernel(fields, unpack, "\n".join(self.pre + self.post))
        if red is not None and red.cpu_rows is not None:
            rows, row_len, code, index = red.cpu_rows
            src = _template("cpu/rows.c").substitute(
                fields=fields, unpack=unpack, name=NAME_PLACEHOLDER, rows=rows, row_len=row_len, acc_t=red.acc_ctype,
                init=red.init, row_code=code, index=index, body=self._body("cpu", "thread", rows=True))
            return src, self.n // (rows * row_len)
        chunk = CPU_REDUCE_CHUNK if red else CPU_CHUNK
        src = _template("cpu/pointwise.c").substitute(
            fields=fields, unpack=unpack, name=NAME_PLACEHOLDER, chunk=chunk, n=self.n, body=self._body("cpu", "thread"))
        return src, -(-self.n // chunk)

    def spec(self) -> KernelSpec:
        if self.n == 0:
            raise GraphError("empty output")
        fields = "\n".join(f"    {'' if p.out else 'const '}{p.ctype} *{p.cname};" for p in self.params)
        unpack = "\n".join(f"    {'' if p.out else 'const '}{p.ctype} *KOS_RESTRICT {p.cname} = a->{p.cname};"
                           for p in self.params)
        cpu, cpu_grid = self._cpu_source(fields, unpack)
        cpu = _prelude("cpu") + cpu
        mode = self._cuda_mode()
        cparams = ", ".join(f"{'' if p.out else 'const '}{p.ctype} *KOS_RESTRICT {p.cname}" for p in self.params)
        if mode == "tiled" and getattr(self.ctx, "precision", "fp32") == "tf32":
            from .gemm_tf32 import tf32_gemm_spec     # tf32 images: the GEMM on tensor cores
            return tf32_gemm_spec(self, cpu, cpu_grid, cparams)
        if mode == "tiled":
            return self._tiled_spec(cpu, cpu_grid, cparams)
        tmpl = {"thread": "cuda/pointwise.cu", "warp": "cuda/pointwise_warp.cu", "block": "cuda/pointwise_block.cu",
                "gemv": "cuda/gemv.cu"}[mode]
        rows, lanes = gemv_shape() if mode == "gemv" else (CUDA_THREADS // 32, 32)
        threads = rows * lanes if mode == "gemv" else CUDA_THREADS
        cuda = _prelude("cuda") + _template(tmpl).substitute(
            name=NAME_PLACEHOLDER, threads=threads, params=cparams, n=self.n, body=self._body("cuda", mode),
            acc_t=self.reduction.acc_ctype if self.reduction else "float", lanes=lanes)
        threads_total = self.n * {"thread": 1, "warp": 32, "block": CUDA_THREADS, "gemv": lanes}[mode]
        dims = {"cpu": ((cpu_grid, 1, 1), (1, 1, 1)), "cuda": ((-(-threads_total // threads), 1, 1), (threads, 1, 1))}
        shared_B = 0
        if mode == "block":     # kos_part[]: one partial per warp
            shared_B = CUDA_THREADS // 32 * (8 if self.reduction.acc_ctype in ("double", "int64_t", "uint64_t") else 4)
        return KernelSpec(self.params, {"cpu": cpu, "cuda": cuda}, dims, {"cpu": 1, "cuda": threads},
                          {"cpu": 0, "cuda": shared_B}, "warp" if mode == "gemv" else mode)

    def _tiled_spec(self, cpu, cpu_grid, cparams) -> KernelSpec:
        """The CUDA side as the tiled GEMM template; the epilogue runs per output as elsewhere."""
        t = self._tiled()
        tl = tile_launch(t)
        ix = "int" if self._tiled_index_fits_32() else "int64_t"
        shape = dict(M=t.m, N=t.n, K=t.k, bm=tl.bm, bn=tl.bn, bk=tl.bk, tm=tl.tm, tn=tl.tn, ks=tl.ks, tg=tl.tg,
                     lanes_m=tl.lanes_m, lanes_n=tl.lanes_n, threads=tl.threads, ix=ix)
        body = "\n".join(" " * 16 + ln for ln in [self.coords_code()] + self.pre + self.post)
        epilogue = (_template("cuda/gemm_tiled_combine.cu").substitute(shape, slab=tl.slab, body=body) if tl.ks > 1
                    else _template("cuda/gemm_tiled_store.cu").substitute(shape, body=body))
        a_decl, a_load, a_store = _panel_code("a", t, tl, ix)
        b_decl, b_load, b_store = _panel_code("b", t, tl, ix)
        if not tl.own_barrier:
            sync, sync_doc = "__syncthreads()", "__syncthreads is block-wide"
        elif tl.tg == 32:
            sync, sync_doc = "__syncwarp()", "a group is one warp, its panels its own"
        else:
            sync = f'asm volatile("bar.sync %0, {tl.tg};" :: "r"(kos_grp + 1) : "memory")'
            sync_doc = "a group's warps meet at barrier 1 + group"
        cuda = _prelude("cuda") + _template("cuda/gemm_tiled.cu").substitute(
            shape, name=NAME_PLACEHOLDER, params=cparams, min_blocks=tl.min_blocks, steps=tl.steps, sa=tl.sa,
            sb=tl.sb, smem_floats=tl.smem_floats, tiles_m=tl.tiles_m, tiles_n=tl.tiles_n, ra_decl=a_decl + " " + b_decl,
            load_a=a_load, load_b=b_load, store_a=a_store, store_b=b_store, sync=sync, sync_doc=sync_doc,
            epilogue=epilogue)
        dims = {"cpu": ((cpu_grid, 1, 1), (1, 1, 1)), "cuda": ((tl.grid, 1, 1), (tl.threads, 1, 1))}
        return KernelSpec(self.params, {"cpu": cpu, "cuda": cuda}, dims, {"cpu": 1, "cuda": tl.threads},
                          {"cpu": 0, "cuda": 4 * tl.smem_floats}, "tiled", (t, tl))


def gemv_shape() -> tuple:
    """(outputs per block, lanes per output) of the GEMV template, from CUDA_GEMV_SHAPE ("8x32")."""
    m = re.fullmatch(r"(\d+)x(\d+)", CUDA_GEMV_SHAPE.strip())
    rows, lanes = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if lanes not in (8, 16, 32) or not 1 <= rows * lanes <= 1024 or rows * lanes % 32:
        raise GraphError(f"KOS_CUDA_GEMV must be ROWSxLANES with LANES 8, 16 or 32 and ROWS * LANES a multiple "
                         f"of 32 up to 1024, got {CUDA_GEMV_SHAPE!r}")
    return rows, lanes


def gemv_loop(a: str, b: str, k: int, lanes: int) -> list:
    """The GEMV template's dot product of float4 rows a[0:k/4], b[0:k/4]: lane reads float4 r = lane +
    lanes * s for s < k / 4 / lanes (8 loads in flight per batch), the rest where lane < the tail;
    then the group's lanes sum by shuffles (xor below `lanes` stays inside the group)."""
    steps, tail = divmod(k // 4, lanes)
    loop = [f"const float4 *va = (const float4 *)({a}), *vb = (const float4 *)({b});",
            "#pragma unroll 8",
            f"for (int s = 0; s < {steps}; s++) {{",
            f"    const float4 x = va[lane + {lanes} * s], y = vb[lane + {lanes} * s];",
            "    acc += x.x * y.x + x.y * y.y + x.z * y.z + x.w * y.w;", "}"]
    if tail:
        loop += [f"if (lane < {tail}) {{",
                 f"    const float4 x = va[lane + {lanes * steps}], y = vb[lane + {lanes * steps}];",
                 "    acc += x.x * y.x + x.y * y.y + x.z * y.z + x.w * y.w;", "}"]
    return loop + [f"for (int o = {lanes // 2}; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);"]


def panel_layout(op: str, t: TiledGemm, tl: TileLaunch) -> tuple:
    """How a group's threads load one operand's panel: (rows of the tile, elements per load (1 or a
    float4's 4), loads per thread, k fastest): load j of group thread tid is unit e = tid + tg j
    (units past the panel load nothing); a unit covers `width` elements along the fast axis: with k
    fastest unit e is row e / (bk / width), k (e % (bk / width)) * width, else k e / (rows / width),
    row (e % (rows / width)) * width."""
    rows = tl.bm if op == "a" else tl.bn
    width = 4 if (tl.vec_a if op == "a" else tl.vec_b) else 1
    return rows, width, -(-rows * tl.bk // (width * tl.tg)), op == "a" or t.b_k_fastest


def _panel_code(op: str, t: TiledGemm, tl: TileLaunch, ix: str) -> tuple:
    """(register declaration, load statements for the KOS_LOAD_PANELS(k0) macro, shared stores) of
    one operand's panel, as panel_layout places it."""
    rows, width, count, k_fast = panel_layout(op, t, tl)
    reg, smem, stride = ("kos_ra", "kos_as", tl.sa) if op == "a" else ("kos_rb", "kos_bs", tl.sb)
    r, r0, extent, load = ("gm", "kos_m0", t.m, t.a_load) if op == "a" else ("gn", "kos_n0", t.n, t.b_load)
    valid = "".join(f" && ({c})" for c in (t.b_valid if op == "b" else ()))
    units = rows * tl.bk // width
    if k_fast:
        where = f"kk = e % {tl.bk // width} * {width}, rr = e / {tl.bk // width}"
    else:
        where = f"kk = e / {rows // width}, rr = e % {rows // width} * {width}"
    head = f"_Pragma(\"unroll\") for (int j = 0; j < {count}; j++) {{ const int e = kos_tid + {tl.tg} * j, {where};"
    cond = f"e < {units} && {r} < {extent} && gk < {t.k}{valid}"
    if width == 1:
        decl = f"float {reg}[{count}];"
        fetch = f"{reg}[j] = ({cond}) ? {load} : 0.0f;"
        put = f"{smem}[kk * {stride} + rr] = {reg}[j];"
    else:
        decl = f"float4 {reg}[{count}];"
        fetch = f"{reg}[j] = ({cond}) ? *(const float4 *)&{load} : make_float4(0.0f, 0.0f, 0.0f, 0.0f);"
        if k_fast:      # four k rows of one column
            put = (f"float *d = &{smem}[kk * {stride} + rr]; d[0] = {reg}[j].x; d[{stride}] = {reg}[j].y; "
                   f"d[{2 * stride}] = {reg}[j].z; d[{3 * stride}] = {reg}[j].w;")
        else:           # four columns of one k row, 16-byte aligned
            put = f"*(float4 *)&{smem}[kk * {stride} + rr] = {reg}[j];"
    loads = (f"    {head} const {ix} {r} = {r0} + rr, gk = (k0) + kk; \\\n"
             f"        {fetch} \\\n    }}")
    store = (f"#pragma unroll\n        for (int j = 0; j < {count}; j++) {{\n"
             f"            const int e = kos_tid + {tl.tg} * j, {where};\n"
             f"            if (e < {units}) {{ {put} }}\n        }}")
    return decl, loads, store
