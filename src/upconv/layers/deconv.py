"""``Deconv2d``: a transposed convolution that runs with a chosen upconv algorithm."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.fx import _symbolic_trace

from .. import functional as UF
from ..shapes import DeconvGeometry, IntPair, Pad4, padding4, pair


def is_graph_capture() -> bool:
    """True under ``torch.onnx`` export, ``torch.jit`` tracing, ``torch.compile`` / ``torch.export``
    and ``torch.fx`` symbolic tracing: the callers that need standard PyTorch ops."""
    return (
        torch.jit.is_tracing()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
        or _is_fx_symbolic_tracing()
    )


# torch >= 2.6 names it is_fx_symbolic_tracing (is_fx_tracing also fires under torch.export).
_is_fx_symbolic_tracing = getattr(_symbolic_trace, "is_fx_symbolic_tracing",
                                  _symbolic_trace.is_fx_tracing)


def deconv2d_standard_ops(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: IntPair,
    padding: Pad4,
    output_padding: IntPair,
    bias_period: IntPair | None = None,
) -> Tensor:
    """:func:`upconv.deconv2d`'s result from ``F.conv_transpose2d``, a slice and an add.

    ``bias_period`` is ``(bh, bw)`` when ``bias`` is periodic ``(C, bh, bw)`` (given, not read
    from the tensor, so symbolic tracers see no data-dependent branch). Exports to ONNX as
    ``ConvTranspose`` (+ ``Slice`` for asymmetric crops) and, for a periodic bias, a ``Tile``
    of the bias to the output size + ``Add``; sizes come from the input's shape, so dynamic
    batch and spatial dimensions survive.
    """
    top, bottom, left, right = padding
    ph, pw = min(top, bottom), min(left, right)
    y = F.conv_transpose2d(x, weight, None if bias_period else bias, stride, (ph, pw),
                           output_padding)
    # Asymmetric crops: conv_transpose2d cropped min(before, after); drop the rest per side.
    top, bottom, left, right = top - ph, bottom - ph, left - pw, right - pw
    if top or bottom or left or right:
        y = y[:, :, top : y.shape[2] - bottom, left : y.shape[3] - right]
    if bias is not None and bias_period:
        bh, bw = bias_period
        out_h, out_w = y.shape[2], y.shape[3]
        tiled = bias.repeat(1, (out_h + bh - 1) // bh, (out_w + bw - 1) // bw)
        y = y + tiled[:, :out_h, :out_w]
    return y


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
            fan_in = self.out_channels * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if is_graph_capture():
            return deconv2d_standard_ops(x, self.weight, self.bias, self.stride, self.padding,
                                         self.output_padding, self.bias_period)
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
