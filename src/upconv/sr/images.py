"""Image I/O and colour for training and evaluation (Pillow, 8 bits): read, Y, degrade, write.

``upconv upscale`` reads and writes at the file's own depth with its metadata instead
(:mod:`upconv.sr.imageio`, :mod:`upconv.sr.pixels`).

The network sees the luma ``Y`` of full-range YCbCr (JPEG / Pillow convention, as in the
PyTorch examples' super-resolution network) as float32 in ``[0, 1]``; chroma and alpha are
resized by bicubic interpolation.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import atomic_write

#: Suffixes looked at when a folder is searched for images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm",
                  ".pgm", ".pbm", ".tga")

#: Pillow modes the SR path handles directly; everything else is converted to one of these.
SUPPORTED_MODES = ("L", "LA", "RGB", "RGBA")


class ImageError(ValueError):
    """An image file that cannot be used: unreadable, truncated, corrupt or empty."""


@contextlib.contextmanager
def read_errors(path: Path) -> Iterator[None]:
    """Turn what reading a bad image file raises (missing, a folder, not an image, too many
    pixels, truncated or corrupt data) into an :class:`ImageError` naming ``path``."""
    try:
        yield
    except ImageError:  # already says what is wrong (e.g. a layout that is not supported)
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read") from None
    except Image.DecompressionBombError as err:
        raise ImageError(f"{path}: too many pixels for Pillow's safety limit ({err})") from None
    except (OSError, SyntaxError, ValueError, zlib.error) as err:  # truncated or corrupt data
        raise ImageError(f"{path}: corrupt or truncated image ({err})") from None


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Read ``path`` fully (so truncation shows up now) as an ``L``, ``LA``, ``RGB`` or ``RGBA``.

    Raises :class:`ImageError` naming the file and what is wrong with it.
    """
    path = Path(path)
    with read_errors(path), Image.open(path) as img:
        img.load()
        img = to_supported_mode(img)
    if img.width < 1 or img.height < 1:
        raise ImageError(f"{path}: the image is empty ({img.width}×{img.height} pixels)")
    return img


def to_supported_mode(img: Image.Image) -> Image.Image:
    """``img`` as ``L``, ``LA``, ``RGB`` or ``RGBA`` (transparency kept, 16-bit grey → 8-bit)."""
    mode = img.mode
    if mode in SUPPORTED_MODES:
        return img
    if mode in ("1",):
        return img.convert("L")
    if mode.startswith("I") or mode == "F":  # 16/32-bit grey: scale to 8 bits
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8))
    if mode in ("PA", "La") or "transparency" in img.info:
        return img.convert("RGBA") if mode != "La" else img.convert("LA")
    if mode == "RGBa":
        return img.convert("RGBA")
    return img.convert("RGB")


def luma(img: Image.Image) -> np.ndarray:
    """Y of ``img`` (``L`` / ``LA`` / ``RGB`` / ``RGBA``): float32 ``(H, W)`` in ``[0, 1]``."""
    if img.mode in ("L", "LA"):
        grey = img.getchannel("L")
    else:
        grey = img.convert("RGB").convert("YCbCr").getchannel("Y")
    return np.asarray(grey, dtype=np.float32) / 255.0


def modcrop(img: Image.Image, scale: int) -> Image.Image:
    """Crop the bottom/right so both sides are multiples of ``scale`` (the SR protocol)."""
    w, h = img.width - img.width % scale, img.height - img.height % scale
    if w < 1 or h < 1:
        raise ImageError(f"image of {img.width}×{img.height} pixels is smaller than scale {scale}")
    return img if (w, h) == img.size else img.crop((0, 0, w, h))


def downscale(img: Image.Image, scale: int) -> Image.Image:
    """Bicubic (anti-aliased) downscale of a ``modcrop``-ed image by ``scale``."""
    return img.resize((img.width // scale, img.height // scale), Image.Resampling.BICUBIC)


def bicubic_upscale(y: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upscale of a float ``(H, W)`` plane by ``scale``, clipped to ``[0, 1]``."""
    h, w = y.shape
    up = Image.fromarray(np.ascontiguousarray(y, dtype=np.float32), mode="F").resize(
        (w * scale, h * scale), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(up, dtype=np.float32), 0.0, 1.0)


def to_uint8(y: np.ndarray) -> np.ndarray:
    """A float plane in ``[0, 1]`` (clipped) as rounded uint8."""
    return np.clip(np.rint(np.asarray(y, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def merge_luma(y: np.ndarray, source: Image.Image) -> Image.Image:
    """Combine an upscaled Y plane with ``source``'s chroma and alpha, resized bicubically.

    ``y``: float ``(rH, rW)`` in ``[0, 1]``; ``source``: the low-res ``L``/``LA``/``RGB``/``RGBA``
    image. Returns an image of ``source.mode`` and size ``(rW, rH)``.
    """
    size = (y.shape[1], y.shape[0])
    y_img = Image.fromarray(to_uint8(y), mode="L")
    if source.mode in ("L", "LA"):
        out = y_img
    else:
        _, cb, cr = source.convert("RGB").convert("YCbCr").split()
        cb, cr = (c.resize(size, Image.Resampling.BICUBIC) for c in (cb, cr))
        out = Image.merge("YCbCr", (y_img, cb, cr)).convert("RGB")
    if source.mode in ("LA", "RGBA"):
        alpha = source.getchannel("A").resize(size, Image.Resampling.BICUBIC)
        out = Image.merge(source.mode, (*out.split(), alpha))
    return out


def save_image(img: Image.Image, path: str | os.PathLike[str], format: str | None = None) -> Path:
    """Write ``img`` to ``path`` atomically; the format comes from the suffix unless given."""
    path = Path(path)
    fmt = format or Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format from {path.name!r}; use .png or .jpg")
    if fmt == "JPEG" and img.mode in ("LA", "RGBA"):
        raise ValueError(f"{path.name}: JPEG has no alpha channel; write a .png instead")
    return atomic_write(path, lambda f: img.save(f, format=fmt))
