"""Weight shuffle, bias shuffle, weight convolution: exact against conv+shuffle / resize+conv."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import upsampling_problems

import upconv
from upconv.shapes import conv_same_padding4


def shuffle_oracle(z: torch.Tensor, rh: int, rw: int) -> torch.Tensor:
    """Pixel shuffle written by its definition (independent of reshape/permute):
    channel ``c·rh·rw + a·rw + b`` at ``(i, j)`` goes to ``(c, rh·i + a, rw·j + b)``."""
    _n, crr, h, w = z.shape
    c = crr // (rh * rw)
    oi = torch.arange(h * rh)
    oj = torch.arange(w * rw)
    chan = (torch.arange(c)[:, None, None] * rh * rw + (oi % rh)[None, :, None] * rw
            + (oj % rw)[None, None, :])
    return z[:, chan, (oi // rh)[None, :, None], (oj // rw)[None, None, :]]


def conv_same_oracle(x, weight, bias, padding):
    if padding == "same":
        return F.conv2d(x, weight, bias, padding="same")
    top, bottom, left, right = padding
    return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias)


def draw_tensors(p, dtype=torch.float64, conv_out=None):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(p["n"], p["cin"], p["h"], p["w"], generator=g, dtype=dtype)
    w = torch.randn(conv_out, p["cin"], *p["kernel"], generator=g, dtype=dtype)
    b = torch.randn(conv_out, generator=g, dtype=dtype) if p["bias"] else None
    return x, w, b


@pytest.mark.parametrize("algorithm", upconv.ALGORITHMS)
@given(p=upsampling_problems())
def test_subpixel_conv_equals_shuffled_deconv(algorithm, p):
    rh, rw = p["scale"]
    x, w, b = draw_tensors(p, conv_out=p["c"] * rh * rw)
    expected = shuffle_oracle(conv_same_oracle(x, w, b, p["padding"]), rh, rw)
    g = upconv.subpixel_deconv_geometry(p["kernel"], p["scale"], p["padding"])
    bias = upconv.bias_shuffle(b, p["scale"]) if b is not None else None
    got = upconv.deconv2d(x, upconv.weight_shuffle(w, p["scale"]), bias, g.stride, g.padding,
                          algorithm=algorithm)
    assert got.shape == expected.shape == (p["n"], p["c"], rh * p["h"], rw * p["w"])
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("algorithm", upconv.ALGORITHMS)
@given(p=upsampling_problems())
def test_resize_conv_equals_convolved_deconv(algorithm, p):
    rh, rw = p["scale"]
    x, w, b = draw_tensors(p, conv_out=p["c"])
    up = F.interpolate(x, scale_factor=(rh, rw), mode="nearest")
    expected = conv_same_oracle(up, w, b, p["padding"])
    g = upconv.resize_deconv_geometry(p["kernel"], p["scale"], p["padding"])
    got = upconv.deconv2d(x, upconv.weight_convolution(w, p["scale"]), b, g.stride, g.padding,
                          algorithm=algorithm)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


# 25 examples, not the profile's 40: in float32 ``deconv2d`` runs the compiled kernel, and each
# random geometry tends to compile a kernel variant of its own (most of make test's minutes)
@settings(max_examples=25)
@given(p=upsampling_problems())
def test_float32_within_relative_tolerance(p):
    rh, rw = p["scale"]
    x, w, b = draw_tensors(p, dtype=torch.float32, conv_out=p["c"] * rh * rw)
    expected = shuffle_oracle(conv_same_oracle(x, w, b, p["padding"]), rh, rw)
    g = upconv.subpixel_deconv_geometry(p["kernel"], p["scale"], p["padding"])
    bias = upconv.bias_shuffle(b, p["scale"]) if b is not None else None
    got = upconv.deconv2d(x, upconv.weight_shuffle(w, p["scale"]), bias, g.stride, g.padding)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_weight_shuffle_matches_the_formula():
    """Wd[ic, c, rh·t + a, rw·u + b] = Wc[c·rh·rw + a·rw + b, ic, Kh-1-t, Kw-1-u]."""
    c, cin, kh, kw, rh, rw = 2, 3, 2, 3, 3, 2
    wc = torch.randn(c * rh * rw, cin, kh, kw)
    wd = upconv.weight_shuffle(wc, (rh, rw))
    assert wd.shape == (cin, c, rh * kh, rw * kw)
    for ic, cc, t, a, u, b in itertools.product(range(cin), range(c), range(kh), range(rh),
                                                range(kw), range(rw)):
        assert wd[ic, cc, rh * t + a, rw * u + b] == wc[cc * rh * rw + a * rw + b, ic,
                                                        kh - 1 - t, kw - 1 - u]


def test_bias_shuffle_matches_the_formula():
    bc = torch.arange(2 * 3 * 4, dtype=torch.float32)
    bd = upconv.bias_shuffle(bc, (3, 4))
    assert bd.shape == (2, 3, 4)
    for c, a, b in itertools.product(range(2), range(3), range(4)):
        assert bd[c, a, b] == bc[c * 12 + a * 4 + b]


def test_weight_convolution_matches_the_formula():
    """Each deconv tap sums the rotated conv taps under an rh × rw box."""
    wn = torch.randn(2, 3, 3, 2, dtype=torch.float64)
    rh, rw = 2, 3
    wd = upconv.weight_convolution(wn, (rh, rw))
    assert wd.shape == (3, 2, 3 + rh - 1, 2 + rw - 1)
    rot = wn.flip(2, 3)
    for ic, c, i, j in itertools.product(range(3), range(2), range(wd.shape[2]),
                                         range(wd.shape[3])):
        expect = sum(rot[c, ic, i - a, j - b] for a in range(rh) for b in range(rw)
                     if 0 <= i - a < 3 and 0 <= j - b < 2)
        torch.testing.assert_close(wd[ic, c, i, j], torch.as_tensor(expect, dtype=torch.float64))


def test_scale_one_is_identity_geometry():
    w = torch.randn(4, 3, 3, 3)
    torch.testing.assert_close(upconv.weight_shuffle(w, 1), w.flip(2, 3).transpose(0, 1))
    torch.testing.assert_close(upconv.weight_convolution(w, 1), w.flip(2, 3).transpose(0, 1))
    g = upconv.subpixel_deconv_geometry(3, 1)
    assert g.stride == (1, 1) and g.padding == (1, 1, 1, 1) and g.kernel_size == (3, 3)


@pytest.mark.parametrize("k", [2, 4, 6])
def test_even_kernel_crops_swap_sides(k):
    """PyTorch 'same' puts the extra row after; the flipped kernel needs it cropped before."""
    top, bottom, _, _ = conv_same_padding4("same", k)
    assert bottom == top + 1
    g = upconv.subpixel_deconv_geometry(k, 3)
    assert g.padding == (3 * bottom, 3 * top, 3 * bottom, 3 * top)
    assert g.symmetric_padding is None
    g = upconv.resize_deconv_geometry(k, 2)
    assert g.padding == (bottom, top, bottom, top)


def test_symmetric_geometry_is_the_papers():
    g = upconv.subpixel_deconv_geometry(3, 3)
    assert (g.stride, g.padding, g.kernel_size) == ((3, 3), (3, 3, 3, 3), (9, 9))
    assert g.symmetric_padding == (3, 3)
    g = upconv.resize_deconv_geometry(3, 3)
    assert (g.stride, g.padding, g.kernel_size) == ((3, 3), (1, 1, 1, 1), (5, 5))
    assert g.output_size(321, 481) == (963, 1443)


# --- grouped convolutions and crops before the shuffle ----------------------------------


def conv_transpose_cropped(x, weight, bias, stride, crops, groups):
    """PyTorch's ``conv_transpose2d`` (no padding) with per-side crops applied by slicing."""
    top, bottom, left, right = crops
    y = F.conv_transpose2d(x, weight, None, stride, groups=groups)
    y = y[:, :, top:y.shape[2] - bottom, left:y.shape[3] - right]
    if bias is not None:  # (C, bh, bw) periodic, or (C,)
        b = bias if bias.ndim == 3 else bias[:, None, None]
        reps = (1, -(-y.shape[2] // b.shape[1]), -(-y.shape[3] // b.shape[2]))
        y = y + b.repeat(*reps)[:, :y.shape[2], :y.shape[3]]
    return y


@st.composite
def grouped_problems(draw):
    g = draw(st.integers(1, 3))
    return dict(g=g, cin=g * draw(st.integers(1, 2)), c=g * draw(st.integers(1, 2)),
                k=(draw(st.integers(1, 4)), draw(st.integers(1, 4))),
                r=draw(st.integers(1, 3)), rw=draw(st.integers(1, 3)), bias=draw(st.booleans()),
                h=draw(st.integers(1, 5)), w=draw(st.integers(1, 5)))


@given(p=grouped_problems())
def test_grouped_subpixel_conv_equals_grouped_conv_transpose(p):
    """A grouped sub-pixel conv (CARN-M) is conv_transpose2d(groups=g) of the shuffled weight."""
    g, r, (kh, kw) = p["g"], p["r"], p["k"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, p["cin"], p["h"], p["w"], generator=gen, dtype=torch.float64)
    w = torch.randn(p["c"] * r * r, p["cin"] // g, kh, kw, generator=gen, dtype=torch.float64)
    b = torch.randn(p["c"] * r * r, generator=gen, dtype=torch.float64) if p["bias"] else None
    expected = shuffle_oracle(F.conv2d(x, w, b, padding="same", groups=g), r, r)
    geo = upconv.subpixel_deconv_geometry((kh, kw), r)
    wd = upconv.weight_shuffle(w, r, groups=g)
    assert wd.shape == (p["cin"], p["c"] // g, r * kh, r * kw)
    got = conv_transpose_cropped(x, wd, upconv.bias_shuffle(b, r) if b is not None else None,
                                 geo.stride, geo.padding, g)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@given(p=grouped_problems())
def test_grouped_resize_conv_equals_grouped_conv_transpose(p):
    g, (rh, rw), (kh, kw) = p["g"], (p["r"], p["rw"]), p["k"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, p["cin"], p["h"], p["w"], generator=gen, dtype=torch.float64)
    w = torch.randn(p["c"], p["cin"] // g, kh, kw, generator=gen, dtype=torch.float64)
    b = torch.randn(p["c"], generator=gen, dtype=torch.float64) if p["bias"] else None
    up = F.interpolate(x, scale_factor=(rh, rw), mode="nearest")
    expected = F.conv2d(up, w, b, padding="same", groups=g)
    geo = upconv.resize_deconv_geometry((kh, kw), (rh, rw))
    wd = upconv.weight_convolution(w, (rh, rw), groups=g)
    assert wd.shape == (p["cin"], p["c"] // g, kh + rh - 1, kw + rw - 1)
    got = conv_transpose_cropped(x, wd, b, geo.stride, geo.padding, g)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_groups_that_do_not_divide_are_refused():
    with pytest.raises(ValueError, match="not divisible by groups=2"):
        upconv.weight_shuffle(torch.randn(3 * 4, 1, 3, 3), 2, groups=2)  # C = 3
    with pytest.raises(ValueError, match="not divisible by groups=2"):
        upconv.weight_convolution(torch.randn(3, 1, 3, 3), 2, groups=2)
    with pytest.raises(ValueError, match="groups must be an integer >= 1"):
        upconv.weight_shuffle(torch.randn(4, 1, 3, 3), 2, groups=0)


@given(k=st.tuples(st.integers(1, 4), st.integers(1, 4)), r=st.integers(1, 3),
       pad=st.tuples(*[st.integers(0, 4)] * 4), crop=st.tuples(*[st.integers(0, 2)] * 4),
       h=st.integers(1, 6), w=st.integers(1, 6))
def test_conv_crop_shuffle_equals_cropped_deconv(k, r, pad, crop, h, w):
    """Any zero padding and a crop before the shuffle (RealCUGAN's valid conv + F.pad(-1))."""
    (kh, kw), (pt, pb, pl, pr), (ct, cb, cl, cr) = k, pad, crop
    out_h, out_w = h + pt + pb - kh + 1 - ct - cb, w + pl + pr - kw + 1 - cl - cr
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, h, w, generator=gen, dtype=torch.float64)
    wc = torch.randn(3 * r * r, 2, kh, kw, generator=gen, dtype=torch.float64)
    bc = torch.randn(3 * r * r, generator=gen, dtype=torch.float64)
    reach = (pt - kh + 1 - ct, pb - kh + 1 - cb, pl - kw + 1 - cl, pr - kw + 1 - cr)
    if max(reach) > 0:  # padding beyond what the kernel reaches: no deconvolution crops it
        with pytest.raises(ValueError, match="negative crops"):
            upconv.shapes.cropped_subpixel_deconv_geometry(k, r, pad, crop)
        return
    if out_h < 1 or out_w < 1:
        return
    z = F.conv2d(F.pad(x, (pl, pr, pt, pb)), wc, bc)
    expected = shuffle_oracle(z[:, :, ct:z.shape[2] - cb, cl:z.shape[3] - cr], r, r)
    geo = upconv.shapes.cropped_subpixel_deconv_geometry(k, r, pad, crop)
    got = conv_transpose_cropped(x, upconv.weight_shuffle(wc, r), upconv.bias_shuffle(bc, r),
                                 geo.stride, geo.padding, 1)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    if pt + pb == kh - 1 and pl + pr == kw - 1 and crop == (0, 0, 0, 0):
        assert geo == upconv.subpixel_deconv_geometry(k, r, pad)
