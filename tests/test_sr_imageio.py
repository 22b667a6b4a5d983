"""Images at full precision: bit depth, float TIFF, ICC / dpi / EXIF, orientation, formats,
and networks on luma or RGB."""

from __future__ import annotations

import io

import numpy as np
import png
import pytest
import tifffile
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageOps

from upconv.cli import main
from upconv.sr import load_pretrained
from upconv.sr.channels import colour_plan, input_channels
from upconv.sr.imageio import Picture, read_picture
from upconv.sr.metadata import ImageMeta, orient
from upconv.sr.pixels import (
    quantize,
    resize_plane,
    rgb_to_ycbcr,
    to_float,
    ycbcr_to_rgb,
    ycbcr_to_rgb_inplace,
)
from upconv.sr.upscale import upscale_float, upscale_picture

RNG = np.random.default_rng(14)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
       b'22-rdf-syntax-ns#"><rdf:Description dc:title="koala" xmlns:dc="http://purl.org/dc/'
       b'elements/1.1/"/></rdf:RDF></x:xmpmeta>')


@pytest.fixture(scope="module")
def espcn():
    return load_pretrained("espcn-x2")


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _smooth(h: int, w: int, c: int, top: float) -> np.ndarray:
    """A smooth random image (bicubic-upscaled noise) with samples in ``[0, top]``."""
    small = RNG.random((h // 4 + 2, w // 4 + 2, c))
    planes = [np.asarray(Image.fromarray(small[..., k].astype(np.float32)).resize(
        (w, h), Image.Resampling.BICUBIC)) for k in range(c)]
    return np.clip(np.stack(planes, -1), 0, 1) * top


def _net_on_luma(model, y: np.ndarray) -> np.ndarray:
    """The float32 path for grey: the network on ``y`` (float ``(H, W)`` in [0, 1])."""
    with torch.no_grad():
        return model(torch.from_numpy(y.astype(np.float32))[None, None])[0, 0].clamp(0, 1).numpy()


# --- depth -----------------------------------------------------------------------------


def test_16bit_grey_png_stays_16bit_at_float32_accuracy(tmp_path, espcn):
    grey = np.rint(_smooth(20, 26, 1, 65534.0)[..., 0]).astype(np.uint16)
    grey[0, :4] = (65534, 1, 257 * 100 + 3, 40000)  # full range, values between 8-bit steps
    Image.fromarray(grey).save(tmp_path / "deep.png")
    result = _invoke("upscale", str(tmp_path / "deep.png"), "--scale", "2", "-o",
                     str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    out = Image.open(tmp_path / "out" / "deep-x2.png")
    assert out.mode == "I;16" and out.size == (52, 40)
    ref = _net_on_luma(espcn.to_deconv("revd2"), grey / 65535.0) * 65535.0
    err = np.abs(np.asarray(out, dtype=np.float64) - ref)
    # rounding to 16 bits (0.5) and float32 ulps only; 8-bit rounding would be ~128
    assert err.max() <= 0.55
    assert np.any(np.asarray(out) % 257 != 0)


@pytest.mark.parametrize("kind", ["png-rgb", "png-rgba", "tiff-rgb", "tiff-grey-alpha"])
def test_16bit_colour_round_trip(tmp_path, espcn, kind):
    fmt, layout = kind.split("-", 1)
    c = {"rgb": 3, "rgba": 4, "grey-alpha": 2}[layout]
    pixels = np.rint(_smooth(18, 22, c, 65535.0)).astype(np.uint16)
    src = tmp_path / f"in.{'png' if fmt == 'png' else 'tif'}"
    if fmt == "png":
        png.Writer(22, 18, greyscale=c < 3, alpha=c in (2, 4), bitdepth=16).write(
            src.open("wb"), pixels.reshape(18, -1))
    else:
        tifffile.imwrite(src, pixels, photometric="rgb" if c >= 3 else "minisblack",
                         extrasamples=("unassalpha",) if c in (2, 4) else None,
                         iccprofile=SRGB if c == 3 else None, resolution=(300, 300),
                         resolutionunit="INCH")
    pic = read_picture(src)
    assert pic.pixels.dtype == np.uint16 and np.array_equal(pic.pixels, pixels)
    result = _invoke("upscale", str(src), "--scale", "2", "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    dst = tmp_path / "out" / f"in-x2{src.suffix}"
    if fmt == "png":
        w, h, rows, info = png.Reader(filename=str(dst)).asDirect()
        assert (info["bitdepth"], info["planes"]) == (16, c)
        written = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(h, w, c)
    else:
        written = tifffile.imread(dst).reshape(36, 44, c)
        if c == 3:  # written by tifffile: Pillow still finds the profile and the dpi
            a, b = Image.open(src), Image.open(dst)
            assert b.info["icc_profile"] == a.info["icc_profile"] == SRGB
            assert b.info["dpi"] == a.info["dpi"] == (300, 300)
    assert written.dtype == np.uint16 and written.shape == (36, 44, c)
    # at most one 16-bit step from the float32 path (8 bits would be ~257 steps)
    ref = upscale_float(to_float(pixels)[None], espcn.to_deconv("revd2"), tile=None)[0]
    assert np.abs(written - ref * 65535.0).max() <= 1.0
    assert np.any(written % 257 != 0)


def test_float32_tiff_stays_float_and_unclipped(tmp_path, espcn):
    grey = _smooth(16, 20, 1, 1.0)[..., 0].astype(np.float32) * 1.4 - 0.2  # beyond [0, 1]
    Image.fromarray(grey).save(tmp_path / "grey.tif")  # Pillow's F mode
    rgb = _smooth(16, 20, 3, 1.0).astype(np.float32)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")  # Pillow cannot read this
    result = _invoke("upscale", str(tmp_path / "grey.tif"), str(tmp_path / "rgb.tif"),
                     "--scale", "2", "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    out_grey = tifffile.imread(tmp_path / "out" / "grey-x2.tif")
    out_rgb = tifffile.imread(tmp_path / "out" / "rgb-x2.tif")
    assert out_grey.dtype == np.float32 and out_grey.shape == (32, 40)
    assert out_rgb.dtype == np.float32 and out_rgb.shape == (32, 40, 3)
    model = espcn.to_deconv("revd2")
    with torch.no_grad():
        ref = model(torch.from_numpy(grey)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(out_grey, ref, atol=1e-6)
    assert out_grey.min() < 0 and out_grey.max() > 1  # float samples are not clipped
    ref_rgb = upscale_float(rgb[None], model, tile=None, clip=False)[0]
    np.testing.assert_allclose(out_rgb, ref_rgb, atol=1e-6)


def test_ycbcr_matches_pillow_and_inverts():
    rgb8 = RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    ycc = rgb_to_ycbcr(rgb8 / np.float32(255))
    pillow = np.asarray(Image.fromarray(rgb8).convert("YCbCr"), dtype=np.float32) / 255
    assert np.abs(ycc - pillow).max() <= 1 / 255  # Pillow rounds to 8 bits
    np.testing.assert_allclose(ycbcr_to_rgb(ycc), rgb8 / 255.0, atol=1e-5)
    four = np.concatenate([ycc, np.ones((9, 11, 1), np.float32)], -1)[None]
    ycbcr_to_rgb_inplace(four[..., :3])  # over a strided view, block by block
    np.testing.assert_allclose(four[0, ..., :3], rgb8 / 255.0, atol=1e-5)
    assert np.all(four[..., 3] == 1)
    assert np.array_equal(quantize(to_float(rgb8), np.uint8), rgb8)


# --- metadata --------------------------------------------------------------------------


def _exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "Canon", "EOS 5D", orientation
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = "2021:05:04 10:20:30"  # DateTimeOriginal
    sub[0xA002], sub[0xA003] = 30, 20  # pixel dimensions
    return exif


def _check_meta(src, dst, size):
    a, b = Image.open(src), Image.open(dst)
    assert b.info.get("icc_profile") == a.info.get("icc_profile") == SRGB
    # PNG stores pixels per metre: 72 dpi comes back as 72.009 from both files
    assert b.info.get("dpi") == pytest.approx(a.info.get("dpi"), rel=2e-4)
    ea, eb = a.getexif(), b.getexif()
    for tag in (0x010F, 0x0110):
        assert eb.get(tag) == ea.get(tag)
    if dst.suffix != ".tif":  # TIFF outputs keep IFD0 tags only (noted)
        assert eb.get_ifd(0x8769)[0x9003] == ea.get_ifd(0x8769)[0x9003]
        assert (eb.get_ifd(0x8769)[0xA002], eb.get_ifd(0x8769)[0xA003]) == size
    assert eb.get(0x0112, 1) == 1


@pytest.mark.parametrize("name", ["photo.jpg", "photo.png", "photo.tif", "deep.png"])
def test_icc_dpi_and_exif_survive(tmp_path, name):
    src = tmp_path / name
    rgb8 = np.rint(_smooth(20, 30, 3, 255.0)).astype(np.uint8)
    if name == "deep.png":  # 16-bit colour: pixels by pypng, metadata chunks copied in
        Image.fromarray(rgb8).save(tmp_path / "tmp.png", icc_profile=SRGB, dpi=(300, 300),
                                   exif=_exif().tobytes())
        chunks = list(png.Reader(filename=str(tmp_path / "tmp.png")).chunks())
        buf = io.BytesIO()
        png.Writer(30, 20, greyscale=False, bitdepth=16).write(
            buf, (rgb8.astype(np.uint16) * 257).reshape(20, -1))
        pixels = list(png.Reader(bytes=buf.getvalue()).chunks())
        meta = [ch for ch in chunks if ch[0] in (b"iCCP", b"pHYs", b"eXIf")]
        with src.open("wb") as f:
            png.write_chunks(f, [pixels[0], *meta, *pixels[1:]])
    else:
        extra = {"xmp": XMP} if name == "photo.jpg" else {}
        Image.fromarray(rgb8).save(src, icc_profile=SRGB, dpi=(300, 300), exif=_exif(),
                                   **extra)
    result = _invoke("upscale", str(src), "--scale", "2", "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    suffix = {".jpg": ".png"}.get(src.suffix, src.suffix)
    dst = tmp_path / "out" / f"{src.stem}-x2{suffix}"
    _check_meta(src, dst, (60, 40))
    if name == "deep.png":
        assert read_picture(dst).pixels.dtype == np.uint16
    if name == "photo.jpg":  # the JPEG's XMP packet becomes the PNG's XMP text chunk
        out = Image.open(dst)
        out.load()
        assert out.info["xmp"] == XMP


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pillow(orientation):
    pixels = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.info["exif"] = exif.tobytes()
    want = np.asarray(ImageOps.exif_transpose(img))
    assert np.array_equal(orient(pixels, orientation), want)


def test_exif_orientation_is_applied_and_reset(tmp_path):
    # left third dark, the rest bright; stored 40 wide × 20 high, shown rotated 90° clockwise
    stored = np.full((20, 40, 3), 220, np.uint8)
    stored[:, :13] = 30
    src = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(src, exif=_exif(orientation=6), quality=95, icc_profile=SRGB)
    result = _invoke("upscale", str(src), "--scale", "2", "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    out = Image.open(tmp_path / "out" / "phone-x2.png")
    shown = ImageOps.exif_transpose(Image.open(src))  # as a viewer shows the input
    assert shown.size == (20, 40) and out.size == (40, 80)
    assert out.getexif().get(0x0112, 1) == 1  # a viewer shows the output as it is stored
    expected = np.asarray(shown.resize(out.size, Image.Resampling.BICUBIC), dtype=float)
    assert np.abs(np.asarray(out, dtype=float) - expected).mean() < 6
    _check_meta(src, tmp_path / "out" / "phone-x2.png", (40, 80))


# --- formats ---------------------------------------------------------------------------


def test_output_format_follows_lossless_inputs_and_format_option(tmp_path):
    rgb = Image.fromarray(np.rint(_smooth(16, 18, 3, 255.0)).astype(np.uint8))
    for name in ("a.png", "b.tiff", "c.jpg", "d.bmp", "e.webp"):
        rgb.save(tmp_path / name)
    rgb.convert("RGBA").save(tmp_path / "f.png")
    out = tmp_path / "out"
    result = _invoke("upscale", *sorted(str(p) for p in tmp_path.iterdir()), "--scale", "2",
                     "-o", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "a-x2.png", "b-x2.tiff", "c-x2.png", "d-x2.png", "e-x2.png", "f-x2.png"]
    assert Image.open(out / "b-x2.tiff").format == "TIFF"
    result = _invoke("upscale", str(tmp_path / "c.jpg"), str(tmp_path / "a.png"), "--scale",
                     "2", "--format", "tiff", "-o", str(tmp_path / "tiff"))
    assert result.exit_code == 0, result.output
    assert {Image.open(p).format for p in (tmp_path / "tiff").iterdir()} == {"TIFF"}
    result = _invoke("upscale", str(tmp_path / "a.png"), str(tmp_path / "f.png"), "--scale",
                     "2", "--format", "jpeg", "-o", str(tmp_path / "jpeg"))
    assert result.exit_code != 0 and "f.png" in result.output and "no alpha" in result.output
    assert [p.name for p in (tmp_path / "jpeg").iterdir()] == ["a-x2.jpg"]


# --- several frames: animations and multi-page TIFF --------------------------------------


def _frame_up(frame: np.ndarray, net) -> np.ndarray:
    """One frame upscaled on its own (the reference for a frame of an animation)."""
    return upscale_picture(Picture(frame, ImageMeta()), net).pixels


def _frames_of(path) -> list[np.ndarray]:
    with Image.open(path) as img:
        out = []
        for i in range(getattr(img, "n_frames", 1)):
            img.seek(i)
            out.append(np.asarray(img.convert("RGBA") if img.mode == "RGBA" else img).copy())
        return out


def test_animated_gif_keeps_every_frame_timing_and_loop(tmp_path, espcn):
    # three different frames; the first has a transparent pixel (a palette entry), so every
    # frame becomes RGBA
    rgb = [np.rint(_smooth(14, 18, 3, 255.0)).astype(np.uint8) for _ in range(3)]
    frames = [Image.fromarray(a) for a in rgb]
    frames[0] = frames[0].quantize(255)
    frames[0].putpixel((0, 0), 255)
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:],
                   duration=[100, 200, 300], loop=0, transparency=255)
    pic = read_picture(tmp_path / "a.gif")
    assert pic.frame_count == 3 and pic.durations == [100, 200, 300] and pic.loop == 0
    assert pic.channels == 4 and all(f.shape == (14, 18, 4) for f in pic.all_frames())
    result = _invoke("upscale", str(tmp_path / "a.gif"), "--scale", "2", "-o",
                     str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    # both sides of the summary line say how many frames
    assert "(18×14 RGBA 8-bit, 3 frames) -> " in result.output
    assert "a-x2.png (36×28, 3 frames)" in result.output
    out = tmp_path / "out" / "a-x2.png"
    with Image.open(out) as img:
        assert img.format == "PNG" and img.n_frames == 3 and img.info["loop"] == 0
        durations = []
        for i in range(3):
            img.seek(i)
            durations.append(img.info["duration"])
    assert durations == [100, 200, 300]
    net = espcn.to_deconv("revd2")
    for got, frame in zip(_frames_of(out), pic.all_frames(), strict=True):
        assert np.abs(got.astype(int) - _frame_up(frame, net)).max() <= 1


def test_animated_webp_with_alpha_becomes_an_animated_png(tmp_path, espcn):
    rgba = [np.rint(_smooth(12, 16, 4, 255.0)).astype(np.uint8) for _ in range(2)]
    Image.fromarray(rgba[0]).save(tmp_path / "a.webp", save_all=True, lossless=True,
                                  append_images=[Image.fromarray(rgba[1])], duration=[40, 80])
    pic = read_picture(tmp_path / "a.webp")
    up = upscale_picture(pic, espcn)
    assert up.frame_count == 2 and up.durations == [40, 80]
    from upconv.sr.imageio import write_picture

    write_picture(up, tmp_path / "a-x2.png", "png")
    got = _frames_of(tmp_path / "a-x2.png")
    assert [g.shape for g in got] == [(24, 32, 4)] * 2
    for g, want in zip(got, up.all_frames(), strict=True):
        np.testing.assert_array_equal(g, want)


def test_multipage_tiff_keeps_every_page_at_its_depth_and_size(tmp_path, espcn):
    pages = [np.rint(_smooth(10, 12, 3, 65535.0)).astype(np.uint16),
             np.rint(_smooth(6, 8, 3, 65535.0)).astype(np.uint16)]  # a smaller second page
    with tifffile.TiffWriter(tmp_path / "p.tif") as tif:
        for page in pages:
            tif.write(page, photometric="rgb")
    result = _invoke("upscale", str(tmp_path / "p.tif"), "--scale", "2", "-o",
                     str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(tmp_path / "out" / "p-x2.tif") as tif:
        got = [page.asarray() for page in tif.pages]
    assert [g.shape for g in got] == [(20, 24, 3), (12, 16, 3)]
    assert all(g.dtype == np.uint16 for g in got)
    net = espcn.to_deconv("revd2")
    for g, page in zip(got, pages, strict=True):
        assert np.abs(g.astype(int) - _frame_up(page, net)).max() <= 1
    # pages of different sizes cannot be one animated PNG: said, and nothing written
    result = _invoke("upscale", str(tmp_path / "p.tif"), "--scale", "2", "--format", "png",
                     "-o", str(tmp_path / "png"))
    assert result.exit_code != 0 and "choose --format tiff" in result.output
    assert not list((tmp_path / "png").iterdir())


def test_multipage_float_rgb_tiff_pillow_cannot_open(tmp_path):
    pages = [RNG.random((5, 6, 3)).astype(np.float32) * 2 - 0.5 for _ in range(2)]
    with tifffile.TiffWriter(tmp_path / "f.tif") as tif:
        for page in pages:
            tif.write(page, photometric="rgb")
    pic = read_picture(tmp_path / "f.tif")  # read by tifffile alone
    assert pic.frame_count == 2
    for got, page in zip(pic.all_frames(), pages, strict=True):
        np.testing.assert_array_equal(got, page)


def test_grey_multipage_tiff_through_pillow(tmp_path, espcn):
    pages = [Image.fromarray(np.rint(_smooth(9, 11, 1, 255.0)[..., 0]).astype(np.uint8))
             for _ in range(3)]
    pages[0].save(tmp_path / "g.tiff", save_all=True, append_images=pages[1:])
    pic = read_picture(tmp_path / "g.tiff")
    assert pic.frame_count == 3 and pic.durations is None and pic.describe() == "L 8-bit, 3 frames"
    from upconv.sr.imageio import write_picture

    write_picture(upscale_picture(pic, espcn), tmp_path / "g-x2.tiff", "tiff")
    got = _frames_of(tmp_path / "g-x2.tiff")
    assert len(got) == 3
    for g, page in zip(got, pic.all_frames(), strict=True):
        np.testing.assert_array_equal(g[..., None], _frame_up(page, espcn))


def test_pages_of_different_layouts_are_read_as_one(tmp_path):
    grey = np.rint(_smooth(6, 7, 1, 255.0)[..., 0]).astype(np.uint8)
    rgba = np.rint(_smooth(6, 7, 4, 255.0)).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "m.tif", save_all=True,
                               append_images=[Image.fromarray(rgba)])
    pic = read_picture(tmp_path / "m.tif")
    assert [f.shape for f in pic.all_frames()] == [(6, 7, 4)] * 2
    np.testing.assert_array_equal(pic.pixels[..., :3], np.repeat(grey[..., None], 3, 2))
    assert (pic.pixels[..., 3] == 255).all()  # opaque where the page had no alpha
    np.testing.assert_array_equal(pic.frames[0], rgba)


def test_unsupported_layouts_are_named_not_called_corrupt(tmp_path):
    from upconv.sr.images import ImageError

    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tif:  # an 8-bit and a 16-bit page
        tif.write(np.zeros((4, 5), np.uint8))
        tif.write(np.zeros((4, 5), np.uint16))
    with pytest.raises(ImageError, match="frames have different sample types") as err:
        read_picture(tmp_path / "mixed.tif")
    assert "corrupt" not in str(err.value) and "mixed.tif" in str(err.value)
    tifffile.imwrite(tmp_path / "wide.tif", np.zeros((4, 5, 3), np.uint32), photometric="rgb")
    with pytest.raises(ImageError, match="uint32 TIFF samples are not supported") as err:
        read_picture(tmp_path / "wide.tif")
    assert "corrupt" not in str(err.value)


def test_several_frames_refuse_jpeg(tmp_path):
    frames = [Image.fromarray(np.rint(_smooth(8, 8, 3, 255.0)).astype(np.uint8))
              for _ in range(2)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    result = _invoke("upscale", str(tmp_path / "a.gif"), "--scale", "2", "--format", "jpeg",
                     "-o", str(tmp_path / "out"))
    assert result.exit_code != 0
    assert "JPEG holds one frame and this image has 2" in result.output
    assert not list((tmp_path / "out").iterdir())


# --- networks on luma or RGB -----------------------------------------------------------


class TinyRGB(torch.nn.Module):
    """A 3-channel ×2 network (like a spandrel checkpoint): conv 3→12, pixel shuffle."""

    scale, receptive_radius = 2, 1

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 12, 3, padding=1)
        self.shuffle = torch.nn.PixelShuffle(2)

    def forward(self, x):
        return self.shuffle(self.conv(x))


def test_colour_plan_follows_input_channels(espcn):
    assert input_channels(espcn) == 1 and colour_plan(espcn) == "luma"
    assert colour_plan(espcn.to_deconv("revd2")) == "luma"
    assert input_channels(TinyRGB()) == 3 and colour_plan(TinyRGB()) == "rgb"
    two = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3))
    with pytest.raises(ValueError, match="takes 2 channels"):
        colour_plan(two)


def test_rgb_network_runs_on_rgb_with_alpha_bicubic(tmp_path):
    net = TinyRGB().eval()
    rgba = np.rint(_smooth(17, 21, 4, 255.0)).astype(np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    up = upscale_picture(read_picture(tmp_path / "a.png"), net, tile=16)
    assert up.pixels.shape == (34, 42, 4) and up.pixels.dtype == np.uint8
    with torch.no_grad():
        x = torch.from_numpy(rgba[..., :3] / np.float32(255)).permute(2, 0, 1)[None]
        want = net(x)[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255
    assert np.abs(up.pixels[..., :3] - want).max() <= 0.51
    # alpha: Pillow's bicubic on float samples (resize_plane), then quantised; Pillow's own
    # 8-bit resize rounds between its two passes and lands up to ±3 away, depending on the image
    alpha = np.rint(np.clip(resize_plane(rgba[..., 3] / np.float32(255), (42, 34)), 0, 1) * 255)
    assert np.abs(up.pixels[..., 3].astype(int) - alpha).max() <= 1
    pillow8 = np.asarray(Image.fromarray(rgba[..., 3]).resize((42, 34), Image.Resampling.BICUBIC))
    assert np.abs(up.pixels[..., 3].astype(int) - pillow8).max() <= 4
    # grey through an RGB network: grey repeated to RGB, the output's luma kept
    grey = upscale_float(rgba[None, ..., :1] / np.float32(255), net)[0, ..., 0]
    with torch.no_grad():
        x = torch.from_numpy(rgba[..., 0] / np.float32(255))[None, None].repeat(1, 3, 1, 1)
        out = net(x)[0].numpy()
    np.testing.assert_allclose(grey, np.clip(np.tensordot([0.299, 0.587, 0.114], out, 1), 0, 1),
                               atol=1e-5)


_NETS: dict[str, torch.nn.Module] = {}


def _net(kind: str) -> torch.nn.Module:
    if kind not in _NETS:
        _NETS[kind] = TinyRGB().eval() if kind == "rgb" else load_pretrained("espcn-x2")
    return _NETS[kind]


@given(h=st.integers(1, 40), w=st.integers(1, 40), channels=st.sampled_from([1, 2, 3, 4]),
       dtype=st.sampled_from(["uint8", "uint16", "float32"]),
       net=st.sampled_from(["luma", "rgb"]), seed=st.integers(0, 2**16))
@settings(max_examples=25, deadline=None)
def test_every_depth_and_layout_keeps_its_type_and_tiles_exactly(h, w, channels, dtype, net,
                                                                 seed):
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        pixels = rng.random((h, w, channels), dtype=np.float32)
    else:
        pixels = rng.integers(0, np.iinfo(dtype).max, (h, w, channels), endpoint=True,
                              dtype=dtype)
    pic = Picture(pixels, ImageMeta())
    tiled = upscale_picture(pic, _net(net), tile=16)
    whole = upscale_picture(pic, _net(net), tile=None)
    assert tiled.pixels.dtype == pixels.dtype and tiled.pixels.shape == (2 * h, 2 * w, channels)
    assert np.array_equal(tiled.pixels, whole.pixels)
