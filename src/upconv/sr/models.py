"""ESPCN (Shi et al. 2016) as in the PyTorch examples' ``super_resolution`` network.

Y channel in, Y channel out: ``1→64 5×5, 64→64 3×3, 64→32 3×3`` with ReLU between, then the
upsampler: a sub-pixel conv ``32→r² 3×3`` + pixel shuffle (as published) or a nearest
resize ×r + ``32→1 3×3`` conv.
"""

from __future__ import annotations

import copy
from typing import Literal

from torch import Tensor, nn

from ..layers import Deconv2d, ResizeConv2d, SubPixelConv2d

Upsampler = Literal["subpixel", "resize"]


class ESPCN(nn.Module):
    """``(N, channels, H, W) → (N, channels, r·H, r·W)``.

    ``upsample`` is a :class:`SubPixelConv2d` or :class:`ResizeConv2d`; :meth:`to_deconv`
    returns a copy whose upsampler is the equivalent :class:`Deconv2d`.
    """

    def __init__(
        self, scale: int = 3, upsampler: Upsampler = "subpixel", channels: int = 1
    ) -> None:
        super().__init__()
        if upsampler not in ("subpixel", "resize"):
            raise ValueError(f"upsampler must be 'subpixel' or 'resize', got {upsampler!r}")
        self.scale = int(scale)
        self.upsampler = upsampler
        self.channels = int(channels)
        self.conv1 = nn.Conv2d(channels, 64, 5, padding=2)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 32, 3, padding=1)
        layer = SubPixelConv2d if upsampler == "subpixel" else ResizeConv2d
        self.upsample: nn.Module = layer(32, channels, 3, scale)
        self.act = nn.ReLU()

    def features(self, x: Tensor) -> Tensor:
        """The trunk: ``(N, channels, H, W) → (N, 32, H, W)``."""
        return self.act(self.conv3(self.act(self.conv2(self.act(self.conv1(x))))))

    def forward(self, x: Tensor) -> Tensor:
        return self.upsample(self.features(x))

    def to_deconv(self, algorithm: str = "revd2") -> ESPCN:
        """A copy whose upsampler is the equivalent deconvolution (this model is unchanged)."""
        if isinstance(self.upsample, Deconv2d):
            raise ValueError("this ESPCN is already converted")
        edge = copy.deepcopy(self)
        edge.upsample = self.upsample.to_deconv(algorithm)
        return edge

    @property
    def receptive_radius(self) -> int:
        """Input pixels each output depends on, per side: 2 + 1 + 1 + 1 = 5."""
        return 5
