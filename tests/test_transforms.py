"""Weight shuffle, bias shuffle, weight convolution: exact against conv+shuffle / resize+conv."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
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
