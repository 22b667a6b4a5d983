"""REVD2 (Colbert et al. 2021): output-stationary deconvolution.

Loop over output phases ``f = (o + P) mod s``. Only taps ``k = f + s·t`` (``t <
ceil(Kd/s)``, ``k < Kd``) reach a phase, from inputs ``j = q - t`` where ``o + P = f + s·q``.
Each phase's outputs accumulate in one accumulator, initialised with the bias, and are
written exactly once. No multiplication by a structural zero, no overlapping sums.

This is the readable reference; :mod:`upconv.kernels` holds the compiled engine.
"""

from __future__ import annotations

from torch import Tensor

from ..shapes import IntPair, Pad4, phase_outputs, tap_window
from ._common import bias_plane, tap_product


def deconv2d_revd2(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: Pad4,
    output_padding: IntPair, out_size: IntPair,
) -> Tensor:
    """``x (N, Cin, H, W)``, ``weight (Cin, C, Kh, Kw)`` → ``(N, C, *out_size)``."""
    n, _, h, w = x.shape
    _, c, kh, kw = weight.shape
    (sh, sw), (oh, ow) = stride, out_size
    top, _, left, _ = padding
    plane = bias_plane(bias, oh, ow)
    y = x.new_empty(n, c, oh, ow)
    for fh in range(sh):
        o_h, q_h, n_h = phase_outputs(fh, sh, top, oh)
        for fw in range(sw):
            o_w, q_w, n_w = phase_outputs(fw, sw, left, ow)
            if n_h == 0 or n_w == 0:
                continue
            rows = slice(o_h, o_h + sh * (n_h - 1) + 1, sh)
            cols = slice(o_w, o_w + sw * (n_w - 1) + 1, sw)
            acc = x.new_zeros(n, c, n_h, n_w)
            if plane is not None:
                acc += plane if bias.ndim == 1 else plane[:, rows, cols]
            for ki in range(fh, kh, sh):  # taps k = f + s·t of this phase
                a, ja, na = tap_window(q_h, n_h, ki // sh, h)
                for kj in range(fw, kw, sw):
                    b, jb, nb = tap_window(q_w, n_w, kj // sw, w)
                    if na and nb:
                        acc[:, :, a : a + na, b : b + nb] += tap_product(
                            x[:, :, ja : ja + na, jb : jb + nb], weight[:, :, ki, kj]
                        )
            y[:, :, rows, cols] = acc  # the one write of these outputs
    return y
