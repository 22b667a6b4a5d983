"""Bundled weights and model files: quality against bicubic, round trips, refusals."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from upconv.sr import ESPCN, PRETRAINED, load_pretrained, save_model
from upconv.sr.datasets import koala_path, make_pair
from upconv.sr.evaluate import evaluate_pair
from upconv.sr.images import open_image
from upconv.sr.pretrained import load_for_scale, pretrained_path


@pytest.fixture(scope="module")
def koala():
    return open_image(koala_path())


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_bundled_model_beats_bicubic_on_the_koala(name, koala):
    scale, upsampler = PRETRAINED[name]
    path = pretrained_path(name)
    assert path.stat().st_size < 1_000_000
    model = load_pretrained(name)
    assert (model.scale, model.upsampler, model.training) == (scale, upsampler, False)
    scores = evaluate_pair(make_pair("koala", koala, scale), model, model.to_deconv("revd2"))
    assert scores.psnr["model"] > scores.psnr["bicubic"] + 0.3
    assert scores.ssim["model"] > scores.ssim["bicubic"]
    assert scores.max_diff < 1e-5  # the converted path computes the same function
    assert scores.psnr["converted"] == pytest.approx(scores.psnr["model"], abs=1e-3)


@pytest.mark.parametrize(("scale", "upsampler"), [(2, "resize"), (4, "subpixel")])
def test_save_load_round_trip(tmp_path, scale, upsampler):
    torch.manual_seed(0)
    model = ESPCN(scale, upsampler)
    save_model(model, tmp_path / "m.safetensors", note="test")
    back = load_pretrained(tmp_path / "m.safetensors")
    assert (back.scale, back.upsampler) == (scale, upsampler)
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


def _meta(scale: int = 3, upsampler: str = "subpixel") -> dict[str, str]:
    return {"upconv.arch": "espcn", "upconv.scale": str(scale), "upconv.upsampler": upsampler,
            "upconv.channels": "1"}


def test_wrong_architecture_names_the_keys(tmp_path):
    state = ESPCN(3).state_dict()
    missing = {k: v for k, v in state.items() if k != "conv3.weight"}
    save_file(missing, tmp_path / "missing.safetensors", metadata=_meta())
    with pytest.raises(ValueError, match=r"missing keys \['conv3.weight'\]"):
        load_pretrained(tmp_path / "missing.safetensors")
    extra = {**state, "conv9.weight": torch.zeros(1)}
    save_file(extra, tmp_path / "extra.safetensors", metadata=_meta())
    with pytest.raises(ValueError, match=r"unexpected keys \['conv9.weight'\]"):
        load_pretrained(tmp_path / "extra.safetensors")
    save_file(state, tmp_path / "x2.safetensors", metadata=_meta(scale=2))
    wrong = r"upsample\.weight: \(9, 32, 3, 3\) \(expected \(4, 32, 3, 3\)\)"
    with pytest.raises(ValueError, match=wrong):
        load_pretrained(tmp_path / "x2.safetensors")
    save_file(state, tmp_path / "bare.safetensors")
    with pytest.raises(ValueError, match="no upconv ESPCN metadata"):
        load_pretrained(tmp_path / "bare.safetensors")


def test_checkpoint_of_wrong_architecture(tmp_path):
    ckpt = {"model": ESPCN(3, "resize").state_dict(), "config": {"scale": 3,
                                                                   "upsampler": "subpixel"}}
    torch.save(ckpt, tmp_path / "c.pt")
    wrong = r"upsample\.weight: \(1, 32, 3, 3\) \(expected \(9, 32, 3, 3\)\)"
    with pytest.raises(ValueError, match=wrong):
        load_pretrained(tmp_path / "c.pt")


class _Payload:
    def __reduce__(self):
        return (exec, ("open(MARKER, 'w').write('ran')", {"MARKER": str(_Payload.marker)}))


def test_loading_never_runs_pickled_code(tmp_path):
    _Payload.marker = tmp_path / "pwned"
    with (tmp_path / "evil.pt").open("wb") as f:
        torch.save({"model": _Payload(), "config": {}}, f, pickle_module=pickle)
    with pytest.raises(ValueError, match="not a readable upconv checkpoint"):
        load_pretrained(tmp_path / "evil.pt")
    assert not _Payload.marker.exists()


def test_bad_names_and_files(tmp_path):
    with pytest.raises(ValueError, match="espcn-x3"):
        load_pretrained("espcn-x7")
    with pytest.raises(ValueError, match="folder"):
        load_pretrained(tmp_path)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 32)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_pretrained(tmp_path / "junk.safetensors")
    with pytest.raises(ValueError, match=r"upscales ×3 but --scale is 2"):
        load_for_scale("espcn-x3", 2)
    with pytest.raises(ValueError, match="no bundled model for scale 5"):
        load_for_scale(None, 5)
