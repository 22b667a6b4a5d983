"""upconv.convert_onnx on exported architectures and hand-built graphs, checked in ONNX Runtime."""

from __future__ import annotations

import archs
import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import upconv
from upconv.convert import VerificationError
from upconv.convert import onnx_subpixel as onnx_subpixel_module
from upconv.convert.onnx_convert import run_onnx
from upconv.convert.onnx_export import export_onnx
from upconv.convert.onnx_resize import reduces_to_floor

CTMS = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
        "asymmetric", "tf_half_pixel_for_nn"]
NEAREST_MODES = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


def _counts(report) -> dict[str, int]:
    kinds = [s.kind for s in report.converted]
    return {"sub-pixel": kinds.count("sub-pixel"), "resize": kinds.count("resize"),
            "left alone": len(report.skipped)}


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return run_onnx(model, {model.graph.input[0].name: x})[0]


def _dims(model: onnx.ModelProto) -> list:
    return [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]


@pytest.mark.parametrize("name", list(archs.ARCHITECTURES))
def test_architecture_onnx_paths(name):
    model, expected, shape = archs.build(name)
    x = torch.randn(*shape)
    bigger = torch.randn(2, shape[1], shape[2] + 4, shape[3] + 8)
    with torch.no_grad():
        want_small, want_big = model(x).numpy(), model(bigger).numpy()

    # 1. ONNX-level conversion of the original export.
    original = export_onnx(model, x)
    before = original.SerializeToString()
    converted, report = upconv.convert_onnx(original, input_shape=shape)
    assert original.SerializeToString() == before  # input untouched
    assert _counts(report) == archs.ONNX_EXPECTED.get(name, expected), str(report)
    assert report.verified and report.max_rel_error < 1e-5
    ops = [n.op_type for n in converted.graph.node]
    assert ops.count("ConvTranspose") == len(report.converted) + ("fsrcnn" in name)
    if name.startswith(("espcn", "edsr")):
        assert "DepthToSpace" not in ops
    assert _dims(converted) == ["N", shape[1], "H", "W"]  # dynamic axes survive
    for xx, want in ((x, want_small), (bigger, want_big)):
        np.testing.assert_allclose(_ort(converted, xx.numpy()), want, rtol=1e-4, atol=1e-5)

    # 2. ONNX export of the torch-converted model.
    torch_converted, _ = upconv.convert(model, x, algorithm="stdd")
    exported = export_onnx(torch_converted, x)
    assert _dims(exported) == ["N", shape[1], "H", "W"]
    for xx, want in ((x, want_small), (bigger, want_big)):
        np.testing.assert_allclose(_ort(exported, xx.numpy()), want, rtol=1e-4, atol=1e-5)


def test_dynamo_export_of_converted_model():
    model, _, _ = archs.build("edsr-x4")
    converted, _ = upconv.convert(model, algorithm="stdd")
    x = torch.randn(1, 3, 5, 7)
    program = torch.onnx.export(converted, (x,), dynamo=True, verbose=False,
                                dynamic_shapes=({0: "N", 2: "H", 3: "W"},))
    with torch.no_grad():
        np.testing.assert_allclose(_ort(program.model_proto, x.numpy()), model(x).numpy(),
                                   rtol=1e-4, atol=1e-5)


# --- hand-built graphs ---------------------------------------------------------------------

def _model(nodes, inits, in_shape, opset=19) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def _subpixel_graph(mode="CRD", bias=True, cin=3, c=2, r=2, k=3, rng=None, pads=None):
    rng = rng or np.random.default_rng(0)
    inits = {"w": rng.standard_normal((c * r * r, cin, k, k)).astype(np.float32)}
    inputs = ["x", "w"]
    if bias is not None and bias is not False:
        inits["b"] = (rng.standard_normal(c * r * r) if bias is True else bias).astype(np.float32)
        inputs.append("b")
    p = k // 2
    nodes = [helper.make_node("Conv", inputs, ["t"], pads=pads or [p, p, p, p], name="conv"),
             helper.make_node("DepthToSpace", ["t"], ["y"], blocksize=r, mode=mode, name="d2s")]
    return _model(nodes, inits, ["N", cin, "H", "W"])


@pytest.mark.parametrize("mode", ["CRD", "DCR"])
@pytest.mark.parametrize("bias", [True, False])
def test_depth_to_space_modes_and_bias(mode, bias):
    original = _subpixel_graph(mode, bias, r=3)
    converted, report = upconv.convert_onnx(original)
    (site,) = report.converted
    assert site.bias == ("periodic" if bias else "none") and mode in site.pattern
    ops = [n.op_type for n in converted.graph.node]
    assert ops[0] == "ConvTranspose" and "DepthToSpace" not in ops
    assert ("Tile" in ops) == bias
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 7)).astype(np.float32)
    np.testing.assert_allclose(_ort(converted, x), _ort(original, x), rtol=1e-5, atol=1e-5)


def test_uniform_periodic_bias_stays_a_plain_bias():
    per_channel = np.repeat(np.array([0.5, -1.0], np.float32), 4)  # CRD: c·r² + phase
    converted, report = upconv.convert_onnx(_subpixel_graph("CRD", per_channel))
    assert report.converted[0].bias == "per-channel"
    assert [n.op_type for n in converted.graph.node] == ["ConvTranspose"]


def _resize_conv_graph(ctm, nearest, scales=(1, 1, 2, 2), mode="nearest", conv_kw=None,
                       in_shape=("N", 2, "H", "W"), sizes=None, c=3):
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((c, 2, 3, 3)).astype(np.float32),
             "b": rng.standard_normal(c).astype(np.float32)}
    if sizes is None:
        inits["s"] = np.asarray(scales, np.float32)
        rin = ["x", "", "s"]
    else:
        inits["sz"] = np.asarray(sizes, np.int64)
        rin = ["x", "", "", "sz"]
    conv_kw = {"pads": [1, 1, 1, 1], **(conv_kw or {})}
    nodes = [helper.make_node("Resize", rin, ["u"], mode=mode, name="resize",
                              coordinate_transformation_mode=ctm, nearest_mode=nearest),
             helper.make_node("Conv", ["u", "w", "b"], ["y"], name="conv", **conv_kw)]
    return _model(nodes, inits, list(in_shape))


@pytest.mark.parametrize("ctm", CTMS)
@pytest.mark.parametrize("nearest", NEAREST_MODES)
def test_coordinate_modes_that_reduce_to_floor(ctm, nearest):
    # ONNX Runtime is the judge of which modes repeat pixels: reduces_to_floor must agree.
    x = np.arange(2 * 5 * 4, dtype=np.float32).reshape(1, 2, 5, 4)
    for rh, rw in ((2, 2), (3, 3), (4, 1), (1, 5)):
        node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest",
                                coordinate_transformation_mode=ctm, nearest_mode=nearest)
        resize_only = _model([node], {"s": np.asarray([1, 1, rh, rw], np.float32)},
                             [1, 2, 5, 4])
        repeats = np.array_equal(_ort(resize_only, x), x.repeat(rh, 2).repeat(rw, 3))
        assert repeats == (reduces_to_floor(ctm, nearest, rh) and
                           reduces_to_floor(ctm, nearest, rw)), (rh, rw)
    converted, report = upconv.convert_onnx(_resize_conv_graph(ctm, nearest, (1, 1, 3, 2)))
    if reduces_to_floor(ctm, nearest, 3) and reduces_to_floor(ctm, nearest, 2):
        assert report.converted[0].scale == (3, 2) and not report.skipped
        assert [n.op_type for n in converted.graph.node] == ["ConvTranspose"]
    else:
        assert not report.converted and "does not read floor" in report.skipped[0].reason


def test_resize_given_by_constant_sizes_on_static_input():
    graph = _resize_conv_graph("asymmetric", "floor", sizes=[1, 2, 12, 10],
                               in_shape=(1, 2, 4, 5))
    _, report = upconv.convert_onnx(graph)
    assert report.converted[0].scale == (3, 2)
    dynamic = _resize_conv_graph("asymmetric", "floor", sizes=[1, 2, 12, 10])
    _, report = upconv.convert_onnx(dynamic, input_shape=(1, 2, 4, 5))
    assert "not static" in report.skipped[0].reason


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"mode": "linear"}, "linear resize"),
    ({"scales": (1, 1, 1.5, 1.5)}, "non-integer scale"),
    ({"scales": (2, 1, 2, 2)}, "batch or channel"),
    ({"conv_kw": {"pads": [2, 2, 2, 2]}}, "pads more than a same conv"),
    ({"conv_kw": {"pads": [2, 2, 2, 2], "dilations": [2, 2]}}, "dilation"),
    ({"conv_kw": {"strides": [2, 2]}}, "stride"),
])
def test_resize_candidates_left_alone(kwargs, reason):
    kwargs.setdefault("scales", (1, 1, 2, 2))
    original = _resize_conv_graph("asymmetric", "floor", **kwargs)
    converted, report = upconv.convert_onnx(original, input_shape=(1, 2, 6, 6))
    assert not report.converted and reason in report.skipped[0].reason, str(report)
    assert [n.op_type for n in converted.graph.node] == ["Resize", "Conv"]


def test_conv_used_elsewhere_and_grouped_conv_left_alone():
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((8, 2, 3, 3)).astype(np.float32),
             "g": rng.standard_normal((8, 1, 3, 3)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["t"], pads=[1, 1, 1, 1], name="shared"),
             helper.make_node("DepthToSpace", ["t"], ["a"], blocksize=2, name="d2s_a"),
             helper.make_node("ReduceMean", ["t"], ["m"], keepdims=1, name="mean"),
             helper.make_node("Conv", ["x", "g"], ["t2"], pads=[1, 1, 1, 1], group=2,
                              name="grouped"),
             helper.make_node("DepthToSpace", ["t2"], ["b"], blocksize=2, name="d2s_b"),
             helper.make_node("Add", ["a", "b"], ["ab"]),
             helper.make_node("Add", ["ab", "m"], ["y"])]
    _, report = upconv.convert_onnx(_model(nodes, inits, [1, 2, 5, 5]))
    reasons = {s.path: s.reason for s in report.skipped}
    assert not report.converted
    assert "consumers" in reasons["shared → d2s_a"]
    assert "groups=2" in reasons["grouped → d2s_b"]


def test_files_errors_and_verification(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    onnx.save(_subpixel_graph(), str(path))
    _, report = upconv.convert_onnx(path)
    assert len(report.converted) == 1 and "verified on input 1x3x32x32" in str(report)
    with pytest.raises(ValueError, match="not found"):
        upconv.convert_onnx(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        upconv.convert_onnx(tmp_path / "bad.onnx")
    unshaped = _subpixel_graph()
    unshaped.graph.output[0].type.tensor_type.ClearField("shape")
    with pytest.raises(ValueError, match=r"fails onnx\.checker"):
        upconv.convert_onnx(unshaped)
    with pytest.raises(TypeError, match="ModelProto or a path"):
        upconv.convert_onnx(torch.nn.Conv2d(1, 1, 1))

    real = onnx_subpixel_module.subpixel_deconv

    def wrong(conv, scale, algorithm):
        deconv = real(conv, scale, algorithm)
        with torch.no_grad():
            deconv.weight[0, 0, 1, 1] += 1.0
        return deconv

    monkeypatch.setattr(onnx_subpixel_module, "subpixel_deconv", wrong)
    with pytest.raises(VerificationError, match="max abs error"):
        upconv.convert_onnx(path)
    _, report = upconv.convert_onnx(path, verify=False)
    assert not report.verified


@settings(max_examples=25, deadline=None)
@given(kh=st.integers(1, 4), kw=st.integers(1, 4), r=st.integers(1, 3), rw=st.integers(1, 3),
       resize=st.booleans(), bias=st.booleans(), dcr=st.booleans(),
       auto_pad=st.sampled_from(["NOTSET", "SAME_UPPER", "SAME_LOWER"]),
       h=st.integers(1, 5), w=st.integers(1, 5))
def test_any_onnx_site_geometry(kh, kw, r, rw, resize, bias, dcr, auto_pad, h, w):
    rng = np.random.default_rng(kh + 7 * kw + 13 * r)
    cin, c = 2, 2
    cout = c if resize else c * r * r
    inits = {"w": rng.standard_normal((cout, cin, kh, kw)).astype(np.float32)}
    conv_in = ["u" if resize else "x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(cout).astype(np.float32)
        conv_in.append("b")
    if auto_pad == "NOTSET":  # explicit same padding, the odd extra pixel after
        pad = {"pads": [(kh - 1) // 2, (kw - 1) // 2, kh // 2, kw // 2]}
    else:
        pad = {"auto_pad": auto_pad}
    if resize:
        inits["s"] = np.asarray([1, 1, r, rw], np.float32)
        nodes = [helper.make_node("Resize", ["x", "", "s"], ["u"], mode="nearest",
                                  coordinate_transformation_mode="asymmetric",
                                  nearest_mode="floor"),
                 helper.make_node("Conv", conv_in, ["y"], **pad)]
    else:
        nodes = [helper.make_node("Conv", conv_in, ["t"], **pad),
                 helper.make_node("DepthToSpace", ["t"], ["y"], blocksize=r,
                                  mode="DCR" if dcr else "CRD")]
    original = _model(nodes, inits, ["N", cin, "H", "W"])
    converted, report = upconv.convert_onnx(original, input_shape=(1, cin, h, w))
    (site,) = report.converted
    assert site.kernel_size == (kh, kw)
    assert converted.graph.node[0].op_type == "ConvTranspose"
    x = rng.standard_normal((2, cin, h + 1, w + 2)).astype(np.float32)
    np.testing.assert_allclose(_ort(converted, x), _ort(original, x), rtol=1e-5, atol=1e-5)
