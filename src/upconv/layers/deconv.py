"""``Deconv2d``: a transposed convolution that runs with a chosen upconv algorithm."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .. import functional as UF
from ..shapes import DeconvGeometry, IntPair, as_int, padding4, pair


class Deconv2d(nn.Module):
    """Transposed convolution ``(N, Cin, H, W) → (N, C, H_out, W_out)`` run by ``algorithm``.

    weight: ``(Cin, C/groups, Kh, Kw)`` (``nn.ConvTranspose2d`` layout). bias: ``(C,)``, or
    periodic ``(C, *bias_period)`` when ``bias_period`` is given (what a sub-pixel conv's bias
    becomes). ``padding`` may be per-side crops ``(top, bottom, left, right)``. The forward pass
    is the operator ``torch.ops.upconv.deconv2d`` (:func:`upconv.deconv2d`).
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
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.groups = as_int(groups, "groups")
        if (self.groups < 1 or self.in_channels % self.groups
                or self.out_channels % self.groups):
            raise ValueError(f"groups must be a positive divisor of in_channels "
                             f"({self.in_channels}) and out_channels ({self.out_channels}), "
                             f"got {groups}")
        self.kernel_size = pair(kernel_size, "kernel_size", minimum=1)
        self.stride = pair(stride, "stride", minimum=1)
        self.padding = padding4(padding)
        self.output_padding = pair(output_padding, "output_padding", minimum=0)
        self.algorithm = algorithm
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(self.in_channels, self.out_channels // self.groups, *self.kernel_size,
                        **factory)
        )
        self.bias_period: IntPair | None = None
        if bias:
            shape = (self.out_channels,)
            if bias_period is not None:
                self.bias_period = pair(bias_period, "bias_period", minimum=1)
                shape += self.bias_period
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
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """``x (N, Cin, H, W)`` → ``(N, C, H_out, W_out)``."""
        return UF.deconv2d(x, self.weight, self.bias, self.stride, self.padding,
                           self.output_padding, self.algorithm, self.groups)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding}")
        if any(self.output_padding):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        elif self.bias.ndim == 3:
            s += f", bias_period={tuple(self.bias.shape[1:])}"
        return s + f", algorithm={self.algorithm!r}"
