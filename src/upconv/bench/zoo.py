"""The benchmark layer zoo: upsampling tails and heads as C-SP / C-NN and their deconvolutions.

Three sets: :data:`LAYERS` (L1–L6, the issue's layers the kernel was developed on),
:data:`HELDOUT` (H1–H6, other realistic layers kept out of tuning, to check that the gains
carry over) and :data:`SMALL` (S1–S3, tile- and crop-sized inputs, where a call's fixed cost
counts). :data:`ZOOS` names them; :func:`layer_by_id` looks an id up in any.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..shapes import DeconvGeometry, resize_deconv_geometry, subpixel_deconv_geometry
from ..transforms import bias_shuffle, weight_convolution, weight_shuffle


@dataclass(frozen=True)
class Layer:
    """An upsampling layer ``(N, Cin, H, W) → (N, C, r·H, r·W)`` with a ``k × k`` kernel."""

    id: str
    role: str
    cin: int
    c: int
    r: int
    n: int
    h: int
    w: int
    k: int = 3

    def scaled(self, factor: float) -> Layer:
        """The same layer on an input ``factor`` times the size per side (at least 4 × 4)."""
        return replace(self, h=max(4, round(self.h * factor)), w=max(4, round(self.w * factor)))

    @property
    def in_pixels(self) -> int:
        return self.n * self.h * self.w

    def macs_sp(self) -> int:
        """Useful multiply-adds of C-SP / D-SP: ``r²K²·Cin·C`` per input pixel."""
        return self.r**2 * self.k**2 * self.cin * self.c * self.in_pixels

    def macs_nn(self) -> int:
        """Useful multiply-adds of D-NN: ``(K + r − 1)²·Cin·C`` per input pixel (every real tap)."""
        return (self.k + self.r - 1) ** 2 * self.cin * self.c * self.in_pixels

    def io_bytes(self, weights: int) -> int:
        """float32 bytes that must move at least once: input, output and ``weights`` values."""
        out = self.n * self.c * self.r**2 * self.h * self.w
        return 4 * (self.n * self.cin * self.h * self.w + out + weights)


def by_id(*layers: Layer) -> dict[str, Layer]:
    """A zoo: ``layers`` keyed by their ids, in order."""
    return {layer.id: layer for layer in layers}


LAYERS = by_id(
    Layer("L1", "ESPCN ×3 tail, BSD300 image", 32, 1, 3, 1, 321, 481),
    Layer("L2", "ESPCN ×2 tail to 1080p", 32, 1, 2, 1, 540, 960),
    Layer("L3", "ESPCN ×4 tail", 32, 1, 4, 1, 270, 480),
    Layer("L4", "RGB head ×4", 64, 3, 4, 1, 256, 256),
    Layer("L5", "EDSR-style ×2 upsampler", 64, 64, 2, 1, 128, 128),
    Layer("L6", "video frames ×2", 16, 3, 2, 4, 180, 320),
)

# Held out: never used while tuning the kernel. Each has at most ~3 M output values and
# at most ~3.2 GFLOP of useful multiply-adds (C-SP), so the set runs in minutes on 2 cores.
HELDOUT = by_id(
    Layer("H1", "ESPCN ×3 tail, 720p luma", 32, 1, 3, 1, 240, 426),
    Layer("H2", "Real-ESRGAN compact ×4 head (RGB)", 64, 3, 4, 1, 180, 320),
    Layer("H3", "K = 5 sub-pixel ×2, colour", 24, 3, 2, 1, 256, 256, k=5),
    Layer("H4", "EDSR-baseline ×3 upsampler", 64, 64, 3, 1, 64, 64),
    Layer("H5", "batch of crops ×2, luma", 32, 1, 2, 8, 96, 96),
    Layer("H6", "odd sizes ×3, RGB", 16, 3, 3, 2, 97, 131),
)

# Small inputs: tiles, crops and thumbnails, where a call's fixed cost (Python, launching
# the threads, buffers) is a large part of its time. Held out from tuning as well.
SMALL = by_id(
    Layer("S1", "ESPCN ×2 tail, 16×16 crop", 32, 1, 2, 1, 16, 16),
    Layer("S2", "Real-ESRGAN compact ×4 head, 64×64 tile", 64, 3, 4, 1, 64, 64),
    Layer("S3", "×2 RGB head, 48×48 thumbnail", 32, 3, 2, 1, 48, 48),
)

ZOOS: dict[str, dict[str, Layer]] = {"paper": LAYERS, "heldout": HELDOUT, "small": SMALL}
if len({lid for zoo in ZOOS.values() for lid in zoo}) != sum(map(len, ZOOS.values())):
    raise RuntimeError("layer ids must be unique across the zoos")


def all_layer_ids() -> list[str]:
    """Every layer id of every zoo, in order (``L1``…``L6``, ``H1``…``H6``, ``S1``…``S3``)."""
    return [lid for zoo in ZOOS.values() for lid in zoo]


def layer_by_id(layer_id: str) -> Layer:
    """The layer with id ``layer_id`` from any zoo; ``KeyError`` listing the valid ids."""
    for zoo in ZOOS.values():
        if layer_id in zoo:
            return zoo[layer_id]
    raise KeyError(f"unknown layer id {layer_id!r}; choose from {', '.join(all_layer_ids())}")


@dataclass(frozen=True)
class LayerTensors:
    """Input and trained weights of a layer, with the deconvolutions they transform into."""

    x: Tensor
    w_sp: Tensor  # (C·r², Cin, K, K) sub-pixel conv
    b_sp: Tensor
    w_nn: Tensor  # (C, Cin, K, K) resize conv
    b_nn: Tensor
    wd_sp: Tensor  # (Cin, C, rK, rK) weight shuffle
    bd_sp: Tensor  # (C, r, r) periodic bias
    wd_nn: Tensor  # (Cin, C, K+r-1, K+r-1) weight convolution
    geo_sp: DeconvGeometry
    geo_nn: DeconvGeometry


def make_tensors(layer: Layer, seed: int = 0) -> LayerTensors:
    """Random input and weights (scaled like a trained layer) for ``layer``."""
    g = torch.Generator().manual_seed(seed)
    fan_in = layer.cin * layer.k**2
    x = torch.randn(layer.n, layer.cin, layer.h, layer.w, generator=g)
    w_sp = torch.randn(layer.c * layer.r**2, layer.cin, layer.k, layer.k, generator=g)
    w_nn = torch.randn(layer.c, layer.cin, layer.k, layer.k, generator=g)
    b_sp = torch.randn(layer.c * layer.r**2, generator=g) * 0.1
    b_nn = torch.randn(layer.c, generator=g) * 0.1
    w_sp, w_nn = w_sp / fan_in**0.5, w_nn / fan_in**0.5
    return LayerTensors(
        x=x, w_sp=w_sp, b_sp=b_sp, w_nn=w_nn, b_nn=b_nn,
        wd_sp=weight_shuffle(w_sp, layer.r), bd_sp=bias_shuffle(b_sp, layer.r),
        wd_nn=weight_convolution(w_nn, layer.r),
        geo_sp=subpixel_deconv_geometry(layer.k, layer.r),
        geo_nn=resize_deconv_geometry(layer.k, layer.r),
    )
