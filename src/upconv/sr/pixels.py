"""Pixel arrays at full precision: float conversion, quantisation, YCbCr, bicubic resizing.

Arrays are ``(H, W, C)`` with ``C`` in 1..4 (grey, grey + alpha, RGB, RGBA). Integer
samples (uint8, uint16) map to float32 ``[0, 1]`` by dividing by the type's maximum; float32
samples are used as they are (nominal range ``[0, 1]``, never clipped). Colour is full-range
YCbCr with the BT.601 matrix (the JPEG / Pillow convention the bundled models were trained
on), computed in float32, so 16-bit and float images never pass through 8 bits.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: Sample types an image may have, and what each maps to.
DTYPES = (np.uint8, np.uint16, np.float32)

# full-range BT.601 (JPEG): Y Cb Cr from R G B, Cb and Cr centred on 0.5
_RGB_TO_YCBCR = np.array([[0.299, 0.587, 0.114],
                          [-0.168736, -0.331264, 0.5],
                          [0.5, -0.418688, -0.081312]], dtype=np.float64)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)
_CHROMA_OFFSET = np.array([0.0, 0.5, 0.5])


def sample_max(dtype: np.dtype) -> float | None:
    """Largest sample of an integer ``dtype`` (255, 65535); ``None`` for float."""
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else None


def to_float(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` (uint8 / uint16 / float32) as float32, integers scaled to ``[0, 1]``."""
    top = sample_max(pixels.dtype)
    out = pixels.astype(np.float32)
    return out if top is None else out / np.float32(top)


def row_blocks(rows: int, row_size: int, budget: int = 1 << 22) -> list[slice]:
    """Slices of ``range(rows)`` holding about ``budget`` samples each (``row_size`` per row),
    so full-image operations need only block-sized temporaries."""
    step = max(1, budget // max(1, row_size))
    return [slice(i, min(rows, i + step)) for i in range(0, rows, step)]


def quantize(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float ``x`` as ``dtype``: integers rounded and clipped to their range; float32 as is.

    Works a block of rows at a time (float32 holds ``k / 65535`` to ~1e-4 of a step, so
    rounding in float32 is exact)."""
    top = sample_max(dtype)
    if top is None:
        return np.asarray(x, dtype=np.float32)
    out = np.empty(x.shape, dtype=dtype)
    flat_in, flat_out = x.reshape(x.shape[0], -1), out.reshape(x.shape[0], -1)
    for rows in row_blocks(flat_in.shape[0], flat_in.shape[1]):
        block = np.multiply(flat_in[rows], np.float32(top), dtype=np.float32)
        np.rint(block, out=block)
        flat_out[rows] = np.clip(block, 0, top, out=block)
    return out


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` float RGB → full-range YCbCr (Y in ``[0, 1]``, Cb/Cr centred on 0.5)."""
    out = rgb.astype(np.float32) @ _RGB_TO_YCBCR.T.astype(np.float32)
    return out + _CHROMA_OFFSET.astype(np.float32)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr` (float32, not clipped)."""
    centred = ycc.astype(np.float32) - _CHROMA_OFFSET.astype(np.float32)
    return centred @ _YCBCR_TO_RGB.T.astype(np.float32)


def ycbcr_to_rgb_inplace(ycc: np.ndarray) -> np.ndarray:
    """:func:`ycbcr_to_rgb` written over float32 ``ycc (N, H, W, 3)`` (a view with any
    strides), a block of rows at a time; returns ``ycc``."""
    offset = _CHROMA_OFFSET.astype(np.float32)
    matrix = _YCBCR_TO_RGB.T.astype(np.float32)
    n, h, w, _ = ycc.shape
    for i in range(n):
        for rows in row_blocks(h, w * 3):
            ycc[i, rows] = (ycc[i, rows] - offset) @ matrix
    return ycc


def grey_of_rgb(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` RGB → ``(...)`` luma (the Y of :func:`rgb_to_ycbcr`)."""
    return rgb.astype(np.float32) @ _RGB_TO_YCBCR[0].astype(np.float32)


def resize_plane(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of a float ``(H, W)`` plane to ``size = (width, height)``, not clipped.

    Pillow's bicubic filter on 32-bit float samples (mode ``F``), as chroma and alpha always
    were in this project.
    """
    img = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))  # mode F
    return np.asarray(img.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)


def resize_planes(planes: np.ndarray, scale: int) -> np.ndarray:
    """Every channel of float ``(H, W, C)`` resized bicubically to ``(r·H, r·W, C)``."""
    h, w, _ = planes.shape
    size = (w * scale, h * scale)
    return np.stack([resize_plane(planes[..., c], size) for c in range(planes.shape[-1])], -1)
