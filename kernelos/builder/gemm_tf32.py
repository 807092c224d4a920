"""TF32 tensor-core GEMMs for tf32 images: the tile choice and rendering of kernels/cuda/gemm_mma_tf32.cu.

A tf32 build (`kernelos build --precision tf32`) renders every GEMM that the fp32 path would give the
tiled template (codegen.PointwiseBuilder._tiled: matmul, one-group 2-D convolution as an implicit
GEMM; fp32, M and N at least 16) with this template instead: the same TiledGemm (its A/B load
expressions with the convolution's padding checks) and the same per-output epilogue body (bias,
activation, residual), multiplied with mma.sync m16n8k8 on TF32-rounded inputs, fp32 accumulation.
Everything else in the image (GEMVs, reductions, elementwise kernels, the cpu target) stays fp32.
"""

import os
import re
from dataclasses import dataclass

from hal.errors import GraphError

from .codegen import NAME_PLACEHOLDER, KernelSpec, Param, _prelude, _template

# warp grids (wm x wn warps per k group) and mma tiles per warp (mi x ni m16n8 tiles): block tiles
# bm = wm * mi * 16 by bn = wn * ni * 8, biggest first; of one size, 8 warps (more in flight) before 4
TILES = ((2, 4, 2, 2), (2, 2, 2, 4), (4, 2, 1, 2), (2, 2, 2, 2), (2, 4, 1, 2), (2, 2, 1, 4),
         (2, 4, 1, 1), (2, 2, 1, 2), (2, 2, 1, 1))
BK = 32                 # k depth of a staged panel (4 mma k-steps); KOS_TF32_TILE may ask for 16
STAGES = (4, 3, 2)      # cp.async ring depths, most first: the deepest whose panels fit in shared memory
# Tiles at least this many: the tile sweep (bench/tf32_tiles.py on an H200, 2026-11-26) found every
# ResNet-18 and GPT-2 GEMM fastest with the biggest tile giving >= 64 blocks (bigger tiles copy less
# per output; 132, one per SM, chose smaller tiles that were 10-40% slower)
FILL_BLOCKS = 64
MAX_GROUPS = 4 * 132    # k groups (of 4 or 8 warps) in the whole grid: 16 to 32 warps per SM
MIN_PANELS = 4          # panels each k group multiplies at least
K_GROUPS = (4, 2)       # in-block split-K candidates, most first
SMEM_MAX_B = 48 * 1024  # static shared memory per block
SMS = 132               # streaming multiprocessors of an H100 / H200 SXM
# Cross-block split-K (bench/tf32_gemm.py and the GPT-2 e2e profile on an H200, 2026-11-26 01:56 UTC):
# long-K GEMMs on few tiles gain most (GPT-2 fc2 128x768x3072: 27.8 -> 16.1 us alone, 37.2 -> 25.4 us in
# the model; ResNet-18 K 1152-4608 convolutions 17.6-42.2 -> 13.1-17.1 us alone); K = 768 GEMMs (24
# panels) gained little alone and lost in the model (the reduce node costs ~4 us), so they stay whole.
SPLIT_BLOCKS = 3 * SMS  # blocks to aim for (0: never split)
SPLIT_PANELS = 4        # panels each split multiplies at least
SPLIT_MIN_K_PANELS = 32  # panels K must have to be split
# Build-time override for tile sweeps (bench/tf32_tiles.py): "BMxBN[wWARPS][/KS][kBK]"; "" = the heuristic
FORCE = os.environ.get("KOS_TF32_TILE", "")


@dataclass
class MmaLaunch:
    """How the TF32 template covers a TiledGemm: bm x bn tiles, ks k groups of wm x wn warps each
    owning mi x ni m16n8 mma tiles, bk-deep panels in a ring of `stages` shared-memory buffers."""
    wm: int
    wn: int
    mi: int
    ni: int
    ks: int
    bk: int
    tiles_m: int
    tiles_n: int
    grid: int
    k_tiles: int
    stages: int = 2
    splits: int = 1     # cross-block split-K: grid = splits x z x tiles_m x tiles_n blocks

    @property
    def split_panels(self) -> int:
        """The k panels of one split (the last split may have fewer)."""
        return -(-self.k_tiles // self.splits)

    @property
    def bm(self) -> int:
        return self.wm * self.mi * 16

    @property
    def bn(self) -> int:
        return self.wn * self.ni * 8

    @property
    def name(self) -> str:
        """BMxBNwWARPS/KS[sSPLITS], as KOS_TF32_TILE spells it."""
        return f"{self.bm}x{self.bn}w{self.wm * self.wn}/{self.ks}" + (f"s{self.splits}" if self.splits > 1 else "")

    @property
    def group_threads(self) -> int:
        return 32 * self.wm * self.wn

    @property
    def threads(self) -> int:
        return self.group_threads * self.ks

    @property
    def steps(self) -> int:
        """Panels each group multiplies (the last ones may lie past its split's k, all zero)."""
        return -(-self.split_panels // self.ks)

    def stage_words(self, b_k_fastest: bool) -> int:
        """One group's staged panels: A [bm][bk + 4], B [bn][bk + 4] or [bk][bn + 8]."""
        b = self.bn * (self.bk + 4) if b_k_fastest else self.bk * (self.bn + 8)
        return self.bm * (self.bk + 4) + b

    @property
    def tile_words(self) -> int:
        """One group's partial output tile [bm][bn + 8]."""
        return self.bm * (self.bn + 8)

    def smem_words(self, b_k_fastest: bool) -> int:
        """The ring of staged panels [stages][ks], later reused for the ks partial tiles."""
        return self.ks * max(self.stages * self.stage_words(b_k_fastest), self.tile_words)


def _launch(t, shape, ks, bk=BK, splits=1) -> MmaLaunch:
    """The launch of tile `shape` with ks k groups, the k panels in (up to) `splits` cross-block
    splits of whole panels (no split empty), and the deepest ring that fits (at least 2)."""
    wm, wn, mi, ni = shape
    tiles_m, tiles_n = -(-t.m // (wm * mi * 16)), -(-t.n // (wn * ni * 8))
    k_tiles = -(-t.k // bk)
    splits = -(-k_tiles // -(-k_tiles // max(1, min(splits, k_tiles))))
    for stages in STAGES:
        tl = MmaLaunch(wm, wn, mi, ni, ks, bk, tiles_m, tiles_n, splits * t.z * tiles_m * tiles_n, k_tiles, stages, splits)
        if 4 * tl.smem_words(t.b_k_fastest) <= SMEM_MAX_B:
            break
    return tl


def _fits(tl: MmaLaunch, b_k_fastest: bool) -> bool:
    """Threads and shared memory within a block's limits, and whole panels per thread."""
    return (tl.threads <= 1024 and 4 * tl.smem_words(b_k_fastest) <= SMEM_MAX_B
            and (tl.bm * tl.bk) % tl.group_threads == 0 and (tl.bn * tl.bk) % tl.group_threads == 0)


def mma_launch(t) -> MmaLaunch:
    """Cross-block split-K (split_launch) where it applies; else the biggest tile (TILES order) that
    still gives FILL_BLOCKS blocks (the smallest where none does), then as many k groups as keep
    MIN_PANELS panels each, MAX_GROUPS in the grid, and the shared memory in bounds. KOS_TF32_TILE
    (FORCE) fixes the tile (the k groups clamped to what fits)."""
    if FORCE:
        return _forced(t, FORCE)
    split = split_launch(t)
    if split is not None:
        return split
    for shape in TILES:
        tl = _launch(t, shape, 1)
        if tl.grid >= FILL_BLOCKS:
            break
    for ks in K_GROUPS:
        big = _launch(t, shape, ks)
        if big.k_tiles >= MIN_PANELS * ks and big.grid * ks <= MAX_GROUPS and _fits(big, t.b_k_fastest):
            return big
    return tl


def split_launch(t) -> MmaLaunch | None:
    """Where the biggest tile gives fewer blocks than SMS and K has at least SPLIT_MIN_K_PANELS
    panels: that tile (one k group) with K cut into as many splits as give SPLIT_BLOCKS blocks, each
    at least SPLIT_PANELS panels deep (a block's panels run one after another, each waiting on
    memory, so fewer per block and more blocks in flight win while the tile grid is small)."""
    tl = _launch(t, TILES[0], 1)
    if not SPLIT_BLOCKS or tl.grid >= SMS or tl.k_tiles < SPLIT_MIN_K_PANELS:
        return None
    return _launch(t, TILES[0], 1, BK, min(tl.k_tiles // SPLIT_PANELS, -(-SPLIT_BLOCKS // tl.grid)))


def _tile_name(shape) -> str:
    return f"{shape[0] * shape[2] * 16}x{shape[1] * shape[3] * 8}w{shape[0] * shape[1]}"


FORCED_SPEC = re.compile(r"(\d+x\d+)(w\d+)?(?:/(\d+))?(?:s(\d+))?(?:k(16|32))?")


def _forced(t, spec: str) -> MmaLaunch:
    """The launch KOS_TF32_TILE asks for: "BMxBN[wWARPS][/KS][sSPLITS][kBK]": that tile (of its warp
    counts, the first in TILES without wWARPS), with up to KS k groups (1 without /KS) as fit, K in
    SPLITS cross-block splits (1 without sSPLITS), panels BK (16 or 32) deep."""
    m = FORCED_SPEC.fullmatch(spec)
    shape = m and next((s for s in TILES if _tile_name(s) == m[1] + (m[2] or "") or (not m[2] and _tile_name(s).split("w")[0] == m[1])), None)
    if shape is None:
        raise GraphError(f"KOS_TF32_TILE={spec!r}: expected BMxBN[wWARPS][/KS][sSPLITS][k16|k32] with a tile of "
                         + ", ".join(_tile_name(s) for s in TILES))
    ks, splits, bk = int(m[3] or 1), int(m[4] or 1), int(m[5] or BK)
    for k in (4, 2, 1):
        tl = _launch(t, shape, k, bk, splits)
        if k == 1 or (k <= ks and tl.split_panels >= k and _fits(tl, t.b_k_fastest)):
            return tl


def split_load(expr: str) -> tuple:
    """A load expression NAME[INDEX] -> (NAME, INDEX); (None, None) for any other form."""
    name, bracket, rest = expr.partition("[")
    if not bracket or not rest.endswith("]") or not name.isidentifier() or rest[:-1].count("[") != rest[:-1].count("]"):
        return None, None
    return name, rest[:-1]


def k_contiguous(t, operand: str) -> bool:
    """Whether A (or a k-fastest B without validity conditions) can be copied 4 k at a time with
    16-byte copies: K a multiple of 4, and for every (z, row) the element index is base + k with
    base a multiple of 4 (buffers are 256-byte aligned), checked by evaluating the index expression
    over the whole GEMM (/ -> //; the builder divides only non-negative indices)."""
    import numpy as np
    expr = t.a_load if operand == "a" else t.b_load
    if t.k % 4 or (operand == "b" and (not t.b_k_fastest or t.b_valid)):
        return False
    _, index = split_load(expr)
    rows = t.m if operand == "a" else t.n
    if index is None or t.z * rows * t.k > 1 << 24:
        return False
    gz, gr, gk = np.meshgrid(np.arange(t.z), np.arange(rows), np.arange(t.k), indexing="ij")
    env = {"gz": gz, "gk": gk, "gm" if operand == "a" else "gn": gr}
    try:
        idx = np.broadcast_to(eval(index.replace("/", "//"), {"__builtins__": {}}, env), gk.shape)
    except Exception:     # an index that needs more than the GEMM coordinates: not known contiguous
        return False
    return bool((idx - gk == idx[..., :1]).all() and (idx[..., 0] % 4 == 0).all())


def vector_copies(t, tl: MmaLaunch) -> dict:
    """{"a": bool, "b": bool}: which operands are copied 4 k at a time (16 bytes): k-contiguous ones
    whose panel splits evenly over the group's threads in fours."""
    return {op: k_contiguous(t, op) and ((tl.bm if op == "a" else tl.bn) * tl.bk // 4) % tl.group_threads == 0
            for op in ("a", "b")}


def copy_loops(t, tl: MmaLaunch, bx: dict, ix: str) -> tuple:
    """The panel copies of one group as single-line C loops (inside KOS_ISSUE_PANELS), A then B:
    16-byte copies of 4 k for vector_copies' operands, else 4-byte ones."""
    gt, bk, loops, vec = tl.group_threads, tl.bk, [], vector_copies(t, tl)
    for op, rows, r, lim, load, dst, valid in (
            ("a", tl.bm, "mm", t.m, t.a_load, f"as + mm * {bk + 4} + kk", ""),
            ("b", tl.bn, "nn", t.n, t.b_load, f"bs + {bx['slot']}", "".join(f" && ({c})" for c in t.b_valid))):
        g = "gm" if op == "a" else "gn"
        origin = "kos_m0" if op == "a" else "kos_n0"
        if vec[op]:
            count, coords, copy = rows * bk // (4 * gt), f"kk = e % {bk // 4} * 4, {r} = e / {bk // 4}", "kos_cp16"
        else:
            kk, rr = (bx["kk"], bx["nn"]) if op == "b" else (f"e % {bk}", f"e / {bk}")
            count, coords, copy = rows * bk // gt, f"kk = {kk}, {r} = {rr}", "kos_cp4"
        loops.append(f'_Pragma("unroll") for (int j = 0; j < {count}; j++) {{ const int e = kos_tid + {gt} * j, {coords}; '
                     f"const {ix} {g} = {origin} + {r}, gk = kos_kbase + (k0) + kk; "
                     f"{copy}({dst}, &({load}), {g} < {lim} && gk < kos_kend{valid}); }}")
    return tuple(loops)


def b_indexing(b_k_fastest: bool, tl: MmaLaunch) -> dict:
    """B's panel as C expressions: (kk, nn) of the group's load element e (k- or n-fastest, as B's
    memory runs), its shared-memory slot ([n][k] or [k][n]), and the words fragment registers b0 and
    b1 read: (k8 + kos_t, nn) and (k8 + kos_t + 4, nn)."""
    if b_k_fastest:
        s = tl.bk + 4
        return {"kk": f"e % {tl.bk}", "nn": f"e / {tl.bk}", "slot": f"nn * {s} + kk",
                "frag0": f"nn * {s} + k8 + kos_t", "frag1": f"nn * {s} + k8 + kos_t + 4"}
    s = tl.bn + 8
    return {"kk": f"e / {tl.bn}", "nn": f"e % {tl.bn}", "slot": f"kk * {s} + nn",
            "frag0": f"(k8 + kos_t) * {s} + nn", "frag1": f"(k8 + kos_t + 4) * {s} + nn"}


def tf32_gemm_spec(b, cpu: str, cpu_grid: int, cparams: str) -> KernelSpec:
    """The KernelSpec of PointwiseBuilder `b` (whose reduction is a tiled GEMM) with the CUDA side as
    the TF32 tensor-core template (cuda_variant "tf32", spec.tiled = (TiledGemm, MmaLaunch)); the cpu
    side (`cpu`, `cpu_grid`) is the fp32 one, unchanged. With cross-block split-K the GEMM kernel's
    spec stores partial sums into a new scratch buffer and spec.then is the second node's (reduce_spec)."""
    t = b._tiled()
    tl = mma_launch(t)
    bx = b_indexing(t.b_k_fastest, tl)
    ix = "int" if b._tiled_index_fits_32() else "int64_t"
    a_copy, b_copy = copy_loops(t, tl, bx, ix)
    epilogue = [b.coords_code()] + b.pre + b.post
    params, dims_cpu, then = b.params, ((cpu_grid, 1, 1), (1, 1, 1)), None
    if tl.splits > 1:
        part = b.ctx.buffer_of(b.ctx.new_value((tl.splits * t.z * t.m * t.n,), "float32", "splitk"))
        then = reduce_spec(b, part, tl.splits, cpu, cpu_grid)
        params = [p for p in b.params if not p.out] + [Param("kos_part", part, "float", True)]
        cparams = ", ".join(f"{'' if p.out else 'const '}{p.ctype} *KOS_RESTRICT {p.cname}" for p in params)
        epilogue = [f"kos_part[(int64_t)kos_split * {t.z * t.m * t.n} + i] = acc;"]
        cpu, dims_cpu = _prelude("cpu") + _template("cpu/noop.c").substitute(name=NAME_PLACEHOLDER), ((1, 1, 1), (1, 1, 1))
    cuda = _prelude("cuda") + _template("cuda/gemm_mma_tf32.cu").substitute(
        name=NAME_PLACEHOLDER, params=cparams, M=t.m, N=t.n, K=t.k, bm=tl.bm, bn=tl.bn, bk=tl.bk, wm=tl.wm,
        wn=tl.wn, mi=tl.mi, ni=tl.ni, ks=tl.ks, threads=tl.threads, group_threads=tl.group_threads,
        steps=tl.steps, tiles_m=tl.tiles_m, tiles_n=tl.tiles_n, smem_words=tl.smem_words(t.b_k_fastest),
        stage_words=tl.stage_words(t.b_k_fastest), tile_words=tl.tile_words, a_copy=a_copy, b_copy=b_copy,
        b_frag0=bx["frag0"], b_frag1=bx["frag1"], stages=tl.stages, ix=ix, splits=tl.splits,
        tile_blocks=t.z * tl.tiles_m * tl.tiles_n, split_k=tl.split_panels * tl.bk,
        body="\n".join(" " * 12 + ln for ln in epilogue))
    dims = {"cpu": dims_cpu, "cuda": ((tl.grid, 1, 1), (tl.threads, 1, 1))}
    return KernelSpec(params, {"cpu": cpu, "cuda": cuda}, dims, {"cpu": 1, "cuda": tl.threads},
                      {"cpu": 0, "cuda": 4 * tl.smem_words(t.b_k_fastest)}, "tf32", (t, tl), then)


REDUCE_THREADS = 256


def reduce_spec(b, part: str, splits: int, cpu: str, cpu_grid: int) -> KernelSpec:
    """The second node of a split-K GEMM: on the GPU the sum of the `splits` partials in scratch
    buffer `part` and the GEMM's epilogue per output (cuda/gemm_splitk_reduce.cu); on the cpu the
    whole fp32 GEMM (`cpu`: its params are b's, a prefix of this kernel's)."""
    params = b.params + [Param("kos_part", part, "float", False)]
    cparams = ", ".join(f"{'' if p.out else 'const '}{p.ctype} *KOS_RESTRICT {p.cname}" for p in params)
    cuda = _prelude("cuda") + _template("cuda/gemm_splitk_reduce.cu").substitute(
        name=NAME_PLACEHOLDER, params=cparams, threads=REDUCE_THREADS, n=b.n, splits=splits,
        body="\n".join(" " * 4 + ln for ln in [b.coords_code()] + b.pre + b.post))
    dims = {"cpu": ((cpu_grid, 1, 1), (1, 1, 1)), "cuda": ((-(-b.n // REDUCE_THREADS), 1, 1), (REDUCE_THREADS, 1, 1))}
    return KernelSpec(params, {"cpu": cpu, "cuda": cuda}, dims, {"cpu": 1, "cuda": REDUCE_THREADS},
                      {"cpu": 0, "cuda": 0}, "splitk_reduce")
