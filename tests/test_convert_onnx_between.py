"""What may sit between the two halves of an upsampling pair in ONNX: activations, learned
scalars, per-channel constants, crops, groups, and weights behind Identity / Constant nodes.

Each converted graph is compared with the original in ONNX Runtime on two input sizes; the
mutation tests break one rule of a rewrite and check that verification catches it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx_cases import convert_and_check, export, make_model, ops, ort

import upconv
from upconv.convert import VerificationError
from upconv.convert import onnx_elementwise as elementwise_module
from upconv.convert import onnx_subpixel as subpixel_module

SHAPES = [(1, 3, 5, 6), (2, 3, 4, 7)]


class ConvActShuffle(torch.nn.Module):
    """conv (c·r² channels) → ``act`` → pixel shuffle, as CARN / DRLN / AWSRN write it."""

    def __init__(self, act: torch.nn.Module, r: int = 2, c: int = 2) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, c * r * r, 3, padding=1)
        self.act, self.r = act, r

    def forward(self, x):
        return F.pixel_shuffle(self.act(self.conv(x)), self.r)


class Scale(torch.nn.Module):
    """AWSRN's learned scalar."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor([value]))

    def forward(self, x):
        return x * self.scale


def _prelu_per_output_channel(c: int = 2, r: int = 2) -> torch.nn.PReLU:
    """A PReLU over the c·r² conv channels whose r² slopes agree for each output channel."""
    act = torch.nn.PReLU(c * r * r)
    with torch.no_grad():
        act.weight.copy_(torch.linspace(-0.5, 0.5, c).repeat_interleave(r * r))
    return act


ACTS = {
    "relu": lambda: torch.nn.ReLU(),
    "leaky": lambda: torch.nn.LeakyReLU(0.2),
    "prelu-scalar": lambda: torch.nn.PReLU(1, init=0.3),
    "prelu-per-output-channel": _prelu_per_output_channel,
    "hardtanh": lambda: torch.nn.Hardtanh(-0.5, 0.7),
    "scale": lambda: Scale(-1.7),
    "scale-relu-scale": lambda: torch.nn.Sequential(Scale(0.5), torch.nn.ReLU(), Scale(3.0)),
    "add-relu": lambda: torch.nn.Sequential(_Add(0.25), torch.nn.ReLU6()),
}


class _Add(torch.nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x):
        return x + self.value


@pytest.mark.parametrize("opset", [9, 13])
@pytest.mark.parametrize("act", list(ACTS))
def test_activation_between_conv_and_shuffle(act, opset):
    torch.manual_seed(0)
    model = ConvActShuffle(ACTS[act]()).eval()
    x = torch.randn(*SHAPES[0])
    original = export(model, x, opset)
    converted, report = convert_and_check(original, SHAPES)
    (site,) = report.converted
    assert not report.skipped, str(report)
    names = [n for n in ops(converted) if n != "Constant"]  # Clip's bounds stay Constant nodes
    assert names[0] == "ConvTranspose" and "Conv" not in names
    if act == "scale":  # folded into the weights: nothing left but the deconvolution
        assert "Mul folded" in site.pattern and "Mul" not in names
    if act == "scale-relu-scale":  # the first Mul folds, the one after the ReLU moves
        assert "Mul folded" in site.pattern and "Mul moved after" in site.pattern
    with torch.no_grad():
        np.testing.assert_allclose(ort(converted, x.numpy()), model(x).numpy(), atol=1e-5)


def test_prelu_slopes_that_differ_within_an_output_channel_are_left_alone(monkeypatch):
    torch.manual_seed(1)
    act = torch.nn.PReLU(8)
    with torch.no_grad():
        act.weight.copy_(torch.linspace(-0.5, 0.5, 8))  # differ among the r² = 4 of a channel
    original = export(ConvActShuffle(act).eval(), torch.randn(*SHAPES[0]), 13)
    converted, report = upconv.convert_onnx(original, input_shape=SHAPES[0])
    assert not report.converted and "differ among the 4 conv channels" in report.skipped[0].reason
    assert ops(converted) == ops(original)
    # mutation: pretend the slopes agree (take each output channel's first) → wrong result
    monkeypatch.setattr(subpixel_module, "_through_shuffle",
                        lambda e, perm, channels, block: None if e.param is None or
                        e.param.ndim == 0 else e.param[perm].reshape(channels, block)[:, 0])
    with pytest.raises(VerificationError, match="max abs error"):
        upconv.convert_onnx(original, input_shape=SHAPES[0])


def test_folding_and_moving_are_needed(monkeypatch):
    """Mutation checks: a Mul not folded (dropped), or an activation not moved (dropped),
    must fail verification."""
    x = torch.randn(*SHAPES[0])
    folded = export(ConvActShuffle(Scale(-1.7)).eval(), x, 13)
    moved = export(ConvActShuffle(torch.nn.LeakyReLU(0.2)).eval(), x, 13)
    monkeypatch.setattr(elementwise_module.Elementwise, "fold", lambda self, w, b: (w, b))
    with pytest.raises(VerificationError):
        upconv.convert_onnx(folded, input_shape=SHAPES[0])
    monkeypatch.setattr(subpixel_module, "emit", lambda editor, ops_, renamed, aliases, sink, y,
                        label: [helper.make_node("Identity", list(renamed.values()), [y])])
    with pytest.raises(VerificationError):
        upconv.convert_onnx(moved, input_shape=SHAPES[0])


# ONNX ops with their constant operands, applied between a conv (k channels) and a shuffle.
def _op_nodes(kind: str, t: str, out: str, k: int, rng) -> tuple[list, dict]:
    per_c = rng.uniform(0.5, 1.5, (1, k, 1, 1)).astype(np.float32)
    scalar = np.asarray(rng.uniform(-2, 2), np.float32)
    name = f"{kind}_{out}"
    nodes = {
        "Relu": lambda: [helper.make_node("Relu", [t], [out])],
        "LeakyRelu": lambda: [helper.make_node("LeakyRelu", [t], [out], alpha=0.1)],
        "Sigmoid": lambda: [helper.make_node("Sigmoid", [t], [out])],
        "Clip": lambda: [helper.make_node("Clip", [t, f"{name}_lo", f"{name}_hi"], [out])],
        "MulScalar": lambda: [helper.make_node("Mul", [f"{name}_s", t], [out])],
        "AddScalar": lambda: [helper.make_node("Add", [t, f"{name}_s"], [out])],
        "SubFromScalar": lambda: [helper.make_node("Sub", [f"{name}_s", t], [out])],
        "SubScalar": lambda: [helper.make_node("Sub", [t, f"{name}_s"], [out])],
        "DivScalar": lambda: [helper.make_node("Div", [t, f"{name}_s"], [out])],
        "MulPerChannel": lambda: [helper.make_node("Mul", [t, f"{name}_c"], [out])],
        "AddPerChannel": lambda: [helper.make_node("Add", [f"{name}_c", t], [out])],
        "Identity": lambda: [helper.make_node("Identity", [t], [out])],
    }[kind]()
    inits = {f"{name}_lo": np.asarray(-0.5, np.float32), f"{name}_hi": np.asarray(0.8, np.float32),
             f"{name}_s": scalar + np.float32(np.sign(scalar) * 0.5), f"{name}_c": per_c}
    used = {i for n in nodes for i in n.input}
    return nodes, {k_: v for k_, v in inits.items() if k_ in used}


OP_KINDS = ["Relu", "LeakyRelu", "Sigmoid", "Clip", "MulScalar", "AddScalar", "SubFromScalar",
            "SubScalar", "DivScalar", "MulPerChannel", "AddPerChannel", "Identity"]


@settings(max_examples=40, deadline=None)
@given(chain=st.lists(st.sampled_from(OP_KINDS), min_size=1, max_size=4),
       r=st.integers(1, 3), rw=st.integers(1, 3), mode=st.sampled_from(["CRD", "DCR"]),
       bias=st.booleans(), c=st.integers(1, 3))
def test_any_chain_of_elementwise_ops_before_the_shuffle(chain, r, rw, mode, bias, c):
    """Per-channel constants vary over all c·r² conv channels; after a nonlinearity they do not
    commute with the shuffle, before one they fold. Whatever is converted must verify."""
    rng = np.random.default_rng(len(chain) + 7 * r + c)
    if mode == "DCR":
        rw = r
    k = c * r * rw
    inits = {"w": rng.standard_normal((k, 3, 3, 3)).astype(np.float32)}
    conv_in = ["x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(k).astype(np.float32)
        conv_in.append("b")
    nodes = [helper.make_node("Conv", conv_in, ["t0"], pads=[1, 1, 1, 1])]
    for i, kind in enumerate(chain):
        more, consts = _op_nodes(kind, f"t{i}", f"t{i + 1}", k, rng)
        nodes += more
        inits |= consts
    last = f"t{len(chain)}"
    if mode == "DCR" or r == rw:
        nodes.append(helper.make_node("DepthToSpace", [last], ["y"], blocksize=r, mode=mode))
    else:  # rh != rw: CRD spelled as the TorchScript exporter's opset-9 reshape chain
        nodes += [helper.make_node("Unsqueeze", [last, "ax"], ["u6"]),
                  helper.make_node("Reshape", ["u6", "s1"], ["u"]),
                  helper.make_node("Transpose", ["u"], ["v"], perm=[0, 1, 4, 2, 5, 3]),
                  helper.make_node("Reshape", ["v", "s2h"], ["v2"]),
                  helper.make_node("Reshape", ["v2", "s2w"], ["v3"]),
                  helper.make_node("Squeeze", ["v3", "ax35"], ["y"])]
        inits |= {"ax": np.asarray([2, 3], np.int64), "ax35": np.asarray([3, 5], np.int64),
                  "s1": np.asarray([0, c, r, rw, 0, 0], np.int64),
                  "s2h": np.asarray([0, 0, -1, 1, 0, 0], np.int64),
                  "s2w": np.asarray([0, 0, 0, 0, -1, 1], np.int64)}
    original = make_model(nodes, inits, ["N", 3, "H", "W"], opset=13)
    converted, report = convert_and_check(original, SHAPES)
    assert len(report.converted) + len(report.skipped) == 1, str(report)
    nonlinear = {"Relu", "LeakyRelu", "Sigmoid", "Clip"}
    first_nonlinear = next((i for i, kd in enumerate(chain) if kd in nonlinear), len(chain))
    blocks = any(kd.endswith("PerChannel") for kd in chain[first_nonlinear:])
    if report.converted:
        assert "ConvTranspose" in ops(converted) and "Conv" not in ops(converted)
    else:  # only a per-channel constant after a nonlinearity may stop it
        assert blocks and r * rw > 1 and "differ among" in report.skipped[0].reason, str(report)


class ResizeActConv(torch.nn.Module):
    """nearest ×r → ``act`` → conv (FDAT / MoESR's ``nearest+conv`` upsampler)."""

    def __init__(self, act: torch.nn.Module, r: int = 2, groups: int = 1) -> None:
        super().__init__()
        self.act, self.r = act, r
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1, groups=groups)

    def forward(self, x):
        return self.conv(self.act(F.interpolate(x, scale_factor=self.r, mode="nearest")))


@pytest.mark.parametrize("opset", [9, 13])
@pytest.mark.parametrize(("act", "groups"), [
    (torch.nn.LeakyReLU(0.2), 1), (torch.nn.PReLU(4), 1), (Scale(0.7), 1),
    (torch.nn.Sequential(torch.nn.GELU(), torch.nn.Sigmoid()), 1),
    (torch.nn.Identity(), 2), (torch.nn.ReLU(), 4),
])
def test_activation_between_resize_and_conv_moves_before(act, groups, opset):
    torch.manual_seed(groups)
    if isinstance(act, torch.nn.PReLU):
        with torch.no_grad():
            act.weight.copy_(torch.tensor([-0.3, 0.1, 0.2, 0.5]))
    model = ResizeActConv(act, r=3, groups=groups).eval()
    x = torch.randn(1, 4, 5, 6)
    original = export(model, x, opset)
    converted, report = convert_and_check(original, [(1, 4, 5, 6), (2, 4, 3, 7)])
    (site,) = report.converted
    assert site.scale == (3, 3) and not report.skipped, str(report)
    names = ops(converted)
    assert names[-1] == "ConvTranspose" and "Resize" not in names and "Upsample" not in names
    deconv = converted.graph.node[-1]
    assert next(a.i for a in deconv.attribute if a.name == "group") == groups
    if type(act) is not torch.nn.Identity:
        assert "moved before" in site.pattern, site.pattern


def test_resize_then_op_that_does_not_commute_left_alone():
    rng = np.random.default_rng(0)
    base = {"w": rng.standard_normal((2, 2, 3, 3)).astype(np.float32),
            "s": np.asarray([1, 1, 2, 2], np.float32),
            "ramp": np.arange(2 * 8 * 8, dtype=np.float32).reshape(1, 2, 8, 8)}
    resize = helper.make_node("Resize", ["x", "", "s"], ["u"], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    for op, reason in (("Add", "varies over batch or space"), ("Sub", "varies over batch")):
        nodes = [resize, helper.make_node(op, ["u", "ramp"], ["v"]),
                 helper.make_node("Conv", ["v", "w"], ["y"], pads=[1, 1, 1, 1])]
        _, report = upconv.convert_onnx(make_model(nodes, base, [1, 2, 4, 4], opset=13))
        assert not report.converted and reason in report.skipped[0].reason, str(report)
    nodes = [resize, helper.make_node("Add", ["u", "x2"], ["v"]),  # a computed tensor
             helper.make_node("Conv", ["v", "w"], ["y"], pads=[1, 1, 1, 1])]
    extra = [helper.make_tensor_value_info("x2", TensorProto.FLOAT, [1, 2, 8, 8])]
    _, report = upconv.convert_onnx(make_model(nodes, base, [1, 2, 4, 4], 13, extra))
    assert "its consumer is not a Conv input (it is Add" in report.skipped[0].reason


def _grouped_graph(groups: int, c: int, r: int, mode: str, cin_per_group: int = 2):
    rng = np.random.default_rng(groups * 10 + c)
    k = c * r * r
    inits = {"w": rng.standard_normal((k, cin_per_group, 3, 3)).astype(np.float32),
             "b": rng.standard_normal(k).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["t"], pads=[1, 1, 1, 1], group=groups,
                              name="conv"),
             helper.make_node("DepthToSpace", ["t"], ["y"], blocksize=r, mode=mode, name="d2s")]
    return make_model(nodes, inits, ["N", groups * cin_per_group, "H", "W"], opset=13)


@settings(max_examples=25, deadline=None)
@given(groups=st.sampled_from([1, 2, 3, 4]), per_group=st.integers(1, 2), r=st.integers(1, 3),
       mode=st.sampled_from(["CRD", "DCR"]))
def test_grouped_conv_before_the_shuffle(groups, per_group, r, mode):
    c = groups * per_group if groups > 1 else 2
    original = _grouped_graph(groups, c, r, mode)
    shapes = [(1, 2 * groups, 4, 5), (2, 2 * groups, 3, 6)]
    converted, report = convert_and_check(original, shapes)
    keeps_groups = mode == "CRD" or r == 1 or groups == 1
    if keeps_groups:
        assert len(report.converted) == 1, str(report)
        deconv = converted.graph.node[0]
        assert deconv.op_type == "ConvTranspose"
        assert next(a.i for a in deconv.attribute if a.name == "group") == groups
    else:
        assert "mixes conv channels of different groups" in report.skipped[0].reason


def test_groups_that_do_not_divide_the_output_channels_left_alone(monkeypatch):
    original = _grouped_graph(groups=4, c=2, r=2, mode="CRD")  # 8 conv channels, 2 outputs
    _, report = upconv.convert_onnx(original, input_shape=(1, 8, 4, 4))
    assert "groups=4 does not divide the 2 output channels" in report.skipped[0].reason
    # mutation: without the group check a DCR grouped conv would convert wrongly
    monkeypatch.setattr(subpixel_module, "_check_groups", lambda *args: None)
    with pytest.raises(VerificationError):
        upconv.convert_onnx(_grouped_graph(2, 2, 2, "DCR"), input_shape=(1, 4, 4, 4))


class CropShuffle(torch.nn.Module):
    """RealCUGAN's tail: a valid conv, a crop by ``F.pad(x, (-1,) * 4)``, pixel shuffle ×2; or
    a same conv cropped by slicing."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.conv = torch.nn.Conv2d(3, 12, 3, padding=0 if how == "pad" else 1)

    def forward(self, x):
        t = self.conv(x)
        t = F.pad(t, (-1, -1, -1, -1)) if self.how == "pad" else t[:, :, 1:, :-2]
        return F.pixel_shuffle(t, 2)


@pytest.mark.parametrize("opset", [11, 13, 17])
@pytest.mark.parametrize("how", ["pad", "slice"])
def test_crop_between_conv_and_shuffle(how, opset):
    torch.manual_seed(opset)
    model = CropShuffle(how).eval()
    x = torch.randn(1, 3, 9, 8)
    original = export(model, x, opset)
    converted, report = convert_and_check(original, [(1, 3, 9, 8), (2, 3, 7, 11)])
    (site,) = report.converted
    assert "crop" in site.pattern and not report.skipped, str(report)
    assert ops(converted)[0] == "ConvTranspose" and not {"Pad", "Slice"} & set(ops(converted))
    with torch.no_grad():
        np.testing.assert_allclose(ort(converted, x.numpy()), model(x).numpy(), atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 4), pads=st.tuples(*[st.integers(0, 2)] * 4),
       crops=st.tuples(*[st.integers(0, 2)] * 4), r=st.integers(1, 3),
       by=st.sampled_from(["Slice", "Pad"]))
def test_any_padding_and_crop_before_the_shuffle(k, pads, crops, r, by):
    top, bottom, left, right = pads
    ct, cb, cl, cr = crops
    rng = np.random.default_rng(k + r)
    inits = {"w": rng.standard_normal((2 * r * r, 2, k, k)).astype(np.float32),
             "b": rng.standard_normal(2 * r * r).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["t"], pads=[top, left, bottom, right])]
    if by == "Slice":
        inits |= {"st": np.asarray([ct, cl], np.int64),
                  "en": np.asarray([-cb if cb else 2**62, -cr if cr else 2**62], np.int64),
                  "ax": np.asarray([2, 3], np.int64)}
        nodes.append(helper.make_node("Slice", ["t", "st", "en", "ax"], ["c"]))
    else:
        inits["p"] = -np.asarray([0, 0, ct, cl, 0, 0, cb, cr], np.int64)
        nodes.append(helper.make_node("Pad", ["t", "p"], ["c"]))
    nodes.append(helper.make_node("DepthToSpace", ["c"], ["y"], blocksize=r, mode="CRD"))
    h, w = 7, 8
    out_h = h + top + bottom - k + 1 - ct - cb
    out_w = w + left + right - k + 1 - cl - cr
    if min(out_h, out_w) < 1:
        return
    original = make_model(nodes, inits, ["N", 2, "H", "W"], opset=13)
    converted, report = convert_and_check(original, [(1, 2, h, w), (1, 2, h + 3, w + 2)])
    effective = (top - ct, bottom - cb, left - cl, right - cr)
    too_much = any(max(effective[i], 0) + max(effective[i + 1], 0) > k - 1 for i in (0, 2))
    if too_much:  # reads zeros a same conv does not: no crop of a same conv gives that
        assert not report.converted and "pads more than a same conv" in report.skipped[0].reason
    else:
        assert len(report.converted) == 1 and ops(converted)[0] == "ConvTranspose", str(report)


def test_crops_that_do_not_commute_left_alone():
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((8, 2, 3, 3)).astype(np.float32),
             "st": np.asarray([0], np.int64), "en": np.asarray([4], np.int64),
             "ax": np.asarray([1], np.int64), "p": np.asarray([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}
    for mid, reason in (
            (helper.make_node("Slice", ["t", "st", "en", "ax"], ["c"]), "batch or channel axis"),
            (helper.make_node("Pad", ["t", "p"], ["c"]), "adds pixels")):
        nodes = [helper.make_node("Conv", ["x", "w"], ["t"], pads=[1, 1, 1, 1]), mid,
                 helper.make_node("DepthToSpace", ["c"], ["y"], blocksize=2 if mid.op_type ==
                                  "Pad" else 1, mode="CRD")]
        _, report = upconv.convert_onnx(make_model(nodes, inits, [1, 2, 4, 4], opset=13))
        assert not report.converted and reason in report.skipped[0].reason, str(report)


def test_weights_behind_identity_and_constant_nodes():
    """FDAT's exporter deduplicates equal initializers through Identity; weights may also be
    Constant nodes, or be reshaped at run time: all are constants, not computed values."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 2, 3, 3)).astype(np.float32)
    b = np.zeros(8, np.float32)
    nodes = [
        helper.make_node("Constant", [], ["w_const"], value=numpy_helper.from_array(w.ravel())),
        helper.make_node("Reshape", ["w_const", "w_shape"], ["w_4d"]),
        helper.make_node("Identity", ["w_4d"], ["w_alias"]),
        helper.make_node("Identity", ["shared_bias"], ["b_alias"]),
        helper.make_node("Conv", ["x", "w_alias", "b_alias"], ["t"], pads=[1, 1, 1, 1]),
        helper.make_node("DepthToSpace", ["t"], ["y"], blocksize=2, mode="CRD"),
    ]
    original = make_model(nodes, {"w_shape": np.asarray(w.shape, np.int64), "shared_bias": b},
                          ["N", 2, "H", "W"], opset=13)
    converted, report = convert_and_check(original, [(1, 2, 4, 5), (2, 2, 3, 3)])
    assert len(report.converted) == 1 and ops(converted) == ["ConvTranspose"], str(report)


def test_exporter_deduplicated_zero_biases():
    """Two convs with equal (zero) biases: the TorchScript exporter keeps one initializer and
    reads the other through Identity (as in FDAT's exports)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.PixelShuffle(2))
    with torch.no_grad():
        model[0].bias.zero_()
        model[2].bias.zero_()
    original = export(model.eval(), torch.randn(*SHAPES[0]), 17)
    assert "Identity" in ops(original)
    _, report = convert_and_check(original, SHAPES)
    assert len(report.converted) == 1 and not report.skipped, str(report)


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 4), pads=st.tuples(*[st.integers(0, 2)] * 4), r=st.integers(1, 3),
       rw=st.integers(1, 3))
def test_any_padding_of_the_conv_after_a_resize(k, pads, r, rw):
    """A valid (or otherwise not same-size) conv after a nearest resize is a same conv plus a
    crop of the output (in output pixels)."""
    top, bottom, left, right = pads
    rng = np.random.default_rng(k + 3 * r)
    inits = {"w": rng.standard_normal((2, 2, k, k)).astype(np.float32),
             "b": rng.standard_normal(2).astype(np.float32),
             "s": np.asarray([1, 1, r, rw], np.float32)}
    nodes = [helper.make_node("Resize", ["x", "", "s"], ["u"], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
             helper.make_node("Conv", ["u", "w", "b"], ["y"], pads=[top, left, bottom, right])]
    original = make_model(nodes, inits, ["N", 2, "H", "W"], opset=13)
    converted, report = convert_and_check(original, [(1, 2, 4, 5), (2, 2, 6, 4)])
    if top + bottom > k - 1 or left + right > k - 1:
        assert not report.converted and "pads more than a same conv" in report.skipped[0].reason
    else:
        assert ops(converted) == ["ConvTranspose"], str(report)
