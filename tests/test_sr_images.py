"""Image I/O for super-resolution: modes, Y/chroma/alpha, bad files, atomic writes."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from upconv.sr.atomic import atomic_write
from upconv.sr.images import (
    ImageError,
    bicubic_upscale,
    luma,
    merge_luma,
    modcrop,
    open_image,
    save_image,
    to_supported_mode,
)

RNG = np.random.default_rng(0)


def _rgb(w: int = 20, h: int = 14) -> Image.Image:
    return Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_luma_matches_pillow_ycbcr_and_grey():
    img = _rgb()
    y = luma(img)
    assert y.dtype == np.float32 and y.shape == (14, 20)
    np.testing.assert_array_equal(y * 255, np.asarray(img.convert("YCbCr"))[..., 0])
    grey = img.convert("L")
    np.testing.assert_array_equal(luma(grey) * 255, np.asarray(grey))
    rgba = img.convert("RGBA")
    np.testing.assert_array_equal(luma(rgba), y)


def _muted(w: int = 20, h: int = 14) -> Image.Image:
    """Colours well inside the RGB gamut, so YCbCr -> RGB never clips."""
    return Image.fromarray(RNG.integers(96, 160, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_merge_luma_keeps_mode_chroma_and_alpha(mode):
    src = _muted().convert(mode)
    if "A" in mode:
        alpha = Image.fromarray(RNG.integers(0, 256, (14, 20), dtype=np.uint8))
        src.putalpha(alpha)
    up_y = bicubic_upscale(luma(src), 3)
    out = merge_luma(up_y, src)
    assert out.mode == mode and out.size == (60, 42)
    # Y of the result is the Y given (up to Pillow's 8-bit YCbCr -> RGB -> YCbCr round trip)
    assert np.abs(luma(out) - up_y).max() <= 3 / 255
    if "A" in mode:
        want = np.asarray(src.getchannel("A").resize((60, 42), Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(np.asarray(out.getchannel("A")), want)


def test_other_modes_are_converted():
    assert to_supported_mode(Image.new("1", (4, 4))).mode == "L"
    assert to_supported_mode(Image.new("CMYK", (4, 4))).mode == "RGB"
    pal = _rgb().convert("P")
    assert to_supported_mode(pal).mode == "RGB"
    pal.info["transparency"] = 0
    assert to_supported_mode(pal).mode == "RGBA"
    deep = Image.fromarray(np.full((3, 3), 65535, dtype=np.uint16))
    out = to_supported_mode(deep)
    assert out.mode == "L" and np.asarray(out).max() == 255


def test_modcrop():
    assert modcrop(_rgb(20, 14), 3).size == (18, 12)
    with pytest.raises(ImageError, match="smaller than scale"):
        modcrop(_rgb(2, 5), 3)


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_open_image_reports_bad_files(tmp_path):
    (tmp_path / "notes.png").write_text("not an image at all")
    with pytest.raises(ImageError, match="not an image file"):
        open_image(tmp_path / "notes.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="not an image file"):
        open_image(tmp_path / "empty.jpg")
    data = _png_bytes(_rgb(64, 64))
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        open_image(tmp_path / "cut.png")
    with pytest.raises(ImageError, match="no such file"):
        open_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="folder"):
        open_image(tmp_path)


def test_open_image_rejects_zero_sized(tmp_path):
    # a PNG header claiming 0 × 5 pixels
    data = bytearray(_png_bytes(Image.new("L", (1, 5))))
    data[16:20] = (0).to_bytes(4, "big")
    (tmp_path / "zero.png").write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"zero\.png"):
        open_image(tmp_path / "zero.png")


def test_open_image_reads_good_files(tmp_path):
    img = _rgb()
    save_image(img, tmp_path / "a.png")
    back = open_image(tmp_path / "a.png")
    assert back.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(back), np.asarray(img))


def test_save_image_is_atomic_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.png"
    save_image(_rgb(), target)
    before = target.read_bytes()

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_bytes() == before  # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["out.png"]  # no temp file left behind


def test_save_image_errors(tmp_path):
    with pytest.raises(ValueError, match="format"):
        save_image(_rgb(), tmp_path / "out.unknown")
    with pytest.raises(ValueError, match="alpha"):
        save_image(_rgb().convert("RGBA"), tmp_path / "out.jpg")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="cannot write to folder"):
        save_image(_rgb(), tmp_path / "file" / "out.png")
