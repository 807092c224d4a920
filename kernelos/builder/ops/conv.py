"""Convolutions and pooling over NCHW (any number of spatial dims), each a reduction per output
element over its window: Conv (strides, pads, dilations, groups incl. depthwise, auto_pad),
ConvTranspose, MaxPool, AveragePool, GlobalAveragePool."""

import numpy as np

from hal.errors import GraphError

from ..codegen import NAME_PLACEHOLDER, Reduction, TiledGemm, _template, acc_ctype, literal, strides
from . import Op, conv_gemm, register

CONV_OC_BLOCK = 8     # output channels a cpu conv tile computes together (shares input loads)
CONV_PAD_BUFFER_MAX_B = 256 * 1024   # the largest zero-padded input copy a cpu conv block keeps on its stack
CONV_MIN_BLOCKS = 64  # a cpu conv takes more output channels per block only while it keeps this many blocks
CONV_BLOCK_PIXELS = 64  # output rows a cpu conv block computes together: up to this many outputs (weights
                        # and overlapping input rows are then reused across rows, for narrow layers)


def _window(node, in_sp, k_sp, transpose=False):
    """(strides, dilations, pads_begin, pads_end) for the spatial dims, auto_pad resolved."""
    nd = len(in_sp)
    st = list(node.attr("strides", [1] * nd))
    dil = list(node.attr("dilations", [1] * nd))
    pads = list(node.attr("pads", [0] * 2 * nd))
    auto = node.attr("auto_pad", "NOTSET")
    if isinstance(auto, bytes):
        auto = auto.decode()
    if auto in ("SAME_UPPER", "SAME_LOWER") and not transpose:
        for i in range(nd):
            out = -(-in_sp[i] // st[i])
            total = max(0, (out - 1) * st[i] + (k_sp[i] - 1) * dil[i] + 1 - in_sp[i])
            small, big = total // 2, total - total // 2
            pads[i], pads[i + nd] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto == "VALID":
        pads = [0] * 2 * nd
    return st, dil, pads[:nd], pads[nd:]


class Windowed(Op):
    def check(self, node):
        auto = node.attr("auto_pad", "NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
            return f"auto_pad={auto!r}"
        return None


def _loops_and_index(node, b, x_shape, k_sp, st, dil, pb, chan_coord, first_loop=None):
    """Loops over the window, the x index and the in-bounds condition, for output coords c2.."""
    nd = len(k_sp)
    loops = ([first_loop] if first_loop else []) + [(f"r{j + 1}", k_sp[j]) for j in range(nd)]
    pos = [f"(c{j + 2} * {st[j]} - {pb[j]} + r{j + 1} * {dil[j]})" for j in range(nd)]
    xs = strides(x_shape)
    idx = [f"c0 * {xs[0]}", f"{chan_coord} * {xs[1]}"] + [f"ih{j} * {xs[j + 2]}" for j in range(nd)]
    pre = " ".join(f"const int64_t ih{j} = {p};" for j, p in enumerate(pos))
    cond = " && ".join(f"ih{j} >= 0 && ih{j} < {x_shape[j + 2]}" for j in range(nd)) or "1"
    return loops, pre, " + ".join(idx), cond


@register("Conv")
class Conv(Windowed):
    def infer(self, node, ins):
        x, w = ins[0].shape, ins[1].shape
        if len(x) < 3 or len(w) != len(x):
            raise GraphError(f"{node.describe()}: input {x} and weight {w} ranks do not fit a convolution")
        groups = node.attr("group", 1)
        if x[1] != w[1] * groups or w[0] % groups:
            raise GraphError(f"{node.describe()}: {x[1]} input channels, weight {w}, group {groups} do not fit")
        st, dil, pb, pe = _window(node, x[2:], w[2:])
        sp = [(x[2 + j] + pb[j] + pe[j] - (w[2 + j] - 1) * dil[j] - 1) // st[j] + 1 for j in range(len(x) - 2)]
        return [((x[0], w[0], *sp), ins[0].dtype)]

    def anchor(self, node, b):
        g = b.ctx.graph
        x, w = g.value(node.inputs[0]).shape, g.value(node.inputs[1]).shape
        dt = b.dtype(node.outputs[0])
        st, dil, pb, _ = _window(node, x[2:], w[2:])
        cg, og = w[1], w[0] // node.attr("group", 1)
        chan = f"(c1 / {og} * {cg} + r0)" if node.attr("group", 1) > 1 else "r0"
        loops, pre, xidx, cond = _loops_and_index(node, b, x, w[2:], st, dil, pb, chan, ("r0", cg))
        ws = strides(w)
        widx = " + ".join([f"c1 * {ws[0]}", f"r0 * {ws[1]}"] + [f"r{j + 1} * {ws[j + 2]}" for j in range(len(w) - 2)])
        px, pw = b.param(node.inputs[0]), b.param(node.inputs[1])
        finish = "acc"
        if len(node.inputs) > 2 and node.inputs[2]:
            finish = f"acc + {b.load(node.inputs[2], 'c1')}"
        term = f"({acc_ctype(dt)}){px}[{xidx}] * {pw}[{widx}]"
        rows = cpu_kernel = None
        if len(x) == 4 and node.attr("group", 1) == 1 and dt == "float32" and g.value(node.inputs[1]).const is not None:
            cpu_kernel = _conv2d_gemm_cpu(b, node.inputs[1], x, w, st, dil, pb, px)
        if len(x) == 4 and cpu_kernel is None:
            rows = _conv2d_rows(x, w, b.out_shape, st, dil, pb, og, cg, px, pw, acc_ctype(dt),
                                vector=dt == "float32")
        tiled = None
        if len(x) == 4 and node.attr("group", 1) == 1 and dt == "float32":
            tiled = _conv2d_gemm(x, w, b.out_shape, st, dil, pb, px, pw)
        b.reduce(node.outputs[0], Reduction(loops, term, "sum", acc_ctype(dt), literal(0, dt), cond, pre=pre,
                                            cpu_rows=rows, tiled=tiled, cpu_kernel=cpu_kernel), finish)


def _conv2d_gemm_cpu(b, w_name, x, w, st, dil, pb, px):
    """The cpu implicit-GEMM kernel (ops/conv_gemm.py) reading the weights packed once at build
    time for its tile kind, or None where its buffers would not fit a block's stack."""
    geo = conv_gemm.geometry(x, w, b.out_shape, st, dil, pb)
    tiles = conv_gemm.tiles_for(geo)
    shape = conv_gemm.block_shape(geo, tiles)
    if shape is None:
        return None
    packed = f"{w_name}.panels{tiles.panel}"
    if packed not in b.ctx.graph.values:
        packed = b.ctx.const_value(conv_gemm.pack_weights(b.ctx.graph.value(w_name).const, tiles.panel), packed)
    return conv_gemm.ConvGemmKernel(geo, tiles, *shape, px, b.param(packed))


def _conv2d_gemm(x, w, out, st, dil, pb, px, pw) -> TiledGemm:
    """A 2-D convolution (one group) as an implicit GEMM: z = image, m = output channel,
    n = output position (oh, ow), k = (input channel, kh, kw); A is the weight [OC, C*KH*KW], B the
    input window element (zero in the padding), gathered on the fly."""
    (_, c, h, wd), (oc, _, kh, kw), (_, _, oh, ow) = x, w, out
    k = c * kh * kw
    ih = f"(gn / {ow} * {st[0]} - {pb[0]} + gk / {kw} % {kh} * {dil[0]})"
    iw = f"(gn % {ow} * {st[1]} - {pb[1]} + gk % {kw} * {dil[1]})"
    return TiledGemm(out[0], oc, oh * ow, k, f"{pw}[gm * {k} + gk]",
                     f"{px}[gz * {c * h * wd} + gk / {kh * kw} * {h * wd} + {ih} * {wd} + {iw}]", False,
                     (f"{ih} >= 0", f"{ih} < {h}", f"{iw} >= 0", f"{iw} < {wd}"))


def _conv2d_rows(x, w, out, st, dil, pb, og, cg, px, pw, acc_t, vector):
    """cpu row code for a 2-D convolution. A block is `ocb` output rows (n, oc0..oc0+ocb-1, oh):
    every input row they touch is loaded once and multiplied into all ocb accumulators. The output
    row is cut into tiles of 8 outputs. With `vector` (float32) a tile keeps its ocb accumulators in
    vector registers: inside the input it loads 8 inputs at once (stride 1; stride 2 through the even
    lanes of two loads), at the edges (and for other strides) it gathers them with zeros for the
    padding. Other dtypes accumulate whole rows with a scalar-per-output inner loop."""
    (_, c, h, wd), (_, _, kh, kw), (_, oc, oh, ow) = x, w, out
    ocb = next(d for d in (CONV_OC_BLOCK, 4, 2, 1) if og % d == 0)
    if vector and _padded_rows_B(cg, kh, kw, ow, st, dil, 1) <= CONV_PAD_BUFFER_MAX_B:
        return _conv2d_padded_tiles(x, w, out, st, dil, pb, og, cg, ocb, px, pw)
    chan0 = f"oc0 / {og} * {cg}" if og != oc else "0"
    ckk = cg * kh * kw
    wload = " ".join(f"const {acc_t} w{j} = wr[{j * ckk} + kw];" for j in range(ocb))
    fma = " ".join(f"accrow[{j}][o] += xv * w{j};" for j in range(ocb))
    rows_loop = f"""for (int64_t ic = 0; ic < {cg}; ic++) for (int64_t kh = 0; kh < {kh}; kh++) {{
                const int64_t ih = oh * {st[0]} - {pb[0]} + kh * {dil[0]};
                if (ih < 0 || ih >= {h}) continue;
                const __typeof__(*{px}) *xr = {px} + ((n * {c} + {chan0} + ic) * {h} + ih) * {wd};
                const __typeof__(*{pw}) *wr = {pw} + ((oc0 * {cg} + ic) * {kh} + kh) * {kw};"""
    edge = f"""{rows_loop}
                for (int64_t kw = 0; kw < {kw}; kw++) {{
                    {wload}
                    const int64_t off = kw * {dil[1]} - {pb[1]};
                    int64_t lo = off < 0 ? (-off + {st[1] - 1}) / {st[1]} : 0;
                    int64_t hi = {wd} - off <= 0 ? 0 : ({wd} - off + {st[1] - 1}) / {st[1]};
                    if (lo < t0) lo = t0;
                    if (hi > t1) hi = t1;
                    for (int64_t o = lo; o < hi; o++) {{ const {acc_t} xv = xr[o * {st[1]} + off]; {fma} }}
                }}
            }}"""
    if not vector:
        code = f"""\
        const int64_t n = row / {oc // ocb * oh}, oc0 = row / {oh} % {oc // ocb} * {ocb}, oh = row % {oh};
        for (int64_t t0 = 0; t0 < {ow}; t0 += 8) {{
            const int64_t t1 = t0 + 8 < {ow} ? t0 + 8 : {ow};
            {edge}
        }}"""
    else:
        code = _conv2d_gather_tiles(x, w, out, st, dil, pb, ocb, rows_loop, ckk)
    index = f"((n * {oc} + oc0 + j) * {oh} + oh) * {ow} + o"
    return ocb, ow, code, index


def _padded_width(kw, ow, st, dil):
    """Floats per zero-padded input row: every tile of the row (up to 16 outputs), read by straight loads."""
    lanes = 16 if ow > 8 else 8
    return -(-ow // lanes) * lanes * st[1] + (kw - 1) * dil[1]


def _padded_rows_B(cg, kh, kw, ow, st, dil, out_rows):
    return cg * _input_rows(kh, st, dil, out_rows) * _padded_width(kw, ow, st, dil) * 4


def _input_rows(kh, st, dil, out_rows):
    """Input rows that `out_rows` consecutive output rows read."""
    return (out_rows - 1) * st[0] + (kh - 1) * dil[0] + 1


def _conv2d_padded_tiles(x, w, out, st, dil, pb, og, cg, ocb, px, pw):
    """float32 cpu rows of a 2-D convolution from a zero-padded copy of the input rows. A block is
    `per_block` tiles of ocb channels x `out_rows` output rows (n, oc0.., oh0..): it copies the cg x
    nin input rows they read once into xpad, with the padding (and the slack the last tile reads past
    the row's end) as zeros, so every tile then reads its inputs with straight vector loads (stride 2:
    the even lanes of two loads) and no bounds checks. A tile is 8 outputs (16 where the compiler
    targets 512-bit vectors and the row is wider than 8) x ocb channels, its ocb accumulators in
    vector registers. Several output rows per block (narrow layers) reuse the block's weights and
    the overlapping input rows; several channel tiles reuse the copy while enough blocks remain."""
    (_, c, h, wd), (_, _, kh, kw), (nb, oc, oh, ow) = x, w, out
    out_rows = next(r for r in range(min(oh, max(1, CONV_BLOCK_PIXELS // ow)), 0, -1)
                    if oh % r == 0 and (r == 1 or _padded_rows_B(cg, kh, kw, ow, st, dil, r) <= CONV_PAD_BUFFER_MAX_B))
    row_blocks = oh // out_rows
    per_block = next(g for g in (4, 2, 1) if (og // ocb) % g == 0 and nb * oc // (ocb * g) * row_blocks >= CONV_MIN_BLOCKS
                     or g == 1)
    oc_rows = ocb * per_block
    chan0 = f"oc0 / {og} * {cg}" if og != oc else "0"
    wp, nin = _padded_width(kw, ow, st, dil), _input_rows(kh, st, dil, out_rows)
    lead = min(pb[1], wp)                     # zeros before the row's first input
    ncopy = max(0, min(wd, wp - lead))        # inputs copied (the last tiles may not reach the end)
    geom = (cg, kh, kw, ow, st, dil, ocb, per_block, out_rows, nin, pw)
    tiles = _conv2d_tiles(8, *geom)
    if ow > 8:
        tiles = f"#if KOS_VEC16\n{_conv2d_tiles(16, *geom)}\n#else\n{tiles}\n#endif"
    code = f"""\
        const int64_t n = row / {oc // oc_rows * row_blocks}, oc0 = row / {row_blocks} % {oc // oc_rows} * {oc_rows};
        const int64_t oh0 = row % {row_blocks} * {out_rows};
        float xpad[{cg * nin * wp}];
        int live[{nin}];
        for (int64_t q = 0; q < {nin}; q++) {{
            const int64_t ih = oh0 * {st[0]} - {pb[0]} + q;
            live[q] = ih >= 0 && ih < {h};
            if (!live[q]) continue;
            for (int64_t ic = 0; ic < {cg}; ic++) {{
                float *d = xpad + (ic * {nin} + q) * {wp};
                memset(d, 0, {lead * 4});
                memcpy(d + {lead}, {px} + ((n * {c} + {chan0} + ic) * {h} + ih) * {wd}, {ncopy * 4});
                memset(d + {lead + ncopy}, 0, {(wp - lead - ncopy) * 4});
            }}
        }}
{tiles}"""
    index = f"((n * {oc} + oc0 + j / {out_rows}) * {oh} + oh0 + j % {out_rows}) * {ow} + o"
    return oc_rows * out_rows, ow, code, index


def _conv2d_tiles(lanes, cg, kh, kw, ow, st, dil, ocb, per_block, out_rows, nin, pw):
    """The tile loops over xpad with `lanes`-wide vectors (8: kos_v8f, 16: kos_v16f)."""
    vt, wp = f"kos_v{lanes}f", _padded_width(kw, ow, st, dil)
    ckk = cg * kh * kw
    zero = " ".join(f"{vt} a{j} = {{0}};" for j in range(ocb))
    vfma = " ".join(f"a{j} += xv * wr[{j * ckk} + kw];" for j in range(ocb))
    load = {1: f"memcpy(&xv, xp, {lanes * 4});",
            2: f"{vt} lo, hi; memcpy(&lo, xp, {lanes * 4}); memcpy(&hi, xp + {lanes}, {lanes * 4}); "
               f"xv = KOS_EVEN{lanes}(lo, hi);"}.get(st[1], f"for (int l = 0; l < {lanes}; l++) xv[l] = xp[l * {st[1]}];")
    store = " ".join(f"for (int l = 0; l < nv; l++) accrow[(g * {ocb} + {j}) * {out_rows} + r][t0 + l] = a{j}[l];"
                     for j in range(ocb))
    return f"""\
        for (int64_t g = 0; g < {per_block}; g++)
        for (int64_t r = 0; r < {out_rows}; r++)
        for (int64_t t0 = 0; t0 < {ow}; t0 += {lanes}) {{
            const int nv = t0 + {lanes} < {ow} ? {lanes} : (int)({ow} - t0);
            {zero}
            for (int64_t ic = 0; ic < {cg}; ic++) for (int64_t kh = 0; kh < {kh}; kh++) {{
                const int64_t q = r * {st[0]} + kh * {dil[0]};
                if (!live[q]) continue;
                const float *xr = xpad + (ic * {nin} + q) * {wp} + t0 * {st[1]};
                const float *wr = {pw} + (((oc0 + g * {ocb}) * {cg} + ic) * {kh} + kh) * {kw};
                for (int64_t kw = 0; kw < {kw}; kw++) {{
                    const float *xp = xr + kw * {dil[1]};
                    {vt} xv;
                    {load}
                    {vfma}
                }}
            }}
            {store}
        }}"""


def _conv2d_gather_tiles(x, w, out, st, dil, pb, ocb, rows_loop, ckk):
    """float32 tiles reading the input in place (when a padded copy would not fit the stack)."""
    (_, _, _, wd), (_, _, _, kw), (_, oc, oh, ow) = x, w, out
    # a tile reads, for kernel column kw, inputs t0*s + off + l*s (l < 8): straight vector loads
    # where the whole tile is inside the input for every kw (stride 1, or 2 via the even lanes of
    # two loads), else a gather with zeros for padding and for lanes past the row's end
    zero = " ".join(f"kos_v8f a{j} = {{0}};" for j in range(ocb))
    vfma = " ".join(f"a{j} += xv * wr[{j * ckk} + kw];" for j in range(ocb))
    fast = {1: "memcpy(&xv, xp, 32);",
            2: "kos_v8f lo, hi; memcpy(&lo, xp, 32); memcpy(&hi, xp + 8, 32); xv = KOS_EVEN8(lo, hi);"}.get(st[1])
    gather = (f"for (int l = 0; l < 8; l++) {{ const int64_t p = base + l * {st[1]}; "
              f"xv[l] = (l < nv && p >= 0 && p < {wd}) ? xr[p] : 0.0f; }}")

    load = gather if fast is None else (f"if (nv == 8 && base >= 0 && base + {8 * st[1] - 1} < {wd}) {{ {fast} }} "
                                        f"else {{ {gather} }}")
    store = " ".join(f"for (int l = 0; l < nv; l++) accrow[{j}][t0 + l] = a{j}[l];" for j in range(ocb))
    code = f"""\
    const int64_t n = row / {oc // ocb * oh}, oc0 = row / {oh} % {oc // ocb} * {ocb}, oh = row % {oh};
    for (int64_t t0 = 0; t0 < {ow}; t0 += 8) {{
        const int nv = t0 + 8 < {ow} ? 8 : (int)({ow} - t0);
        {zero}
        {rows_loop}
            for (int64_t kw = 0; kw < {kw}; kw++) {{
                const int64_t base = t0 * {st[1]} + kw * {dil[1]} - {pb[1]};
                const float *xp = xr + base; (void)xp;
                kos_v8f xv;
                {load}
                {vfma}
            }}
        }}
        {store}
    }}"""
    return code


@register("ConvTranspose")
class ConvTranspose(Windowed):
    def _geometry(self, node, x, w):
        nd = len(x) - 2
        k_sp = list(w[2:])
        st = list(node.attr("strides", [1] * nd))
        dil = list(node.attr("dilations", [1] * nd))
        op = list(node.attr("output_padding", [0] * nd))
        auto = node.attr("auto_pad", "NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        out_shape = node.attr("output_shape")
        full = [st[j] * (x[2 + j] - 1) + op[j] + (k_sp[j] - 1) * dil[j] + 1 for j in range(nd)]
        if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
            out = list(out_shape[-nd:]) if out_shape is not None else [x[2 + j] * st[j] for j in range(nd)]
            total = [full[j] - out[j] for j in range(nd)]
            if auto == "SAME_UPPER":
                pb = [t // 2 for t in total]
            else:
                pb = [t - t // 2 for t in total]
        else:
            pads = list(node.attr("pads", [0] * 2 * nd))
            if auto == "VALID":
                pads = [0] * 2 * nd
            pb = pads[:nd]
            out = [full[j] - pads[j] - pads[j + nd] for j in range(nd)]
        return st, dil, pb, out

    def infer(self, node, ins):
        x, w = ins[0].shape, ins[1].shape
        groups = node.attr("group", 1)
        if len(x) < 3 or len(w) != len(x) or w[0] != x[1]:
            raise GraphError(f"{node.describe()}: input {x} and weight {w} do not fit a transposed convolution")
        _, _, _, out = self._geometry(node, x, w)
        return [((x[0], w[1] * groups, *out), ins[0].dtype)]

    def anchor(self, node, b):
        g = b.ctx.graph
        x, w = g.value(node.inputs[0]).shape, g.value(node.inputs[1]).shape
        dt = b.dtype(node.outputs[0])
        st, dil, pb, _ = self._geometry(node, x, w)
        nd = len(x) - 2
        groups = node.attr("group", 1)
        cg_in, og = x[1] // groups, w[1]
        ic = f"(c1 / {og} * {cg_in} + r0)" if groups > 1 else "r0"
        loops = [("r0", cg_in)] + [(f"r{j + 1}", w[2 + j]) for j in range(nd)]
        pre = " ".join(f"const int64_t q{j} = c{j + 2} + {pb[j]} - r{j + 1} * {dil[j]}; const int64_t ih{j} = q{j} / {st[j]};"
                       for j in range(nd))
        cond = " && ".join(f"q{j} >= 0 && q{j} % {st[j]} == 0 && ih{j} < {x[j + 2]}" for j in range(nd))
        xs, ws = strides(x), strides(w)
        xidx = " + ".join([f"c0 * {xs[0]}", f"{ic} * {xs[1]}"] + [f"ih{j} * {xs[j + 2]}" for j in range(nd)])
        widx = " + ".join([f"{ic} * {ws[0]}", f"(c1 % {og}) * {ws[1]}"] + [f"r{j + 1} * {ws[j + 2]}" for j in range(nd)])
        px, pw = b.param(node.inputs[0]), b.param(node.inputs[1])
        term = f"({acc_ctype(dt)}){px}[{xidx}] * {pw}[{widx}]"
        finish = "acc"
        if len(node.inputs) > 2 and node.inputs[2]:
            finish = f"acc + {b.load(node.inputs[2], 'c1')}"
        b.reduce(node.outputs[0], Reduction(loops, term, "sum", acc_ctype(dt), literal(0, dt), cond, pre=pre), finish)


class Pool(Windowed):
    def check(self, node):
        why = super().check(node)
        if why:
            return why
        if len([o for o in node.outputs if o]) > 1:
            return "the Indices output is not supported"
        return None

    def _geometry(self, node, x):
        k_sp = list(node.attr("kernel_shape"))
        st, dil, pb, pe = _window(node, x[2:], k_sp)
        ceil = node.attr("ceil_mode", 0)
        out = []
        for j in range(len(k_sp)):
            span = x[2 + j] + pb[j] + pe[j] - (k_sp[j] - 1) * dil[j] - 1
            o = (-(-span // st[j]) if ceil else span // st[j]) + 1
            if ceil and (o - 1) * st[j] >= x[2 + j] + pb[j]:
                o -= 1
            out.append(o)
        auto = node.attr("auto_pad", "NOTSET")
        if (auto.decode() if isinstance(auto, bytes) else auto) in ("SAME_UPPER", "SAME_LOWER"):
            out = [-(-x[2 + j] // st[j]) for j in range(len(k_sp))]
        return k_sp, st, dil, pb, pe, out

    def infer(self, node, ins):
        x = ins[0].shape
        if len(x) < 3:
            raise GraphError(f"{node.describe()}: input {x} has no spatial dims")
        out = self._geometry(node, x)[-1]
        return [((x[0], x[1], *out), ins[0].dtype)]


@register("MaxPool")
class MaxPool(Pool):
    def check(self, node):
        if node.attr("storage_order", 0):
            return "storage_order=1 only affects the Indices output, which is not supported"
        return super().check(node)

    def anchor(self, node, b):
        x = b.ctx.graph.value(node.inputs[0]).shape
        dt = b.dtype(node.outputs[0])
        k_sp, st, dil, pb, _, _ = self._geometry(node, x)
        loops, pre, xidx, cond = _loops_and_index(node, b, x, k_sp, st, dil, pb, "c1")
        px = b.param(node.inputs[0])
        lowest = literal(-np.inf, dt) if dt in ("float32", "float64") else literal(np.iinfo(dt).min, dt)
        cpu = _maxpool2d_cpu(x, b.out_shape, k_sp, st, dil, pb, px, acc_ctype(dt), lowest) if len(x) == 4 else None
        b.reduce(node.outputs[0], Reduction(loops, f"{px}[{xidx}]", "max", acc_ctype(dt), lowest, cond, pre=pre,
                                            cpu_kernel=cpu))


def _maxpool2d_cpu(x, out, k_sp, st, dil, pb, px, acc_t, init):
    """The cpu kernel of a 2-D max pool (kernels/cpu/maxpool2d.c): a block per output row."""
    (_, ch, h, wd), (_, _, oh, ow) = x, out

    def render(fields, unpack, body):
        src = _template("cpu/maxpool2d.c").substitute(
            fields=fields, unpack=unpack, name=NAME_PLACEHOLDER, acc_t=acc_t, init=init, px=px, ch=ch, h=h, w=wd,
            oh=oh, ow=ow, kh=k_sp[0], kw=k_sp[1], sh=st[0], sw=st[1], dh=dil[0], dw=dil[1], ph=pb[0], pw=pb[1],
            body="\n".join(" " * 12 + ln for ln in body.splitlines()))
        return src, int(np.prod(out[:3]))
    return render


@register("AveragePool")
class AveragePool(Pool):
    def anchor(self, node, b):
        x = b.ctx.graph.value(node.inputs[0]).shape
        dt = b.dtype(node.outputs[0])
        k_sp, st, dil, pb, pe, _ = self._geometry(node, x)
        loops, pre, xidx, cond = _loops_and_index(node, b, x, k_sp, st, dil, pb, "c1")
        px = b.param(node.inputs[0])
        # the divisor: window positions inside the input (or inside input + explicit pads)
        include_pad = node.attr("count_include_pad", 0)
        cnt = []
        for j in range(len(k_sp)):
            lo, hi = (-pb[j], x[2 + j] + pe[j]) if include_pad else (0, x[2 + j])
            cnt.append(f"kos_cnt{j}")
            b.stmt(f"int64_t kos_cnt{j} = 0; for (int64_t k = 0; k < {k_sp[j]}; k++) {{ "
                   f"const int64_t p = c{j + 2} * {st[j]} - {pb[j]} + k * {dil[j]}; kos_cnt{j} += p >= {lo} && p < {hi}; }}")
        b.reduce(node.outputs[0], Reduction(loops, f"{px}[{xidx}]", "sum", acc_ctype(dt), literal(0, dt), cond, pre=pre),
                 f"acc / ({acc_ctype(dt)})({' * '.join(cnt)})")


@register("GlobalAveragePool")
class GlobalAveragePool(Op):
    def infer(self, node, ins):
        x = ins[0].shape
        return [((x[0], x[1]) + (1,) * (len(x) - 2), ins[0].dtype)]

    def anchor(self, node, b):
        x = b.ctx.graph.value(node.inputs[0]).shape
        dt = b.dtype(node.outputs[0])
        hw = int(np.prod(x[2:]))
        px = b.param(node.inputs[0])
        term = f"{px}[(c0 * {x[1]} + c1) * {hw} + r0]"
        b.reduce(node.outputs[0], Reduction([("r0", hw)], term, "sum", acc_ctype(dt), literal(0, dt)),
                 f"acc / ({acc_ctype(dt)}){hw}")
