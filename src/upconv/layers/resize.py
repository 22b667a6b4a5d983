"""``ResizeConv2d``: nearest-neighbour resize by ``(rh, rw)``, then a same-padded conv (C-NN)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .. import functional as UF
from ..shapes import PaddingLike, resize_deconv_geometry
from ..transforms import weight_convolution
from ._upsampling import UpsamplingConv2d
from .deconv import Deconv2d


class ResizeConv2d(UpsamplingConv2d):
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
        super().__init__(in_channels, out_channels, kernel_size, scale, bias, padding,
                         int(out_channels), device, dtype)

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
