"""PyTorch-backed deconvolutions: the GEMM paths the autotuner weighs against the REVD2 kernel.

* :func:`deconv2d_tdc_torch`: TDC as one ``conv2d`` to ``C·sh·sw`` phase channels, then
  pixel shuffle. The convolution is padded to produce only the phase-grid rows and columns the
  output needs, and a bias that repeats with the phases is folded into ``conv2d``'s own bias,
  so for a sub-pixel layer this is exactly the original conv + pixel shuffle (oneDNN's GEMM).
* :func:`deconv2d_convtranspose_torch`: PyTorch's own ``conv_transpose2d`` (col2im, close to
  STDD), with per-side crops and a periodic bias applied afterwards.

Both keep PyTorch's autograd and accept any dtype and device ``conv2d`` accepts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..algorithms._common import add_bias, depth_to_space, depth_to_space_channels_last
from ..algorithms.tdc import phase_kernels
from ..functional import output_memory_format
from ..shapes import IntPair, Pad4, phase_outputs
from .weight_cache import derived


def _grid(stride: int, pad_before: int, out_len: int) -> tuple[int, int]:
    """Phase-grid range ``[q_lo, q_hi)`` covering every output of every phase on one axis."""
    ranges = [phase_outputs(f, stride, pad_before, out_len) for f in range(stride)]
    return min(q for _, q, _ in ranges), max(q + n for _, q, n in ranges)


def _folded_bias(bias: Tensor | None, stride: IntPair, padding: Pad4) -> Tensor | None:
    """The bias as ``conv2d``'s per-channel bias of the phase channels, or None if it cannot be.

    Phase channel ``(c, fh, fw)`` holds outputs ``o ≡ f − P (mod s)``; a periodic bias with
    a period dividing the stride is constant on it.
    """
    if bias is None:
        return None
    (sh, sw), (top, _, left, _) = stride, padding
    if bias.ndim == 1:
        return bias.repeat_interleave(sh * sw)
    c, bh, bw = bias.shape
    if sh % bh or sw % bw:
        return None
    rows = [(fh - top) % bh for fh in range(sh)]
    cols = [(fw - left) % bw for fw in range(sw)]
    return bias[:, rows][:, :, cols].reshape(c * sh * sw)


def deconv2d_tdc_torch(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: Pad4,
    output_padding: IntPair, out_size: IntPair,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> Tensor:
    """TDC through ``conv2d`` + pixel shuffle. ``x (N, Cin, H, W)`` → ``(N, C, *out_size)``.

    ``memory_format=torch.channels_last`` runs the convolution in NHWC (oneDNN's faster layout
    for many channels), converting ``x`` first when it is not already channels_last.
    """
    (sh, sw), (top, _, left, _), (oh, ow) = stride, padding, out_size
    # the layout the operator returns (channels_last for a channels_last CUDA input)
    channels_last_out = output_memory_format(x) == torch.channels_last
    # (C·sh·sw, Cin, Th, Tw), rotated; rebuilding them costs more than a small conv
    def make() -> Tensor:
        return phase_kernels(weight, stride).contiguous(memory_format=memory_format)

    # cached only for inference: a cached tensor would share one autograd graph between calls
    needs_grad = torch.is_grad_enabled() and weight.requires_grad
    kernels = make() if needs_grad else derived(weight, ("tdc", stride, memory_format), make)
    if memory_format == torch.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    th, tw = kernels.shape[-2:]
    h, w = x.shape[-2:]
    qh_lo, qh_hi = _grid(sh, top, oh)
    qw_lo, qw_hi = _grid(sw, left, ow)
    # conv output q reads inputs q − t for t < T: pad so that q runs over [q_lo, q_hi) exactly
    pads = (th - 1 - qh_lo, qh_hi - h, tw - 1 - qw_lo, qw_hi - w)  # top, bottom, left, right
    # the folded bias too: indexing a CUDA bias with Python lists copies the indices to the
    # device and waits for it (a host sync every call: on an H100 it cost a 0.06 ms layer
    # 0.23 ms in auto's timing)
    if bias is None or (torch.is_grad_enabled() and bias.requires_grad):
        folded = _folded_bias(bias, stride, padding)
    else:
        folded = derived(bias, ("tdc-bias", stride, padding),
                         lambda: _folded_bias(bias, stride, padding))
    if pads[0] == pads[1] >= 0 and pads[2] == pads[3] >= 0:
        phases = F.conv2d(x, kernels, folded, padding=(pads[0], pads[2]))
    else:  # F.pad crops where negative
        phases = F.conv2d(F.pad(x, (pads[2], pads[3], pads[0], pads[1])), kernels, folded)
    if channels_last_out and phases.is_contiguous(memory_format=torch.channels_last):
        # straight to the channels_last result: pixel_shuffle would write NCHW, and the
        # operator would then transpose it (measured on an H200: tdc on channels_last
        # 0.30 ms against 0.235 for cuDNN's conv + shuffle, G2 fp16, 3 output channels)
        full = depth_to_space_channels_last(phases, stride)
    elif sh == sw:
        full = F.pixel_shuffle(phases, sh)
    else:
        full = depth_to_space(phases, stride)
    r0, c0 = top - sh * qh_lo, left - sw * qw_lo  # where output (0, 0) sits in ``full``
    if (r0, c0) != (0, 0) or tuple(full.shape[-2:]) != (oh, ow):
        full = full[..., r0 : r0 + oh, c0 : c0 + ow]
    return full if (folded is not None or bias is None) else add_bias(full, bias)


def deconv2d_tdc_torch_nhwc(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: Pad4,
    output_padding: IntPair, out_size: IntPair,
) -> Tensor:
    """:func:`deconv2d_tdc_torch` with the convolution in channels_last. Same contract."""
    return deconv2d_tdc_torch(x, weight, bias, stride, padding, output_padding, out_size,
                              torch.channels_last)


def deconv2d_convtranspose_torch(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: Pad4,
    output_padding: IntPair, out_size: IntPair,
) -> Tensor:
    """PyTorch's ``conv_transpose2d`` with per-side crops and periodic bias. Same contract."""
    top, bottom, left, right = padding
    ph, pw = min(top, bottom), min(left, right)
    per_channel = bias if bias is not None and bias.ndim == 1 else None
    y = F.conv_transpose2d(x, weight, per_channel, stride, (ph, pw), output_padding)
    r0, c0 = top - ph, left - pw
    if (r0, c0) != (0, 0) or tuple(y.shape[-2:]) != tuple(out_size):
        y = y[..., r0 : r0 + out_size[0], c0 : c0 + out_size[1]]
    return y if per_channel is not None or bias is None else add_bias(y, bias)
