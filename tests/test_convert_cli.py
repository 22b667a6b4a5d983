"""``upconv convert`` on ONNX files and bundled model names."""

from __future__ import annotations

import archs
import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from upconv.cli import main
from upconv.convert import onnx_subpixel
from upconv.convert.onnx_convert import run_onnx
from upconv.convert.onnx_export import export_onnx
from upconv.sr.pretrained import pretrained_path


def _export(tmp_path, name: str):
    model, _, shape = archs.build(name)
    path = tmp_path / f"{name}.onnx"
    onnx.save(export_onnx(model, torch.randn(*shape)), str(path))
    return model, shape, path


def test_converts_an_onnx_file(tmp_path):
    model, _, src = _export(tmp_path, "espcn-x3")
    before = src.read_bytes()
    out = tmp_path / "out.onnx"
    result = CliRunner().invoke(main, ["convert", str(src), "-o", str(out),
                                       "--input-shape", "1x1x9x11", "--algorithm", "tdc"])
    assert result.exit_code == 0, result.output
    assert "converted  sub-pixel x3" in result.output
    assert "verified on input 1x1x9x11" in result.output
    assert "--algorithm tdc ignored" in result.output
    assert src.read_bytes() == before
    converted = onnx.load(str(out))
    assert "DepthToSpace" not in [n.op_type for n in converted.graph.node]
    x = torch.randn(1, 1, 7, 5)
    with torch.no_grad():
        np.testing.assert_allclose(run_onnx(converted, {"x": x.numpy()})[0], model(x).numpy(),
                                   rtol=1e-4, atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_nothing_convertible_exits_non_zero(tmp_path):
    _, _, src = _export(tmp_path, "fsrcnn-x2")
    out = tmp_path / "out.onnx"
    result = CliRunner().invoke(main, ["convert", str(src), "-o", str(out)])
    assert result.exit_code != 0
    assert "nothing was convertible" in result.output and not out.exists()


def test_verification_failure_exits_non_zero(tmp_path, monkeypatch):
    _, _, src = _export(tmp_path, "espcn-x2")
    real = onnx_subpixel.subpixel_deconv

    def wrong(conv, scale, algorithm):
        deconv = real(conv, scale, algorithm)
        with torch.no_grad():
            deconv.weight.mul_(1.5)
        return deconv

    monkeypatch.setattr(onnx_subpixel, "subpixel_deconv", wrong)
    out = tmp_path / "out.onnx"
    result = CliRunner().invoke(main, ["convert", str(src), "-o", str(out)])
    assert result.exit_code != 0 and "verification failed" in result.output
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["missing.onnx"], "neither an existing file (.onnx, .pth"),
    (["espcn-x3", "--input-shape", "1x1x3"], "N x C x H x W"),
    (["espcn-x3", "--input-shape", "axbxcxd"], "N x C x H x W"),
])
def test_bad_arguments(tmp_path, args, message):
    result = CliRunner().invoke(main, ["convert", *args, "-o", str(tmp_path / "o.onnx")])
    assert result.exit_code != 0 and message in result.output


def test_refuses_to_overwrite_the_input(tmp_path):
    _, _, src = _export(tmp_path, "espcn-x2")
    before = src.read_bytes()
    result = CliRunner().invoke(main, ["convert", str(src), "-o", str(src)])
    assert result.exit_code != 0 and "overwrite the input" in result.output
    assert src.read_bytes() == before


def test_bundled_model_name(tmp_path):
    out = tmp_path / "espcn.onnx"
    args = ["convert", "espcn-resize-x3", "-o", str(out), "--input-shape", "1x1x10x12",
            "--algorithm", "stdd"]
    result = CliRunner().invoke(main, [*args, "--random-weights"])
    assert result.exit_code == 0, result.output
    assert "converted  resize x3 at upsample" in result.output
    assert "weights are random" in result.output
    exported = onnx.load(str(out))
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 9)).astype(np.float32)
    assert run_onnx(exported, {"x": x})[0].shape == (2, 1, 18, 27)  # dynamic axes kept
    out.unlink()
    result = CliRunner().invoke(main, args)
    if pretrained_path("espcn-resize-x3").is_file():
        assert result.exit_code == 0 and "weights are random" not in result.output
    else:
        assert result.exit_code != 0 and "--random-weights" in result.output
    result = CliRunner().invoke(main, ["convert", "espcn-x2", "-o", str(tmp_path / "m.pt"),
                                       "--random-weights"])
    assert result.exit_code != 0 and ".onnx output path" in result.output
