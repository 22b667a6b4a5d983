"""``upconv upscale``, ``upconv evaluate`` and ``upconv demo`` end to end, bad input included."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from upconv.cli import main
from upconv.sr import load_pretrained
from upconv.sr.datasets import koala_path
from upconv.sr.evaluate import y_scores
from upconv.sr.imageio import read_picture
from upconv.sr.images import luma, merge_luma, open_image
from upconv.sr.upscale import upscale_picture

RNG = np.random.default_rng(1)


def _photo(w: int, h: int) -> Image.Image:
    """A smooth colour image (upscaled noise), so SR has something to do."""
    small = RNG.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture()
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _photo(37, 29).save(folder / "rgb.png")
    _photo(30, 20).convert("L").save(folder / "grey.png")
    rgba = _photo(25, 21).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((25, 21)))
    rgba.save(folder / "rgba.png")
    _photo(33, 18).save(folder / "photo.jpg", quality=90)
    return folder


def test_upscale_modes_sizes_and_content(inputs, tmp_path):
    out = tmp_path / "out"
    files = sorted(str(p) for p in inputs.iterdir())
    result = _invoke("upscale", *files, "-o", str(out), "--scale", "3", "--tile", "16")
    assert result.exit_code == 0, result.output
    want = {"rgb-x3.png": ("RGB", (111, 87)), "grey-x3.png": ("L", (90, 60)),
            "rgba-x3.png": ("RGBA", (75, 63)), "photo-x3.png": ("RGB", (99, 54))}
    assert sorted(p.name for p in out.iterdir()) == sorted(want)
    for name, (mode, size) in want.items():
        img = Image.open(out / name)
        assert (img.mode, img.size) == (mode, size), name
    # the written image is the network's Y (on the float luma of the input) with bicubic
    # chroma and alpha: Pillow's 8-bit YCbCr of the output finds that Y again (to rounding,
    # and clipping of colours the bicubic chroma pushes out of the RGB gamut)
    model = load_pretrained("espcn-x3").to_deconv("revd2")
    src = open_image(inputs / "rgba.png")
    rgb = np.asarray(src.convert("RGB"), dtype=np.float64) / 255
    y_in = rgb @ np.array([0.299, 0.587, 0.114])
    with torch.no_grad():
        y = model(torch.from_numpy(y_in).float()[None, None])[0, 0].clamp(0, 1).numpy()
    written = Image.open(out / "rgba-x3.png")
    assert np.abs(luma(written) - y).max() <= 3.5 / 255
    alpha = np.asarray(src.getchannel("A").resize((75, 63), Image.Resampling.BICUBIC))
    assert np.abs(np.asarray(written.getchannel("A")).astype(int) - alpha).max() <= 1


def test_upscale_tiled_equals_untiled(tmp_path):
    src = tmp_path / "big.png"
    _photo(70, 53).save(src)
    runs = {}
    for tile in ("16", "23", "4096"):
        out = tmp_path / f"t{tile}"
        result = _invoke("upscale", str(src), "-o", str(out), "--tile", tile)
        assert result.exit_code == 0, result.output
        runs[tile] = np.asarray(Image.open(out / "big-x3.png"))
    assert np.array_equal(runs["16"], runs["4096"]) and np.array_equal(runs["23"], runs["4096"])


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_upscale_skips_bad_files_and_processes_the_rest(inputs, tmp_path):
    (inputs / "notes.png").write_text("this is text")
    (inputs / "empty.jpg").write_bytes(b"")
    data = _png(_photo(40, 40))
    (inputs / "cut.png").write_bytes(data[: len(data) // 2])
    zero = bytearray(_png(Image.new("L", (1, 4))))
    zero[16:20] = (0).to_bytes(4, "big")
    (inputs / "zero.png").write_bytes(bytes(zero))
    out = tmp_path / "out"
    result = _invoke("upscale", *sorted(str(p) for p in inputs.iterdir()), "-o", str(out))
    assert result.exit_code != 0
    for bad in ("notes.png", "empty.jpg", "cut.png", "zero.png"):
        assert bad in result.output
    assert "4 of 8 input(s) failed" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "grey-x3.png", "photo-x3.png", "rgb-x3.png", "rgba-x3.png"]


def test_upscale_takes_folders_and_reports_empty_ones(inputs, tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    result = _invoke("upscale", str(tmp_path / "empty"), str(inputs), "-o", str(out))
    assert result.exit_code != 0
    assert "no image files" in result.output and "1 of 5 input(s) failed" in result.output
    assert len(list(out.iterdir())) == 4  # the folder's images were still processed


def test_upscale_never_writes_over_an_input(tmp_path):
    a, clash = tmp_path / "a.png", tmp_path / "a-x3.png"
    _photo(20, 20).save(a)
    _photo(20, 20).save(clash)
    before = clash.read_bytes()
    result = _invoke("upscale", str(a), str(clash))  # a's output name is the other input
    assert result.exit_code == 0, result.output
    assert "is an input; writing a-x3-1.png instead" in result.output
    assert clash.read_bytes() == before
    assert Image.open(tmp_path / "a-x3-1.png").size == (60, 60)
    # again: the earlier output exists, so a new name (and say so) ...
    result = _invoke("upscale", str(a))
    assert "exists; writing a-x3-1.png instead" not in result.output
    # a-x3.png is no input now, but it exists: a new name, never a silent overwrite
    assert "a-x3.png exists; writing a-x3-2.png instead" in result.output
    # ... unless --overwrite, which still never touches the inputs
    result = _invoke("upscale", str(a), str(clash), "--overwrite")
    assert clash.read_bytes() == before
    assert "is an input" in result.output


def test_upscale_refusals(tmp_path):
    img = tmp_path / "a.png"
    _photo(20, 20).save(img)
    (tmp_path / "file").write_text("x")
    result = _invoke("upscale", str(img), "-o", str(tmp_path / "file" / "out"))
    assert result.exit_code != 0 and "cannot create output folder" in result.output
    result = _invoke("upscale", str(img), "--scale", "2", "--model", "espcn-x3")
    assert result.exit_code != 0 and "upscales ×3 but --scale is 2" in result.output
    result = _invoke("upscale", str(img), "--model", str(tmp_path / "nope.safetensors"))
    assert result.exit_code != 0 and "neither a bundled name" in result.output
    assert not any(p.name.startswith("a-x") for p in tmp_path.iterdir())


@pytest.mark.parametrize("algorithm", ["conv", "revd2", "tdc"])
def test_upscale_algorithms_agree(tmp_path, algorithm):
    img = tmp_path / "a.png"
    _photo(24, 18).save(img)
    result = _invoke("upscale", str(img), "-o", str(tmp_path / algorithm), "--algorithm",
                     algorithm)
    assert result.exit_code == 0, result.output
    out = np.asarray(Image.open(tmp_path / algorithm / "a-x3.png")).astype(int)
    # the same pipeline with the model as trained (unconverted) gives the same pixels
    ref = upscale_picture(read_picture(img), load_pretrained("espcn-x3"), tile=None)
    assert np.abs(out - ref.pixels.astype(int)).max() <= 1
    # and the float pipeline agrees with the 8-bit Pillow merge up to its roundings
    src = open_image(img)
    with torch.no_grad():
        y = load_pretrained("espcn-x3")(torch.from_numpy(luma(src))[None, None])
    assert np.abs(out - np.asarray(merge_luma(y[0, 0].clamp(0, 1).numpy(), src))).max() <= 6


def test_y_scores_follow_the_protocol():
    truth = RNG.random((30, 40))
    assert y_scores(truth, truth, 3) == (np.inf, 1.0)
    border = truth.copy()
    border[:3] = 0  # only the cropped border differs
    assert y_scores(border, truth, 3) == (np.inf, 1.0)
    inside = truth.copy()
    inside[10, 10] += 0.1
    psnr, ssim = y_scores(inside, truth, 3)
    # one pixel off by 0.1 among 24 × 34: MSE = 0.01 / 816
    assert psnr == pytest.approx(10 * np.log10(816 / 0.01))
    assert ssim < 1.0


def test_evaluate_folder_and_bsd300_layout(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(koala_path(), plain / "koala.jpg")
    _photo(60, 45).save(plain / "b.png")
    result = _invoke("evaluate", str(plain), "--per-image")
    assert result.exit_code == 0, result.output
    for word in ("bicubic", "model", "converted (revd2)", "koala.jpg", "b.png", "mean"):
        assert word in result.output
    bsd = tmp_path / "BSDS300"
    (bsd / "images" / "test").mkdir(parents=True)
    (bsd / "images" / "train").mkdir()
    shutil.copy(koala_path(), bsd / "images" / "test" / "3063.jpg")
    (bsd / "images" / "test" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    result = _invoke("evaluate", str(bsd), "--scale", "3", "--per-image")
    assert "3063.jpg" in result.output and "broken.jpg" in result.output
    assert result.exit_code != 0  # the broken file is reported and counted


def test_evaluate_refusals(tmp_path):
    result = _invoke("evaluate", str(tmp_path / "missing"))
    assert result.exit_code != 0 and "not a folder" in result.output
    result = _invoke("evaluate", str(tmp_path))
    assert result.exit_code != 0 and "no image files" in result.output


def test_demo_prints_the_comparison_and_writes_the_figure(tmp_path):
    result = _invoke("demo", "--outdir", str(tmp_path / "demo"), "--repeats", "1")
    assert result.exit_code == 0, result.output
    for text in ("321×481 → 963×1443", "max |sub-pixel − revd2|", "bicubic", "ESPCN revd2",
                 "whole network ms", "upsampling layer ms"):
        assert text in result.output, text
    assert "cost model (horowitz-45nm)" in result.output
    figure = Image.open(tmp_path / "demo" / "comparison.png")
    assert figure.format == "PNG" and figure.width > 800
    assert Image.open(tmp_path / "demo" / "koala-x3.png").size == (963, 1443)
    diff = float(result.output.split("max |sub-pixel − revd2| over the output:")[1].split()[0])
    assert diff < 1e-5


def test_upscale_device_errors(tmp_path):
    """--device names a device that exists here, else a clear error and nothing written."""
    import torch
    from click.testing import CliRunner
    from PIL import Image

    from upconv.cli import main

    src = tmp_path / "in.png"
    Image.new("L", (20, 20), 128).save(src)
    out = tmp_path / "out"
    no_cuda = "CUDA is not available" if not torch.cuda.is_available() else "does not exist"
    runner = CliRunner()
    for device, message in (("tpu", "use cpu or cuda"), ("cuda:7", no_cuda)):
        res = runner.invoke(main, ["upscale", str(src), "-o", str(out), "--device", device])
        assert res.exit_code != 0 and message in res.output, res.output
        assert not out.exists() or not any(out.iterdir())
    res = runner.invoke(main, ["upscale", str(src), "-o", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
