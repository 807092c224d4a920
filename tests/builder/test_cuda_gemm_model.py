"""Model-of-the-kernel tests for the CUDA GEMM paths (no GPU here): a numpy model of the tiled
template kernels/cuda/gemm_tiled.cu (its grid decomposition, the k groups' panels, the panel loads
with their bounds and padding checks, scalar or float4 (whose 4 elements are checked to be the ones
the scalar loads would read), the thread -> output mapping, the k groups' reduction order and the
output index) run on the TiledGemm and TileLaunch the builder chose for every GEMM-shaped node of
the three bench models and of odd-edged shapes, and on every form of tiling forced on the odd-edged
ones, against an independent float64 reference (np.matmul, a direct convolution) computed from the
ONNX operands. The load expressions are the builder's own C strings, evaluated in Python (/ -> //:
the builder only divides non-negative indices). Plus NVRTC compiles of them without local memory
(where NVRTC is installed) and the coverage of the unrolled GEMV lanes."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench.e2e import models as bench_models
from kernelos.builder.build import lower_model
from kernelos.builder.codegen import CUDA_TILED_MIN_MN, gemv_loop, panel_layout
from kernelos.dag import Launch

from .models import MODELS as TEST_MODELS

@pytest.fixture(autouse=True)
def all_tiled_forms(monkeypatch):
    """These tests model all tiled forms (KOS_CUDA_TILED=2, the default), whatever the environment sets."""
    import kernelos.builder.codegen as codegen
    monkeypatch.setattr(codegen, "CUDA_TILED_LEVEL", 2)


def _eval(expr: str, env: dict):
    return eval(expr.replace("/", "//"), {"__builtins__": {}}, env)


class _IndexOf:
    """A pointer whose element p[i] is its index i: evaluates a load expression to the index it reads."""

    def __getitem__(self, i):
        return i


def _panel(t, tl, env, gz, k0, base, op):
    """One operand's panels as one k group of a block stages them, for its panel starts k0:
    [len(k0) * bk, extent_tile]. Unit e = tid + tg j (j below the loads per thread, e inside the
    panel) loads `width` elements along the panel's fast axis at the place codegen.panel_layout
    gives it, if its first element is in range (and not padding); a float4 unit must read the 4
    elements it stands for: their indices consecutive from a multiple of 4 (checked here by
    evaluating the load's index expression). Every slot of the panel is written once."""
    rows, width, count, k_fast = panel_layout(op, t, tl)
    size, rv = (t.m, "gm") if op == "a" else (t.n, "gn")
    load, conds = (t.a_load, ()) if op == "a" else (t.b_load, t.b_valid)
    e = (np.arange(tl.tg)[:, None] + tl.tg * np.arange(count)[None, :]).reshape(-1)
    e = e[e < rows * tl.bk // width]
    c = np.arange(width)
    if k_fast:
        kk0, rr0 = e % (tl.bk // width) * width, e // (tl.bk // width)
        kk, rr = kk0[:, None] + c, np.broadcast_to(rr0[:, None], (len(e), width))
    else:
        kk0, rr0 = e // (rows // width), e % (rows // width) * width
        kk, rr = np.broadcast_to(kk0[:, None], (len(e), width)), rr0[:, None] + c
    assert len(set(zip(kk.reshape(-1).tolist(), rr.reshape(-1).tolist()))) == kk.size == rows * tl.bk
    assert kk.max() < tl.bk and rr.max() < rows
    panel = np.zeros((len(k0) * tl.bk, rows))
    for s_, k_start in enumerate(k0):
        g_k0, g_r0 = k_start + kk0, base + rr0
        ok = (g_r0 < size) & (g_k0 < t.k)
        for cond in conds:
            ok[ok] &= np.asarray(_eval(cond, dict(env, gz=gz, gk=g_k0[ok], **{rv: g_r0[ok]})), bool)
        if not ok.any():
            continue
        g_k, g_r = k_start + kk[ok], base + rr[ok]
        vals = _eval(load, dict(env, gz=gz, gk=g_k, **{rv: g_r}))
        if width > 1:
            index = np.asarray(_eval(load, {**{p: _IndexOf() for p in env}, "gz": gz, "gk": g_k, rv: g_r}))
            assert (index[:, 0] % 4 == 0).all() and (index == index[:, :1] + c).all(), "a float4 load reads other elements"
        panel[s_ * tl.bk + kk[ok], rr[ok]] = vals
    return panel


def _thread_outputs(tl, t, j):
    """(row, column) in the tile of accumulator j = ta * tn + tb of group thread t."""
    ta, tb, ty, tx = j // tl.tn, j % tl.tn, t // tl.lanes_n, t % tl.lanes_n
    return (4 * tl.lanes_m * (ta // 4) + 4 * ty + ta % 4, 4 * tl.lanes_n * (tb // 4) + 4 * tx + tb % 4)


def _stores(tl):
    """[(pass, thread of the block, group thread t, accumulator j)] in the order the epilogue stores:
    one group: each thread its own accumulators; k groups: pass p, element q = threadIdx.x + threads
    r of the slab, t = q / 4 % tg, jj = q / (4 tg) * 4 + q % 4 (gemm_tiled_combine.cu)."""
    if tl.ks == 1:
        return [(0, t, t, j) for t in range(tl.tg) for j in range(tl.tm * tl.tn)]
    out = []
    for p in range(tl.tm * tl.tn // tl.slab):
        for q in range(tl.slab * tl.tg):
            out.append((p, q % tl.threads, q // 4 % tl.tg, p * tl.slab + q // (4 * tl.tg) * 4 + q % 4))
    return out


def check_launch_shape(tl):
    """The launch's own arithmetic: thread tiles cover the tile once, float4 reads stay aligned, the
    panels and the reduction slabs fit the shared memory the kernel declares."""
    assert tl.tm in (4, 8) and tl.tn in (4, 8) and tl.bm == tl.lanes_m * tl.tm and tl.bn == tl.lanes_n * tl.tn
    assert tl.threads == tl.tg * tl.ks <= 1024 and tl.threads % 32 == 0
    j = np.arange(tl.tm * tl.tn)
    cells = {_thread_outputs(tl, t, jj) for t in range(tl.tg) for jj in j.tolist()}
    assert cells == {(r, c) for r in range(tl.bm) for c in range(tl.bn)}
    assert tl.sa % 4 == 0 and tl.sb % 4 == 0 and (tl.ks * tl.bk * tl.sa) % 4 == 0
    assert tl.ks * tl.bk * (tl.sa + tl.sb) <= tl.smem_floats and 4 * tl.smem_floats <= 48 * 1024
    if tl.ks > 1:
        assert tl.slab % 4 == 0 and (tl.tm * tl.tn) % tl.slab == 0 and tl.ks * tl.slab * tl.tg <= tl.smem_floats
    stored = [(t, jj) for _, _, t, jj in _stores(tl)]
    assert sorted(stored) == [(t, jj) for t in range(tl.tg) for jj in range(tl.tm * tl.tn)]


def simulate_tiled(t, tl, arrays: dict, sample: int | None = None) -> np.ndarray:
    """acc for every output element as the tiled kernel computes it (float64), NaN where unwritten;
    asserts that each output element is stored by exactly one thread of one block. sample: compute
    the values of only this many blocks (evenly spread, first and last included)."""
    out = np.full(t.z * t.m * t.n, np.nan)
    stores = np.zeros(t.z * t.m * t.n, np.int64)
    check_launch_shape(tl)
    assert tl.grid == t.z * tl.tiles_m * tl.tiles_n
    assert tl.k_tiles == -(-t.k // tl.bk) and tl.steps * tl.ks >= tl.k_tiles
    # group g multiplies panels (s * ks + g) * bk for s < steps; together: every panel of K exactly once
    group_k0 = [[(st * tl.ks + g) * tl.bk for st in range(tl.steps)] for g in range(tl.ks)]
    inside = sorted(k for ks in group_k0 for k in ks if k < t.k)
    assert inside == list(range(0, t.k, tl.bk))
    order = _stores(tl)
    th = np.array([o[2] for o in order])
    jj = np.array([o[3] for o in order])
    rows, cols = _thread_outputs(tl, th, jj)
    chosen = set(range(tl.grid)) if sample is None else set(np.linspace(0, tl.grid - 1, sample).astype(int).tolist())
    for blk in range(tl.grid):
        gz = blk // (tl.tiles_m * tl.tiles_n)
        m0, n0 = blk // tl.tiles_n % tl.tiles_m * tl.bm, blk % tl.tiles_n * tl.bn
        gm, gn = m0 + rows, n0 + cols
        keep = (gm < t.m) & (gn < t.n)
        i = (gz * t.m + gm[keep]) * t.n + gn[keep]
        np.add.at(stores, i, 1)
        if blk in chosen:
            # each group's partial tile, as its threads' accumulators; the stored value adds them
            # over the groups in order (one group: the thread's own accumulator)
            acc = 0
            for k0 in group_k0:
                a = _panel(t, tl, arrays, gz, k0, m0, "a")
                b = _panel(t, tl, arrays, gz, k0, n0, "b")
                acc = acc + (a.T @ b)[rows, cols]  # sum over k of As[k][row] * Bs[k][col]
            out[i] = acc[keep]
    assert (stores == 1).all(), "an output element is stored never or twice"
    return out


def _conv_ref(x, w, strides, pads, dil):
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (h + pads[0] + pads[2] - (kh - 1) * dil[0] - 1) // strides[0] + 1
    ow = (wd + pads[1] + pads[3] - (kw - 1) * dil[1] - 1) // strides[1] + 1
    out = np.zeros((n, oc, oh, ow))
    for i in range(kh):
        for j in range(kw):
            win = xp[:, :, i * dil[0]: i * dil[0] + (oh - 1) * strides[0] + 1: strides[0],
                     j * dil[1]: j * dil[1] + (ow - 1) * strides[1] + 1: strides[1]]
            out += np.einsum("nchw,oc->nohw", win, w[:, :, i, j])
    return out


def _reference(node, graph, value_array):
    """The anchor's reduction (before its epilogue) in float64, from the ONNX operands."""
    ins = [value_array(v) for v in node.inputs if v]
    if node.op == "MatMul":
        return np.matmul(ins[0], ins[1])
    if node.op == "Gemm":
        a = ins[0].T if node.attr("transA", 0) else ins[0]
        b = ins[1].T if node.attr("transB", 0) else ins[1]
        return a @ b
    if node.op == "Conv":
        nd = 2
        return _conv_ref(ins[0], ins[1], node.attr("strides", [1] * nd), node.attr("pads", [0] * 2 * nd),
                         node.attr("dilations", [1] * nd))
    raise AssertionError(f"no reference for {node.op}")


def float64_operands(low, rng):
    """(buffer_array, value_array) of a lowering: a buffer's elements in float64 (constants as built,
    others fresh random, each drawn once) and a value's elements read through its strided view
    (kernelos/builder/views.py) where it is one."""
    g, arrays = low.graph, {}

    def buffer_array(buf):
        if buf not in arrays:
            v = g.value(buf)
            arrays[buf] = v.const.astype(np.float64) if v.const is not None else rng.standard_normal(v.shape)
        return arrays[buf]

    def value_array(value):
        v = g.value(value)
        if v.const is not None:
            return v.const.astype(np.float64)
        view = low.view(value)
        base = buffer_array(low.buffer_of(view.base)).reshape(-1)
        return np.lib.stride_tricks.as_strided(base[view.offset:], v.shape, [8 * s for s in view.strides])

    return buffer_array, value_array


def check_model(model, rng, sample=None):
    """Simulate every tiled kernel of a lowered model against the reference (the values of `sample`
    blocks per kernel, all where None); returns the variants."""
    low = lower_model(model, ["sm_90"])
    g = low.graph
    buffer_array, value_array = float64_operands(low, rng)
    nodes = {n.name: n for n in g.nodes}
    variants, done = {}, set()
    for launch in low.dag.nodes:
        if not isinstance(launch, Launch):
            continue
        spec = low.specs[launch.kernel]
        variants[launch.name] = spec.cuda_variant
        if spec.cuda_variant != "tiled" or launch.kernel in done:
            continue
        done.add(launch.kernel)
        t, tl = spec.tiled
        src = spec.source("cuda", "k")
        assert f"kos_blk / ({tl.tiles_m} * {tl.tiles_n})" in src and t.a_load in src and t.b_load in src
        assert spec.dims["cuda"] == ((tl.grid, 1, 1), (tl.threads, 1, 1)) and spec.max_threads["cuda"] == tl.threads
        assert f"__launch_bounds__({tl.threads}, {tl.min_blocks})" in src and f"kos_s < {tl.steps};" in src
        assert f"kos_sm[{tl.smem_floats}]" in src and spec.shared_B["cuda"] == 4 * tl.smem_floats
        assert ("k groups: their partial tiles" in src) == (tl.ks > 1)
        assert ("bar.sync" in src or "__syncwarp()" in src) == tl.own_barrier
        env = {p.cname: buffer_array(p.buffer).reshape(-1) for p in spec.params if not p.out}
        got = simulate_tiled(t, tl, env, sample)
        ref = _reference(nodes[launch.name], g, value_array).reshape(-1)
        assert got.shape == ref.shape and (sample or not np.isnan(got).any()), launch.name
        seen = ~np.isnan(got)
        assert seen.sum() >= min(len(got), 256)
        got, ref = got[seen], ref[seen]
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max(), err_msg=launch.name)
    return variants


def _odd_model():
    """Odd edges: batched/broadcast MatMuls with and without constant weights, Gemm with transA and
    transB, strided/dilated/padded convs with batch 2 and sizes off every tile multiple."""
    rng = np.random.default_rng(5)
    inits, nodes = [], []

    def const(name, shape):
        inits.append(numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name))
        return name

    nodes.append(helper.make_node("MatMul", ["a", const("w1", (70, 41))], ["o1"], name="mm_const"))
    nodes.append(helper.make_node("MatMul", ["b4", "c3"], ["o2"], name="mm_bcast"))
    nodes.append(helper.make_node("Gemm", ["g", const("gw", (70, 67))], ["o3"], name="gemm_tt", transA=1, transB=1))
    nodes.append(helper.make_node("Gemm", ["g2", "gb"], ["o4"], name="gemm_act"))
    nodes.append(helper.make_node("Conv", ["x", const("cw", (21, 8, 3, 3))], ["o5"], name="conv_s2_d2",
                                  strides=[2, 1], pads=[2, 1, 1, 2], dilations=[2, 1]))
    nodes.append(helper.make_node("Conv", ["x2", const("cw1", (17, 80, 1, 1))], ["o6"], name="conv_1x1_s2",
                                  strides=[2, 2]))
    # long K, split over k groups, the panel count not a multiple of the groups
    nodes.append(helper.make_node("MatMul", ["a_long", const("w_long", (1100, 19))], ["o7"], name="mm_split_k"))
    nodes.append(helper.make_node("Conv", ["x_long", const("cw_long", (20, 130, 3, 3))], ["o8"], name="conv_split_k",
                                  pads=[1, 0, 1, 0]))
    # both operands float4-able: A along k, B (an input, n fastest) along n
    nodes.append(helper.make_node("MatMul", ["a4", "b4n"], ["o9"], name="mm_vec4"))
    f = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info(n, f, s) for n, s in
              (("a", [3, 37, 70]), ("b4", [2, 1, 19, 66]), ("c3", [3, 66, 17]), ("g", [67, 45]),
               ("g2", [23, 65]), ("gb", [65, 31]), ("x", [2, 8, 27, 22]),
               ("x2", [2, 80, 13, 17]), ("a_long", [20, 1100]), ("x_long", [1, 130, 9, 11]),
               ("a4", [2, 36, 72]), ("b4n", [2, 72, 52]))]
    outputs = [helper.make_tensor_value_info(f"o{i}", f, None) for i in range(1, 10)]
    m = helper.make_model(helper.make_graph(nodes, "odd", inputs, outputs, inits),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_model_of_tiled_gemm_on_odd_edges():
    variants = check_model(_odd_model(), np.random.default_rng(1))
    assert variants == {"mm_const": "tiled", "mm_bcast": "tiled", "gemm_tt": "tiled", "gemm_act": "tiled",
                        "conv_s2_d2": "tiled", "conv_1x1_s2": "tiled", "mm_split_k": "tiled", "conv_split_k": "tiled",
                        "mm_vec4": "tiled"}
    low = lower_model(_odd_model(), ["sm_90"])
    split = {n.name: low.specs[n.kernel].tiled[1] for n in low.dag.nodes if n.name.endswith("split_k")}
    assert {n: (tl.ks > 1, tl.k_tiles % tl.ks != 0) for n, tl in split.items()} == \
        {"mm_split_k": (True, True), "conv_split_k": (True, True)}


# kinds of tiling the template has, each forced on every GEMM of the odd-edge model
FORMS = {
    "one group": lambda tl: tl.ks == 1,
    "k groups on __syncthreads": lambda tl: tl.ks > 1 and not tl.own_barrier,
    "k groups of one warp": lambda tl: tl.own_barrier and tl.tg == 32,
    "k groups on their own barriers": lambda tl: tl.own_barrier and tl.tg > 32,
    "8x8 thread tiles": lambda tl: tl.tm * tl.tn == 64,
    "16-deep panels": lambda tl: tl.bk == 16,
}


def force_form(monkeypatch, form):
    """Make the builder take, for every GEMM, the cost model's best tiling of the given kind (its
    overall best where none of that kind fits)."""
    import kernelos.builder.codegen as codegen

    def launch(t):
        ranked = codegen.ranked_tiles(t)
        return next((tl for tl in ranked if FORMS[form](tl)), ranked[0])
    monkeypatch.setattr(codegen, "tile_launch", launch)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_model_of_each_tiling_form_on_odd_edges(monkeypatch, form):
    force_form(monkeypatch, form)
    low = lower_model(_odd_model(), ["sm_90"])
    launches = [low.specs[n.kernel].tiled[1] for n in low.dag.nodes if low.specs[n.kernel].tiled]
    assert sum(FORMS[form](tl) for tl in launches) >= 4
    assert any(tl.vec_a for tl in launches) and any(tl.vec_b for tl in launches)
    assert set(check_model(_odd_model(), np.random.default_rng(7)).values()) == {"tiled"}


@pytest.mark.parametrize("name", ["mlp", "resnet18", "gpt2"])
def test_model_of_cuda_kernels_for_bench_model(name):
    variants = check_model(getattr(bench_models, name)(), np.random.default_rng(2), sample=6)
    gemm_like = {k: v for k, v in variants.items() if k.startswith(("MatMul", "Conv", "Gemm", "matmul"))}
    if name == "mlp":       # batch 1: every layer a GEMV, a warp per output
        assert set(gemm_like.values()) == {"warp"}
    elif name == "resnet18":
        assert gemm_like.pop("Gemm_49") == "warp" and set(gemm_like.values()) == {"tiled"}
    else:
        assert len(gemm_like) == 72 and set(gemm_like.values()) == {"tiled"}


@pytest.mark.parametrize("name", sorted(TEST_MODELS))
def test_model_of_tiled_kernels_for_test_model(name):
    """The builder tests' own models (their nvidia e2e test runs these kernels on a GPU)."""
    variants = check_model(TEST_MODELS[name](), np.random.default_rng(4))
    assert ("tiled" in variants.values()) == (name != "mlp")


def test_tiled_level_knob(monkeypatch):
    """KOS_CUDA_TILED (read once into codegen.CUDA_TILED_LEVEL): 0 no tiled kernels, 1 no k groups."""
    import kernelos.builder.codegen as codegen
    seen = {}
    for level in (0, 1, 2):
        monkeypatch.setattr(codegen, "CUDA_TILED_LEVEL", level)
        low = lower_model(_odd_model(), ["sm_90"])
        seen[level] = sorted({(s.cuda_variant, s.tiled[1].ks if s.tiled else 0) for s in low.specs.values()})
    assert {v for v, _ in seen[0]} <= {"warp", "block"} and seen[1] == [("tiled", 1)]
    assert any(v == "tiled" and ks > 1 for v, ks in seen[2])


def test_model_of_unrolled_gemv_lanes_covers_each_float4_once():
    """The GEMV template's loop (codegen.gemv_loop, parsed): lane reads float4 lane + lanes s for s
    below its bound, then lane + lanes steps where lane < its tail; together every float4 once."""
    import re
    for lanes in (8, 16, 32):
        for k in (4, 64, 124, 128, 512, 1000, 1024, 3072, 4100):
            code = "\n".join(gemv_loop("a", "b", k, lanes))
            steps = int(re.search(r"s < (\d+);", code).group(1))
            assert re.search(rf"va\[lane \+ {lanes} \* s\]", code)
            tail = re.search(r"if \(lane < (\d+)\) \{\n.*va\[lane \+ (\d+)\]", code)
            reads = [lane + lanes * s for lane in range(lanes) for s in range(steps)]
            if tail:
                assert int(tail.group(2)) == lanes * steps
                reads += [lane + lanes * steps for lane in range(lanes) if lane < int(tail.group(1))]
            assert sorted(reads) == list(range(k // 4)), (lanes, k)


def test_small_gemms_keep_the_reduction_templates():
    assert CUDA_TILED_MIN_MN >= 16
    rng = np.random.default_rng(3)
    m = helper.make_model(helper.make_graph(
        [helper.make_node("MatMul", ["a", "w"], ["o"], name="MatMul_small")], "small",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [8, 256])],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(rng.standard_normal((256, 512)).astype(np.float32), "w")]),
        opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    assert check_model(m, rng) == {"MatMul_small": "warp"}


@pytest.mark.parametrize("target", ["sm_80", "sm_90"])
def test_tiled_and_gemv_kernels_compile_with_nvrtc(nvrtc, target):
    """Every distinct tiled GEMM / warp GEMV kernel of the bench models and the odd-edge model."""
    import hal
    srcs = {}
    for model in (bench_models.mlp(), bench_models.resnet18(), bench_models.gpt2(), _odd_model()):
        low = lower_model(model, [target])
        for k, spec in low.specs.items():
            if spec.cuda_variant == "tiled" or (spec.cuda_variant == "warp" and "float4" in spec.sources["cuda"]):
                srcs[k] = spec.source("cuda", k)
    assert sum("kos_as" in s for s in srcs.values()) >= 20
    from drivers.nvidia.cubin import Cubin
    for k, src in srcs.items():
        binary = hal.compile(src, k, target)
        assert len(binary) > 0
        if target == "sm_90":   # the register budget of __launch_bounds__ holds: nothing spills
            assert Cubin(binary).kernel(k).local_B == 0, k


@pytest.mark.parametrize("form", sorted(FORMS))
def test_each_tiling_form_compiles_with_nvrtc_without_spilling(nvrtc, monkeypatch, form):
    import hal
    from drivers.nvidia.cubin import Cubin
    force_form(monkeypatch, form)
    low = lower_model(_odd_model(), ["sm_90"])
    for k, spec in low.specs.items():
        if spec.cuda_variant == "tiled":
            assert Cubin(hal.compile(spec.source("cuda", k), k, "sm_90")).kernel(k).local_B == 0, k
