"""Model-of-the-kernel tests for the TF32 tensor-core GEMM template (no GPU here): a numpy model of
kernels/cuda/gemm_mma_tf32.cu -- its grid decomposition, the k groups' panels staged in shared
memory at the template's slots in its ring of stage buffers, each warp's mma.sync m16n8k8 fragments
read from those slots and
placed by the PTX ISA's fragment layout (A 16x8, B 8x8, C 16x8 by lane), the partial tiles written
back and added per output -- run on the TiledGemm and MmaLaunch the builder chose for every GEMM of
the bench models and of odd-edged shapes, in float64 (no TF32 rounding: this checks the index
maths), against an independent float64 reference (np.matmul, a direct convolution). The template's
fixed index expressions are asserted to be in the rendered source; the builder's rendered ones (B's
slots and fragment addresses, gemm_tf32.b_indexing) are evaluated as written (/ -> //). Also: the fragment loads are free of
shared-memory bank conflicts, and every launch keeps to the hardware limits and the tile rules."""

import numpy as np
import pytest

from bench.e2e import models as bench_models
from kernelos.builder import gemm_tf32
from kernelos.builder.build import lower_model
from kernelos.dag import Launch

from .models import MODELS as TEST_MODELS
from .test_cuda_gemm_model import _odd_model, _reference, float64_operands

LANE = np.arange(32)
G, T = LANE >> 2, LANE & 3
# PTX ISA, "Matrix Fragments for mma.m16n8k8" (.tf32): (row, column) of each lane's registers
A_ROW, A_COL = G[:, None] + 8 * (np.arange(4) & 1), T[:, None] + 4 * (np.arange(4) >> 1)   # a0..a3
B_ROW, B_COL = T[:, None] + 4 * np.arange(2), np.broadcast_to(G[:, None], (32, 2))       # b0, b1 (k, n)
C_ROW, C_COL = G[:, None] + 8 * (np.arange(4) >> 1), 2 * T[:, None] + (np.arange(4) & 1)  # c0..c3

# the template's own index expressions the model below mirrors
TEMPLATE_EXPRESSIONS = (
    "float *const as = kos_smem + ((st) * $ks + kos_grp) * $stage_words, *const bs = as + $bm * ($bk + 4);",
    "for (int st = 0; st < $stages - 1; st++) KOS_ISSUE_PANELS((st * $ks + kos_grp) * $bk, st)",
    "KOS_ISSUE_PANELS(((kos_s + $stages - 1) * $ks + kos_grp) * $bk, (kos_s + $stages - 1) % $stages)",
    "const float *const kos_as = kos_smem + (kos_s % $stages * $ks + kos_grp) * $stage_words;",
    "const float *const kos_bs = kos_as + $bm * ($bk + 4);",
    "const float *r = kos_as + (kos_wm + 16 * a + kos_g) * ($bk + 4) + k8 + kos_t;",
    "kos_fa[a][0] = kos_tf32(r[0]);", "kos_fa[a][1] = kos_tf32(r[8 * ($bk + 4)]);",
    "kos_fa[a][2] = kos_tf32(r[4]);", "kos_fa[a][3] = kos_tf32(r[8 * ($bk + 4) + 4]);",
    "const int nn = kos_wn + 8 * b + kos_g;",
    "float *c = kos_cs + kos_grp * $tile_words + (kos_wm + 16 * a + kos_g) * ($bn + 8) + kos_wn + 8 * b + 2 * kos_t;",
    "*(float2 *)(c + 8 * ($bn + 8)) = make_float2(kos_acc[a][b][2], kos_acc[a][b][3]);",
    "const int kos_wm = kos_warp / $wn * ($mi * 16), kos_wn = kos_warp % $wn * ($ni * 8);",
    "kos_sum += kos_cs[g * $tile_words + mm * ($bn + 8) + nn];",
)


def _eval(expr: str, env: dict):
    return eval(expr.replace("/", "//"), {"__builtins__": {}}, env)


def _copy(t, tl, arrays, gz, k0, k_end, origin, operand, ex, vec) -> tuple:
    """(slots, values) one group's copies of one operand's panel at k0 write, as the rendered loops
    do: 16-byte copies read 4 words from the element index of their first k on, 4-byte ones one
    element; a copy out of range (k from the split's k_end on, or in the padding) writes zeros."""
    rows = tl.bm if operand == "a" else tl.bn
    n_el = rows * tl.bk // (4 if vec else 1)
    e = np.arange(n_el)
    per_thread = n_el // tl.group_threads
    # e = tid + group_threads * j over the group's threads and their copies: each element once
    assert sorted((np.arange(tl.group_threads)[:, None] + tl.group_threads * np.arange(per_thread)).ravel().tolist()) == e.tolist()
    if vec:
        kk, rr = e % (tl.bk // 4) * 4, e // (tl.bk // 4)
    elif operand == "a":
        kk, rr = e % tl.bk, e // tl.bk
    else:
        kk, rr = _eval(ex["kk"], {"e": e}), _eval(ex["nn"], {"e": e})
    g, lim = ("gm", t.m) if operand == "a" else ("gn", t.n)
    gr, gk = origin + rr, k0 + kk
    ok = (gr < lim) & (gk < k_end)
    for c in t.b_valid if operand == "b" else ():
        ok[ok] &= np.asarray(_eval(c, dict(arrays, gz=gz, gk=gk[ok], **{g: gr[ok]})), bool)
    lanes = 4 if vec else 1
    vals = np.zeros((n_el, lanes))
    if ok.any():
        name, index = gemm_tf32.split_load(t.a_load if operand == "a" else t.b_load)
        first = np.asarray(_eval(index, dict(arrays, gz=gz, gk=gk[ok], **{g: gr[ok]})))
        vals[ok] = arrays[name][first[:, None] + np.arange(lanes)]
    if operand == "a" or vec:
        slot = rr * (tl.bk + 4) + kk
    else:
        slot = _eval(ex["slot"], {"kk": kk, "nn": rr})
    slots = (slot[:, None] + np.arange(lanes)).ravel()
    assert len(set(slots.tolist())) == len(slots), "a staged slot is written twice"
    return slots, vals.ravel()


def _stage(t, tl, arrays, gz, k0, k_end, m0, n0, ex, vec) -> np.ndarray:
    """One group's stage buffer (A then B, stage_words) for the panel at k0; NaN where not written."""
    a_words = tl.bm * (tl.bk + 4)
    buf = np.full(tl.stage_words(t.b_k_fastest), np.nan)
    slots, vals = _copy(t, tl, arrays, gz, k0, k_end, m0, "a", ex, vec["a"])
    assert slots.max() < a_words
    buf[slots] = vals
    slots, vals = _copy(t, tl, arrays, gz, k0, k_end, n0, "b", ex, vec["b"])
    assert slots.max() < len(buf) - a_words
    buf[a_words + slots] = vals
    return buf


def simulate_tf32(t, tl, arrays, ex, vec, sample=None) -> np.ndarray:
    """acc per output element as the TF32 kernel computes it (float64, no rounding), NaN where not
    computed (blocks outside `sample`); asserts every output is stored by exactly one block of each
    split. With cross-block split-K, the split partials' sum in split order, as the reduce kernel adds them."""
    out = np.zeros((tl.splits, t.z * t.m * t.n))
    stores = np.zeros((tl.splits, t.z * t.m * t.n), np.int64)
    warps = tl.wm * tl.wn
    tile_blocks = t.z * tl.tiles_m * tl.tiles_n
    assert tl.grid == tl.splits * tile_blocks and tl.group_threads == 32 * warps
    assert tl.k_tiles == -(-t.k // tl.bk) and tl.steps * tl.ks >= tl.split_panels and tl.splits <= tl.k_tiles
    split_k = tl.split_panels * tl.bk
    # the template's k range of split s: [kos_kbase, kos_kend); group g's panels at kos_kbase + k0
    k_range = [(s * split_k, min(t.k, (s + 1) * split_k)) for s in range(tl.splits)]
    group_k0 = [[(s * tl.ks + g) * tl.bk for s in range(tl.steps)] for g in range(tl.ks)]
    assert sorted(kb + k for kb, ke in k_range for ks in group_k0 for k in ks if kb + k < ke) == list(range(0, t.k, tl.bk))
    assert all(kb < ke for kb, ke in k_range), "an empty split"
    e = np.arange(tl.bm * tl.bn)
    mm, nn = e // tl.bn, e % tl.bn
    chosen = set(range(tile_blocks)) if sample is None else set(np.linspace(0, tile_blocks - 1, sample).astype(int).tolist())
    for block in range(tl.grid):
        split, blk = block // tile_blocks, block % tile_blocks
        k_base, k_end = k_range[split]
        gz = blk // (tl.tiles_m * tl.tiles_n)
        m0, n0 = blk // tl.tiles_n % tl.tiles_m * tl.bm, blk % tl.tiles_n * tl.bn
        keep = (m0 + mm < t.m) & (n0 + nn < t.n)
        i = (gz * t.m + m0 + mm[keep]) * t.n + n0 + nn[keep]
        np.add.at(stores[split], i, 1)
        if blk not in chosen:
            out[split, i] = np.nan
            continue
        smem = np.full(tl.smem_words(t.b_k_fastest), np.nan)
        assert tl.stages * tl.ks * tl.stage_words(t.b_k_fastest) <= len(smem) and tl.ks * tl.tile_words <= len(smem)
        cs = np.full(tl.ks * tl.tile_words, np.nan)
        written = np.zeros(len(cs), np.int64)
        for grp, k0s in enumerate(group_k0):
            acc = np.zeros((warps, tl.mi, tl.ni, 32, 4))
            for step, k0 in enumerate(k0s):
                # the ring: panel `step` of group grp in buffer (step % stages, grp), read from there
                base = (step % tl.stages * tl.ks + grp) * tl.stage_words(t.b_k_fastest)
                smem[base:base + tl.stage_words(t.b_k_fastest)] = _stage(t, tl, arrays, gz, k_base + k0, k_end, m0, n0, ex, vec)
                a_s = smem[base:base + tl.bm * (tl.bk + 4)]
                b_s = smem[base + tl.bm * (tl.bk + 4):base + tl.stage_words(t.b_k_fastest)]
                for k8 in range(0, tl.bk, 8):
                    for w in range(warps):
                        wm, wn = w // tl.wn * tl.mi * 16, w % tl.wn * tl.ni * 8
                        for a in range(tl.mi):
                            r = (wm + 16 * a + G) * (tl.bk + 4) + k8 + T
                            fa = a_s[r[:, None] + np.array([0, 8 * (tl.bk + 4), 4, 8 * (tl.bk + 4) + 4])]
                            a16 = np.full((16, 8), np.nan)
                            a16[A_ROW, A_COL] = fa
                            for b in range(tl.ni):
                                env = {"nn": wn + 8 * b + G, "k8": k8, "kos_t": T}
                                fb = np.stack([b_s[_eval(ex["frag0"], env)], b_s[_eval(ex["frag1"], env)]], axis=1)
                                b8 = np.full((8, 8), np.nan)
                                b8[B_ROW, B_COL] = fb
                                acc[w, a, b] += (a16 @ b8)[C_ROW, C_COL]
            for w in range(warps):
                wm, wn = w // tl.wn * tl.mi * 16, w % tl.wn * tl.ni * 8
                for a in range(tl.mi):
                    for b in range(tl.ni):
                        c = grp * tl.tile_words + (wm + 16 * a + G) * (tl.bn + 8) + wn + 8 * b + 2 * T
                        for q, off in enumerate((0, 1, 8 * (tl.bn + 8), 8 * (tl.bn + 8) + 1)):
                            cs[c + off] = acc[w, a, b, :, q]
                            np.add.at(written, c + off, 1)
        assert written.max() == 1, "a partial-tile slot is written twice"
        total = sum(cs[g * tl.tile_words + mm * (tl.bn + 8) + nn] for g in range(tl.ks))
        out[split, i] = total[keep]
    assert (stores == 1).all(), "an output element is stored never or twice (by a split)"
    acc = out[0]
    for s in range(1, tl.splits):
        acc = acc + out[s]
    return acc


def check_model(model, rng, sample=None) -> tuple:
    """Simulate every TF32 kernel of a tf32 lowering of `model` against the float64 reference;
    returns ({launch name: cuda variant}, [vector_copies of each distinct TF32 kernel])."""
    low = lower_model(model, ["sm_90"], precision="tf32")
    g = low.graph
    buffer_array, value_array = float64_operands(low, rng)
    nodes = {n.name: n for n in g.nodes}
    variants, done, vectors = {}, set(), []
    launches = [n for n in low.dag.nodes if isinstance(n, Launch)]
    for launch, after in zip(launches, launches[1:] + [None]):
        if not isinstance(launch, Launch):
            continue
        spec = low.specs[launch.kernel]
        variants[launch.name] = spec.cuda_variant
        if spec.cuda_variant != "tf32" or launch.kernel in done:
            continue
        done.add(launch.kernel)
        t, tl = spec.tiled
        src, ex = spec.source("cuda", "k"), gemm_tf32.b_indexing(t.b_k_fastest, tl)
        vec = gemm_tf32.vector_copies(t, tl)
        vectors.append(vec)
        _check_source(src, t, tl, ex, vec)
        _check_launch(spec, t, tl)
        assert spec.dims["cuda"] == ((tl.grid, 1, 1), (tl.threads, 1, 1)) and spec.max_threads["cuda"] == tl.threads
        env = {p.cname: buffer_array(p.buffer).reshape(-1) for p in spec.params if not p.out}
        assert ("kos_cp16(as" in src) == vec["a"] and ("kos_cp16(bs" in src) == vec["b"]
        got = simulate_tf32(t, tl, env, ex, vec, sample)
        ref = _reference(nodes[launch.name], g, value_array).reshape(-1)
        seen = ~np.isnan(got)
        assert got.shape == ref.shape and seen.sum() >= min(len(got), 256) and (sample or seen.all()), launch.name
        np.testing.assert_allclose(got[seen], ref[seen], rtol=1e-9, atol=1e-9 * np.abs(ref).max(), err_msg=launch.name)
        _check_split(low, spec, launch, after, t, tl)
    return variants, vectors


def _check_split(low, spec, launch, after, t, tl):
    """A split-K GEMM node writes only its scratch of splits x z x M x N partials (the model above
    adds them); the node right after it is its reduce node, which reads that scratch, adds the
    splits in order and writes the GEMM node's own outputs; without splits there is none."""
    if tl.splits == 1:
        assert spec.then is None and not any(p.cname == "kos_part" for p in spec.params)
        return
    part = spec.params[-1]
    assert part.cname == "kos_part" and part.out and launch.writes == (part.buffer,)
    assert low.dag.buffers[part.buffer].size_B == 4 * tl.splits * t.z * t.m * t.n
    assert after is not None and after.name == f"{launch.name}.splitk_reduce" and low.specs[after.kernel] is spec.then
    assert part.buffer in after.reads and spec.then.params[-1] == part.__class__("kos_part", part.buffer, "float", False)
    assert set(after.writes) == {p.buffer for p in spec.then.params if p.out} and part.buffer not in after.writes
    n = t.z * t.m * t.n
    src = spec.then.source("cuda", "r")
    assert f"for (int s = 1; s < {tl.splits}; s++) acc += kos_part[(int64_t)s * {n} + i];" in src and f"if (i >= {n}) return;" in src
    assert spec.then.dims["cuda"][0][0] * spec.then.dims["cuda"][1][0] >= n


def _check_source(src, t, tl, ex, vec):
    """The rendered kernel is this launch's and holds the index expressions the model mirrors."""
    subst = {"$bk": str(tl.bk), "$bn": str(tl.bn), "$bm": str(tl.bm), "$tile_words": str(tl.tile_words),
             "$wn": str(tl.wn), "$mi": str(tl.mi), "$ni": str(tl.ni), "$ks": str(tl.ks), "$b_slot": ex["slot"],
             "$stages": str(tl.stages), "$stage_words": str(tl.stage_words(t.b_k_fastest)), "$a_load": t.a_load,
             "$b_load": t.b_load, "$M": str(t.m), "$N": str(t.n), "$K": str(t.k),
             "$b_valid": " && ".join(f"({c})" for c in t.b_valid) or "1"}
    for expr in TEMPLATE_EXPRESSIONS:
        for k, v in sorted(subst.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(k, v)
        assert expr in src, expr
    assert f"kos_fb[b][0] = kos_tf32(kos_bs[{ex['frag0']}]);" in src and f"kos_fb[b][1] = kos_tf32(kos_bs[{ex['frag1']}]);" in src
    assert vec["b"] or f"kk = {ex['kk']}, nn = {ex['nn']};" in src
    assert vec["a"] or f"kk = e % {tl.bk}, mm = e / {tl.bk};" in src
    assert all(f"kk = e % {tl.bk // 4} * 4, {r} = e / {tl.bk // 4};" in src for op, r in (("a", "mm"), ("b", "nn")) if vec[op])
    assert f"kos_blk / ({tl.tiles_m} * {tl.tiles_n})" in src and f"kos_s < {tl.steps};" in src
    split_k = tl.split_panels * tl.bk
    assert (f"kos_split = blockIdx.x / {t.z * tl.tiles_m * tl.tiles_n}, kos_blk = blockIdx.x % {t.z * tl.tiles_m * tl.tiles_n};" in src
            and f"kos_kbase = kos_split * {split_k}, kos_kend = kos_kbase + {split_k} < {t.k} ? kos_kbase + {split_k} : {t.k};" in src)
    assert ("gk = kos_kbase + (k0) + kk;" in src)
    assert (f"kos_part[(int64_t)kos_split * {t.z * t.m * t.n} + i] = acc;" in src) == (tl.splits > 1)
    assert f"__launch_bounds__({tl.threads})" in src
    assert src.count("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32") == 1 and src.count("cvt.rna.tf32.f32") == 1
    for op, dst, g, lim, load in (("as", "as + mm * $bk4 + kk", "gm", t.m, t.a_load), ("bs", f"bs + {ex['slot']}", "gn", t.n, t.b_load)):
        cond = f"{g} < {lim} && gk < kos_kend" + ("".join(f" && ({c})" for c in t.b_valid) if op == "bs" else "")
        assert f"({dst.replace('$bk4', str(tl.bk + 4))}, &({load}), {cond}); }}" in src, op
    assert src.count("cp.async.ca.shared.global") == 2 and f"cp.async.wait_group %0;\" ::\"n\"({tl.stages} - 2)" in src


def _check_launch(spec, t, tl):
    """Within the hardware limits (1024 threads, 48 KB of static shared memory a block; whole loads
    per thread) and, unless forced, by the heuristic's rules: the biggest tile with enough tiles to
    fill the SMs (or the smallest), k groups only with MIN_PANELS panels each, MAX_GROUPS in all."""
    assert tl.threads <= 1024 and spec.shared_B["cuda"] <= 48 * 1024
    assert (tl.bm * tl.bk) % tl.group_threads == 0 and (tl.bn * tl.bk) % tl.group_threads == 0
    if gemm_tf32.FORCE:
        return
    shape = (tl.wm, tl.wn, tl.mi, tl.ni)
    if tl.splits > 1:       # split_launch: the biggest tile, too few blocks for the SMs, enough panels per split
        assert shape == gemm_tf32.TILES[0] and tl.ks == 1 and tl.grid // tl.splits < gemm_tf32.SMS
        assert gemm_tf32.SPLIT_PANELS <= tl.split_panels and (tl.splits - 1) * tl.split_panels < tl.k_tiles
        assert tl.k_tiles >= gemm_tf32.SPLIT_MIN_K_PANELS
        return
    assert gemm_tf32.split_launch(t) is None
    assert all(gemm_tf32._launch(t, s, 1).grid < gemm_tf32.FILL_BLOCKS for s in gemm_tf32.TILES[:gemm_tf32.TILES.index(shape)])
    assert tl.grid >= gemm_tf32.FILL_BLOCKS or shape == gemm_tf32.TILES[-1]
    assert tl.ks == 1 or (tl.k_tiles >= gemm_tf32.MIN_PANELS * tl.ks and tl.grid * tl.ks <= gemm_tf32.MAX_GROUPS)


def test_model_of_tf32_gemm_on_odd_edges():
    variants, vectors = check_model(_odd_model(), np.random.default_rng(1))
    assert set(_gemms(variants).values()) == {"tf32"}, variants
    assert any(v["a"] for v in vectors) and not all(v["a"] for v in vectors)    # 16-byte and 4-byte copies


@pytest.mark.parametrize("name", ["resnet18", "gpt2"])
def test_model_of_tf32_kernels_for_bench_model(name):
    variants, vectors = check_model(getattr(bench_models, name)(), np.random.default_rng(2), sample=3)
    gemm_like = _gemms({k: v for k, v in variants.items() if k.startswith(("MatMul", "Conv", "Gemm"))})
    if name == "resnet18":      # the batch-1 classifier is a GEMV, fp32
        assert gemm_like.pop("Gemm_49") == "warp" and set(gemm_like.values()) == {"tf32"}
        assert sum(v["a"] for v in vectors) == len(vectors) - 1      # all weights but the first conv's (K = 147)
    else:
        assert len(gemm_like) == 72 and set(gemm_like.values()) == {"tf32"}
        assert sum(v["a"] and v["b"] for v in vectors) >= 4          # the linear layers (and Q.K^T): both operands
        assert sum(v == "splitk_reduce" for v in variants.values()) == 12   # the MLP's down projection (K 3072) splits K


def _gemms(variants: dict) -> dict:
    """The variants of the GEMM nodes, less their split-K reduce nodes (each right after a TF32 GEMM)."""
    reduces = [k for k, v in variants.items() if v == "splitk_reduce"]
    assert all(k.endswith(".splitk_reduce") and variants[k[:-len(".splitk_reduce")]] == "tf32" for k in reduces)
    return {k: v for k, v in variants.items() if k not in reduces}


@pytest.mark.parametrize("name", sorted(TEST_MODELS))
def test_model_of_tf32_kernels_for_test_model(name):
    variants, _ = check_model(TEST_MODELS[name](), np.random.default_rng(4))
    assert ("tf32" in variants.values()) == (name != "mlp")


@pytest.mark.parametrize("forced", ["64x64w8", "64x64w4/2", "64x32w8/2", "64x32w4/4", "32x64w8/4", "32x64w4",
                                    "32x32w8/4", "32x32w4/2", "32x16w4/4", "32x16w4/4k16", "64x64w8k16", "64x64w8s3",
                                    "32x32w4/2s5k16", "64x32w8s64"])
def test_model_of_forced_tiles(monkeypatch, forced):
    """Every tile shape and k-group count the knob (and the heuristic) can pick, on the odd edges."""
    monkeypatch.setattr(gemm_tf32, "FORCE", forced)
    check_model(_odd_model(), np.random.default_rng(6))


def test_forced_tile_must_exist(monkeypatch):
    from hal.errors import GraphError
    monkeypatch.setattr(gemm_tf32, "FORCE", "48x48")
    with pytest.raises(GraphError, match="KOS_TF32_TILE"):
        lower_model(_odd_model(), ["sm_90"], precision="tf32")
    monkeypatch.setattr(gemm_tf32, "FORCE", "32x32/2k8")
    with pytest.raises(GraphError, match="KOS_TF32_TILE"):
        lower_model(_odd_model(), ["sm_90"], precision="tf32")


def test_fragment_loads_are_free_of_bank_conflicts():
    """For every tile and both B layouts: the 32 lanes of each A and B fragment load hit 32 banks."""
    for shape in gemm_tf32.TILES:
        for k_fast, bk in ((True, 32), (False, 32), (True, 16), (False, 16)):
            tl = gemm_tf32.MmaLaunch(*shape, 1, bk, 1, 1, 1, 1)
            for i_off in (0, 8 * (tl.bk + 4), 4, 8 * (tl.bk + 4) + 4):
                assert len(set((((G * (tl.bk + 4)) + T + i_off) % 32).tolist())) == 32
            stride = tl.bk + 4 if k_fast else tl.bn + 8
            for j in range(2):
                addr = G * stride + T + 4 * j if k_fast else (T + 4 * j) * stride + G
                assert len(set((addr % 32).tolist())) == 32, (shape, k_fast)
