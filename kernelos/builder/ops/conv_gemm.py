"""The cpu kernel of a float32 2-D convolution (one group) as an implicit GEMM over a padded,
phase-split copy of the input (kernels/cpu/conv_gemm.c says how a block runs). Here: the grid
geometry (every tap a constant offset), the two tile kinds with their weight packing (panels of
output channels, [panel][ic][kh*kw][panel width], zero rows past the last channel), and the block
shape: output rows x channel panels (x a part of the row block's tiles) per block, picked by a small
cost model so a layer splits into equal blocks for the worker threads without copying the input
once per handful of channels.

- PixelTiles (conv_tiles_pixels.c): 6 channels x a run of grid positions as vectors; for wide rows.
- ChannelTiles (conv_tiles_channels.c, behind KOS_CPU_CONV_CHANNEL_TILES=1): up to 8 outputs of a
  row x 32 channels as vectors; for narrow rows (14 outputs or fewer) with long reductions, where
  pixel tiles waste the grid's extra columns and their unaligned input vectors split cache lines."""

import os
from dataclasses import dataclass

import numpy as np

from hal.errors import GraphError

from ..codegen import NAME_PLACEHOLDER, _template

# Grid positions per pixel tile where the compiler targets AVX-512: 32 (2 vectors) or 64 (4 vectors:
# half the weight broadcasts per multiply-add, about 1.3x faster per multiply-add on the 16-core
# device host, 2026-11-26, but coarser, so a small layer computes more positions it drops). The cost
# model picks per layer; the build-time knob KOS_CPU_CONV_NR=32 or 64 forces one. AVX2 tiles are 16
# (2 vectors) either way; the plan (tile counts, buffer sizes) is made for this figure, which 16 divides.
NR_FORCED = os.environ.get("KOS_CPU_CONV_NR")
NR_CHOICES = (32, 64) if NR_FORCED is None else (int(NR_FORCED),) if NR_FORCED in ("32", "64") else ()
NR_MAC = {32: 1.3, 64: 1.0}   # cost of a multiply-add in tiles of that width (cost-model units)
# Build-time knob: KOS_CPU_CONV_CHANNEL_TILES=1 gives narrow layers channel tiles. Off by default: on
# the AVX2 dev VM they run slower than pixel tiles (a 32-channel panel's weights outgrow its 512 KiB
# L2 and stream once per tile); on the 16-core AVX-512 device host (2026-11-26) the 7x7 layers ran
# faster than 32-position pixel tiles but slower than 64-position ones, the 14x14 layers slower.
CHANNEL_TILES = os.environ.get("KOS_CPU_CONV_CHANNEL_TILES", "0") == "1"
CHANNEL_TILE_MAX_OW = 14   # rows this narrow or narrower take channel tiles...
CHANNEL_TILE_MIN_K = 1024  # ...when each output sums this many products (the transposed store is paid back)
CHANNEL_TILE_MAX_RUN = 8   # outputs per channel tile (16 vector accumulators with AVX-512, 8 with AVX2)
STACK_MAX_B = 448 * 1024   # xbuf + obuf on the block's stack (worker threads have 8 MiB stacks)
L1_CHUNK_B = 24 * 1024     # input bytes one channel chunk of a pixel tile may touch (half an L1 data cache)
NOMINAL_THREADS = 16   # threads the block split is planned for (the device host's cores); more blocks
                       # than threads costs little, so smaller machines are served as well
# Build-time knob: blocks' worth of time the last thread is expected to lag (uneven thread speeds),
# KOS_CPU_CONV_STRAGGLER (default 0.5). 0 plans whole rounds of equal blocks and nothing else.
STRAGGLER = float(os.environ.get("KOS_CPU_CONV_STRAGGLER", "0.5"))
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
    def k(self) -> int:
        return self.c * self.kh * self.kw

    def rows_q(self, rows: int) -> int:
        return rows + self.reach[0]

    def plane(self, rows: int) -> int:
        """Floats per input channel in xbuf for blocks of `rows` output rows."""
        return len(self.phases) * self.rows_q(rows) * self.wq

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


class PixelTiles:
    """6 output channels x `nr` consecutive grid positions per tile (conv_tiles_pixels.c)."""

    panel, source = 6, "cpu/conv_tiles_pixels.c"

    def __init__(self, g: ConvGeometry, nr: int):
        self.g, self.nr = g, nr

    def ldo(self, rows: int) -> int:
        """Floats per output channel in obuf: the block's grid rounded up to whole tiles."""
        return -(-rows * self.g.wq // self.nr) * self.nr

    def computed(self, rows: int) -> int:
        """Grid positions a channel's tiles compute for a block of `rows` output rows."""
        return self.ldo(rows)

    def slack(self, rows: int) -> int:
        """Zero floats after the input planes that the last tiles read past them."""
        return self.ldo(rows)

    def render(self, rows: int) -> str:
        g = self.g
        per_ic = len(g.phases) * min(g.rows_q(rows), -(-self.nr // g.wq) + 1 + g.reach[0]) * g.wq * 4
        taps = "\n".join(f"        KOS_CONV_TAP({off}, {t})" for t, off in enumerate(g.tap_offsets(rows)))
        return _template(self.source).substitute(
            nrv16=self.nr // 16, kc=max(1, min(g.c, L1_CHUNK_B // per_ic)), c=g.c, wq=g.wq, plane=g.plane(rows),
            taps=g.kh * g.kw, taps_code=taps, ldo=self.ldo(rows))


class ChannelTiles:
    """Runs of up to CHANNEL_TILE_MAX_RUN outputs of a row x 32 channels (conv_tiles_channels.c)."""

    panel, source = 32, "cpu/conv_tiles_channels.c"

    def __init__(self, g: ConvGeometry):
        self.g = g
        per_row = -(-g.ow // CHANNEL_TILE_MAX_RUN)
        self.run, self.row_tiles = -(-g.ow // per_row), per_row

    @staticmethod
    def fits(g: ConvGeometry) -> bool:
        return CHANNEL_TILES and g.ow <= CHANNEL_TILE_MAX_OW and g.k >= CHANNEL_TILE_MIN_K

    def ldo(self, rows: int) -> int:
        return -(-rows * self.g.wq // 16) * 16

    def computed(self, rows: int) -> int:
        return rows * self.row_tiles * self.run

    def slack(self, rows: int) -> int:
        return 0

    def render(self, rows: int) -> str:
        g, ldo = self.g, self.ldo(rows)
        taps = "\n".join(f"        KOS_OV_TAP({t}, {off})" for t, off in enumerate(g.tap_offsets(rows)))
        return _template(self.source).substitute(
            mp=self.run, panel=self.panel, c=g.c, wq=g.wq, ow=g.ow, plane=g.plane(rows), taps=g.kh * g.kw,
            taps_code=taps, ldo=ldo, row_tiles=self.row_tiles,
            fmas=" ".join(f"KOS_OV_FMA({i}, xp[(OFF) + {i}])" for i in range(self.run)),
            decls=" ".join(f"KOS_OV_DECL({i})" for i in range(self.run)),
            stores=" ".join(f"KOS_OV_STORE({i})" for i in range(self.run)))


def tiles_for(g: ConvGeometry):
    """Channel tiles where they apply, else pixel tiles of the width with the cheaper plan."""
    if ChannelTiles.fits(g):
        return ChannelTiles(g)
    if not NR_CHOICES:
        raise GraphError(f"KOS_CPU_CONV_NR must be 32 or 64, got {NR_FORCED!r}")
    options = [PixelTiles(g, nr) for nr in NR_CHOICES]
    planned = [(plan, t) for t in options if (plan := _pixel_plan(g, t)) is not None]
    return min(planned, key=lambda p: p[0])[1] if planned else options[0]


def stack_B(g: ConvGeometry, tiles, rows: int, group: int) -> int:
    """xbuf + obuf of a block of `rows` output rows and `group` panels."""
    return 4 * (g.c * g.plane(rows) + tiles.slack(rows) + group * tiles.panel * tiles.ldo(rows))


def block_shape(g: ConvGeometry, tiles):
    """(output rows, channel panels, parts) per block, or None when even one row and one panel
    overflow the stack budget; a part is a run of the row block's tiles (pixel tiles only, so a
    layer of few positions can split into equal blocks without rows that round up to whole tiles).
    Channel tiles (long reductions: the weights are the big stream) take one panel per block, so
    each panel's weights reach one core once, and split the rows only as far as NOMINAL_THREADS
    blocks need. Pixel tiles take the shape of _pixel_plan."""
    if isinstance(tiles, ChannelTiles):
        panels = -(-g.oc // tiles.panel)
        for row_blocks in range(1, g.oh + 1):
            rows = -(-g.oh // row_blocks)
            if g.n * panels * row_blocks >= NOMINAL_THREADS or rows == 1:
                if stack_B(g, tiles, rows, 1) <= STACK_MAX_B:
                    return rows, 1, 1
        return None
    plan = _pixel_plan(g, tiles)
    return None if plan is None else plan[1:]


def _pixel_plan(g: ConvGeometry, tiles: PixelTiles):
    """(key, rows, group, parts): the block shape with the least estimated makespan on
    NOMINAL_THREADS threads (rounds of equal blocks, each paying its input copy, plus a straggler's
    share of one) among those that give every thread a block, if any do; ties go to more blocks.
    The key compares across tile widths."""
    best, panels = None, -(-g.oc // tiles.panel)
    for rows in range(1, g.oh + 1):
        if stack_B(g, tiles, rows, 1) > STACK_MAX_B:
            break
        copy = g.c * g.plane(rows) * COPY_MAC[g.st[1] != 1]
        ntiles = tiles.ldo(rows) // tiles.nr
        for group in range(1, panels + 1):
            if stack_B(g, tiles, rows, group) > STACK_MAX_B:
                break
            outs = group * tiles.panel
            for per_part in sorted({-(-ntiles // parts) for parts in range(1, ntiles + 1)}):
                blocks = g.n * -(-g.oh // rows) * -(-panels // group) * -(-ntiles // per_part)
                computed = per_part * tiles.nr
                cost = (outs * computed * g.k * NR_MAC[tiles.nr] + copy + outs * min(computed, rows * g.ow) * EPILOGUE_MAC
                        + BLOCK_MAC)
                key = (blocks < NOMINAL_THREADS, (-(-blocks // NOMINAL_THREADS) + STRAGGLER) * cost, -blocks)
                if best is None or key < best[0]:
                    best = (key, rows, group, -(-ntiles // per_part))
    return best


def pack_weights(w: np.ndarray, panel: int) -> np.ndarray:
    """[OC, C, KH, KW] -> [panels][C][KH*KW][panel], output channels past OC zero."""
    oc, c, kh, kw = w.shape
    panels = -(-oc // panel)
    padded = np.zeros((panels * panel, c, kh * kw), np.float32)
    padded[:oc] = w.reshape(oc, c, kh * kw)
    return np.ascontiguousarray(padded.reshape(panels, panel, c, kh * kw).transpose(0, 2, 3, 1))


def _copy_code(g: ConvGeometry, rows: int) -> str:
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
    the epilogue's statements); grid = images x channel groups x row blocks x parts."""

    def __init__(self, g: ConvGeometry, tiles, rows: int, group: int, parts: int, px: str, pw: str):
        self.g, self.tiles, self.rows, self.group, self.parts, self.px, self.pw = g, tiles, rows, group, parts, px, pw

    def __call__(self, fields: str, unpack: str, body: str):
        g, t, rows = self.g, self.tiles, self.rows
        plane, panels = g.plane(rows), -(-g.oc // t.panel)
        row_blocks, groups = -(-g.oh // rows), -(-panels // self.group)
        # grid positions per part: whole planned tiles (the whole row block when not split)
        part_positions = -(-t.ldo(rows) // t.nr // self.parts) * t.nr if self.parts > 1 else t.ldo(rows)
        src = _template("cpu/conv_gemm.c").substitute(
            fields=fields, unpack=unpack, name=NAME_PLACEHOLDER, tiles=t.render(rows), panel=t.panel, px=self.px,
            pw=self.pw, c=g.c, h=g.h, w=g.w, oc=g.oc, oh=g.oh, ow=g.ow, wq=g.wq, plane=plane, ldo=t.ldo(rows),
            xbuf_len=g.c * plane + t.slack(rows) + 16, obuf_len=self.group * t.panel * t.ldo(rows),
            groups=groups, row_blocks=row_blocks, rows_per_block=rows, group_panels=self.group, panels=panels,
            parts=self.parts, part_positions=part_positions,
            copy_code=_copy_code(g, rows), body="\n".join(" " * 20 + ln for ln in body.splitlines()))
        return src, g.n * row_blocks * groups * self.parts
