"""Model walkers, reports, plots, calibration and validation machinery, and the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import archs
import onnx
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from onnx import TensorProto, helper
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import upconv
from upconv.cli import main
from upconv.cost import combine, count, count_conv, count_deconv, estimate, load_profile
from upconv.cost.calibrate import calibrate_profile
from upconv.cost.report import build_report, layer_model
from upconv.cost.validate import BenchLayer, spearman, validate_model
from upconv.cost.walk import STRATEGIES, walk_module, walk_onnx
from upconv.sr import ESPCN


def _plain_model():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 12, 3, padding=1), nn.PixelShuffle(2),  # C-SP pattern
        nn.Upsample(scale_factor=2), nn.Conv2d(3, 3, 5, padding=2),  # C-NN pattern
        nn.ConvTranspose2d(3, 2, 4, 2, 1),
        nn.Conv2d(2, 2, 3, stride=2),  # plain strided conv
    )


def test_walk_module_finds_every_pattern_with_the_right_counts():
    mc = walk_module(_plain_model(), (2, 3, 10, 12))
    assert [layer.spec.kind for layer in mc.layers] == ["conv", "C-SP", "C-NN", "deconv", "conv"]
    csp, cnn, dec = mc.layers[1], mc.layers[2], mc.layers[3]
    assert csp.counts["trained"] == count("C-SP", in_channels=8, out_channels=3, kernel_size=3,
                                          scale=2, height=10, width=12, batch=2)
    assert cnn.counts["revd2"] == count("D-NN", in_channels=3, out_channels=3, kernel_size=5,
                                        scale=2, height=20, width=24, batch=2, algorithm="revd2")
    assert dec.counts["trained"] == count_deconv(
        in_channels=3, out_channels=2, kernel_size=4, stride=2, padding=1, height=40, width=48,
        batch=2, algorithm="stdd")
    assert mc.layers[4].counts["conv"] == count_conv(in_channels=2, out_channels=2,
                                                     kernel_size=3, stride=2, height=80,
                                                     width=96, batch=2)
    assert set(csp.counts) == set(STRATEGIES)
    # whole model under a strategy: plain layers stay, upsampling layers switch
    under = mc.under("revd")
    assert under[0] is mc.layers[0].counts["conv"] and under[1].algorithm == "revd"


def test_espcn_walk_and_converted_espcn_agree():
    for upsampler, kind in (("subpixel", "C-SP"), ("resize", "C-NN")):
        net = ESPCN(scale=3, upsampler=upsampler)
        mc = walk_module(net, (1, 1, 20, 30))
        assert [layer.spec.kind for layer in mc.layers] == ["conv", "conv", "conv", kind]
        converted = walk_module(net.to_deconv("tdc"), (1, 1, 20, 30))
        assert converted.layers[3].spec.kind == "deconv"
        as_run = converted.layers[3].counts["trained"]
        assert replace(as_run, op="D-" + kind[2:]) == mc.layers[3].counts["tdc"]
    with pytest.raises(ValueError, match=r"input_shape must be \(N, C, H, W\)"):
        walk_module(net, (1, 20, 30))
    with pytest.raises(ValueError, match="forward pass fails on an input of shape"):
        walk_module(net, (1, 3, 20, 30))  # ESPCN takes one channel
    auto = walk_module(net.to_deconv("auto"), (1, 1, 8, 8))
    assert auto.layers[3].counts["trained"].algorithm == "revd2"
    with pytest.raises(TypeError, match=r"nn\.Module"):
        walk_module("espcn", (1, 1, 8, 8))


def _onnx_model(path, symbolic=False):
    def init(name, *shape):
        return helper.make_tensor(name, TensorProto.FLOAT, shape, [0.1] * math.prod(shape))

    dims = ["n", 1, "h", "w"] if symbolic else [1, 1, 8, 10]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Conv", ["b", "w2"], ["c"], pads=[1, 1, 1, 1], name="sp_conv"),
        helper.make_node("DepthToSpace", ["c"], ["d"], blocksize=3, mode="CRD", name="d2s"),
        helper.make_node("Resize", ["d", "", "scales"], ["e"], mode="nearest", name="resize"),
        helper.make_node("Conv", ["e", "w3"], ["f"], pads=[2, 2, 2, 2], name="nn_conv"),
        helper.make_node("ConvTranspose", ["f", "w4"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1],
                         name="deconv"),
    ]
    graph = helper.make_graph(
        nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, "oh", "ow"])],
        [init("w1", 8, 1, 3, 3), init("w2", 18, 8, 3, 3), init("w3", 4, 2, 5, 5),
         init("w4", 4, 2, 4, 4),
         helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def test_walk_onnx_matches_the_same_layers(tmp_path):
    mc = walk_onnx(_onnx_model(tmp_path / "toy.onnx"))
    assert [(layer.spec.name, layer.spec.kind) for layer in mc.layers] == [
        ("conv1", "conv"), ("sp_conv+d2s", "C-SP"), ("resize+nn_conv", "C-NN"),
        ("deconv", "deconv")]
    assert mc.layers[1].counts["trained"] == count("C-SP", in_channels=8, out_channels=2,
                                                   kernel_size=3, scale=3, height=8, width=10)
    assert mc.layers[2].counts["strd"] == count("D-NN", in_channels=2, out_channels=4,
                                                kernel_size=5, scale=2, height=24, width=30,
                                                algorithm="strd")
    assert mc.layers[3].spec.params["height"] == 48
    sym = _onnx_model(tmp_path / "sym.onnx", symbolic=True)
    with pytest.raises(ValueError, match="symbolic dimensions"):
        walk_onnx(sym)
    assert walk_onnx(sym, (2, 1, 8, 10)).input_shape == (2, 1, 8, 10)
    # shapes an exporter recorded for its example input must not leak into another size
    stale = onnx.shape_inference.infer_shapes(onnx.load(tmp_path / "toy.onnx"))
    assert any(v.name == "c" for v in stale.graph.value_info)
    resized = walk_onnx(stale, (1, 1, 16, 20))
    assert [layer.spec.params["height"] for layer in resized.layers] == [16, 16, 48, 96]
    with pytest.raises(ValueError, match="does not exist"):
        walk_onnx(tmp_path / "missing.onnx")


def test_report_ratios_and_whole_model_sums():
    profile = load_profile()
    mc = walk_module(ESPCN(3), (1, 1, 24, 32))
    report = build_report(mc, profile)
    json.dumps(report)
    layer = report["upsampling"][0]["strategies"]
    for s in STRATEGIES:
        e = estimate(mc.layers[3].counts[s], profile)
        assert layer[s]["estimate"]["energy_j"] == pytest.approx(e.energy_j)
        assert layer[s]["vs_trained"]["energy"] == pytest.approx(
            layer["trained"]["estimate"]["energy_j"] / e.energy_j)
        whole = report["whole_model"][s]
        assert whole["counts"]["macs"] == combine(mc.under(s)).macs
        assert whole["estimate"]["time_s"] == pytest.approx(
            sum(estimate(c, profile).time_s for c in mc.under(s)))
    assert layer["trained"]["vs_trained"]["time"] == 1.0
    one = layer_model("D-NN", in_channels=4, out_channels=2, kernel_size=(3, 1), scale=(2, 3),
                      height=5, width=6, batch=3)
    assert one.layers[0].counts["trained"] == count("C-NN", in_channels=4, out_channels=2,
                                                    kernel_size=(3, 1), scale=(2, 3), height=5,
                                                    width=6, batch=3)
    with pytest.raises(ValueError, match="op must be one of"):
        layer_model("D-XX", in_channels=4, out_channels=2, kernel_size=3, scale=2, height=5,
                    width=6)


def test_calibrate_and_validate_machinery(tmp_path):
    profile, notes = calibrate_profile("mine", load_profile(), threads=1, quick=True)
    assert "NOT measured" in notes and profile.name == "mine"
    assert profile.peak_macs_per_second["float32"] > 1e6
    assert profile.offchip_bytes_per_second > 1e6 and profile.onchip_bytes_per_second > 1e6
    tiny = (BenchLayer("a", "C-SP", 2, 1, 3, 2, 6, 5), BenchLayer("b", "C-NN", 2, 2, 3, 2, 4, 4))
    results = validate_model(profile, tiny, repeats=1, compiled=False)
    assert len(results["cases"]) == 2 * (len(STRATEGIES) + 2)  # + torch, tdc-torch
    assert -1 <= results["spearman"] <= 1 and set(results["spearman_per_layer"]) == {"a", "b"}
    for case in results["cases"]:
        assert case["measured_s"] > 0 and case["predicted_s"] > 0


def test_spearman_against_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1)
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert spearman([1, 1, 2], [5, 5, 6]) == pytest.approx(1)  # ties get average ranks
    assert math.isnan(spearman([1, 1], [2, 3]))


def test_cli_layer_table_json_and_plot(tmp_path):
    runner = CliRunner()
    args = ["cost", "--op", "D-SP", "--in-channels", "32", "--out-channels", "1",
            "--kernel-size", "3", "--scale", "3", "--height", "32", "--width", "48"]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "revd2" in res.output and "trained (C-SP)" in res.output
    res = runner.invoke(main, [*args, "--json", "--profile", "edge-int8"])
    data = json.loads(res.output)
    assert data["dtype"] == "int8" and data["profile"]["name"] == "edge-int8"
    want = count("D-SP", in_channels=32, out_channels=1, kernel_size=3, scale=3, height=32,
                 width=48, dtype="int8", algorithm="tdc")
    assert data["upsampling"][0]["strategies"]["tdc"]["counts"]["macs"] == want.macs
    png = tmp_path / "out" / "layer.png"
    res = runner.invoke(main, [*args, "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in png.parent.iterdir()] == ["layer.png"]


def test_cli_direct_deconvolution():
    res = CliRunner().invoke(main, [
        "cost", "--op", "deconv", "--in-channels", "8", "--out-channels", "4", "--kernel-size",
        "4,3", "--stride", "2,3", "--padding", "1,2,0,1", "--output-padding", "1,0",
        "--height", "6", "--width", "5", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["upsampling"][0]["strategies"]
    want = count_deconv(in_channels=8, out_channels=4, kernel_size=(4, 3), stride=(2, 3),
                        padding=(1, 2, 0, 1), output_padding=(1, 0), height=6, width=5,
                        algorithm="revd")
    assert rows["revd"]["counts"]["partial_sum_traffic"] == want.partial_sum_traffic
    assert rows["trained"]["labels"] == ["deconv/stdd"]


def test_cli_model_and_onnx(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["cost", "--model", "espcn", "--scale", "2", "--input-shape",
                               "1x1x16x20", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert len(data["layers"]) == 4 and data["upsampling"][0]["kind"] == "C-SP"
    res = runner.invoke(main, ["cost", "--onnx", str(_onnx_model(tmp_path / "t.onnx"))])
    assert res.exit_code == 0, res.output
    assert "whole model (4 counted layers)" in res.output


@pytest.mark.parametrize(("args", "message"), [
    (["cost"], "give exactly one of --op, --model or --onnx"),
    (["cost", "--op", "D-SP", "--in-channels", "4"], "--op D-SP needs --out-channels"),
    (["cost", "--op", "deconv", "--in-channels", "4", "--out-channels", "1", "--height", "4",
      "--width", "4"], "--op deconv needs --stride"),
    (["cost", "--op", "deconv", "--in-channels", "4", "--out-channels", "1", "--height", "2",
      "--width", "4", "--stride", "1", "--kernel-size", "1", "--padding", "1"], "crops away"),
    (["cost", "--model", "espcn", "--input-shape", "1x1x10"], "is not NxCxHxW"),
    (["cost", "--model", "unet"], "unknown model 'unet'"),
    (["cost", "--model", "espcn", "--profile", "nope"], "no hardware profile named 'nope'"),
    (["cost", "--op", "D-SP", "--in-channels", "4", "--out-channels", "1", "--height", "4",
      "--width", "4", "--scale", "2.5"], "is not an integer or two"),
    (["cost", "--model", "espcn", "--input-shape", "1x1x8x8", "--plot", "x.jpg"],
     "ending in .png"),
])
def test_cli_errors_are_clear(args, message, tmp_path):
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0
    assert message in res.output


def test_cli_calibrate_writes_a_loadable_profile(tmp_path):
    out = tmp_path / "cal.toml"
    res = CliRunner().invoke(main, ["calibrate", "--quick", "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert load_profile(out).name == "calibrated"
    assert out.read_text().startswith("# calibrated on")


def test_upconv_exports_still_the_same_algorithms():
    assert tuple(STRATEGIES[1:]) == upconv.ALGORITHMS
    torch.manual_seed(0)


def test_paper_comparison_rows():
    from upconv.cost.paper import paper_comparison

    rows = paper_comparison(load_profile())
    published = [r for r in rows if r["case"].startswith("ESPCN as published")]
    assert {(r["op"], r["scope"]) for r in published} == {
        ("C-SP", "layer"), ("C-SP", "whole model"), ("C-NN", "layer"), ("C-NN", "whole model")}
    for r in rows:  # REVD2 never costs more energy than the layer as trained
        assert r["energy"] >= 1 and r["time"] >= 0.99, r
    layer = next(r for r in published if r["op"] == "C-SP" and r["scope"] == "layer")
    whole = next(r for r in published if r["op"] == "C-SP" and r["scope"] == "whole model")
    assert whole["energy"] < layer["energy"]  # the trunk's convolutions dilute the gain


# --- functional upsampling (torch.fx walk) ------------------------------------------------


def _conv_macs(model: nn.Module, shape) -> int:
    """Independent count: FLOPs PyTorch's flop counter sees on a real forward pass / 2."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(shape))
    return counter.get_total_flops() // 2


def _upsampling(mc):
    return [(layer.spec.kind, layer.spec.params["scale"], layer.spec.params["in_channels"],
             layer.spec.params["out_channels"], layer.spec.params["height"],
             layer.spec.params["width"]) for layer in mc.upsampling]


class _FunctionalSubPixel(nn.Module):
    """conv module → F.pixel_shuffle, F.conv2d (parameters) → F.pixel_shuffle, strided F.conv2d."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(1, 4, 3, padding=1)
        self.w = nn.Parameter(torch.randn(8, 4, 3, 3))
        self.b = nn.Parameter(torch.randn(8))
        self.w_down = nn.Parameter(torch.randn(2, 2, 3, 3))

    def forward(self, x):
        x = F.pixel_shuffle(self.head(x), 2)  # (N, 1, 2H, 2W)
        x = F.pixel_shuffle(F.conv2d(x.expand(-1, 4, -1, -1), self.w, self.b, padding=1), 2)
        return F.conv2d(x, self.w_down, stride=2)


@pytest.mark.parametrize("arch, expected", [
    ("rrdb-x4", [("C-NN", (2, 2), 8, 8, 6, 7), ("C-NN", (2, 2), 8, 8, 12, 14)]),
    ("srvgg-x4", [("C-SP", 4, 8, 3, 6, 7)]),
])
def test_walk_module_counts_functional_sites_like_the_converter(arch, expected):
    model, _, shape = archs.build(arch)
    mc = walk_module(model, shape)
    assert _upsampling(mc) == expected and mc.notes == ()
    assert combine(mc.under("trained")).macs == _conv_macs(model, shape)
    # every other conv stays plain; converting switches only the upsampling layers
    assert sum(layer.spec.kind == "conv" for layer in mc.layers) == sum(
        isinstance(m, nn.Conv2d) for m in model.modules()) - len(expected)


def test_walk_module_sees_functional_pixel_shuffle_and_conv2d():
    model = _FunctionalSubPixel().eval()
    mc = walk_module(model, (2, 1, 5, 6))
    # the hook walk counted `head` as a plain conv and missed both F.conv2d calls
    assert [(layer.spec.name, layer.spec.kind) for layer in mc.layers] == [
        ("head+pixel_shuffle()", "C-SP"), ("conv2d()+pixel_shuffle_1()", "C-SP"),
        ("conv2d_1()", "conv")]
    assert _upsampling(mc) == [("C-SP", 2, 1, 1, 5, 6), ("C-SP", 2, 4, 2, 10, 12)]
    assert mc.layers[2].counts["conv"] == count_conv(in_channels=2, out_channels=2,
                                                     kernel_size=3, stride=2, height=20,
                                                     width=24, batch=2)
    assert combine(mc.under("trained")).macs == _conv_macs(model, (2, 1, 5, 6))


def test_walk_module_finds_the_converters_sites_and_falls_back_with_a_note():
    for name in archs.ARCHITECTURES:
        model, expected, shape = archs.build(name)
        kinds = [layer.spec.kind for layer in walk_module(model, shape).upsampling]
        assert (kinds.count("C-SP"), kinds.count("C-NN")) == (
            expected["sub-pixel"], expected["resize"]), name
    mc = walk_module(archs.Untraceable(), (1, 1, 8, 8))  # data-dependent control flow
    assert [layer.spec.kind for layer in mc.layers] == ["conv", "C-SP", "C-NN"]
    assert len(mc.notes) == 1 and "torch.fx could not trace" in mc.notes[0]
    assert build_report(mc, load_profile())["notes"] == list(mc.notes)
    assert build_report(walk_module(ESPCN(3), (1, 1, 8, 8)), load_profile())["notes"] == []
