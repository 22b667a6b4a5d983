"""Read and write images at full precision, with their metadata.

:func:`read_picture` gives the samples as they are stored (8/16-bit integer, or float32)
with EXIF orientation applied; :func:`write_picture` writes them back at the same depth with
the metadata that still applies (:mod:`upconv.sr.metadata`). Each format is read by the
library that keeps its full depth: Pillow for 8-bit images, 16-bit grey and float grey;
pypng for 16-bit colour PNG (Pillow reduces it to 8 bits); tifffile for 16-bit colour and
float colour TIFF.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from .atomic import atomic_write
from .images import ImageError, read_errors
from .metadata import (
    ImageMeta,
    clean_exif,
    exif_for_size,
    has_sub_ifds,
    icc_fits,
    orient,
    read_meta,
)

#: Output formats: name → (file suffix, lossless).
FORMATS = {"png": (".png", True), "tiff": (".tif", True), "jpeg": (".jpg", False)}

#: Pillow format names whose files are written back in their own format by default.
LOSSLESS_SOURCES = {"PNG": "png", "TIFF": "tiff"}

_CHANNEL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@dataclass
class Picture:
    """Pixels at full precision and their metadata.

    ``pixels``: ``(H, W, C)``, ``C`` = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA; uint8, uint16 or
    float32. ``source_format``: the format read (Pillow's name: ``"PNG"``, ``"JPEG"``, ...).

    Files with several frames (animated GIF, PNG and WebP, multi-page TIFF) keep them all:
    ``pixels`` is the first, ``frames`` the others (the same channels and dtype; TIFF pages
    may differ in size), ``durations`` each frame's display time in ms (animations; ``None``
    for pages) and ``loop`` how often an animation plays (0: for ever).
    """

    pixels: np.ndarray
    meta: ImageMeta
    source_format: str = "PNG"
    frames: list[np.ndarray] = field(default_factory=list)
    durations: list[float] | None = None
    loop: int = 0

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return self.pixels.shape[1], self.pixels.shape[0]

    @property
    def channels(self) -> int:
        return self.pixels.shape[2]

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)

    @property
    def frame_count(self) -> int:
        return 1 + len(self.frames)

    def all_frames(self) -> list[np.ndarray]:
        """Every frame's pixels, in order."""
        return [self.pixels, *self.frames]

    def describe(self) -> str:
        """e.g. ``"RGB 16-bit"``, ``"L float32"``, ``"RGBA 8-bit, 12 frames"``."""
        dtype = self.pixels.dtype
        depth = "float32" if dtype == np.float32 else f"{8 * dtype.itemsize}-bit"
        frames = f", {self.frame_count} frames" if self.frames else ""
        return f"{_CHANNEL_MODES[self.channels]} {depth}{frames}"


def default_format(source_format: str, requested: str | None = None) -> str:
    """The output format: ``requested`` (a key of :data:`FORMATS`) or, by default, the
    source's own format when lossless (PNG, TIFF) and PNG otherwise."""
    if requested not in (None, "auto"):
        if requested not in FORMATS:
            raise ValueError(f"unknown format {requested!r}; choose from {', '.join(FORMATS)}")
        return requested
    return LOSSLESS_SOURCES.get(source_format, "png")


# --- reading --------------------------------------------------------------------------


def read_picture(path: str | os.PathLike[str]) -> Picture:
    """Read ``path`` fully at its stored depth, orientation applied, every frame of an
    animation or page of a TIFF. Raises :class:`~upconv.sr.images.ImageError` naming the file
    and what is wrong with it."""
    path = Path(path)
    durations: list[float] | None = None
    loop = 0
    with read_errors(path):
        try:
            with Image.open(path) as img:
                img.load()
                meta = read_meta(img)
                fmt = img.format or "PNG"
                n = getattr(img, "n_frames", 1)
                plays = int(img.info.get("loop", 1))  # a GIF without one plays once
                frames, times = [], []
                for i in range(n):
                    if i:
                        img.seek(i)
                    frames.append(_pillow_pixels(img, path, meta, i, n))
                    times.append(float(img.info.get("duration") or 0))
                if n > 1 and fmt != "TIFF":  # an animation (TIFF pages have no timing)
                    durations, loop = times, plays
        except UnidentifiedImageError:
            if path.suffix.lower() not in (".tif", ".tiff"):
                raise
            # TIFFs Pillow cannot open at all (float RGB, ...): tifffile reads them
            meta, fmt = _tiff_meta(path), "TIFF"
            frames = _read_tifffile(path)
        frames = _same_layout(frames, path)
    for arr in frames:
        if arr.shape[0] < 1 or arr.shape[1] < 1:
            raise ImageError(f"{path}: the image is empty ({arr.shape[1]}×{arr.shape[0]} "
                             "pixels)")
    frames = [orient(arr, meta.orientation) for arr in frames]
    return Picture(frames[0], meta, fmt, frames[1:], durations, loop)


def _same_layout(frames: list[np.ndarray], path: Path) -> list[np.ndarray]:
    """Frames with one channel layout: grey ones made RGB where any frame has colour, an
    opaque alpha added where any frame has alpha (a GIF's frames differ so). Raises
    ImageError for frames of different sample types."""
    if len(frames) == 1:
        return frames
    if len({f.dtype for f in frames}) > 1:
        raise ImageError(f"{path}: its frames have different sample types "
                         f"({', '.join(sorted({str(f.dtype) for f in frames}))}); "
                         "split them into files of their own")
    colour = any(f.shape[2] >= 3 for f in frames)
    alpha = any(f.shape[2] in (2, 4) for f in frames)
    out = []
    for f in frames:
        has_alpha = f.shape[2] in (2, 4)
        body = f[..., : f.shape[2] - has_alpha]
        if colour and body.shape[2] == 1:
            body = np.repeat(body, 3, axis=2)
        if alpha:
            top = 1.0 if f.dtype == np.float32 else np.iinfo(f.dtype).max
            opaque = np.full((*f.shape[:2], 1), top, f.dtype)
            body = np.concatenate([body, f[..., -1:] if has_alpha else opaque], axis=2)
        out.append(np.ascontiguousarray(body))
    return out


def _pillow_pixels(img: Image.Image, path: Path, meta: ImageMeta, frame: int = 0,
                   frames: int = 1) -> np.ndarray:
    """The samples of ``img``'s current frame (number ``frame`` of ``frames``) at full depth,
    ``(H, W, C)``; re-read with pypng / tifffile where Pillow holds fewer bits than the
    file."""
    mode = img.mode
    if img.format == "PNG" and mode in ("LA", "RGB", "RGBA") and _png_bit_depth(path) == 16:
        if frames > 1:  # pypng reads the default image only; Pillow holds 8 bits of colour
            raise ImageError(f"{path}: 16-bit colour animated PNGs are not supported; save "
                             "the frames as separate files")
        return _read_png16(path)
    if img.format == "TIFF" and mode in ("LA", "RGB", "RGBA"):
        bits = img.tag_v2.get(258, (8,))
        if max(bits if isinstance(bits, tuple) else (bits,)) > 8:
            return _read_tifffile(path, frame)[0]
    if mode.startswith("I;16"):
        return np.asarray(img, dtype=np.uint16)[..., None]
    if mode == "I":
        arr = np.asarray(img)
        if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
            raise ImageError(f"{path}: 32-bit integer samples outside 0..65535 are not "
                             "supported; save the image as 16-bit or float")
        return arr.astype(np.uint16)[..., None]
    if mode == "F":
        return np.asarray(img, dtype=np.float32)[..., None]
    if mode not in ("L", "LA", "RGB", "RGBA"):
        target = ("RGBA" if mode in ("PA", "RGBa") or "transparency" in img.info else
                  "LA" if mode == "La" else "L" if mode == "1" else "RGB")
        if meta.icc_profile is not None and not icc_fits(meta.icc_profile, len(target) - (
                "A" in target)):
            meta.icc_profile = None  # e.g. a CMYK profile no longer describes the pixels
        img = img.convert(target)
    arr = np.asarray(img)
    return arr[..., None] if arr.ndim == 2 else arr


def _png_bit_depth(path: Path) -> int:
    import png

    reader = png.Reader(filename=str(path))
    reader.preamble()
    return int(reader.bitdepth)


def _read_png16(path: Path) -> np.ndarray:
    import png

    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows])
    except png.Error as err:
        raise ValueError(str(err)) from None
    return arr.reshape(height, width, info["planes"])


def _read_tifffile(path: Path, page_number: int | None = None) -> list[np.ndarray]:
    """The samples of page ``page_number`` of a TIFF, or of every page (None), read by
    tifffile in one opening of the file."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            pages = tif.pages if page_number is None else [tif.pages[page_number]]
            read = [(page.asarray(), page.axes) for page in pages]
    except (tifffile.TiffFileError, KeyError, ValueError) as err:
        raise ValueError(f"tifffile: {err}") from None
    return [_tiff_samples(arr, axes, path) for arr, axes in read]


def _tiff_samples(arr: np.ndarray, axes: str, path: Path) -> np.ndarray:
    """A tifffile page's array as ``(H, W, C)`` uint8, uint16 or float32."""
    if axes.startswith("S"):  # planar configuration: samples first
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] > 4:
        raise ImageError(f"{path}: TIFF of shape {arr.shape} ({axes}); expected grey, RGB "
                         "or RGBA")
    if arr.dtype.kind == "f":
        return arr.astype(np.float32)
    if arr.dtype in (np.uint8, np.uint16):
        return arr
    raise ImageError(f"{path}: {arr.dtype} TIFF samples are not supported (uint8, uint16, "
                     "float)")


def _tiff_meta(path: Path) -> ImageMeta:
    """Metadata of a TIFF Pillow cannot open, from tifffile's tags."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.tags
        value = {t.code: t.value for t in tags.values()}
    exif = Image.Exif()
    for code in (270, 271, 272, 305, 306, 315, 33432, 274):
        if isinstance(value.get(code), str | int):
            exif[code] = value[code]
    meta = ImageMeta(icc_profile=value.get(34675), orientation=int(value.get(274, 1)))
    res, unit = value.get(282), int(value.get(296, 2))
    if res and value.get(283) and unit in (2, 3):
        per_inch = 1.0 if unit == 2 else 2.54
        meta.dpi = (_ratio(res) * per_inch, _ratio(value[283]) * per_inch)
    meta.exif = clean_exif(exif)
    return meta


def _ratio(v: object) -> float:
    return float(v[0]) / float(v[1]) if isinstance(v, tuple) else float(v)  # type: ignore[arg-type]


# --- writing --------------------------------------------------------------------------


def write_picture(pic: Picture, path: str | os.PathLike[str], format: str) -> list[str]:
    """Write ``pic`` to ``path`` atomically in ``format`` (a key of :data:`FORMATS`).

    Returns notes on what could not be kept (e.g. 16 bits in a JPEG, EXIF sub-IFDs in a
    TIFF). Raises ValueError when the format cannot hold the image (alpha or several frames
    in a JPEG). Several frames become an animated PNG (APNG) or a multi-page TIFF.
    """
    path = Path(path)
    notes: list[str] = []
    if pic.frames and format == "jpeg":
        raise ValueError(f"JPEG holds one frame and this image has {pic.frame_count}; "
                         "choose --format png (animated) or tiff (pages)")
    writer = {"png": _write_png, "tiff": _write_tiff, "jpeg": _write_jpeg}[format]
    meta = pic.meta
    if meta.icc_profile is not None and not icc_fits(meta.icc_profile, pic.channels - (
            pic.has_alpha)):
        notes.append("the input's ICC profile does not describe its pixels; not written")
    exif = exif_for_size(meta.exif, pic.size)

    def write(f: BinaryIO) -> None:
        notes.extend(writer(pic, f, exif))

    atomic_write(path, write)
    return notes


def _icc(pic: Picture) -> bytes | None:
    icc = pic.meta.icc_profile
    return icc if icc_fits(icc, pic.channels - pic.has_alpha) else None


def _pillow_image(pixels: np.ndarray) -> Image.Image:
    """A Pillow image of ``(H, W, C)`` pixels Pillow can hold at this depth."""
    return Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)


def _png_text(text: dict[str, str]) -> PngImagePlugin.PngInfo | None:
    if not text:
        return None
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_itxt(key, value)
    return info


def _write_png(pic: Picture, f: BinaryIO, exif: Image.Exif | None) -> list[str]:
    frames, notes = pic.all_frames(), []
    if pic.pixels.dtype == np.float32:
        from .pixels import quantize

        frames = [quantize(a, np.uint16) for a in frames]
        notes.append("float samples written as 16-bit PNG (PNG has no float samples)")
    pixels = frames[0]
    icc, dpi, text = _icc(pic), pic.meta.dpi, pic.meta.text
    pillow_can = pixels.dtype == np.uint8 or pixels.shape[2] == 1
    if len(frames) == 1 and not pillow_can:
        f.write(_png16_bytes(pixels, icc, dpi, exif, text))
        return notes
    animation: dict[str, object] = {}
    if len(frames) > 1:
        if not pillow_can:
            raise ValueError("16-bit colour animations cannot be written as PNG here; "
                             "choose --format tiff (one page per frame)")
        if len({a.shape for a in frames}) > 1:
            raise ValueError("its pages differ in size and an animated PNG's frames cannot; "
                             "choose --format tiff")
        animation = {"save_all": True, "append_images": [_pillow_image(a) for a in frames[1:]],
                     "duration": pic.durations or 0, "loop": pic.loop}
    _pillow_image(pixels).save(f, format="PNG", icc_profile=icc, dpi=dpi,
                               exif=exif.tobytes() if exif else b"", pnginfo=_png_text(text),
                               **animation)
    return notes


def _png16_bytes(pixels: np.ndarray, icc: bytes | None, dpi: tuple[float, float] | None,
                 exif: Image.Exif | None, text: dict[str, str]) -> bytes:
    """A 16-bit colour PNG (pypng) with the metadata chunks Pillow would write."""
    import png

    h, w, c = pixels.shape
    buf = io.BytesIO()
    png.Writer(w, h, greyscale=c < 3, alpha=c in (2, 4), bitdepth=16, compression=6).write(
        buf, pixels.reshape(h, w * c))
    # the metadata chunks, made by Pillow's PNG writer on a 1×1 image, go before IDAT
    probe = io.BytesIO()
    Image.new("RGB", (1, 1)).save(probe, format="PNG", icc_profile=icc, dpi=dpi,
                                  exif=exif.tobytes() if exif else b"",
                                  pnginfo=_png_text(text))
    meta_chunks = [(t, d) for t, d in png.Reader(bytes=probe.getvalue()).chunks()
                   if t in (b"iCCP", b"pHYs", b"eXIf", b"iTXt", b"tEXt", b"zTXt")]
    chunks = list(png.Reader(bytes=buf.getvalue()).chunks())
    at = next(i for i, (t, _) in enumerate(chunks) if t == b"IDAT")
    out = io.BytesIO()
    png.write_chunks(out, [*chunks[:at], *meta_chunks, *chunks[at:]])
    return out.getvalue()


def _tiff_tags(exif: Image.Exif | None) -> Image.Exif | None:
    """The IFD0 part of ``exif`` (Pillow's TIFF writer cannot write EXIF sub-IFDs)."""
    if exif is None:
        return None
    out = Image.Exif()
    for tag, value in exif.items():
        if tag not in (0x8769, 0x8825):
            out[tag] = value
    return out


def _write_tiff(pic: Picture, f: BinaryIO, exif: Image.Exif | None) -> list[str]:
    pixels, notes = pic.pixels, []
    if has_sub_ifds(exif):
        notes.append("EXIF camera and GPS tags are not written to TIFF outputs")
    icc, dpi = _icc(pic), pic.meta.dpi
    pillow_can = pixels.dtype == np.uint8 or pixels.shape[2] == 1
    if pillow_can:
        kwargs: dict[str, object] = {"icc_profile": icc} if icc else {}
        if dpi:
            kwargs["dpi"] = dpi
        tags = _tiff_tags(exif)
        if tags is not None:
            kwargs["exif"] = tags
        if pic.frames:
            kwargs.update(save_all=True,
                          append_images=[_pillow_image(a) for a in pic.frames])
        # Pillow appends pages by reading back what it wrote: a BytesIO, then the file
        encoded = io.BytesIO()
        _pillow_image(pixels).save(encoded, format="TIFF", compression="tiff_adobe_deflate",
                                   **kwargs)
        f.write(encoded.getbuffer())
        return notes
    import tifffile

    extratags = [(code, "s", 0, exif[code], True) for code in (271, 272, 315, 33432)
                 if exif is not None and isinstance(exif.get(code), str)]
    c, buf = pixels.shape[2], io.BytesIO()  # tifffile wants a named file or a BytesIO
    with tifffile.TiffWriter(buf) as tif:
        for page in pic.all_frames():
            tif.write(
                page, photometric="rgb" if c >= 3 else "minisblack",
                extrasamples=("unassalpha",) if c in (2, 4) else None,
                compression="zlib", iccprofile=icc, metadata=None,
                resolution=dpi, resolutionunit="INCH" if dpi else None,
                description=exif.get(270) if exif is not None else None,
                software=exif.get(305) if exif is not None else None,
                datetime=exif.get(306) if exif is not None else None,
                extratags=extratags)
    f.write(buf.getbuffer())
    return notes


def _write_jpeg(pic: Picture, f: BinaryIO, exif: Image.Exif | None) -> list[str]:
    pixels, notes = pic.pixels, []
    if pic.has_alpha:
        raise ValueError("JPEG has no alpha channel; choose --format png or tiff")
    if pixels.dtype != np.uint8:
        from .pixels import quantize, to_float

        pixels = quantize(to_float(pixels), np.uint8)
        notes.append(f"{pic.describe()} samples written as 8-bit JPEG")
    kwargs: dict[str, object] = {"quality": 95, "exif": exif.tobytes() if exif else b""}
    if _icc(pic):
        kwargs["icc_profile"] = _icc(pic)
    if pic.meta.dpi:
        kwargs["dpi"] = tuple(round(d) for d in pic.meta.dpi)
    if "Comment" in pic.meta.text:
        kwargs["comment"] = pic.meta.text["Comment"]
    if "XML:com.adobe.xmp" in pic.meta.text:
        kwargs["xmp"] = pic.meta.text["XML:com.adobe.xmp"].encode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _pillow_image(pixels).save(f, format="JPEG", **kwargs)
    return notes
