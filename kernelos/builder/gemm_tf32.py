"""TF32 tensor-core GEMMs for tf32 images: the tile choice and rendering of kernels/cuda/gemm_mma_tf32.cu.

A tf32 build (`kernelos build --precision tf32`) renders every GEMM that the fp32 path would give the
tiled template (codegen.PointwiseBuilder._tiled: matmul, one-group 2-D convolution as an implicit
GEMM; fp32, M and N at least 16) with this template instead: the same TiledGemm (its A/B load
expressions with the convolution's padding checks) and the same per-output epilogue body (bias,
activation, residual), multiplied with mma.sync m16n8k8 on TF32-rounded inputs, fp32 accumulation.
Everything else in the image (GEMVs, reductions, elementwise kernels, the cpu target) stays fp32.
"""

import os
from dataclasses import dataclass

from hal.errors import GraphError

from .codegen import NAME_PLACEHOLDER, KernelSpec, _prelude, _template

# warp grids (wm x wn warps per k group) and mma tiles per warp (mi x ni m16n8 tiles): block tiles
# bm = wm * mi * 16 by bn = wn * ni * 8, biggest first
TILES = ((2, 2, 2, 4), (2, 2, 2, 2), (2, 2, 1, 4), (2, 2, 1, 2), (2, 2, 1, 1))
BK = 32                 # k depth of a staged panel (4 mma k-steps)
STAGES = (4, 3, 2)      # cp.async ring depths, most first: the deepest whose panels fit in shared memory
FILL_BLOCKS = 132       # tiles enough to give every SM of an H100 a block
MAX_GROUPS = 4 * 132    # k groups (of 4 warps) in the whole grid: about 16 warps per SM
MIN_PANELS = 4          # panels each k group multiplies at least
K_GROUPS = (4, 2)       # in-block split-K candidates, most first
SMEM_MAX_B = 48 * 1024  # static shared memory per block
# Build-time override for tile sweeps (bench/tf32_tiles.py): "BMxBN" or "BMxBN/KS"; "" = the heuristic
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

    @property
    def bm(self) -> int:
        return self.wm * self.mi * 16

    @property
    def bn(self) -> int:
        return self.wn * self.ni * 8

    @property
    def group_threads(self) -> int:
        return 32 * self.wm * self.wn

    @property
    def threads(self) -> int:
        return self.group_threads * self.ks

    @property
    def steps(self) -> int:
        """Panels each group multiplies (the last ones may lie past K, all zero)."""
        return -(-self.k_tiles // self.ks)

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


def _launch(t, shape, ks) -> MmaLaunch:
    """The launch of tile `shape` with ks k groups and the deepest ring that fits (at least 2)."""
    wm, wn, mi, ni = shape
    tiles_m, tiles_n = -(-t.m // (wm * mi * 16)), -(-t.n // (wn * ni * 8))
    for stages in STAGES:
        tl = MmaLaunch(wm, wn, mi, ni, ks, BK, tiles_m, tiles_n, t.z * tiles_m * tiles_n, -(-t.k // BK), stages)
        if 4 * tl.smem_words(t.b_k_fastest) <= SMEM_MAX_B:
            break
    return tl


def _fits(tl: MmaLaunch, b_k_fastest: bool) -> bool:
    return tl.threads <= 1024 and 4 * tl.smem_words(b_k_fastest) <= SMEM_MAX_B


def mma_launch(t) -> MmaLaunch:
    """The biggest tile that still gives every SM a block (the smallest where none does); then as
    many k groups as keep MIN_PANELS panels each, MAX_GROUPS in the grid, and the shared memory in
    bounds. KOS_TF32_TILE (FORCE) fixes the tile (and the k groups, clamped to what fits)."""
    if FORCE:
        return _forced(t, FORCE)
    for shape in TILES:
        tl = _launch(t, shape, 1)
        if tl.grid >= FILL_BLOCKS:
            break
    for ks in K_GROUPS:
        big = _launch(t, shape, ks)
        if big.k_tiles >= MIN_PANELS * ks and big.grid * ks <= MAX_GROUPS and _fits(big, t.b_k_fastest):
            return big
    return tl


def _forced(t, spec: str) -> MmaLaunch:
    """The launch KOS_TF32_TILE asks for: "BMxBN" with one k group, "BMxBN/KS" with up to KS."""
    tile, _, ks = spec.partition("/")
    shape = next((s for s in TILES if f"{s[0] * s[2] * 16}x{s[1] * s[3] * 8}" == tile), None)
    if shape is None or not (ks or "1").isdigit():
        raise GraphError(f"KOS_TF32_TILE={spec!r}: expected BMxBN[/KS] with a tile of "
                         + ", ".join(f"{s[0] * s[2] * 16}x{s[1] * s[3] * 8}" for s in TILES))
    for k in (4, 2, 1):
        tl = _launch(t, shape, k)
        if k == 1 or (k <= int(ks or 1) and tl.k_tiles >= k and _fits(tl, t.b_k_fastest)):
            return tl


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
    the TF32 tensor-core template; the cpu side (`cpu`, `cpu_grid`) is the fp32 one, unchanged."""
    t = b._tiled()
    tl = mma_launch(t)
    bx = b_indexing(t.b_k_fastest, tl)
    cuda = _prelude("cuda") + _template("cuda/gemm_mma_tf32.cu").substitute(
        name=NAME_PLACEHOLDER, params=cparams, M=t.m, N=t.n, K=t.k, bm=tl.bm, bn=tl.bn, bk=tl.bk, wm=tl.wm,
        wn=tl.wn, mi=tl.mi, ni=tl.ni, ks=tl.ks, threads=tl.threads, group_threads=tl.group_threads,
        steps=tl.steps, tiles_m=tl.tiles_m, tiles_n=tl.tiles_n, smem_words=tl.smem_words(t.b_k_fastest),
        stage_words=tl.stage_words(t.b_k_fastest), tile_words=tl.tile_words, a_load=t.a_load, b_load=t.b_load,
        b_valid=" && ".join(f"({c})" for c in t.b_valid) or "1", b_kk=bx["kk"], b_nn=bx["nn"], b_slot=bx["slot"],
        b_frag0=bx["frag0"], b_frag1=bx["frag1"], stages=tl.stages, ix="int" if b._tiled_index_fits_32() else "int64_t",
        body="\n".join(" " * 12 + ln for ln in [b.coords_code()] + b.pre + b.post))
    dims = {"cpu": ((cpu_grid, 1, 1), (1, 1, 1)), "cuda": ((tl.grid, 1, 1), (tl.threads, 1, 1))}
    return KernelSpec(b.params, {"cpu": cpu, "cuda": cuda}, dims, {"cpu": 1, "cuda": tl.threads},
                      {"cpu": 0, "cuda": 4 * tl.smem_words(t.b_k_fastest)}, "tf32", (t, tl))
