"""STDD, the standard (input-oriented) deconvolution, as col2im.

Every input pixel multiplies the whole kernel (the GEMM: a ``(N, C, Kh, Kw, H, W)`` column
buffer), then each tap's plane is scattered into the full output at stride ``s``
("overlapping sums": each output receives up to ``ceil(Kd/s)²`` read-modify-write updates),
and the crops are cut off at the end. This is how PyTorch and ONNX Runtime run
ConvTranspose on CPU.
"""

from __future__ import annotations

from torch import Tensor

from ..shapes import IntPair, Pad4
from ._common import add_bias, window


def deconv2d_stdd(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: Pad4,
    output_padding: IntPair, out_size: IntPair,
) -> Tensor:
    """``x (N, Cin, H, W)``, ``weight (Cin, C, Kh, Kw)`` → ``(N, C, *out_size)``."""
    n, _, h, w = x.shape
    _, c, kh, kw = weight.shape
    sh, sw = stride
    columns = (x.flatten(2).transpose(1, 2) @ weight.flatten(1))  # (N, H·W, C·Kh·Kw)
    columns = columns.reshape(n, h, w, c, kh, kw)
    full = x.new_zeros(n, c, (h - 1) * sh + kh, (w - 1) * sw + kw)
    for i in range(kh):
        for j in range(kw):
            # tap (i, j) of input (a, b) lands on full output (sh·a + i, sw·b + j)
            full[:, :, i : i + sh * (h - 1) + 1 : sh, j : j + sw * (w - 1) + 1 : sw] += (
                columns[:, :, :, :, i, j].permute(0, 3, 1, 2)
            )
    top, _, left, _ = padding
    return add_bias(window(full, top, out_size[0], left, out_size[1]), bias)
