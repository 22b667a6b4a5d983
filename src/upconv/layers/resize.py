"""``ResizeConv2d``: nearest-neighbour resize by ``(rh, rw)``, then a same-padded conv (C-NN)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .. import functional as UF
from ..shapes import PaddingLike, conv_same_padding4, pair, resize_deconv_geometry, scale_pair
from ..transforms import weight_convolution
from .deconv import Deconv2d


class ResizeConv2d(nn.Module):
    """Resize convolution ``(N, Cin, H, W) → (N, C, rh·H, rw·W)``, as trained.

    weight: ``(C, Cin, Kh, Kw)``; bias: ``(C,)``. :meth:`to_deconv` returns the equivalent
    :class:`Deconv2d` (weight convolved with ``ones(rh, rw)``, bias unchanged).
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
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, bias=bias,
                         device=device, dtype=dtype)
        self.weight = conv.weight
        self.bias = conv.bias

    def forward(self, x: Tensor) -> Tensor:
        return UF.resize_conv2d(x, self.weight, self.bias, self.scale, self.padding)

    @torch.no_grad()
    def to_deconv(self, algorithm: str = "revd2") -> Deconv2d:
        """The equivalent deconvolution: convolved weight, per-channel bias."""
        g = resize_deconv_geometry(self.kernel_size, self.scale, self.padding)
        deconv = Deconv2d(self.in_channels, self.out_channels, g.kernel_size, g.stride,
                          g.padding, bias=self.bias is not None, algorithm=algorithm,
                          device=self.weight.device, dtype=self.weight.dtype)
        deconv.weight.copy_(weight_convolution(self.weight, self.scale))
        if self.bias is not None:
            deconv.bias.copy_(self.bias)
        return deconv

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"scale={self.scale}, padding={self.padding}, bias={self.bias is not None}")
