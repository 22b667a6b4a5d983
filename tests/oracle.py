"""PyTorch's own ops as the oracle, extended to per-side crops and periodic bias."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def conv_transpose2d_oracle(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int, int, int],
    output_padding: tuple[int, int] = (0, 0),
    groups: int = 1,
) -> Tensor:
    """``F.conv_transpose2d`` with crops ``(top, bottom, left, right)`` and (C,) / (C, bh, bw) bias.

    Symmetric crops call PyTorch directly; asymmetric ones run PyTorch with no padding, then
    crop (and zero-extend for output padding past the full output).
    """
    top, bottom, left, right = padding
    symmetric = top == bottom and left == right
    if symmetric and (bias is None or bias.ndim == 1):
        return F.conv_transpose2d(x, weight, bias, stride, (top, left), output_padding, groups)
    full = F.conv_transpose2d(x, weight, None, stride, groups=groups)
    oph, opw = output_padding
    fh, fw = full.shape[-2:]
    full = F.pad(full, (0, max(0, opw - right), 0, max(0, oph - bottom)))
    y = full[..., top : fh - bottom + oph, left : fw - right + opw]
    if bias is None:
        return y
    if bias.ndim == 1:
        return y + bias.reshape(-1, 1, 1)
    _c, bh, bw = bias.shape
    oh, ow = y.shape[-2:]
    rows = torch.arange(oh) % bh
    cols = torch.arange(ow) % bw
    return y + bias[:, rows][:, :, cols]
