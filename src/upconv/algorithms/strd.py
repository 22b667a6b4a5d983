"""STRD, the fractionally strided convolution.

Insert ``s - 1`` zeros between input samples, pad ``Kd - 1 - P`` per side (crop where
negative), and run a stride-1 convolution with the rotated, channel-swapped kernel. About
``s²`` times the useful MACs, most of them on inserted zeros, and a zero-inserted map
``s²`` times the input in memory.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..shapes import IntPair, Pad4
from ._common import add_bias


def zero_insert(x: Tensor, stride: IntPair) -> Tensor:
    """``(N, C, H, W)`` → ``(N, C, (H-1)·sh + 1, (W-1)·sw + 1)`` with inputs at multiples of s."""
    n, c, h, w = x.shape
    sh, sw = stride
    z = x.new_zeros(n, c, (h - 1) * sh + 1, (w - 1) * sw + 1)
    z[:, :, ::sh, ::sw] = x
    return z


def deconv2d_strd(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: Pad4,
    output_padding: IntPair, out_size: IntPair,
) -> Tensor:
    """``x (N, Cin, H, W)``, ``weight (Cin, C, Kh, Kw)`` → ``(N, C, *out_size)``."""
    _, _, kh, kw = weight.shape
    top, bottom, left, right = padding
    oph, opw = output_padding
    z = zero_insert(x, stride)
    # F.pad takes (left, right, top, bottom); negative values crop.
    z = F.pad(z, (kw - 1 - left, kw - 1 - right + opw, kh - 1 - top, kh - 1 - bottom + oph))
    kernel = weight.flip(2, 3).transpose(0, 1)  # (C, Cin, Kh, Kw), rotated 180°
    y = F.conv2d(z, kernel)
    assert tuple(y.shape[-2:]) == tuple(out_size)
    return add_bias(y, bias)
