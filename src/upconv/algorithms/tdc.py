"""TDC, transforming deconvolution to convolution (Chang et al. 2018).

Split the kernel by phase into ``sh·sw`` sub-kernels of ``ceil(Kh/sh) × ceil(Kw/sw)`` taps
(zero taps where a phase has fewer), run them as ordinary stride-1 convolutions (here one
``conv2d`` with ``sh·sw·C`` output channels), interleave the phases with depth-to-space and
cut the crops.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..shapes import IntPair, Pad4, taps_per_phase
from ._common import add_bias, depth_to_space, window


def phase_kernels(weight: Tensor, stride: IntPair) -> Tensor:
    """``(Cin, C, Kh, Kw)`` → conv weight ``(C·sh·sw, Cin, Th, Tw)`` of the phase sub-kernels.

    Channel ``c·sh·sw + fh·sw + fw`` holds taps ``k = f + s·t`` rotated 180°, so that a
    fully padded ``conv2d`` followed by ``pixel_shuffle`` yields the full deconvolution.
    """
    cin, c, kh, kw = weight.shape
    sh, sw = stride
    th, tw = taps_per_phase(kh, sh), taps_per_phase(kw, sw)
    padded = F.pad(weight, (0, tw * sw - kw, 0, th * sh - kh))  # zero taps past Kd
    sub = padded.reshape(cin, c, th, sh, tw, sw)  # index k = t·s + f
    sub = sub.permute(1, 3, 5, 0, 2, 4).flip(4, 5)  # (C, fh, fw, Cin, Th, Tw), rotated
    return sub.reshape(c * sh * sw, cin, th, tw)


def deconv2d_tdc(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: Pad4,
    output_padding: IntPair, out_size: IntPair,
) -> Tensor:
    """``x (N, Cin, H, W)``, ``weight (Cin, C, Kh, Kw)`` → ``(N, C, *out_size)``."""
    kernels = phase_kernels(weight, stride)
    th, tw = kernels.shape[-2:]
    phases = F.conv2d(x, kernels, padding=(th - 1, tw - 1))  # (N, C·sh·sw, H+Th-1, W+Tw-1)
    full = depth_to_space(phases, stride)
    top, _, left, _ = padding
    return add_bias(window(full, top, out_size[0], left, out_size[1]), bias)
