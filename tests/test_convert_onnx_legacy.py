"""Legacy ONNX spellings of the upsamplers: pixel shuffle as Reshape → Transpose → Reshape,
``Upsample`` (opset 7–9), ``Resize``-10, and scales / sizes / reshape targets computed from
``Shape`` chains. Every converted graph is compared with the original in ONNX Runtime, on the
verification size and on another one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from onnx_cases import convert_and_check, export, make_model, ops, ort

import upconv
from upconv.convert import VerificationError
from upconv.convert import onnx_layout as onnx_layout_module
from upconv.sr import PRETRAINED, load_pretrained

SHUFFLE_OPS = {"DepthToSpace", "Reshape", "Transpose", "Unsqueeze", "Squeeze"}
RESIZE_OPS = {"Resize", "Upsample"}


class SubPixel(torch.nn.Module):
    def __init__(self, r: int, cin: int = 3, c: int = 2) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, c * r * r, 3, padding=1)
        self.r = r

    def forward(self, x):
        return F.pixel_shuffle(self.conv(x), self.r)


class ResizeConv(torch.nn.Module):
    """nearest ×scale by ``scale_factor``, or by a ``size`` computed from the input's shape."""

    def __init__(self, scale, by_size: bool = False) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)
        self.scale, self.by_size = scale, by_size

    def forward(self, x):
        rh, rw = (self.scale, self.scale) if isinstance(self.scale, int) else self.scale
        if self.by_size:
            u = F.interpolate(x, size=(x.shape[2] * rh, x.shape[3] * rw), mode="nearest")
        else:
            u = F.interpolate(x, scale_factor=(rh, rw), mode="nearest")
        return self.conv(u)


@pytest.mark.parametrize("opset", [9, 10, 11, 13, 17])
@pytest.mark.parametrize("dynamic", [True, False])
@pytest.mark.parametrize("r", [2, 3])
def test_pixel_shuffle_exports_every_opset(opset, dynamic, r):
    torch.manual_seed(r)
    model = SubPixel(r).eval()
    x = torch.randn(1, 3, 5, 6)
    original = export(model, x, opset, dynamic=dynamic)
    if opset <= 10:  # the TorchScript exporter spells pixel_shuffle as a reshape chain there
        assert "DepthToSpace" not in ops(original) and "Transpose" in ops(original)
    shapes = [(1, 3, 5, 6)] + ([(2, 3, 7, 4)] if dynamic else [])
    converted, report = convert_and_check(original, shapes)
    (site,) = report.converted
    assert site.scale == (r, r) and "CRD" in site.pattern and not report.skipped, str(report)
    assert ops(converted)[0] == "ConvTranspose" and not SHUFFLE_OPS & set(ops(converted))
    with torch.no_grad():
        np.testing.assert_allclose(ort(converted, x.numpy()), model(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("opset", [9, 10, 11, 13, 17])
@pytest.mark.parametrize("by_size", [False, True])
def test_nearest_resize_exports_every_opset(opset, by_size):
    torch.manual_seed(opset)
    scale = (2, 3)
    model = ResizeConv(scale, by_size).eval()
    x = torch.randn(1, 3, 4, 5)
    original = export(model, x, opset)
    assert ("Upsample" if opset == 9 else "Resize") in ops(original)
    converted, report = convert_and_check(original, [(1, 3, 4, 5), (2, 3, 6, 3)])
    (site,) = report.converted
    assert site.kind == "resize" and site.scale == scale and not report.skipped, str(report)
    assert ops(converted) == ["ConvTranspose"], ops(converted)  # the Shape arithmetic went too


def test_dynamo_export_of_a_size_computed_resize():
    """The dynamo exporter writes ``size=(2·H, 3·W)`` as Shape → Squeeze → Mul → Reshape →
    Concat (its sub-pixel spelling, DepthToSpace, is covered by the ESPCN test below)."""
    original = export(ResizeConv((2, 3), by_size=True), torch.randn(1, 3, 4, 5), 18, dynamo=True)
    assert "Shape" in ops(original)
    converted, report = convert_and_check(original, [(1, 3, 4, 5), (2, 3, 7, 6)])
    assert [s.scale for s in report.converted] == [(2, 3)] and ops(converted) == [
        "ConvTranspose"], str(report)


class SkipSized(torch.nn.Module):
    """U-Net style: upsample a half-size map to the size of the skip tensor (``size=``).

    The ratio is 2 only for even inputs, so it is no integer scale and must be left alone."""

    def __init__(self) -> None:
        super().__init__()
        self.down = torch.nn.Conv2d(3, 3, 3, stride=2, padding=1)
        self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        u = F.interpolate(self.down(x), size=x.shape[2:], mode="nearest")
        return self.conv(u + x)


class OddSized(torch.nn.Module):
    """``size = 2·H + 1``: never an integer multiple."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, size=(2 * x.shape[2] + 1, 2 * x.shape[3]),
                                       mode="nearest"))


@pytest.mark.parametrize("opset", [9, 11, 17])
def test_sizes_that_are_not_provably_integer_scales_left_alone(opset):
    x = torch.randn(1, 3, 8, 8)  # 8 → 16 is ×2 here, but not for every size
    for model, reason in ((SkipSized(), "its consumer is not a Conv input (it is Add"),
                          (OddSized(), "not the same for every input size")):
        original = export(model.eval(), x, opset)
        _, report = upconv.convert_onnx(original, input_shape=(1, 3, 8, 8))
        assert not report.converted and len(report.skipped) == 1, str(report)
        assert reason in report.skipped[0].reason, str(report)
    # the resize → conv pair of SkipSized without the add: sizes from another tensor's shape
    nodes = [helper.make_node("Conv", ["x", "wd"], ["d"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Shape", ["x"], ["sx"]),
             helper.make_node("Resize", ["d", "", "", "sx"], ["u"], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
             helper.make_node("Conv", ["u", "w"], ["y"], pads=[1, 1, 1, 1])]
    rng = np.random.default_rng(0)
    graph = make_model(nodes, {"wd": rng.standard_normal((3, 3, 3, 3)).astype(np.float32),
                               "w": rng.standard_normal((2, 3, 3, 3)).astype(np.float32)},
                       ["N", 3, "H", "W"], opset=13)
    _, report = upconv.convert_onnx(graph, input_shape=(1, 3, 8, 8))
    assert "not the same for every input size" in report.skipped[0].reason, str(report)


@pytest.mark.parametrize(("op", "opset"), [("Upsample", 7), ("Upsample", 9), ("Resize", 10)])
@pytest.mark.parametrize("scale", [(2, 2), (3, 1), (1, 4)])
def test_upsample_and_resize10_hand_built(op, opset, scale):
    rng = np.random.default_rng(opset)
    inits = {"w": rng.standard_normal((2, 3, 3, 3)).astype(np.float32),
             "b": rng.standard_normal(2).astype(np.float32)}
    scales = [1.0, 1.0, float(scale[0]), float(scale[1])]
    if opset == 7:
        up = helper.make_node(op, ["x"], ["u"], mode="nearest", scales=scales)
    else:
        inits["s"] = np.asarray(scales, np.float32)
        up = helper.make_node(op, ["x", "s"], ["u"], mode="nearest")
    conv = helper.make_node("Conv", ["u", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    original = make_model([up, conv], inits, ["N", 3, "H", "W"], opset=opset)
    converted, report = convert_and_check(original, [(1, 3, 4, 5), (2, 3, 3, 7)])
    (site,) = report.converted
    assert site.scale == scale and op in site.pattern and ops(converted) == ["ConvTranspose"]
    lin = helper.make_node(op, list(up.input), ["u"], mode="linear",
                           **({"scales": scales} if opset == 7 else {}))
    linear = make_model([lin, conv], inits, ["N", 3, "H", "W"], opset=opset)
    _, report = upconv.convert_onnx(linear, input_shape=(1, 3, 4, 5))
    assert not report.converted and "linear resize" in report.skipped[0].reason


def _chain_graph(order: str, c: int, rh: int, rw: int, targets: str, cin: int = 2):
    """Conv (c·rh·rw channels) then a hand-written Reshape → Transpose → Reshape shuffle.

    ``order``: CRD (PyTorch), DCR, "permuted" (channel = (c·rw + b)·rh + a) or "tiling" (the
    block index major to the row: not a pixel shuffle). ``targets``: "static" (constant
    shapes on a static input), "special" (ONNX's 0 = copy / -1 = infer) or "shape" (computed
    from Shape / Gather / Mul / Concat, the way exporters write ``x.view(n, c, r, r, h, w)``).
    """
    k = c * rh * rw
    split, perm = {
        "CRD": ([c, rh, rw], [0, 1, 4, 2, 5, 3]),
        "DCR": ([rh, rw, c], [0, 3, 4, 1, 5, 2]),
        "permuted": ([c, rw, rh], [0, 1, 4, 3, 5, 2]),
        "tiling": ([c, rh, rw], [0, 1, 2, 4, 3, 5]),
    }[order]
    rng = np.random.default_rng(k)
    inits = {"w": rng.standard_normal((k, cin, 3, 3)).astype(np.float32),
             "b": rng.standard_normal(k).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["t"], pads=[1, 1, 1, 1], name="conv")]
    if targets == "static":
        n, h, w = 1, 4, 5
        inits["s1"] = np.asarray([n, *split, h, w], np.int64)
        inits["s2"] = np.asarray([n, c, h * rh, w * rw], np.int64)
    elif targets == "special":  # as the TorchScript exporter writes it at opset 9/10
        first = [-1 if s == c and i == split.index(c) else s for i, s in enumerate(split)]
        nodes += [helper.make_node("Unsqueeze", ["t", "axes23"], ["t6"])]
        inits |= {"axes23": np.asarray([2, 3], np.int64), "axes35": np.asarray([3, 5], np.int64),
                  "s1": np.asarray([0, *first, 0, 0], np.int64),
                  "s2": np.asarray([0, 0, -1, 1, 0, 0], np.int64),
                  "s3": np.asarray([0, 0, 0, 0, -1, 1], np.int64)}
    else:
        nodes += [helper.make_node("Shape", ["t"], ["st"]),
                  helper.make_node("Slice", ["st", "z", "one"], ["n"]),
                  helper.make_node("Gather", ["st", "i2"], ["h"], axis=0),
                  helper.make_node("Gather", ["st", "i3"], ["w_"], axis=0),
                  helper.make_node("Concat", ["n", "split", "h", "w_"], ["s1"], axis=0),
                  helper.make_node("Mul", ["h", "rh"], ["ho"]),
                  helper.make_node("Mul", ["w_", "rw"], ["wo"]),
                  helper.make_node("Concat", ["n", "cc", "ho", "wo"], ["s2"], axis=0)]
        inits |= {"z": np.asarray([0], np.int64), "one": np.asarray([1], np.int64),
                  "i2": np.asarray([2], np.int64), "i3": np.asarray([3], np.int64),
                  "split": np.asarray(split, np.int64), "cc": np.asarray([c], np.int64),
                  "rh": np.asarray([rh], np.int64), "rw": np.asarray([rw], np.int64)}
    if targets == "special":
        nodes += [helper.make_node("Reshape", ["t6", "s1"], ["u"], name="split"),
                  helper.make_node("Transpose", ["u"], ["v"], perm=perm, name="permute"),
                  helper.make_node("Reshape", ["v", "s2"], ["v2"], name="merge_h"),
                  helper.make_node("Reshape", ["v2", "s3"], ["v3"], name="merge_w"),
                  helper.make_node("Squeeze", ["v3", "axes35"], ["y"], name="merge")]
    else:
        nodes += [helper.make_node("Reshape", ["t", "s1"], ["u"], name="split"),
                  helper.make_node("Transpose", ["u"], ["v"], perm=perm, name="permute"),
                  helper.make_node("Reshape", ["v", "s2"], ["y"], name="merge")]
    in_shape = [1, cin, 4, 5] if targets == "static" else ["N", cin, "H", "W"]
    return make_model(nodes, inits, in_shape, opset=13)


@settings(max_examples=30, deadline=None)
@given(order=st.sampled_from(["CRD", "DCR", "permuted", "tiling"]),
       targets=st.sampled_from(["static", "special", "shape"]),
       c=st.integers(1, 3), rh=st.integers(1, 3), rw=st.integers(1, 3))
def test_reshape_transpose_reshape_shuffles(order, targets, c, rh, rw):
    if rh == rw == 1:
        rh = 2
    original = _chain_graph(order, c, rh, rw, targets)
    shapes = [(1, 2, 4, 5)] + ([] if targets == "static" else [(2, 2, 3, 6)])
    converted, report = convert_and_check(original, shapes)
    if order == "tiling":  # reported, not converted
        assert not report.converted and "block offset is major" in report.skipped[0].reason
        assert report.skipped[0].path.endswith("… merge")
        return
    (site,) = report.converted
    want = {"CRD": "CRD", "DCR": "DCR", "permuted": "permuted channels"}[order]
    if c == 1 or (order == "permuted" and 1 in (rh, rw)):
        want = None  # several orders are the same permutation then
    assert site.scale == (rh, rw) and (want is None or f"({want}" in site.pattern), site.pattern
    assert not report.skipped and not SHUFFLE_OPS & set(ops(converted)), str(report)


def test_wrong_channel_order_is_caught(monkeypatch):
    """Mutation check: if the proven permutation were ignored (CRD assumed), DCR and permuted
    chains would be converted wrongly, and verification must say so."""
    real = onnx_layout_module.Layout.shuffle_form

    def crd_always(self, allow_identity=False):
        form = real(self, allow_identity)
        c, rh, rw = form.perm.shape
        return onnx_layout_module.ShuffleForm(form.scale,
                                              np.arange(c * rh * rw).reshape(c, rh, rw))

    monkeypatch.setattr(onnx_layout_module.Layout, "shuffle_form", crd_always)
    upconv.convert_onnx(_chain_graph("CRD", 2, 2, 2, "shape"))  # unaffected
    for order in ("DCR", "permuted"):
        with pytest.raises(VerificationError, match="max abs error"):
            upconv.convert_onnx(_chain_graph(order, 2, 2, 3, "shape"))


ESPCN_EXPORTS = [(name, opset, False) for name in PRETRAINED for opset in (9, 18)]
ESPCN_EXPORTS.append(("espcn-x3", 18, True))  # one dynamo export: each takes seconds


@pytest.mark.parametrize(("name", "opset", "dynamo"), ESPCN_EXPORTS)
def test_bundled_espcn_exports_convert(name, opset, dynamo):
    """Target: the bundled ESPCN exported at opset 9 and at opset 18 converts and verifies."""
    model = load_pretrained(name).eval()
    x = torch.rand(1, 1, 12, 10)
    original = export(model, x, opset, dynamo=dynamo)
    if opset == 9:
        assert {"DepthToSpace", "Resize"}.isdisjoint(ops(original))  # the legacy spellings
    converted, report = convert_and_check(original, [(1, 1, 12, 10), (2, 1, 17, 23)])
    (site,) = report.converted
    scale, upsampler = PRETRAINED[name]
    assert site.kind == ("sub-pixel" if upsampler == "subpixel" else "resize")
    assert site.scale == (scale, scale) and report.verified and report.max_rel_error < 1e-5
    assert not report.skipped and not (SHUFFLE_OPS | RESIZE_OPS) & set(ops(converted))
    big = torch.rand(1, 1, 19, 14)
    with torch.no_grad():
        np.testing.assert_allclose(ort(converted, big.numpy()), model(big).numpy(), atol=1e-5)


def test_static_shape_resize_scales_from_shape_arithmetic():
    """Opset 10 export of a ``size=`` resize on a static input: scales = constant sizes divided
    by ``Shape(x)``, constant-folded."""
    model = ResizeConv(3, by_size=True).eval()
    x = torch.randn(1, 3, 4, 4)
    original = export(model, x, 10, dynamic=False)
    assert "Div" in ops(original) and "Shape" in ops(original)
    converted, report = convert_and_check(original, [(1, 3, 4, 4)])
    assert report.converted[0].scale == (3, 3) and ops(converted) == ["ConvTranspose"]


def test_size_arithmetic_as_formulas():
    """GraphValues evaluates Shape arithmetic as formulas in the input's dims, and folds
    constant subgraphs; integer division stays a floor unless it divides exactly."""
    ints = {"i2": [2], "i3": [3], "three": [3], "four": [4], "two": [2], "one": [1],
            "s": [0], "e": [2], "shape": [2, 3]}
    nodes = [helper.make_node("Shape", ["x"], ["sx"]),
             helper.make_node("Gather", ["sx", "i2"], ["h"], axis=0),
             helper.make_node("Gather", ["sx", "i3"], ["w"], axis=0),
             helper.make_node("Mul", ["h", "three"], ["h3"]),
             helper.make_node("Mul", ["w", "four"], ["w4"]),
             helper.make_node("Div", ["w4", "two"], ["w2"]),            # 4W / 2 = 2W
             helper.make_node("Add", ["h", "one"], ["h1"]),
             helper.make_node("Div", ["h1", "two"], ["half"]),         # floor((H + 1) / 2)
             helper.make_node("Slice", ["sx", "s", "e"], ["nc"]),
             helper.make_node("Concat", ["nc", "h3", "w2", "half"], ["sizes"], axis=0),
             helper.make_node("Constant", [], ["c"], value=helper.make_tensor(
                 "c", TensorProto.FLOAT, [6], [1, 2, 3, 4, 5, 6])),
             helper.make_node("Reshape", ["c", "shape"], ["c23"]),
             helper.make_node("Identity", ["c23"], ["alias"]),
             helper.make_node("Relu", ["x"], ["y"])]
    graph = make_model(nodes, {k: np.asarray(v, np.int64) for k, v in ints.items()},
                       ["N", 3, "H", "W"], opset=13)
    from upconv.convert.onnx_convert import tensor_shapes
    from upconv.convert.onnx_graph import GraphEditor
    from upconv.convert.onnx_values import dim_symbol

    values = GraphEditor(graph.graph, tensor_shapes(graph), 13).values
    n, h, w = (dim_symbol("x", i) for i in (0, 2, 3))
    got = list(values.symbolic("sizes"))
    assert got[:4] == [n, 3, 3 * h, 2 * w] and str(got[4]) == "floor(x:2/2 + 1/2)", got
    np.testing.assert_array_equal(values.constant("alias"), np.arange(1, 7).reshape(2, 3))
    assert values.constant("y") is None and values.constant("sizes") is None


def test_derived_dims_match_onnx_runtime():
    """The dims formulas (onnx_dims.py) of every tensor of a graph that strides, pools,
    shuffles, tiles, reshapes by Shape arithmetic, reduces and broadcasts equal the shapes
    ONNX Runtime produces, at several input sizes."""
    rng = np.random.default_rng(0)
    f32 = np.float32
    inits = {"w1": rng.standard_normal((8, 3, 3, 3)).astype(f32),
             "w2": rng.standard_normal((8, 8, 3, 3)).astype(f32),
             "rep": np.asarray([1, 1, 2, 1, 1], np.int64), "ax2": np.asarray([2], np.int64),
             "two": np.asarray([2], np.int64), "minus1": np.asarray([-1], np.int64),
             "i0": np.asarray([0], np.int64), "i34": np.asarray([3, 4], np.int64),
             "bias": rng.standard_normal((1, 8, 1, 1)).astype(f32)}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("MaxPool", ["c1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2],
                         ceil_mode=1),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 0, 1, 2]),
        helper.make_node("DepthToSpace", ["c2"], ["d"], blocksize=2, mode="CRD"),
        helper.make_node("Unsqueeze", ["d", "ax2"], ["u"]),
        helper.make_node("Tile", ["u", "rep"], ["t"]),
        helper.make_node("Shape", ["t"], ["st"]),
        helper.make_node("Gather", ["st", "i0"], ["n"], axis=0),
        helper.make_node("Gather", ["st", "i34"], ["hw"], axis=0),
        helper.make_node("Concat", ["n", "minus1", "hw"], ["target"], axis=0),
        helper.make_node("Reshape", ["t", "target"], ["r"]),
        helper.make_node("Transpose", ["r"], ["tr"], perm=[0, 1, 3, 2]),
        helper.make_node("ReduceMean", ["tr"], ["m"], axes=[1], keepdims=1),
        helper.make_node("Add", ["c1", "bias"], ["b"]),
        helper.make_node("Concat", ["b", "c1"], ["cc"], axis=1),
        helper.make_node("Relu", ["m"], ["y"]),
    ]
    graph = make_model(nodes, inits, ["N", 3, "H", "W"], opset=13)
    names = ["c1", "p1", "c2", "d", "u", "t", "r", "tr", "m", "b", "cc"]
    graph.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                              for n in names)
    from upconv.convert.onnx_convert import run_onnx, tensor_shapes
    from upconv.convert.onnx_graph import GraphEditor
    from upconv.convert.onnx_values import dim_symbol

    values = GraphEditor(graph.graph, tensor_shapes(graph), 13).values
    symbols = [dim_symbol("x", i) for i in (0, 2, 3)]
    for n, h, w in ((1, 9, 12), (2, 16, 7), (3, 5, 5)):
        outs = run_onnx(graph, {"x": np.zeros((n, 3, h, w), f32)})
        for name, out in zip(names, outs[1:], strict=True):
            dims = values.dims(name)
            assert dims is not None and all(not d.free_symbols - set(symbols) for d in dims), (
                name, dims)
            got = tuple(int(d.subs(dict(zip(symbols, (n, h, w), strict=True)))) for d in dims)
            assert got == out.shape, (name, dims, out.shape)
