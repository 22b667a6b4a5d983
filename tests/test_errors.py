"""Bad input raises ValueError / TypeError whose message names the argument and the rule."""

from __future__ import annotations

import pytest
import torch

import upconv

X = torch.randn(1, 2, 4, 4)
W = torch.randn(2, 3, 3, 3)


@pytest.mark.parametrize(
    "call, exc, pattern",
    [
        (lambda: upconv.weight_shuffle(torch.randn(10, 2, 3, 3), 3), ValueError,
         r"10 output channels, not divisible by rh·rw = 3·3 = 9"),
        (lambda: upconv.bias_shuffle(torch.randn(7), 2), ValueError, r"not divisible by rh·rw"),
        (lambda: upconv.weight_shuffle(torch.randn(9, 2, 3, 3), 0), ValueError,
         r"scale must be >= 1"),
        (lambda: upconv.weight_shuffle(torch.randn(9, 2, 3, 3), 2.5), ValueError,
         r"scale must be an integer"),
        (lambda: upconv.weight_convolution(torch.randn(1, 2, 3, 3), (2, -1)), ValueError,
         r"scale must be >= 1"),
        (lambda: upconv.weight_convolution(torch.randn(1, 2, 3, 3), "2"), TypeError,
         r"scale must be an int or a pair"),
        (lambda: upconv.weight_convolution(torch.randn(1, 2, 3), 2), ValueError,
         r"weight must have 4 dimensions"),
        (lambda: upconv.weight_shuffle([[1.0]], 2), TypeError, r"weight must be a torch.Tensor"),
        (lambda: upconv.subpixel_deconv_geometry(3, 2, padding=0), ValueError,
         r"does not keep the size .* use padding='same'"),
        (lambda: upconv.resize_deconv_geometry(3, 2, padding=(1, 0, 1, 1)), ValueError,
         r"top \+ bottom must be 2"),
        (lambda: upconv.SubPixelConv2d(2, 1, 3, 2, padding="valid"), ValueError,
         r"padding must be 'same'"),
        (lambda: upconv.deconv2d(X, W, algorithm="fastest"), ValueError,
         r"algorithm must be one of 'stdd', 'strd', 'revd', 'revd2', 'tdc'"),
        (lambda: upconv.deconv2d(X[0], W), ValueError, r"x must have 4 dimensions"),
        (lambda: upconv.deconv2d(X, W[0]), ValueError, r"weight must have 4 dimensions"),
        (lambda: upconv.deconv2d(torch.randn(1, 3, 4, 4), W), ValueError,
         r"x has 3 channels but weight .* expects Cin = 2"),
        (lambda: upconv.deconv2d(X, W.double()), TypeError, r"weight dtype torch.float64 does not "
         r"match x dtype torch.float32"),
        (lambda: upconv.deconv2d(X, W, torch.randn(3).double()), TypeError, r"bias dtype"),
        (lambda: upconv.deconv2d(X, W, torch.randn(4)), ValueError, r"bias must be \(C,\) or "
         r"periodic \(C, bh, bw\) with C = 3"),
        (lambda: upconv.deconv2d(X, W, torch.randn(3, 2)), ValueError, r"bias must have 1 or 3"),
        (lambda: upconv.deconv2d(X, W, stride=0), ValueError, r"stride must be >= 1"),
        (lambda: upconv.deconv2d(X, W, padding=-1), ValueError, r"padding must be non-negative"),
        (lambda: upconv.deconv2d(X, W, padding=(1, 2, 3)), ValueError,
         r"padding must be an int or a pair of ints, got 3 values"),
        (lambda: upconv.deconv2d(X, W, stride=2, output_padding=2), ValueError,
         r"output_padding \(2, 2\) must be smaller than stride \(2, 2\)"),
        (lambda: upconv.deconv2d(X, W, padding=4), ValueError, r"crops away the whole output"),
        (lambda: upconv.deconv2d(X, W, groups=3), ValueError,
         r"groups must be a positive divisor of Cin = 2"),
        (lambda: upconv.deconv2d(X, W, groups=0), ValueError, r"groups must be a positive"),
        (lambda: upconv.Deconv2d(2, 3, 3, groups=2), ValueError,
         r"groups must be a positive divisor of in_channels \(2\) and out_channels \(3\)"),
        (lambda: upconv.deconv2d(X, W, out=torch.empty(1, 3, 5, 5)), ValueError,
         r"out has shape \(1, 3, 5, 5\), the output is \(1, 3, 6, 6\)"),
        (lambda: upconv.deconv2d(X, W, out=torch.empty(1, 3, 6, 6, dtype=torch.float64)),
         ValueError, r"out is torch.float64"),
        (lambda: upconv.deconv2d(X.int(), W), TypeError, r"x must be a floating-point tensor"),
        (lambda: upconv.deconv2d(X, W, stride=True), TypeError, r"stride must be an integer"),
    ],
)
def test_bad_input_message(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_mismatched_devices_named():
    meta_w = torch.empty(2, 3, 3, 3, device="meta")
    with pytest.raises(ValueError, match=r"weight is on meta but x is on cpu"):
        upconv.deconv2d(X, meta_w)


def test_integral_float_scale_accepted():
    """2.0 is an integer scale (as nn.Upsample often spells it)."""
    w = torch.randn(4, 2, 3, 3)
    torch.testing.assert_close(upconv.weight_shuffle(w, 2.0), upconv.weight_shuffle(w, 2))
