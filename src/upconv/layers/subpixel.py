"""``SubPixelConv2d``: same-padded conv to ``C·rh·rw`` channels, then pixel shuffle (C-SP)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .. import functional as UF
from ..shapes import PaddingLike, scale_pair, subpixel_deconv_geometry
from ..transforms import bias_shuffle, weight_shuffle
from ._upsampling import UpsamplingConv2d
from .deconv import Deconv2d


class SubPixelConv2d(UpsamplingConv2d):
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
        rh, rw = scale_pair(scale)
        super().__init__(in_channels, out_channels, kernel_size, scale, bias, padding,
                         int(out_channels) * rh * rw, device, dtype)

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
