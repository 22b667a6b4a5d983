"""upconv.load_model and the checkpoint paths of the CLI, on checkpoints written here.

Small random spandrel models (Compact / SRVGG, ESRGAN) saved as safetensors and as
``torch.save`` state dicts; a pickle whose ``__reduce__`` would run a command; TorchScript;
unknown architectures; spandrel or torchvision missing.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

import upconv
from upconv.cli import main
from upconv.cli.sr import _load
from upconv.convert.onnx_convert import run_onnx
from upconv.load import CheckpointNetwork


def _compact(scale=4, seed=0):
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    return Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=scale).eval()


def _esrgan(seed=0):
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    return ESRGAN(num_filters=8, num_blocks=1, scale=2).eval()


def _same_function(a, b, x):
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


@pytest.mark.parametrize("fmt", ["safetensors", "pth", "pth-params_ema", "ckpt-state_dict"])
def test_loads_a_checkpoint_and_detects_its_architecture(tmp_path, fmt):
    model = _compact()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        path = tmp_path / "compact.safetensors"
        save_file(state, str(path))
    else:
        ext, _, wrap = fmt.partition("-")
        path = tmp_path / f"compact.{ext}"
        torch.save({wrap: state} if wrap else state, path)
    loaded = upconv.load_model(path)
    assert (loaded.architecture, loaded.scale, loaded.input_channels,
            loaded.output_channels, loaded.purpose) == ("Compact", 4, 3, 3, "SR")
    assert not loaded.model.training and loaded.path == path
    _same_function(loaded.model, model, torch.rand(1, 3, 7, 9))


def test_example_input_meets_the_size_requirements(tmp_path):
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(0)
    model = SwinIR(embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=2,
                   upsampler="pixelshuffledirect", img_size=16, mlp_ratio=1.0)
    path = tmp_path / "swinir.pth"
    torch.save(model.state_dict(), path)
    loaded = upconv.load_model(path)
    assert loaded.architecture == "SwinIR" and loaded.size_minimum == 16
    assert loaded.example_input(5, 21).shape == (1, 3, 16, 21)


class _Payload:
    """Unpickling this runs ``touch <marker>``: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "payload": _Payload(marker)}, path)
    with pytest.raises(ValueError, match="never unpickles code"):
        upconv.load_model(path)
    # spandrel's own loader refuses it too (its restricted unpickler allows tensors only)
    import spandrel

    with pytest.raises(Exception, match="forbidden"):
        spandrel.ModelLoader().load_from_file(path)
    assert not marker.exists()


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        upconv.load_model(tmp_path / "missing.pth")
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unsupported extension '\.onnx'"):
        upconv.load_model(onnx_file)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        upconv.load_model(junk)
    unknown = tmp_path / "unknown.pth"
    torch.save({"foo.weight": torch.zeros(3, 3)}, unknown)
    with pytest.raises(ValueError, match="does not recognise this architecture"):
        upconv.load_model(unknown)
    script = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(1, 1, 1)), str(script))
    with pytest.raises(ValueError, match="TorchScript program, not a checkpoint"):
        upconv.load_model(script)


def _hide(monkeypatch, *names):
    """Make ``import <name>`` fail as if not installed (spandrel re-imported afterwards)."""
    for mod in [m for m in sys.modules if m == "spandrel" or m.startswith("spandrel.")]:
        monkeypatch.delitem(sys.modules, mod)
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


def test_missing_spandrel_says_how_to_install_it(tmp_path, monkeypatch):
    path = tmp_path / "m.pth"
    torch.save(_compact().state_dict(), path)
    _hide(monkeypatch, "spandrel")
    with pytest.raises(ImportError, match=r"pip install --no-deps spandrel==0\.4\.2"):
        upconv.load_model(path)


def test_missing_torchvision_says_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "m.pth"
    torch.save(_compact().state_dict(), path)
    _hide(monkeypatch, "torchvision", "torchvision.transforms",
          "torchvision.transforms.functional")
    with pytest.raises(ImportError, match=r"spandrel imports torchvision.*matches your torch"):
        upconv.load_model(path)


@pytest.mark.parametrize("ext", ["safetensors", "pth"])
def test_cli_converts_a_checkpoint_to_onnx(tmp_path, ext):
    model = _esrgan()
    path = tmp_path / f"esrgan.{ext}"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path)) if ext == "safetensors" else torch.save(state, path)
    before = path.read_bytes()
    out = tmp_path / "esrgan-deconv.onnx"
    result = CliRunner().invoke(main, ["convert", str(path), "-o", str(out), "--input-shape",
                                       "1x3x12x10", "--algorithm", "stdd"])
    assert result.exit_code == 0, result.output
    assert "converted  resize x2 at model.3" in result.output
    assert "ESRGAN ×2, 3 → 3 channels (detected by spandrel)" in result.output
    assert "exported graph checked in ONNX Runtime" in result.output
    assert path.read_bytes() == before
    graph = onnx.load(str(out))
    ops = [n.op_type for n in graph.graph.node]
    assert "ConvTranspose" in ops and "Resize" not in ops
    x = torch.rand(1, 3, 9, 13)  # dynamic H and W
    with torch.no_grad():
        np.testing.assert_allclose(run_onnx(graph, {"x": x.numpy()})[0], model(x).numpy(),
                                   rtol=1e-4, atol=1e-5)


def test_cli_refuses_unknown_checkpoints(tmp_path):
    path = tmp_path / "unknown.safetensors"
    save_file({"foo": torch.zeros(2)}, str(path))
    result = CliRunner().invoke(main, ["convert", str(path), "-o", str(tmp_path / "o.onnx")])
    assert result.exit_code != 0 and "does not recognise" in result.output
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "nope.bin"), "-o", "o.onnx"])
    assert result.exit_code != 0 and ".safetensors" in result.output


def test_upscale_model_loader_falls_back_to_checkpoints(tmp_path):
    path = tmp_path / "compact-x2.pth"
    model = _compact(scale=2)
    torch.save(model.state_dict(), path)
    net = _load(str(path), 2)
    assert isinstance(net, CheckpointNetwork) and net.architecture == "Compact"
    assert (net.scale, net.input_channels) == (2, 3)
    with pytest.raises(Exception, match=r"×2 Compact model but --scale is 3"):
        _load(str(path), 3)
    assert _load("espcn-x3", 3).scale == 3  # upconv's own models first
    edge = net.to_deconv("stdd")
    assert len(edge.report.converted) == 1
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(edge(x), model(x), rtol=1e-4, atol=1e-5)


def test_upscale_runs_a_checkpoint_on_rgb(tmp_path):
    from PIL import Image

    path = tmp_path / "compact-x2.safetensors"
    model = _compact(scale=2)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    rgb = np.random.default_rng(0).integers(0, 256, (21, 19, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    outs = {}
    for algorithm, tile in [("conv", "256"), ("stdd", "16")]:
        out = tmp_path / algorithm
        result = CliRunner().invoke(main, ["upscale", str(tmp_path / "in.png"), "--model",
                                           str(path), "--scale", "2", "-o", str(out),
                                           "--algorithm", algorithm, "--tile", tile])
        assert result.exit_code == 0, result.output
        (written,) = out.iterdir()
        outs[algorithm] = np.asarray(Image.open(written))
    assert outs["conv"].shape == (42, 38, 3)
    with torch.no_grad():
        want = model(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)[0]
    want = (want.clamp(0, 1).permute(1, 2, 0) * 255).round().numpy()
    assert np.abs(outs["conv"] - want).max() <= 1
    assert np.abs(outs["stdd"].astype(int) - outs["conv"]).max() <= 1
