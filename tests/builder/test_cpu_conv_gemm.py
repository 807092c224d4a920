"""The cpu implicit-GEMM convolution (kernelos/builder/ops/conv_gemm.py, kernels/cpu/conv_gemm.c)
against numpy float64, outputs poisoned before each run, with pixel tiles and (narrow rows, long
reductions) channel tiles: channel counts that leave partial weight panels (not multiples of 6, 8
or 32), strides 1/2/3, asymmetric padding, dilation, 1x1 and 7x7 windows, batch 2, layers big
enough to split into several row blocks, channel groups and input-channel chunks, and the fused
epilogues (bias, ReLU, a residual add). The 16-lane (AVX-512) variant is
also built for this host with -DKOS_VEC16=1 (GCC's 16-float vectors compile for AVX2 too), and
the whole kernel with -march=x86-64-v3, the system image's target."""

import numpy as np
import pytest
from onnx import helper

import kernelos.builder.compile as builder_compile
from kernelos.builder.ops import conv_gemm

from .conftest import rel_error, run_on_cpu
from .test_cpu_conv_pool import conv2d_f64

SHAPES = [  # n, cin, cout, h, w, kernel, stride, dilation, pads (top, left, bottom, right)
    (1, 3, 13, 30, 30, (7, 7), (2, 2), (1, 1), (3, 3, 3, 3)),    # stem-like 7x7/2, 13 channels: a partial panel
    (1, 5, 7, 11, 9, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),      # odd sizes, one panel + 1 channel
    (2, 7, 10, 9, 12, (3, 3), (2, 2), (1, 1), (1, 0, 2, 1)),     # batch 2, stride 2, asymmetric pads
    (1, 16, 20, 8, 8, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),     # 1x1
    (1, 9, 17, 10, 11, (1, 1), (2, 2), (1, 1), (0, 0, 0, 0)),    # 1x1 stride 2 (one phase of four)
    (1, 4, 8, 12, 17, (3, 5), (2, 1), (2, 1), (2, 0, 1, 3)),     # strides and dilations differ per axis
    (1, 6, 12, 13, 14, (3, 3), (3, 3), (1, 1), (1, 1, 1, 1)),    # stride 3: nine phases
    (1, 300, 24, 6, 20, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),   # 300 input channels: several chunks
    (1, 64, 96, 28, 28, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),   # several row blocks and channel groups
]
NARROW = [  # narrow rows with long reductions: where channel tiles apply (panels of 32, runs of up to 8)
    (1, 300, 24, 6, 6, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),    # one partial panel, a run of 6
    (1, 120, 40, 14, 14, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),  # 2 panels (the second partial), runs of 7
    (2, 130, 33, 9, 11, (3, 3), (1, 1), (1, 1), (0, 1, 2, 1)),   # batch 2, asymmetric pads, overlapping runs
    (1, 128, 64, 14, 14, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),  # stride 2 (four phases)
    (1, 1100, 35, 7, 7, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),   # 1x1 with 1100 input channels
    (1, 150, 32, 11, 10, (3, 3), (1, 1), (2, 2), (2, 2, 2, 2)),  # dilation 2
]


def _conv(x, rng, cout, k, stride, dil, pads, name="y", bias=True):
    w = rng.standard_normal((cout, x.shape[1]) + k).astype(np.float32)
    inits = {"w": w}
    ins = ["x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(cout).astype(np.float32)
        ins.append("b")
    node = helper.make_node("Conv", ins, [name], strides=list(stride), dilations=list(dil), pads=list(pads),
                            kernel_shape=list(k))
    return node, inits


@pytest.mark.parametrize("n,cin,cout,h,w,k,stride,dil,pads", SHAPES + NARROW)
def test_conv_gemm_matches_float64(tmp_path, n, cin, cout, h, w, k, stride, dil, pads):
    """Pixel tiles (the default for every shape)."""
    rng = np.random.default_rng(cin * 7 + cout + h)
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    node, inits = _conv(x, rng, cout, k, stride, dil, pads)
    out = run_on_cpu(node, x, inits, tmp_path)
    ref = conv2d_f64(x, inits["w"], inits["b"], stride, dil, pads, 1)
    assert out.shape == ref.shape
    assert rel_error(out, ref) <= 1e-5


@pytest.mark.parametrize("n,cin,cout,h,w,k,stride,dil,pads", NARROW)
def test_conv_gemm_channel_tiles_match_float64(tmp_path, monkeypatch, n, cin, cout, h, w, k, stride, dil, pads):
    """Channel tiles (KOS_CPU_CONV_CHANNEL_TILES=1) on the shapes they apply to."""
    monkeypatch.setattr(conv_gemm, "CHANNEL_TILES", True)
    oh = (h + pads[0] + pads[2] - dil[0] * (k[0] - 1) - 1) // stride[0] + 1
    ow = (w + pads[1] + pads[3] - dil[1] * (k[1] - 1) - 1) // stride[1] + 1
    g = conv_gemm.geometry((n, cin, h, w), (cout, cin) + k, (n, cout, oh, ow), stride, dil, pads[:2])
    assert isinstance(conv_gemm.tiles_for(g), conv_gemm.ChannelTiles)
    test_conv_gemm_matches_float64(tmp_path, n, cin, cout, h, w, k, stride, dil, pads)


def test_conv_gemm_relu_and_residual_epilogue(tmp_path):
    """relu(conv(x) + b + x) in one kernel: the residual is read at the output's own index."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 10, 15, 15)).astype(np.float32)
    node, inits = _conv(x, rng, 10, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), name="c")
    nodes = [node, helper.make_node("Add", ["c", "x"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    out = run_on_cpu(nodes, x, inits, tmp_path)
    ref = np.maximum(conv2d_f64(x, inits["w"], inits["b"], (1, 1), (1, 1), (1, 1, 1, 1), 1) + x, 0)
    assert rel_error(out, ref) <= 1e-5
    assert (out == 0).any() and (out > 0).any()


def test_conv_gemm_without_bias(tmp_path):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 8, 9, 9)).astype(np.float32)
    node, inits = _conv(x, rng, 6, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), bias=False)
    out = run_on_cpu(node, x, inits, tmp_path)
    ref = conv2d_f64(x, inits["w"], np.zeros(6, np.float32), (2, 2), (1, 1), (1, 1, 1, 1), 1)
    assert rel_error(out, ref) <= 1e-5


@pytest.mark.parametrize("flags,nr", [(("-DKOS_VEC16=1",), 32), (("-DKOS_VEC16=1",), 64),
                                      (("-DKOS_VEC16=0", "-march=x86-64-v3"), 32)])
@pytest.mark.parametrize("shape,channel_tiles", [(SHAPES[0], False), (SHAPES[2], False), (SHAPES[8], False),
                                                 (NARROW[1], True), (NARROW[2], True)])
def test_conv_gemm_vector_variants(tmp_path, monkeypatch, flags, nr, shape, channel_tiles):
    """Both vector widths, the 4-vector AVX-512 pixel tile (KOS_CPU_CONV_NR=64), channel tiles and
    the system image's -march, on this host whichever it targets."""
    monkeypatch.setattr(conv_gemm, "NR_CHOICES", (nr,))
    monkeypatch.setattr(conv_gemm, "CHANNEL_TILES", channel_tiles)
    real = builder_compile.hal.compile
    monkeypatch.setattr(builder_compile.hal, "compile", lambda src, name, target, options=():
                        real(src, name, target, tuple(options) + flags))
    test_conv_gemm_matches_float64(tmp_path, *shape)


@pytest.mark.parametrize("channel_tiles", [False, True])
def test_conv_gemm_is_chosen_and_weights_packed(monkeypatch, channel_tiles):
    """ResNet-style layers lower to the implicit-GEMM kernel (with the knob, channel tiles for the
    narrow, long ones) within the stack budget in enough blocks, and the packed panels hold
    w[oc, ic, kh, kw] at [oc / 6][ic][kh * kw][oc % 6], zero past the last channel."""
    monkeypatch.setattr(conv_gemm, "CHANNEL_TILES", channel_tiles)
    for c, oc, hw, k, s in [(3, 64, 224, 7, 2), (64, 64, 56, 3, 1), (256, 512, 14, 1, 2), (512, 512, 7, 3, 1),
                            (256, 256, 14, 3, 1), (128, 256, 28, 3, 2)]:
        p = k // 2
        o = (hw + 2 * p - k) // s + 1
        g = conv_gemm.geometry((1, c, hw, hw), (oc, c, k, k), (1, oc, o, o), (s, s), (1, 1), (p, p))
        tiles = conv_gemm.tiles_for(g)
        assert isinstance(tiles, conv_gemm.ChannelTiles) == (channel_tiles and o <= 14 and c * k * k >= 1024)
        rows, group, parts = conv_gemm.block_shape(g, tiles)
        assert conv_gemm.stack_B(g, tiles, rows, group) <= conv_gemm.STACK_MAX_B
        blocks = -(-o // rows) * -(-(-(-oc // tiles.panel)) // group) * parts
        assert blocks >= conv_gemm.NOMINAL_THREADS, (c, oc, hw, blocks)
    w = np.random.default_rng(1).standard_normal((13, 4, 3, 2)).astype(np.float32)
    packed = conv_gemm.pack_weights(w, 6)
    assert packed.shape == (3, 4, 6, 6)
    for oc, ic, kh, kw in [(0, 0, 0, 0), (12, 3, 2, 1), (7, 1, 1, 0)]:
        assert packed[oc // 6, ic, kh * 2 + kw, oc % 6] == w[oc, ic, kh, kw]
    assert not packed[2, :, :, 1:].any()


@pytest.mark.parametrize("channel_tiles", [False, True])
@pytest.mark.parametrize("rows,group", [(3, 2), (4, 3)])
def test_conv_gemm_partial_blocks(tmp_path, monkeypatch, channel_tiles, rows, group):
    """Block shapes whose last row block and last channel group are partial (10 rows; 5 panels of
    6 or 3 of 32), with 200 input channels (several chunks for pixel tiles), both tile kinds."""
    monkeypatch.setattr(conv_gemm, "CHANNEL_TILES", channel_tiles)
    monkeypatch.setattr(conv_gemm, "block_shape", lambda g, tiles: (rows, group, 1))
    assert conv_gemm.ChannelTiles.fits(conv_gemm.geometry((1, 200, 10, 11), (70, 200, 3, 3), (1, 70, 10, 11),
                                                          (1, 1), (1, 1), (1, 1))) == channel_tiles
    test_conv_gemm_matches_float64(tmp_path, 1, 200, 70, 10, 11, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1))


@pytest.mark.parametrize("nr,flags", [(32, ()), (64, ("-DKOS_VEC16=1",))])
@pytest.mark.parametrize("cin,cout,hw,stride,shape", [
    (37, 29, 7, 1, (7, 2, 2)),     # 7x7: a row block of 63 grid positions in 2 parts, 5 panels in groups of 2
    (45, 23, 14, 1, (3, 3, 3)),    # 14x14: 5 row blocks (the last 2 rows), 3 parts of which some are empty
    (33, 19, 14, 2, (7, 1, 2)),    # stride 2 to 7x7: four phases, a part per tile
])
def test_conv_gemm_parts_of_row_blocks(tmp_path, monkeypatch, nr, flags, cin, cout, hw, stride, shape):
    """Pixel-tile blocks that compute a part of their row block's tiles (rows, panel group, parts
    forced), odd channel counts, both planned tile widths, against float64 with poisoned outputs."""
    monkeypatch.setattr(conv_gemm, "NR_CHOICES", (nr,))
    monkeypatch.setattr(conv_gemm, "block_shape", lambda g, tiles: shape)
    real = builder_compile.hal.compile
    monkeypatch.setattr(builder_compile.hal, "compile", lambda src, name, target, options=():
                        real(src, name, target, tuple(options) + flags))
    test_conv_gemm_matches_float64(tmp_path, 1, cin, cout, hw, hw, (3, 3), (stride, stride), (1, 1), (1, 1, 1, 1))


def test_conv_gemm_small_layers_split_evenly(monkeypatch):
    """A 7x7 layer of ResNet-18 (512 channels: 86 panels of 6; 63 grid positions: 2 tiles of 32),
    planned with no straggler allowance, gives each of NOMINAL_THREADS threads one block of 11
    panels x 1 tile (10.75 is the even share) instead of 2 rounds of whole row blocks, the second
    half empty; test_conv_gemm_parts_of_row_blocks runs such blocks."""
    monkeypatch.setattr(conv_gemm, "STRAGGLER", 0.0)
    assert conv_gemm.NOMINAL_THREADS == 16
    g = conv_gemm.geometry((1, 512, 7, 7), (512, 512, 3, 3), (1, 512, 7, 7), (1, 1), (1, 1), (1, 1))
    assert conv_gemm.block_shape(g, conv_gemm.PixelTiles(g, 32)) == (7, 11, 2)


def test_conv_gemm_tile_width_per_layer(monkeypatch):
    """The cost model gives wide layers 64-position pixel tiles (cheaper per multiply-add with
    AVX-512) and layers whose row blocks would leave most of such a tile empty 32-position ones;
    KOS_CPU_CONV_NR (NR_CHOICES) forces one, and a bad value is a typed error."""
    def width(c, oc, hw, k, s):
        o = (hw + 2 * (k // 2) - k) // s + 1
        return conv_gemm.tiles_for(conv_gemm.geometry((1, c, hw, hw), (oc, c, k, k), (1, oc, o, o), (s, s), (1, 1),
                                                      (k // 2, k // 2))).nr
    assert width(64, 64, 56, 3, 1) == 64      # 56x56: 58-wide grid rows, little of a 64-wide tile dropped
    assert width(256, 512, 14, 3, 2) == 32    # 7x7 from stride 2: 4 rows of 8 (32) would fill half of 64
    assert width(256, 512, 14, 1, 2) == 32
    monkeypatch.setattr(conv_gemm, "NR_CHOICES", (64,))
    assert width(256, 512, 14, 3, 2) == 64
    monkeypatch.setattr(conv_gemm, "NR_CHOICES", ())
    monkeypatch.setattr(conv_gemm, "NR_FORCED", "48")
    with pytest.raises(conv_gemm.GraphError, match="KOS_CPU_CONV_NR must be 32 or 64"):
        width(64, 64, 56, 3, 1)
