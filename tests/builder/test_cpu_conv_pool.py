"""The cpu convolution and max-pool row kernels against numpy float64 on odd shapes: asymmetric
pads, strides 1/2/3, dilations, groups and depthwise, widths that leave partial tiles, windows that
hang over both edges, channel counts that give 8/4/2/1 channels per tile, and a
convolution whose padded input copy would not fit the stack (the in-place gather path)."""

import numpy as np
import pytest
from onnx import helper

from .conftest import rel_error, run_on_cpu


def conv2d_f64(x, w, b, stride, dil, pads, group):
    """Direct float64 convolution, NCHW, pads = (top, left, bottom, right)."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    og = oc // group
    out = np.zeros((n, oc, oh, ow))
    for g in range(group):
        xs = xp[:, g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dil[0]: i * dil[0] + stride[0] * (oh - 1) + 1: stride[0],
                           j * dil[1]: j * dil[1] + stride[1] * (ow - 1) + 1: stride[1]]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, w[g * og:(g + 1) * og, :, i, j])
    return out + b.astype(np.float64)[None, :, None, None]


def maxpool2d_f64(x, k, stride, dil, pads):
    x = x.astype(np.float64)
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=-np.inf)
    oh = (x.shape[2] + pads[0] + pads[2] - dil[0] * (k[0] - 1) - 1) // stride[0] + 1
    ow = (x.shape[3] + pads[1] + pads[3] - dil[1] * (k[1] - 1) - 1) // stride[1] + 1
    out = np.full(x.shape[:2] + (oh, ow), -np.inf)
    for i in range(k[0]):
        for j in range(k[1]):
            out = np.maximum(out, xp[:, :, i * dil[0]: i * dil[0] + stride[0] * (oh - 1) + 1: stride[0],
                                     j * dil[1]: j * dil[1] + stride[1] * (ow - 1) + 1: stride[1]])
    return out


@pytest.mark.parametrize("n,cin,cout,h,w,k,stride,dil,pads,group", [
    (1, 5, 16, 7, 7, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1),      # 7 wide: one partial tile, 2 tiles of 8 ch
    (2, 3, 12, 11, 19, (3, 5), (1, 1), (1, 1), (0, 2, 2, 1), 1),    # batch 2, asymmetric pads, 4 ch per tile
    (1, 4, 8, 13, 37, (7, 7), (2, 2), (1, 1), (3, 3, 3, 3), 1),     # stride 2 (even lanes), window past both edges
    (1, 6, 6, 9, 23, (3, 3), (3, 2), (2, 3), (2, 1, 0, 3), 3),      # stride 3 across, dilation, 3 groups of 2
    (1, 16, 16, 10, 17, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), 16),  # depthwise stride 2
    (1, 8, 24, 5, 9, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 1),      # 1x1
    (1, 512, 8, 3, 40, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1),    # padded rows too big: in-place gathers
])
def test_conv2d_matches_float64(tmp_path, n, cin, cout, h, w, k, stride, dil, pads, group):
    rng = np.random.default_rng(cin * 31 + cout + w)
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    wt = rng.standard_normal((cout, cin // group) + k).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=list(stride), dilations=list(dil),
                            pads=list(pads), group=group)
    out = run_on_cpu(node, x, {"w": wt, "b": b}, tmp_path)
    ref = conv2d_f64(x, wt, b, stride, dil, pads, group)
    assert out.shape == ref.shape
    assert rel_error(out, ref) <= 1e-5


@pytest.mark.parametrize("h,w,k,stride,dil,pads", [
    (112, 112, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),   # the ResNet stem pool
    (9, 13, (2, 3), (1, 2), (2, 1), (1, 0, 0, 2)),      # dilation, asymmetric pads
])
def test_maxpool2d_matches_float64(tmp_path, h, w, k, stride, dil, pads):
    x = np.random.default_rng(h + w).standard_normal((1, 3, h, w)).astype(np.float32)
    x[0, 1, 2, 3] = np.nan                                # NaN propagates as in the reduction
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=list(k), strides=list(stride),
                            dilations=list(dil), pads=list(pads))
    out = run_on_cpu(node, x, {}, tmp_path)
    ref = maxpool2d_f64(x, k, stride, dil, pads)
    assert out.shape == ref.shape
    assert np.array_equal(np.isnan(out), np.isnan(ref))
    ok = ~np.isnan(ref)
    assert rel_error(out[ok], ref[ok]) <= 1e-7
