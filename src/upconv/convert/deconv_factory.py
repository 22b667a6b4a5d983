"""Build the :class:`~upconv.Deconv2d` equal to a sub-pixel or a resize convolution."""

from __future__ import annotations

import torch

from ..layers import Deconv2d
from ..shapes import IntPair, Pad4, resize_deconv_geometry, subpixel_deconv_geometry
from ..transforms import bias_shuffle, weight_convolution, weight_shuffle
from .conv_params import ConvParams, Unsupported, same_padding_or_reason


def subpixel_padding(conv: ConvParams, scale: IntPair) -> Pad4:
    """The conv's same padding ``(top, bottom, left, right)`` if conv + pixel shuffle ``scale``
    converts; :class:`Unsupported` naming the first rule it breaks otherwise."""
    pad = same_padding_or_reason(conv)
    rh, rw = scale
    cout = conv.weight.shape[0]
    if cout % (rh * rw):
        raise Unsupported(f"{cout} conv output channels are not divisible by {rh}·{rw}")
    return pad


@torch.no_grad()
def subpixel_deconv(conv: ConvParams, scale: IntPair, algorithm: str) -> Deconv2d:
    """conv ``(C·rh·rw, Cin, Kh, Kw)`` + pixel shuffle ``scale`` → Deconv2d, periodic bias."""
    pad = subpixel_padding(conv, scale)
    rh, rw = scale
    cout, cin = conv.weight.shape[:2]
    g = subpixel_deconv_geometry(conv.kernel_size, scale, pad)
    deconv = Deconv2d(cin, cout // (rh * rw), g.kernel_size, g.stride, g.padding,
                      bias=conv.bias is not None, bias_period=scale, algorithm=algorithm,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    deconv.weight.copy_(weight_shuffle(conv.weight, scale))
    if conv.bias is not None:
        deconv.bias.copy_(bias_shuffle(conv.bias, scale))
    return deconv


@torch.no_grad()
def resize_deconv(conv: ConvParams, scale: IntPair, algorithm: str) -> Deconv2d:
    """nearest resize ``scale`` + conv ``(C, Cin, Kh, Kw)`` → Deconv2d, per-channel bias."""
    pad = same_padding_or_reason(conv)
    cout, cin = conv.weight.shape[:2]
    g = resize_deconv_geometry(conv.kernel_size, scale, pad)
    deconv = Deconv2d(cin, cout, g.kernel_size, g.stride, g.padding, bias=conv.bias is not None,
                      algorithm=algorithm, device=conv.weight.device, dtype=conv.weight.dtype)
    deconv.weight.copy_(weight_convolution(conv.weight, scale))
    if conv.bias is not None:
        deconv.bias.copy_(conv.bias)
    return deconv


def bias_kind(deconv: Deconv2d) -> str:
    """``"none"``, ``"per-channel"`` or ``"periodic"``: how the deconvolution adds its bias."""
    if deconv.bias is None:
        return "none"
    return "periodic" if deconv.bias.ndim == 3 else "per-channel"
