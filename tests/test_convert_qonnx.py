"""Ours against QONNX's SubPixelToDeconvolution / ResizeConvolutionToDeconvolution.

Where QONNX applies (unbiased CRD sub-pixel convs, nearest resize convs) both rewrites must
compute the original's output; on a biased sub-pixel conv QONNX leaves the graph as it was
and ours converts it.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import upconv
from upconv.convert.onnx_convert import run_onnx

qonnx_wrapper = pytest.importorskip("qonnx.core.modelwrapper")
from qonnx.transformation.infer_shapes import InferShapes  # noqa: E402
from qonnx.transformation.resize_conv_to_deconv import (  # noqa: E402
    ResizeConvolutionToDeconvolution,
)
from qonnx.transformation.subpixel_to_deconv import SubPixelToDeconvolution  # noqa: E402

SHAPE = (1, 3, 6, 7)


def _graph(bias: bool, r: int = 2, k: int = 3) -> onnx.ModelProto:
    """x → sub-pixel conv (×r, CRD) → relu → nearest resize ×2 → conv (biased) → relu → y."""
    rng = np.random.default_rng(r + 10 * k + bias)
    p = k // 2
    inits = {"w1": rng.standard_normal((4 * r * r, 3, k, k)).astype(np.float32),
             "w2": rng.standard_normal((2, 4, k, k)).astype(np.float32),
             "b2": rng.standard_normal(2).astype(np.float32),
             "s": np.asarray([1, 1, 2, 2], np.float32)}
    conv1_in = ["x", "w1"]
    if bias:
        inits["b1"] = rng.standard_normal(4 * r * r).astype(np.float32)
        conv1_in.append("b1")
    nodes = [
        helper.make_node("Conv", conv1_in, ["t"], pads=[p] * 4, kernel_shape=[k, k],
                         strides=[1, 1], group=1, dilations=[1, 1], name="subpixel_conv"),
        helper.make_node("DepthToSpace", ["t"], ["u"], blocksize=r, mode="CRD", name="shuffle"),
        helper.make_node("Relu", ["u"], ["v"]),
        helper.make_node("Resize", ["v", "", "s"], ["z"], mode="nearest", name="resize",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Conv", ["z", "w2", "b2"], ["c"], pads=[p] * 4, kernel_shape=[k, k],
                         strides=[1, 1], group=1, dilations=[1, 1], name="resize_conv"),
        # QONNX's SubPixelToDeconvolution fails on a Conv that feeds no node: end with a Relu.
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, None, None])],
        [numpy_helper.from_array(v, n) for n, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _qonnx(model: onnx.ModelProto) -> onnx.ModelProto:
    wrapped = qonnx_wrapper.ModelWrapper(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = wrapped.transform(InferShapes())
        wrapped = wrapped.transform(SubPixelToDeconvolution())
        wrapped = wrapped.transform(ResizeConvolutionToDeconvolution())
    return wrapped.model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return run_onnx(model, {"x": x})[0]


@pytest.mark.parametrize(("r", "k"), [(2, 3), (3, 3), (2, 5)])
def test_agrees_with_qonnx_where_qonnx_applies(r, k):
    original = _graph(bias=False, r=r, k=k)
    ours, report = upconv.convert_onnx(original)
    theirs = _qonnx(original)
    ops_theirs = [n.op_type for n in theirs.graph.node]
    assert ops_theirs.count("ConvTranspose") == 2, ops_theirs  # QONNX converted both sites
    assert [s.kind for s in report.converted] == ["sub-pixel", "resize"]
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    want = _run(original, x)
    np.testing.assert_allclose(_run(theirs, x), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_run(ours, x), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_run(ours, x), _run(theirs, x), rtol=1e-4, atol=1e-4)


def test_biased_subpixel_qonnx_skips_ours_converts():
    original = _graph(bias=True)
    theirs = _qonnx(original)
    assert "DepthToSpace" in [n.op_type for n in theirs.graph.node]  # QONNX left it
    ours, report = upconv.convert_onnx(original)
    assert "DepthToSpace" not in [n.op_type for n in ours.graph.node]
    assert report.converted[0].bias == "periodic"
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    np.testing.assert_allclose(_run(ours, x), _run(original, x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_run(ours, x), _run(theirs, x), rtol=1e-4, atol=1e-4)
