"""The five reference algorithms (and deconv2d's dispatch) equal PyTorch's conv_transpose2d."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from oracle import conv_transpose2d_oracle
from strategies import deconv_problems

import upconv
from upconv.algorithms import REFERENCES

TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-10)}


def make(p: dict, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(p["n"], p["cin"], p["h"], p["w"], generator=g, dtype=dtype)
    w = torch.randn(p["cin"], p["c"], p["kh"], p["kw"], generator=g, dtype=dtype)
    b = None
    if p["bias"] == "channel":
        b = torch.randn(p["c"], generator=g, dtype=dtype)
    elif p["bias"] == "periodic":
        b = torch.randn(p["c"], *p["period"], generator=g, dtype=dtype)
    return x, w, b


@pytest.mark.parametrize("algorithm", upconv.ALGORITHMS)
@given(p=deconv_problems(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_reference_equals_conv_transpose2d(algorithm, p, dtype):
    x, w, b = make(p, dtype)
    expected = conv_transpose2d_oracle(x, w, b, p["stride"], p["padding"], p["output_padding"])
    got = upconv.deconv2d(x, w, b, p["stride"], p["padding"], p["output_padding"],
                          algorithm=algorithm)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, **TOL[dtype])


@pytest.mark.parametrize("algorithm", upconv.ALGORITHMS)
@given(p=deconv_problems())
def test_reference_functions_directly(algorithm, p):
    """The readable references themselves (not just whatever deconv2d dispatches to)."""
    x, w, b = make(p)
    call = upconv.functional.check_deconv(x, w, b, p["stride"], p["padding"], p["output_padding"])
    got = REFERENCES[algorithm](call.x, call.weight, call.bias, call.stride, call.padding,
                                call.output_padding, call.out_size)
    expected = conv_transpose2d_oracle(x, w, b, p["stride"], p["padding"], p["output_padding"])
    torch.testing.assert_close(got, expected, **TOL[torch.float64])


@pytest.mark.parametrize("algorithm", upconv.ALGORITHMS)
@pytest.mark.parametrize(
    "h, w, k, stride, padding, output_padding",
    [
        (1, 1, 3, 2, 0, 0),          # 1×1 input
        (1, 1, 1, 1, 0, 0),          # K = 1, stride 1: a 1×1 conv
        (4, 5, 1, 3, 0, 2),          # K = 1 < stride: most outputs receive no tap
        (3, 3, 2, 5, 0, 4),          # stride > kernel, output padding
        (5, 4, (2, 7), (4, 1), (1, 3), (3, 0)),  # non-square everything
        (2, 3, 9, 3, 3, 0),          # D-SP ×3 geometry
        (6, 2, 5, 1, 2, 0),          # stride 1: an ordinary (full → same) conv
        (3, 4, 4, 2, (3, 0, 1, 2), 1),  # asymmetric crops with output padding
    ],
)
def test_edge_cases(algorithm, h, w, k, stride, padding, output_padding):
    kh, kw = k if isinstance(k, tuple) else (k, k)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    wt = torch.randn(3, 2, kh, kw, generator=g, dtype=torch.float64)
    b = torch.randn(2, generator=g, dtype=torch.float64)
    s = upconv.shapes.pair(stride, "stride")
    pad4 = upconv.shapes.padding4(padding)
    op = upconv.shapes.pair(output_padding, "op")
    expected = conv_transpose2d_oracle(x, wt, b, s, pad4, op)
    got = upconv.deconv2d(x, wt, b, stride, padding, output_padding, algorithm=algorithm)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_pytorch_padding_pair_matches_torch_directly():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 2, 5, 4, generator=g)
    w = torch.randn(2, 3, 4, 3, generator=g)
    for algorithm in upconv.ALGORITHMS:
        got = upconv.deconv2d(x, w, None, (2, 3), (1, 2), (1, 0), algorithm=algorithm)
        torch.testing.assert_close(got, F.conv_transpose2d(x, w, None, (2, 3), (1, 2), (1, 0)))


def test_auto_is_accepted_and_exact():
    x, w = torch.randn(1, 2, 4, 4), torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(upconv.deconv2d(x, w, stride=3, padding=3, algorithm="auto"),
                               F.conv_transpose2d(x, w, stride=3, padding=3))


def test_references_are_differentiable():
    """Training through a Deconv2d works with every reference (autograd flows)."""
    for name, fn in REFERENCES.items():
        x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
        w = torch.randn(2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
        fn(x, w, None, (2, 2), (1, 1, 1, 1), (0, 0), (6, 6)).sum().backward()
        assert x.grad is not None and w.grad is not None, name


@given(n=st.integers(1, 2), c=st.integers(1, 4), bh=st.integers(1, 4), bw=st.integers(1, 4),
       h=st.integers(1, 13), w=st.integers(1, 13), channels_last=st.booleans())
def test_add_bias_adds_the_periodic_bias_at_each_output_modulo_its_period(
        n, c, bh, bw, h, w, channels_last):
    from upconv.algorithms._common import add_bias

    g = torch.Generator().manual_seed(n * 1000 + c * 100 + h * 10 + w)
    y = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last)
    b = torch.randn(c, bh, bw, generator=g, dtype=torch.float64)
    rows, cols = torch.arange(h) % bh, torch.arange(w) % bw
    got = add_bias(y, b)
    torch.testing.assert_close(got, y + b[:, rows][:, :, cols], rtol=0, atol=0)
    assert got.shape == y.shape
    if channels_last and c > 1 and h * w > 1:  # the result keeps the input's layout
        assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(add_bias(y, b[:, 0, 0]), y + b[:, 0, 0, None, None],
                               rtol=0, atol=0)
