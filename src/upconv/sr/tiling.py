"""Tiled inference with a halo: bounded memory on large images, output identical to untiled.

Tiles are cut on the low-res grid, so each tile's output lands on whole ``r × r`` blocks
(and a deconvolution's phases and periodic bias line up). Each tile is extended by the
model's receptive radius on every side that is not an image border; only the tile's own
outputs are kept. Every kept output then sees exactly the inputs it sees untiled.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import torch
from torch import Tensor, nn

#: Smallest tile side (low-res pixels). Smaller tiles spend most of their work on the halo.
MIN_TILE = 16


def tile_spans(length: int, tile: int, halo: int) -> Iterator[tuple[int, int, int, int]]:
    """Tiles of one axis: ``(start, stop, in_start, in_stop)`` with the halo clipped to the image.

    ``ceil(length / tile)`` spans of near-equal size (at most ``tile``, at least about
    ``tile / 2``: no sliver at the end) cover ``0..length`` without overlap;
    ``in_start..in_stop`` adds up to ``halo`` samples on each side.
    """
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    count = -(-length // tile)
    bounds = [length * i // count for i in range(count + 1)]
    for start, stop in itertools.pairwise(bounds):
        yield start, stop, max(0, start - halo), min(length, stop + halo)


def upscale_tiled(model: nn.Module, x: Tensor, tile: int | None = None, *,
                  exact: bool = True) -> Tensor:
    """``model(x)`` for ``x (N, C, H, W)`` → ``(N, C', r·H, r·W)``, ``tile × tile`` at a time.

    ``model`` needs integer attributes ``scale`` (r) and ``receptive_radius`` (low-res pixels
    each output depends on, per side; ``None`` when unknown, and then the image runs in one
    piece, since tiles would change the output). ``tile=None`` (or a tile covering the image)
    runs in one piece. Peak activation memory grows with ``(tile + 2·radius)²``, not with
    ``H·W``.

    ``exact`` (CPU): run convolutions with PyTorch's native kernels (im2col + MKL GEMM), whose
    arithmetic per output does not depend on the input size once a call covers more than a
    few pixels (tiles of at least :data:`MIN_TILE` make sure), so the result is
    bit-identical for every ``tile``. oneDNN, the default CPU backend, picks kernels by
    input size, which moves outputs by about one float32 ulp between tile sizes;
    ``exact=False`` uses it anyway, for speed.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {tuple(x.shape)}")
    if tile is not None and tile < MIN_TILE:
        raise ValueError(f"tile must be at least {MIN_TILE} low-res pixels, got {tile} (smaller "
                         "tiles spend most of their work on the halo)")
    with torch.inference_mode(), _onednn(enabled=not (exact and x.device.type == "cpu")):
        return _run_tiles(model, x, tile)


@contextlib.contextmanager
def _onednn(enabled: bool) -> Iterator[None]:
    """Switch PyTorch's oneDNN CPU backend on or off for the block, then restore it."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def _run_tiles(model: nn.Module, x: Tensor, tile: int | None) -> Tensor:
    n, _, h, w = x.shape
    radius = getattr(model, "receptive_radius", None)
    if tile is None or radius is None or (tile >= h and tile >= w):
        return model(x)
    r, halo = int(model.scale), int(radius)
    out: Tensor | None = None
    for top, bottom, in_top, in_bottom in tile_spans(h, tile, halo):
        for left, right, in_left, in_right in tile_spans(w, tile, halo):
            y = model(x[:, :, in_top:in_bottom, in_left:in_right])
            if out is None:
                out = y.new_empty(n, y.shape[1], r * h, r * w)
            oy, ox = r * (top - in_top), r * (left - in_left)
            out[:, :, r * top : r * bottom, r * left : r * right] = (
                y[:, :, oy : oy + r * (bottom - top), ox : ox + r * (right - left)])
    assert out is not None
    return out
