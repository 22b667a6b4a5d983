"""Layers end to end: to_deconv() computes the same function for every algorithm."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import upconv

LAYERS = [upconv.SubPixelConv2d, upconv.ResizeConv2d]


@pytest.mark.parametrize("layer_cls", LAYERS)
@pytest.mark.parametrize("algorithm", upconv.ALGORITHMS)
@given(
    k=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    scale=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    bias=st.booleans(),
    n=st.integers(1, 2),
)
def test_to_deconv_matches(layer_cls, algorithm, k, scale, bias, n):
    torch.manual_seed(0)
    layer = layer_cls(3, 2, k, scale, bias=bias).double()
    if bias:
        with torch.no_grad():
            layer.bias.normal_()  # distinct per-phase values: the periodic bias matters
    x = torch.randn(n, 3, 4, 5, dtype=torch.float64)
    deconv = layer.to_deconv(algorithm)
    assert isinstance(deconv, upconv.Deconv2d) and deconv.algorithm == algorithm
    torch.testing.assert_close(deconv(x), layer(x), rtol=1e-10, atol=1e-10)


def test_subpixel_bias_is_periodic():
    layer = upconv.SubPixelConv2d(2, 1, 3, 2)
    d = layer.to_deconv()
    assert d.bias.shape == (1, 2, 2)
    assert "bias_period=(2, 2)" in repr(d)


def test_layers_match_plain_pytorch_modules():
    """The trained layers are exactly Conv2d + PixelShuffle and Upsample + Conv2d."""
    torch.manual_seed(0)
    sp = upconv.SubPixelConv2d(4, 3, 3, 2)
    x = torch.randn(2, 4, 5, 6)
    expected = F.pixel_shuffle(F.conv2d(x, sp.weight, sp.bias, padding=1), 2)
    torch.testing.assert_close(sp(x), expected)
    rc = upconv.ResizeConv2d(4, 3, 3, 2)
    up = torch.nn.Upsample(scale_factor=2, mode="nearest")(x)
    torch.testing.assert_close(rc(x), F.conv2d(up, rc.weight, rc.bias, padding=1))


def test_deconv2d_module_matches_conv_transpose2d_module():
    torch.manual_seed(0)
    ref = torch.nn.ConvTranspose2d(3, 4, (3, 5), stride=(2, 3), padding=(1, 2),
                                   output_padding=(1, 0))
    mine = upconv.Deconv2d(3, 4, (3, 5), stride=(2, 3), padding=(1, 2), output_padding=(1, 0))
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 4, 5)
    for algorithm in upconv.ALGORITHMS:
        mine.algorithm = algorithm
        torch.testing.assert_close(mine(x), ref(x))


def test_to_deconv_leaves_original_untouched_and_state_dict_roundtrips():
    layer = upconv.SubPixelConv2d(2, 1, 3, 3)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    d = layer.to_deconv("tdc")
    for k, v in layer.state_dict().items():
        assert torch.equal(v, before[k])
    d2 = upconv.Deconv2d(2, 1, 9, 3, 3, bias_period=3, algorithm="revd")
    d2.load_state_dict(d.state_dict())
    x = torch.randn(1, 2, 4, 4)
    torch.testing.assert_close(d2(x), layer(x))


def test_algorithm_attribute_validated():
    d = upconv.Deconv2d(1, 1, 3)
    with pytest.raises(ValueError, match=r"algorithm must be one of .*revd2"):
        d.algorithm = "fast"


@pytest.mark.parametrize("layer_cls", LAYERS)
def test_layers_trace_with_jit(layer_cls):
    """Under tracing, sizes are 0-d tensors; the legacy ONNX exporter traces like this."""
    layer = layer_cls(2, 1, (2, 3), 2)
    x = torch.randn(1, 2, 5, 6)
    traced = torch.jit.trace(layer, x)
    torch.testing.assert_close(traced(torch.randn(1, 2, 5, 6) * 0 + x), layer(x))
