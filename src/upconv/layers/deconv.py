"""``Deconv2d``: a transposed convolution that runs with a chosen upconv algorithm."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .. import functional as UF
from ..shapes import DeconvGeometry, padding4, pair


class Deconv2d(nn.Module):
    """Transposed convolution ``(N, Cin, H, W) → (N, C, H_out, W_out)`` run by ``algorithm``.

    weight: ``(Cin, C, Kh, Kw)`` (``nn.ConvTranspose2d`` layout). bias: ``(C,)``, or periodic
    ``(C, *bias_period)`` when ``bias_period`` is given (what a sub-pixel conv's bias becomes).
    ``padding`` may be per-side crops ``(top, bottom, left, right)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        output_padding: int | Sequence[int] = 0,
        bias: bool = True,
        bias_period: int | Sequence[int] | None = None,
        algorithm: str = "revd2",
        groups: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if groups != 1:
            raise ValueError(
                f"groups={groups} is not supported yet: Deconv2d handles groups=1 only"
            )
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size", minimum=1)
        self.stride = pair(stride, "stride", minimum=1)
        self.padding = padding4(padding)
        self.output_padding = pair(output_padding, "output_padding", minimum=0)
        self.algorithm = algorithm
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(self.in_channels, self.out_channels, *self.kernel_size, **factory)
        )
        if bias:
            shape = (self.out_channels,)
            if bias_period is not None:
                shape += pair(bias_period, "bias_period", minimum=1)
            self.bias = nn.Parameter(torch.empty(shape, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    @property
    def algorithm(self) -> str:
        return self._algorithm

    @algorithm.setter
    def algorithm(self, value: str) -> None:
        self._algorithm = UF.check_algorithm(value)

    @property
    def geometry(self) -> DeconvGeometry:
        return DeconvGeometry(self.stride, self.padding, self.kernel_size, self.output_padding)

    def reset_parameters(self) -> None:
        """The same initialisation as ``nn.ConvTranspose2d``."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.out_channels * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return UF.deconv2d(x, self.weight, self.bias, self.stride, self.padding,
                           self.output_padding, algorithm=self.algorithm)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding}")
        if any(self.output_padding):
            s += f", output_padding={self.output_padding}"
        if self.bias is None:
            s += ", bias=False"
        elif self.bias.ndim == 3:
            s += f", bias_period={tuple(self.bias.shape[1:])}"
        return s + f", algorithm={self.algorithm!r}"
