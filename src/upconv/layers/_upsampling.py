"""What the two trained upsampling layers share: a same-padded conv and a scale."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..shapes import PaddingLike, conv_same_padding4, pair, scale_pair


class UpsamplingConv2d(nn.Module):
    """Base of :class:`SubPixelConv2d` and :class:`ResizeConv2d`.

    Holds ``weight (conv_out, Cin, Kh, Kw)`` and ``bias (conv_out,)`` of a stride-1 conv whose
    ``padding`` (``(top, bottom, left, right)``, checked to keep the size) is stored per side.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        scale: int | Sequence[int],
        bias: bool,
        padding: PaddingLike,
        conv_out_channels: int,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size", minimum=1)
        self.scale = scale_pair(scale)
        self.padding = conv_same_padding4(padding, self.kernel_size)
        conv = nn.Conv2d(self.in_channels, conv_out_channels, self.kernel_size, bias=bias,
                         device=device, dtype=dtype)
        self.weight = conv.weight
        self.bias = conv.bias

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"scale={self.scale}, padding={self.padding}, bias={self.bias is not None}")
