"""``SubPixelConv2d``: same-padded conv to ``C·rh·rw`` channels, then pixel shuffle (C-SP)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .. import functional as UF
from ..shapes import PaddingLike, conv_same_padding4, pair, scale_pair, subpixel_deconv_geometry
from ..transforms import bias_shuffle, weight_shuffle
from .deconv import Deconv2d


class SubPixelConv2d(nn.Module):
    """Sub-pixel convolution ``(N, Cin, H, W) → (N, C, rh·H, rw·W)``, as trained.

    weight: ``(C·rh·rw, Cin, Kh, Kw)``; bias: ``(C·rh·rw,)``. ``padding`` defaults to
    PyTorch's ``"same"`` (for even kernels: one more row after than before).
    :meth:`to_deconv` returns the equivalent :class:`Deconv2d`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        scale: int | Sequence[int],
        bias: bool = True,
        padding: PaddingLike = "same",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size", minimum=1)
        self.scale = scale_pair(scale)
        self.padding = conv_same_padding4(padding, self.kernel_size)
        rh, rw = self.scale
        conv = nn.Conv2d(self.in_channels, self.out_channels * rh * rw, self.kernel_size,
                         bias=bias, device=device, dtype=dtype)
        self.weight = conv.weight
        self.bias = conv.bias

    def forward(self, x: Tensor) -> Tensor:
        return UF.sub_pixel_conv2d(x, self.weight, self.bias, self.scale, self.padding)

    @torch.no_grad()
    def to_deconv(self, algorithm: str = "revd2") -> Deconv2d:
        """The equivalent deconvolution: shuffled weight, periodic ``(C, rh, rw)`` bias."""
        g = subpixel_deconv_geometry(self.kernel_size, self.scale, self.padding)
        deconv = Deconv2d(self.in_channels, self.out_channels, g.kernel_size, g.stride,
                          g.padding, bias=self.bias is not None, bias_period=self.scale,
                          algorithm=algorithm, device=self.weight.device, dtype=self.weight.dtype)
        deconv.weight.copy_(weight_shuffle(self.weight, self.scale))
        if self.bias is not None:
            deconv.bias.copy_(bias_shuffle(self.bias, self.scale))
        return deconv

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"scale={self.scale}, padding={self.padding}, bias={self.bias is not None}")
