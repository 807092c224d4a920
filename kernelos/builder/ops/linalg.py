"""MatMul (numpy semantics, batched with broadcasting) and Gemm, as a dot-product reduction per
output element. A constant right-hand side is stored transposed ([..., N, K]) so each output reads
one contiguous weight row: a batch-1 layer then streams its weights exactly once, vectorised on cpu
(kos_dot_f32) and coalesced across a warp on CUDA."""

import numpy as np

from hal.errors import GraphError

from ..codegen import Reduction, TiledGemm, acc_ctype, literal, strides
from ..views import strided_index
from . import Op, register


def lin(shape, coords) -> str:
    """Linear index of C coordinate expressions into a row-major `shape`; coords are right-aligned
    (extra leading ones are broadcast batch dims) and size-1 dims are skipped (broadcasting)."""
    coords = list(coords)[len(coords) - len(shape):]
    terms = [c if s == 1 else f"{c} * {s}" for c, s, d in zip(coords, strides(shape), shape) if d != 1 and c != "0"]
    return " + ".join(terms) or "0"


DOT_ROWS = 16   # outputs along n a cpu matmul block computes (kos_dot4_f32, four weight rows at a time)
DOT_M_ROWS = (3, 4, 2)   # A rows a cpu matmul block with M > 1 takes (the first dividing M): kos_dot_mx4_f32


def batch_coords(batch_shape) -> list:
    """C (and Python) expressions of the output batch coordinates from the flat batch index gz."""
    return [f"(gz / {s} % {d})" for s, d in zip(strides(batch_shape), batch_shape)]


def tiled_gemm(b, dt, z, m, n, k, a_load, b_load, b_k_fastest):
    """The GEMM form of a float32 matmul (for the tiled CUDA template), else None."""
    if dt != "float32":
        return None
    return TiledGemm(z, m, n, k, a_load, b_load, b_k_fastest)


def emit_dot(b, out, a_name, a_base, a_stride, b_name, b_base, b_stride, k, finish="acc", n_last=False,
             m_rows=1, outer_m=0, tiled=None, a_ld=None, b_ld=None, aligned=True, m_group=0):
    """out = finish(sum_k A[a_base + k*a_stride] * B[b_base + k*b_stride]). n_last: the last output
    coordinate is B's row index n, so consecutive outputs read B rows b_ld (default k) apart.
    m_rows: the output is [m_rows, N] row after row, A's rows a_ld (default k) apart within each
    group of m_group rows (default all; a batch's M where B differs per batch), so a cpu block is
    a register tile of mr x 16 inside one group. outer_m: B is [.., K, N] with n contiguous, its rows b_ld (default
    b_stride = N) apart, A's rows (M = outer_m of them per batch) a_ld (default k) apart: a cpu
    block then accumulates whole output rows as sums of scaled B rows. aligned: every A and B row
    start is a multiple of 4 elements (false for some strided views). tiled: the GEMM form for the
    tiled CUDA template (None: the per-output kernels)."""
    dt = b.dtype(out)
    pa, pb = b.param(a_name), b.param(b_name)
    b.stmt(f"const int64_t ab = {a_base}, bb = {b_base};")
    term = f"({acc_ctype(dt)}){pa}[ab + r0 * {a_stride}] * {pb}[bb + r0 * {b_stride}]"
    cpu = vec4 = rows = None
    if dt == "float32" and a_stride == 1 and outer_m:
        rows = _outer_rows(b, pa, pb, outer_m, b.out_shape[-1], k, a_ld or k, b_ld or b_stride)
    if dt == "float32" and a_stride == 1 and b_stride == 1:
        cpu = f"acc = kos_dot_f32({pa} + ab, {pb} + bb, {k});"
        if k % 4 == 0 and aligned:  # row starts are multiples of 4, buffers 256-byte aligned: float4 loads
            vec4 = (f"{pa} + ab", f"{pb} + bb", k)
        mr = next((r for r in DOT_M_ROWS if m_rows % r == 0 and (m_group or m_rows) % r == 0), 1) if n_last else 1
        ldb = b_ld or k
        if mr > 1 and b.out_shape[-1] % DOT_ROWS == 0:
            # a cpu block is mr A rows x DOT_ROWS B rows (B is [N, K]); blocks run m fastest so
            # consecutive blocks reuse the same B rows from cache
            n_len, m_blocks = b.out_shape[-1], m_rows // mr
            first = " ".join([b.coords_code(), *b.pre])
            rows = (mr * DOT_ROWS, 1,
                    f"        {{ const int64_t i = row % {m_blocks} * {mr * n_len} + row / {m_blocks} * {DOT_ROWS}; {first} "
                    f"for (int64_t g = 0; g < {DOT_ROWS}; g += 4) kos_dot_mx4_f32({pa} + ab, {a_ld or k}, {pb} + bb + g * {ldb}, "
                    f"{ldb}, {k}, {mr}, &accrow[g][0], {DOT_ROWS}); }}",
                    f"(row % {m_blocks} * {mr} + j / {DOT_ROWS}) * {n_len} + row / {m_blocks} * {DOT_ROWS} + j % {DOT_ROWS}")
        elif n_last and b.out_shape[-1] % DOT_ROWS == 0:
            # a cpu block is DOT_ROWS outputs along n: one A row, B rows k apart (B is [.., N, K]),
            # four at a time
            first = " ".join([b.coords_code(), *b.pre])
            rows = (DOT_ROWS, 1, f"        {{ const int64_t i = row * {DOT_ROWS}; {first} "
                                 f"for (int64_t g = 0; g < {DOT_ROWS}; g += 4) "
                                 f"kos_dot4_f32({pa} + ab, {pb} + bb + g * {ldb}, {ldb}, {k}, &accrow[g][0], 1); }}",
                    f"row * {DOT_ROWS} + j")
    b.reduce(out, Reduction([("r0", k)], term, "sum", acc_ctype(dt), literal(0, dt), cpu_code=cpu, vec4=vec4,
                            cpu_rows=rows, tiled=tiled), finish)


def _outer_rows(b, pa, pb, m, n_len, k, a_ld, b_ld):
    """cpu rows for out[.., m, :] = sum_k A[.., m, k] * B[.., k, :]: a block is mr output rows of one
    batch; each step adds a[m][k] times B's row k to every row (a straight, vectorised loop over n).
    A's rows are a_ld apart, B's b_ld."""
    mr = next(r for r in (4, 2, 1) if m % r == 0)
    first = " ".join([b.coords_code(), *b.pre])
    code = f"""\
        {{ const int64_t i = row * {mr * n_len}; {first}
        for (int64_t kk = 0; kk < {k}; kk++) {{
            const float *br = {pb} + bb + kk * {b_ld};
            for (int64_t j = 0; j < {mr}; j++) {{
                const float av = {pa}[ab + j * {a_ld} + kk];
                for (int64_t o = 0; o < {n_len}; o++) accrow[j][o] += av * br[o];
            }}
        }} }}"""
    return mr, n_len, code, f"row * {mr * n_len} + j * {n_len} + o"


def transposed_weight(b, name):
    """A constant [..., K, N] matrix stored as [..., N, K] (a new constant value, made once)."""
    g = b.ctx.graph
    if f"{name}.T" in g.values:
        return f"{name}.T"
    return b.ctx.const_value(np.ascontiguousarray(np.swapaxes(g.value(name).const, -1, -2)), f"{name}.T")


def _starts_aligned(shape, strides, offset, along) -> bool:
    """Whether every line of a strided operand along dim `along` starts at a multiple of 4 elements."""
    return offset % 4 == 0 and all(s % 4 == 0 for j, (s, d) in enumerate(zip(strides, shape)) if d != 1 and j != along)


@register("MatMul")
class MatMul(Op):
    def infer(self, node, ins):
        a, c = ins[0].shape, ins[1].shape
        if not a or not c:
            raise GraphError(f"{node.describe()}: MatMul of a scalar")
        a2 = (1,) + a if len(a) == 1 else a
        c2 = c + (1,) if len(c) == 1 else c
        if a2[-1] != c2[-2]:
            raise GraphError(f"{node.describe()}: inner dimensions differ: {a} x {c}")
        batch = tuple(np.broadcast_shapes(a2[:-2], c2[:-2]))
        out = batch + (a2[-2],) * (len(a) > 1) + (c2[-1],) * (len(c) > 1)
        return [(out, ins[0].dtype)]

    def fold(self, node, arrays):
        return [np.matmul(*arrays)]

    def anchor(self, node, b):
        """Operands are read through their views (views.py): a Split / Transpose / reshape feeding
        the MatMul is folded into these loads (offsets and strides), no copy kernel."""
        g = b.ctx.graph
        a_name, b_name = node.inputs
        a, c = g.value(a_name).shape, g.value(b_name).shape
        va, vb = b.ctx.view(a_name), b.ctx.view(b_name)
        a2, sa = ((1,) + a, (0,) + va.strides) if len(a) == 1 else (a, va.strides)
        c2, sc = (c + (1,), vb.strides + (0,)) if len(c) == 1 else (c, vb.strides)
        k = a2[-1]
        coords = [b.coord(j) for j in range(b.rank)]
        if len(c) == 1:
            coords.append("0")
        if len(a) == 1:
            coords.insert(len(coords) - 1, "0")
        batch, m, n = coords[:-2], coords[-2], coords[-1]
        a_base = strided_index(a2, sa, va.offset, batch + [m, "0"])
        # the GEMM form where both operands are matrices: output [*bs, M, N], z over the batch bs
        bs, dt = b.out_shape[:-2], b.dtype(node.outputs[0])
        z, gb = int(np.prod(bs, dtype=np.int64)), batch_coords(bs)
        two_d = len(a) >= 2 and len(c) >= 2
        pa = b.param(va.base)
        a_load = f"{pa}[{strided_index(a2, sa, va.offset, gb + ['gm', 'gk'])}]"
        a_flat = va.is_contiguous(a)       # A's rows one after another, k apart
        # float4 loads need every A row (along k), and B column where B runs along k, 16-byte aligned
        a_aligned = _starts_aligned(a2, sa, va.offset, len(a2) - 1)
        if g.value(b_name).const is not None and len(c) >= 2:
            bt = transposed_weight(b, b_name)
            bt_shape = c2[:-2] + (c2[-1], k)
            tiled = two_d and tiled_gemm(b, dt, z, a2[-2], c2[-1], k, a_load,
                                         f"{b.param(bt)}[{lin(bt_shape, gb + ['gn', 'gk'])}]", True)
            rows = int(np.prod(a2[:-1]))
            m_rows = rows if a_flat and len(c) == 2 and rows * c2[-1] == b.n else 1
            emit_dot(b, node.outputs[0], va.base, a_base, 1, bt, lin(bt_shape, batch + [n, "0"]), 1, k, n_last=True,
                     m_rows=m_rows, tiled=tiled or None, aligned=a_aligned)
            return
        pb = b.param(vb.base)
        b_k_fastest = len(c) >= 2 and c2[-1] != 1 and sc[-1] != 1 and (sc[-2] == 1 or c2[-2] == 1)  # B runs along k
        tiled = two_d and tiled_gemm(b, dt, z, a2[-2], c2[-1], k, a_load,
                                     f"{pb}[{strided_index(c2, sc, vb.offset, gb + ['gk', 'gn'])}]", b_k_fastest)
        b_row = strided_index(c2, sc, vb.offset, batch + ["0", n])
        if b_k_fastest:     # dot products of A rows with B columns (contiguous along k), B columns sc[-1] apart
            emit_dot(b, node.outputs[0], va.base, a_base, 1, vb.base, b_row, 1, k, n_last=True, tiled=tiled or None,
                     b_ld=sc[-1], aligned=a_aligned and _starts_aligned(c2, sc, vb.offset, len(c2) - 2),
                     m_rows=z * a2[-2] if two_d else 1, m_group=a2[-2], a_ld=sa[-2])
        else:               # B's rows contiguous along n: the output rows as sums of scaled B rows
            outer_m = a2[-2] if two_d and (c2[-1] == 1 or sc[-1] == 1) else 0
            emit_dot(b, node.outputs[0], va.base, a_base, 1, vb.base, b_row, sc[-2] if c2[-2] != 1 else c2[-1], k,
                     outer_m=outer_m, tiled=tiled or None, a_ld=sa[-2] if outer_m else None)


@register("Gemm")
class Gemm(Op):
    def infer(self, node, ins):
        a, c = ins[0].shape, ins[1].shape
        if len(a) != 2 or len(c) != 2:
            raise GraphError(f"{node.describe()}: Gemm needs 2-D A and B, got {a} and {c}")
        m, k = a[::-1] if node.attr("transA", 0) else a
        k2, n = c[::-1] if node.attr("transB", 0) else c
        if k != k2:
            raise GraphError(f"{node.describe()}: inner dimensions differ: {a} x {c} (transA/transB applied)")
        return [((m, n), ins[0].dtype)]

    def anchor(self, node, b):
        g = b.ctx.graph
        a_name, b_name = node.inputs[:2]
        (m, n), out = b.out_shape, node.outputs[0]
        dt = b.dtype(out)
        k = g.value(a_name).shape[0 if node.attr("transA", 0) else 1]
        a_base, a_stride = ("c0", m) if node.attr("transA", 0) else (f"c0 * {k}", 1)
        if g.value(b_name).const is not None:
            name = b_name if node.attr("transB", 0) else transposed_weight(b, b_name)
            b_base, b_stride = f"c1 * {k}", 1
        else:
            name = b_name
            b_base, b_stride = (f"c1 * {k}", 1) if node.attr("transB", 0) else ("c1", n)
        pa, pb = b.param(a_name), b.param(name)
        a_load = f"{pa}[gk * {m} + gm]" if node.attr("transA", 0) else f"{pa}[gm * {k} + gk]"
        b_k_fastest = b_stride == 1
        b_load = f"{pb}[gn * {k} + gk]" if b_k_fastest else f"{pb}[gk * {n} + gn]"
        alpha, beta = node.attr("alpha", 1.0), node.attr("beta", 1.0)
        finish = "acc" if alpha == 1.0 else f"{literal(alpha, dt)} * acc"
        if len(node.inputs) > 2 and node.inputs[2] and beta != 0.0:
            cval = b.val(node.inputs[2])
            finish += f" + {cval}" if beta == 1.0 else f" + {literal(beta, dt)} * {cval}"
        emit_dot(b, out, a_name, a_base, a_stride, name, b_base, b_stride, k, finish, n_last=True,
                 m_rows=m if a_stride == 1 and b_stride == 1 else 1,
                 tiled=tiled_gemm(b, dt, 1, m, n, k, a_load, b_load, b_k_fastest))
