"""Deconv2d under graph capture: jit tracing (and the TorchScript ONNX exporter) records standard
ops that compute what the eager engine computes, for dynamic input sizes; torch.compile and
torch.fx record the upconv operator (tests/test_ops.py covers it further)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import upconv
from upconv.convert.onnx_convert import run_onnx
from upconv.functional import deconv2d_standard_ops


def _layer(seed=0, **kw) -> upconv.Deconv2d:
    torch.manual_seed(seed)
    args = {"in_channels": 3, "out_channels": 2, "kernel_size": (6, 4), "stride": (3, 2),
            "padding": (4, 2, 1, 3), "output_padding": (1, 1), "bias_period": (3, 2),
            "algorithm": "stdd"}  # eager side: a reference algorithm
    args.update(kw)
    return upconv.Deconv2d(**args)


@settings(max_examples=30, deadline=None)
@given(sh=st.integers(1, 3), sw=st.integers(1, 3), kh=st.integers(1, 6), kw=st.integers(1, 6),
       pads=st.lists(st.integers(0, 3), min_size=4, max_size=4), oph=st.integers(0, 2),
       opw=st.integers(0, 2), bias=st.sampled_from(["none", "plain", "periodic"]),
       bh=st.integers(1, 3), bw=st.integers(1, 3), h=st.integers(1, 5), w=st.integers(1, 5))
def test_standard_ops_match_the_engine(sh, sw, kh, kw, pads, oph, opw, bias, bh, bw, h, w):
    oph, opw = oph % sh, opw % sw
    top, bottom, left, right = pads
    if (h - 1) * sh + kh - top - bottom + oph < 1 or (w - 1) * sw + kw - left - right + opw < 1:
        return  # crops away the whole output: rejected by deconv2d, nothing to compare
    x = torch.randn(2, 2, h, w, dtype=torch.float64)
    weight = torch.randn(2, 3, kh, kw, dtype=torch.float64)
    b = {"none": None, "plain": torch.randn(3, dtype=torch.float64),
         "periodic": torch.randn(3, bh, bw, dtype=torch.float64)}[bias]
    want = upconv.deconv2d(x, weight, b, (sh, sw), pads, (oph, opw), algorithm="stdd")
    got = deconv2d_standard_ops(x, weight, b, (sh, sw), tuple(pads), (oph, opw))
    torch.testing.assert_close(got, want)


def test_onnx_export_emits_conv_transpose_with_dynamic_sizes():
    layer = _layer()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(layer, (torch.randn(1, 3, 4, 5),), buf, dynamo=False,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}}, opset_version=17)
    model = onnx.load_from_string(buf.getvalue())
    ops = {n.op_type for n in model.graph.node}
    assert "ConvTranspose" in ops and "Tile" in ops
    for shape in ((1, 3, 4, 5), (2, 3, 7, 3)):
        x = torch.randn(*shape)
        with torch.no_grad():
            want = layer(x).numpy()
        np.testing.assert_allclose(run_onnx(model, {"x": x.numpy()})[0], want,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("capture", ["jit.trace", "fx", "compile"])
def test_other_captures_match_eager(capture):
    layer = _layer(seed=1)
    x = torch.randn(1, 3, 5, 4)
    with torch.no_grad():
        want = layer(x)
        if capture == "jit.trace":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                captured = torch.jit.trace(layer, (x,))
        elif capture == "fx":
            captured = torch.fx.symbolic_trace(layer)
            assert "upconv.deconv2d" in captured.code
        else:
            captured = torch.compile(layer, backend="eager", dynamic=True)
        torch.testing.assert_close(captured(x), want, rtol=1e-5, atol=1e-6)
