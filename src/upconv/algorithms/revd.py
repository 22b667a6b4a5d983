"""REVD, reverse looping (Zhang et al. 2017).

Loop over taps ``k``; tap ``k`` reaches only the outputs ``o ≡ k - P (mod s)``, from input
``j = (o + P - k) / s``. No multiplication touches a structural zero, but every tap
accumulates into the output again: ``Kh·Kw`` read-modify-write passes.
"""

from __future__ import annotations

from torch import Tensor

from ..shapes import IntPair, Pad4, phase_outputs, tap_window
from ._common import add_bias, tap_product


def deconv2d_revd(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: Pad4,
    output_padding: IntPair, out_size: IntPair,
) -> Tensor:
    """``x (N, Cin, H, W)``, ``weight (Cin, C, Kh, Kw)`` → ``(N, C, *out_size)``."""
    n, _, h, w = x.shape
    _, c, kh, kw = weight.shape
    (sh, sw), (oh, ow) = stride, out_size
    top, _, left, _ = padding
    y = x.new_zeros(n, c, oh, ow)
    for ki in range(kh):
        o_h, q_h, n_h = phase_outputs(ki % sh, sh, top, oh)
        a, ja, na = tap_window(q_h, n_h, ki // sh, h)
        for kj in range(kw):
            o_w, q_w, n_w = phase_outputs(kj % sw, sw, left, ow)
            b, jb, nb = tap_window(q_w, n_w, kj // sw, w)
            if na == 0 or nb == 0:
                continue
            rows = slice(o_h + sh * a, o_h + sh * (a + na - 1) + 1, sh)
            cols = slice(o_w + sw * b, o_w + sw * (b + nb - 1) + 1, sw)
            y[:, :, rows, cols] += tap_product(
                x[:, :, ja : ja + na, jb : jb + nb], weight[:, :, ki, kj]
            )
    return add_bias(y, bias)
