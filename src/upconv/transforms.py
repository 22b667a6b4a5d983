"""One-time kernel transformations: trained upsampling layer → equivalent deconvolution.

All three are vectorised (reshape / permute / flip / one box convolution) and exact up to
float rounding. The matching stride and crops come from :mod:`upconv.shapes`
(:func:`~upconv.shapes.subpixel_deconv_geometry`, :func:`~upconv.shapes.resize_deconv_geometry`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .shapes import ScaleLike, scale_pair


def _check_tensor(t: object, name: str, ndim: int) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    return t


def _split_channels(channels: int, rh: int, rw: int, name: str) -> int:
    if channels % (rh * rw):
        raise ValueError(
            f"{name} has {channels} output channels, not divisible by rh·rw = {rh}·{rw} = "
            f"{rh * rw}; a sub-pixel convolution to C channels at scale ({rh}, {rw}) has "
            f"C·rh·rw output channels"
        )
    return channels // (rh * rw)


def weight_shuffle(weight: Tensor, scale: ScaleLike) -> Tensor:
    """Sub-pixel conv weight ``(C·rh·rw, Cin, Kh, Kw)`` → deconv weight ``(Cin, C, rh·Kh, rw·Kw)``.

    ``Wd[ic, c, rh·t + a, rw·u + b] = Wc[c·rh·rw + a·rw + b, ic, Kh-1-t, Kw-1-u]`` (PyTorch's
    pixel-shuffle channel order). Use with stride ``(rh, rw)`` and the crops of
    :func:`upconv.subpixel_deconv_geometry`.
    """
    rh, rw = scale_pair(scale)
    weight = _check_tensor(weight, "weight", 4)
    cout, cin, kh, kw = weight.shape
    c = _split_channels(cout, rh, rw, "weight")
    w = weight.reshape(c, rh, rw, cin, kh, kw).flip(4, 5)
    # (c, a, b, ic, t, u) -> (ic, c, t, a, u, b): index t·rh + a along height, u·rw + b along width
    return w.permute(3, 0, 4, 1, 5, 2).reshape(cin, c, kh * rh, kw * rw).contiguous()


def bias_shuffle(bias: Tensor, scale: ScaleLike) -> Tensor:
    """Sub-pixel conv bias ``(C·rh·rw,)`` → periodic bias ``(C, rh, rw)``.

    ``B[c, a, b] = bc[c·rh·rw + a·rw + b]`` is added to every output ``y[c, rh·i + a, rw·j + b]``.
    """
    rh, rw = scale_pair(scale)
    bias = _check_tensor(bias, "bias", 1)
    c = _split_channels(bias.shape[0], rh, rw, "bias")
    return bias.reshape(c, rh, rw).contiguous()


def weight_convolution(weight: Tensor, scale: ScaleLike) -> Tensor:
    """Resize-conv weight ``(C, Cin, Kh, Kw)`` → deconv weight ``(Cin, C, Kh+rh-1, Kw+rw-1)``.

    ``Wd[ic, c] = rot180(Wn[c, ic]) ⊛full ones(rh, rw)``: each deconvolution tap sums the conv
    taps that read the same nearest-neighbour source pixel. Use with stride ``(rh, rw)`` and
    the crops of :func:`upconv.resize_deconv_geometry`; the bias is unchanged.
    """
    rh, rw = scale_pair(scale)
    weight = _check_tensor(weight, "weight", 4)
    cout, cin, kh, kw = weight.shape
    flipped = weight.flip(2, 3).reshape(cout * cin, 1, kh, kw)
    box = torch.ones(1, 1, rh, rw, dtype=weight.dtype, device=weight.device)
    # conv2d correlates; the box is symmetric, so this is the full convolution with ones(rh, rw).
    summed = F.conv2d(flipped, box, padding=(rh - 1, rw - 1))
    return summed.reshape(cout, cin, kh + rh - 1, kw + rw - 1).transpose(0, 1).contiguous()
