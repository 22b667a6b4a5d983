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


def _check_groups(groups: int, channels: int, name: str, what: str) -> int:
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be an integer >= 1, got {groups!r}")
    if channels % groups:
        raise ValueError(f"{name} has {channels} {what}, not divisible by groups={groups}")
    return groups


def weight_shuffle(weight: Tensor, scale: ScaleLike, groups: int = 1) -> Tensor:
    """Sub-pixel conv weight ``(C·rh·rw, Cin/g, Kh, Kw)`` → deconv weight
    ``(Cin, C/g, rh·Kh, rw·Kw)`` (``conv_transpose2d``'s grouped layout; ``g = groups``).

    ``Wd[ic, c, rh·t + a, rw·u + b] = Wc[c·rh·rw + a·rw + b, ic, Kh-1-t, Kw-1-u]`` (PyTorch's
    pixel-shuffle channel order), per group: input channel ``j·Cin/g + ic`` and output channel
    ``j·C/g + c`` belong to group ``j``. Use with stride ``(rh, rw)``, the crops of
    :func:`upconv.subpixel_deconv_geometry` and ``groups``. A grouped conv's output channels of
    group ``j`` are ``c·rh·rw + k`` for ``c`` in group ``j`` only when ``g`` divides ``C``.
    """
    rh, rw = scale_pair(scale)
    weight = _check_tensor(weight, "weight", 4)
    cout, cin_g, kh, kw = weight.shape
    c = _split_channels(cout, rh, rw, "weight")
    g = _check_groups(groups, c, "weight", f"shuffled output channels ({cout} / {rh}·{rw})")
    w = weight.reshape(g, c // g, rh, rw, cin_g, kh, kw).flip(5, 6)
    # (j, c, a, b, ic, t, u) -> (j, ic, c, t, a, u, b): index t·rh + a along height, u·rw + b
    w = w.permute(0, 4, 1, 5, 2, 6, 3)
    return w.reshape(g * cin_g, c // g, kh * rh, kw * rw).contiguous()


def bias_shuffle(bias: Tensor, scale: ScaleLike) -> Tensor:
    """Sub-pixel conv bias ``(C·rh·rw,)`` → periodic bias ``(C, rh, rw)``.

    ``B[c, a, b] = bc[c·rh·rw + a·rw + b]`` is added to every output ``y[c, rh·i + a, rw·j + b]``.
    """
    rh, rw = scale_pair(scale)
    bias = _check_tensor(bias, "bias", 1)
    c = _split_channels(bias.shape[0], rh, rw, "bias")
    return bias.reshape(c, rh, rw).contiguous()


def weight_convolution(weight: Tensor, scale: ScaleLike, groups: int = 1) -> Tensor:
    """Resize-conv weight ``(C, Cin/g, Kh, Kw)`` → deconv weight
    ``(Cin, C/g, Kh+rh-1, Kw+rw-1)`` (``conv_transpose2d``'s grouped layout; ``g = groups``).

    ``Wd[ic, c] = rot180(Wn[c, ic]) ⊛full ones(rh, rw)``: each deconvolution tap sums the conv
    taps that read the same nearest-neighbour source pixel. Use with stride ``(rh, rw)``, the
    crops of :func:`upconv.resize_deconv_geometry` and ``groups``; the bias is unchanged.
    """
    rh, rw = scale_pair(scale)
    weight = _check_tensor(weight, "weight", 4)
    cout, cin_g, kh, kw = weight.shape
    g = _check_groups(groups, cout, "weight", "output channels")
    flipped = weight.flip(2, 3).reshape(cout * cin_g, 1, kh, kw)
    box = torch.ones(1, 1, rh, rw, dtype=weight.dtype, device=weight.device)
    # conv2d correlates; the box is symmetric, so this is the full convolution with ones(rh, rw).
    summed = F.conv2d(flipped, box, padding=(rh - 1, rw - 1))
    summed = summed.reshape(g, cout // g, cin_g, kh + rh - 1, kw + rw - 1).transpose(1, 2)
    return summed.reshape(g * cin_g, cout // g, kh + rh - 1, kw + rw - 1).contiguous()
