"""The cpu kernel of a float32 2-D convolution (one group) as an implicit GEMM over a padded,
phase-split copy of the input (kernels/cpu/conv_gemm.c says how a block runs). Here: the weights
packed at build time into panels of 6 output channels ([panel][ic][kh*kw][6], zero rows past the
last channel), the grid geometry (every tap a constant offset), and the block shape: output rows x
channel panels per block, picked by a small cost model so a layer splits into enough blocks for the
worker threads without copying the input once per handful of channels."""

import os
from dataclasses import dataclass

import numpy as np

from hal.errors import GraphError

from ..codegen import NAME_PLACEHOLDER, _template

PANEL = 6              # output channels per weight panel (a tile's broadcast rows)
# Build-time knob: grid positions per tile where the compiler targets AVX-512 (KOS_CPU_CONV_NR=32: 2
# vectors, the default, measured on the device host; 64: 4 vectors, half the weight broadcasts per
# multiply-add but coarser tiles, not yet measured there). AVX2 tiles are 16 (2 vectors) either way;
# the plan (tile counts, buffer sizes) is made for this figure, which 16 divides.
NR_MAX = int(os.environ.get("KOS_CPU_CONV_NR", "32"))
STACK_MAX_B = 448 * 1024   # xbuf + obuf on the block's stack (worker threads have 8 MiB stacks)
L1_CHUNK_B = 24 * 1024     # input bytes one channel chunk of a tile may touch (half an L1 data cache)
NOMINAL_THREADS = 16   # threads the block split is planned for (the device host's cores); more blocks
                       # than threads costs little, so smaller machines are served as well
STRAGGLER = 0.5        # blocks' worth of time the last thread is expected to lag (uneven thread speeds)
COPY_MAC = (24, 128)   # cost of copying one input element into xbuf, in multiply-adds (cost-model units),
                       # row by row (stride 1) and gathered (other strides): rough single-core figures
                       # from the AVX2 dev VM, scaled up for AVX-512's doubled multiply-add rate
EPILOGUE_MAC = 4       # cost of one output's epilogue and store
BLOCK_MAC = 4000       # fixed cost of a block (claiming it, zeroing tails, loop set-up)


@dataclass
class ConvGeometry:
    n: int
    c: int
    h: int
    w: int
    oc: int
    kh: int
    kw: int
    oh: int
    ow: int
    st: tuple
    dil: tuple
    pb: tuple

    @property
    def phases(self) -> list:
        """The (row, column) phases of the stride that some tap reads, in a fixed order."""
        return sorted({((i * self.dil[0]) % self.st[0], (j * self.dil[1]) % self.st[1])
                       for i in range(self.kh) for j in range(self.kw)})

    @property
    def reach(self) -> tuple:
        """How far past an output's grid row and column the window reads, in phase-plane units."""
        return (self.kh - 1) * self.dil[0] // self.st[0], (self.kw - 1) * self.dil[1] // self.st[1]

    @property
    def wq(self) -> int:
        return self.ow + self.reach[1]

    @property
    def panels(self) -> int:
        return -(-self.oc // PANEL)

    @property
    def k(self) -> int:
        return self.c * self.kh * self.kw

    def rows_q(self, rows: int) -> int:
        return rows + self.reach[0]

    def plane(self, rows: int) -> int:
        """Floats per input channel in xbuf for blocks of `rows` output rows."""
        return len(self.phases) * self.rows_q(rows) * self.wq

    def ldo(self, rows: int) -> int:
        """Floats per output channel in obuf: the block's grid rounded up to whole tiles."""
        return -(-rows * self.wq // NR_MAX) * NR_MAX

    def stack_B(self, rows: int, group: int) -> int:
        return 4 * (self.c * self.plane(rows) + self.ldo(rows) + group * PANEL * self.ldo(rows))

    def tap_offsets(self, rows: int) -> list:
        """xbuf offset of each tap (kh, kw) from its output's grid position."""
        phases, rq, wq = self.phases, self.rows_q(rows), self.wq
        offs = []
        for i in range(self.kh):
            for j in range(self.kw):
                a, b = i * self.dil[0], j * self.dil[1]
                u = phases.index((a % self.st[0], b % self.st[1]))
                offs.append(u * rq * wq + a // self.st[0] * wq + b // self.st[1])
        return offs


def geometry(x, w, out, st, dil, pb) -> ConvGeometry:
    (n, c, h, wd), (oc, _, kh, kw), (_, _, oh, ow) = x, w, out
    return ConvGeometry(n, c, h, wd, oc, kh, kw, oh, ow, tuple(st), tuple(dil), tuple(pb))


def block_shape(g: ConvGeometry):
    """(output rows, channel panels) per block with the least estimated makespan on
    NOMINAL_THREADS threads (whole rounds of blocks, plus a straggler's share of one), or None when even one row and one panel overflow the stack budget."""
    best = None
    for rows in range(1, g.oh + 1):
        if g.stack_B(rows, 1) > STACK_MAX_B:
            break
        tiles = -(-rows * g.wq // NR_MAX)
        copy = g.c * g.plane(rows) * COPY_MAC[g.st[1] != 1]
        for group in range(1, g.panels + 1):
            if g.stack_B(rows, group) > STACK_MAX_B:
                break
            blocks = g.n * -(-g.oh // rows) * -(-g.panels // group)
            cost = group * PANEL * tiles * NR_MAX * g.k + copy + group * PANEL * rows * g.ow * EPILOGUE_MAC + BLOCK_MAC
            key = ((-(-blocks // NOMINAL_THREADS) + STRAGGLER) * cost, blocks)
            if best is None or key < best[0]:
                best = (key, rows, group)
    return None if best is None else best[1:]


def pack_weights(w: np.ndarray) -> np.ndarray:
    """[OC, C, KH, KW] -> [panels][C][KH*KW][PANEL], output channels past OC zero."""
    oc, c, kh, kw = w.shape
    panels = -(-oc // PANEL)
    padded = np.zeros((panels * PANEL, c, kh * kw), np.float32)
    padded[:oc] = w.reshape(oc, c, kh * kw)
    return np.ascontiguousarray(padded.reshape(panels, PANEL, c, kh * kw).transpose(0, 2, 3, 1))


def _copy_code(g: ConvGeometry, rows: int, px: str) -> str:
    """Fill xbuf's rows for input channel ic (d0, xc set): per used phase, every grid row, zeros
    outside the input."""
    rq, wq, out = g.rows_q(rows), g.wq, []
    for u, (ph, pw) in enumerate(g.phases):
        cols = [q for q in range(wq) if 0 <= q * g.st[1] + pw - g.pb[1] < g.w]
        lo, hi = (cols[0], cols[-1] + 1) if cols else (0, 0)
        src0 = lo * g.st[1] + pw - g.pb[1]
        if g.st[1] == 1:
            fill = f"memcpy(d + {lo}, s + {src0}, {4 * (hi - lo)});"
        else:
            fill = f"for (int64_t q = {lo}; q < {hi}; q++) d[q] = s[q * {g.st[1]} + {pw - g.pb[1]}];"
        out.append(f"""\
            for (int64_t r = 0; r < {rq}; r++) {{
                float *d = d0 + {u * rq * wq} + r * {wq};
                const int64_t ih = (oh0 + r) * {g.st[0]} + {ph - g.pb[0]};
                if (ih < 0 || ih >= {g.h}) {{ memset(d, 0, {4 * wq}); continue; }}
                const float *s = xc + ih * {g.w}; (void)s;
                memset(d, 0, {4 * lo}); memset(d + {hi}, 0, {4 * (wq - hi)});
                {fill if hi > lo else ''}
            }}""")
    return "\n".join(out)


class ConvGemmKernel:
    """Renders the cpu kernel (codegen calls it with the params' struct fields, their unpacking and
    the epilogue's statements); grid = images x row blocks x channel groups."""

    def __init__(self, g: ConvGeometry, rows: int, group: int, px: str, pw: str):
        self.g, self.rows, self.group, self.px, self.pw = g, rows, group, px, pw

    def __call__(self, fields: str, unpack: str, body: str):
        g, rows = self.g, self.rows
        plane = g.plane(rows)
        per_ic = len(g.phases) * min(g.rows_q(rows), -(-NR_MAX // g.wq) + 1 + g.reach[0]) * g.wq * 4
        kc = max(1, min(g.c, L1_CHUNK_B // per_ic))
        row_blocks, groups = -(-g.oh // rows), -(-g.panels // self.group)
        taps = "\n".join(f"        KOS_CONV_TAP({off}, {t})" for t, off in enumerate(g.tap_offsets(rows)))
        if NR_MAX not in (32, 64):
            raise GraphError(f"KOS_CPU_CONV_NR must be 32 or 64, got {NR_MAX}")
        src = _template("cpu/conv_gemm.c").substitute(
            fields=fields, unpack=unpack, name=NAME_PLACEHOLDER, nrv16=NR_MAX // 16, px=self.px, pw=self.pw, c=g.c, h=g.h, w=g.w,
            oc=g.oc, oh=g.oh, ow=g.ow, wq=g.wq, plane=plane, taps=g.kh * g.kw, taps_code=taps, kc=kc,
            ldo=g.ldo(rows), xbuf_len=g.c * plane + g.ldo(rows), obuf_len=self.group * PANEL * g.ldo(rows),
            groups=groups, row_blocks=row_blocks, rows_per_block=rows, group_panels=self.group, panels=g.panels,
            copy_code=_copy_code(g, rows, self.px),
            body="\n".join(" " * 20 + ln for ln in body.splitlines()))
        return src, g.n * row_blocks * groups
