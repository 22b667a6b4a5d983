"""``StridedInputDeconv2d``: the deconvolution for a nearest resize the model's forward keeps.

When ``F.interpolate(x, scale_factor=r, mode="nearest")`` is called in a ``forward`` (not an
``nn.Upsample`` module) and feeds an ``nn.Conv2d``, the conv module is replaced by this layer:
it reads every ``(rh, rw)``-th pixel of the resized map — exactly ``x``, since a nearest
resize by an integer factor repeats each pixel ``rh × rw`` times starting at ``(rh·i, rw·j)``
— and runs the resize conv as a deconvolution on it. The resize itself still runs (a copy);
the convolution at the resized size does not.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ..layers import Deconv2d
from ..shapes import pair


class StridedInputDeconv2d(Deconv2d):
    """:class:`~upconv.Deconv2d` on ``x[:, :, ::rh, ::rw]``: ``(N, Cin, rh·H, rw·W) → (N, C,
    H_out, W_out)``. ``input_stride`` is ``(rh, rw)``; other arguments as ``Deconv2d``."""

    def __init__(self, *args: object, input_stride: int | Sequence[int] = 1,
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.input_stride = pair(input_stride, "input_stride", minimum=1)

    def forward(self, x: Tensor) -> Tensor:
        sh, sw = self.input_stride
        return super().forward(x[:, :, ::sh, ::sw])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, input_stride={self.input_stride}"
