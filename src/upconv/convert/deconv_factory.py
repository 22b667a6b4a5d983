"""Build the :class:`~upconv.Deconv2d` equal to a sub-pixel or a resize convolution."""

from __future__ import annotations

import torch

from ..layers import Deconv2d
from ..shapes import (
    DeconvGeometry,
    IntPair,
    Pad4,
    cropped_subpixel_deconv_geometry,
    padding4,
    resize_deconv_geometry,
    same_padding,
)
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


def conv_padding4(conv: ConvParams) -> Pad4:
    """The conv's zero padding as ``(top, bottom, left, right)``, whatever form it was given in."""
    if isinstance(conv.padding, str):
        return (0, 0, 0, 0) if conv.padding == "valid" else same_padding(conv.kernel_size)
    return padding4(conv.padding)


def check_plain(conv: ConvParams) -> None:
    """:class:`Unsupported` unless a 2-D, stride-1, dilation-1, zero-padded convolution."""
    if conv.weight.ndim != 4:
        raise Unsupported(f"not a 2-D convolution (weight shape {tuple(conv.weight.shape)})")
    for name, value in (("stride", conv.stride), ("dilation", conv.dilation)):
        v = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
        if v != (1, 1):
            raise Unsupported(f"{name} {v} (only {name} 1 converts)")
    if conv.padding_mode != "zeros":
        raise Unsupported(f"padding_mode={conv.padding_mode!r} (only zero padding converts)")


def _deconv(cin: int, cout: int, geometry: DeconvGeometry, groups: int, bias: bool,
            period: IntPair | None, algorithm: str, like: torch.Tensor,
            cls: type[Deconv2d] = Deconv2d, **extra: object) -> Deconv2d:
    try:
        return cls(cin, cout, geometry.kernel_size, geometry.stride, geometry.padding,
                   bias=bias, bias_period=period, algorithm=algorithm, groups=groups,
                   device=like.device, dtype=like.dtype, **extra)
    except ValueError as err:
        if groups != 1:
            raise Unsupported(str(err)) from None
        raise


def subpixel_geometry(conv: ConvParams, scale: IntPair, crop: Pad4 = (0, 0, 0, 0),
                      kept_crop: Pad4 = (0, 0, 0, 0)) -> DeconvGeometry:
    """Geometry of conv → crop → shuffle ``scale``, minus the ``kept_crop`` (output pixels per
    side) that the model's forward still crops after the deconvolution."""
    check_plain(conv)
    rh, rw = scale
    cout = conv.weight.shape[0]
    if cout % (rh * rw):
        raise Unsupported(f"{cout} conv output channels are not divisible by {rh}·{rw}")
    if conv.groups != 1 and (cout // (rh * rw)) % conv.groups:
        raise Unsupported(f"groups={conv.groups} does not divide the {cout // (rh * rw)} "
                          "output channels (a grouped deconvolution needs it to)")
    try:
        g = cropped_subpixel_deconv_geometry(conv.kernel_size, scale, conv_padding4(conv), crop)
    except ValueError as err:
        raise Unsupported(str(err)) from None
    crops = tuple(p - k for p, k in zip(g.padding, kept_crop, strict=True))
    if min(crops) < 0:
        raise Unsupported(f"the crop after the deconvolution {kept_crop} exceeds its crops "
                          f"{g.padding}")
    return DeconvGeometry(g.stride, crops, g.kernel_size)


def subpixel_deconv(conv: ConvParams, scale: IntPair, algorithm: str) -> Deconv2d:
    """conv ``(C·rh·rw, Cin, Kh, Kw)`` + pixel shuffle ``scale`` → Deconv2d, periodic bias.

    Same padding and ``groups=1`` only (:func:`subpixel_padding`); the ONNX rewrite uses it.
    """
    subpixel_padding(conv, scale)
    return build_subpixel_deconv(conv, scale, algorithm)


@torch.no_grad()
def build_subpixel_deconv(conv: ConvParams, scale: IntPair, algorithm: str,
                          crop: Pad4 = (0, 0, 0, 0),
                          kept_crop: Pad4 = (0, 0, 0, 0)) -> Deconv2d:
    """conv ``(C·rh·rw, Cin/g, Kh, Kw)`` (any zero padding, ``groups``) + crop + pixel shuffle
    ``scale`` → Deconv2d with a periodic bias; see :func:`subpixel_geometry` for the crops."""
    g = subpixel_geometry(conv, scale, crop, kept_crop)
    rh, rw = scale
    cout, cin_g = conv.weight.shape[:2]
    groups = conv.groups
    deconv = _deconv(cin_g * groups, cout // (rh * rw), g, groups, conv.bias is not None,
                     scale, algorithm, conv.weight)
    deconv.weight.copy_(weight_shuffle(conv.weight, scale, groups=groups))
    if conv.bias is not None:
        # the forward's own crop shifts output pixel o to o - kept: so does the bias phase
        shifts = (kept_crop[0] % rh, kept_crop[2] % rw)
        deconv.bias.copy_(bias_shuffle(conv.bias, scale).roll(shifts, dims=(1, 2)))
    return deconv


def resize_deconv(conv: ConvParams, scale: IntPair, algorithm: str) -> Deconv2d:
    """nearest resize ``scale`` + conv ``(C, Cin, Kh, Kw)`` → Deconv2d, per-channel bias.

    ``groups=1`` only (:func:`same_padding_or_reason`); the ONNX rewrite uses it.
    """
    same_padding_or_reason(conv)
    return build_resize_deconv(conv, scale, algorithm)


@torch.no_grad()
def build_resize_deconv(conv: ConvParams, scale: IntPair, algorithm: str,
                        cls: type[Deconv2d] = Deconv2d, **extra: object) -> Deconv2d:
    """nearest resize ``scale`` + same-padded conv ``(C, Cin/g, Kh, Kw)`` (``groups``) →
    Deconv2d (or ``cls(..., **extra)``) with a per-channel bias."""
    check_plain(conv)
    pad = same_padding_or_reason(ConvParams(conv.weight, None, padding=conv_padding4(conv)))
    cout, cin_g = conv.weight.shape[:2]
    groups = conv.groups
    if cout % groups:
        raise Unsupported(f"groups={groups} does not divide the {cout} output channels")
    g = resize_deconv_geometry(conv.kernel_size, scale, pad)
    deconv = _deconv(cin_g * groups, cout, g, groups, conv.bias is not None, None, algorithm,
                     conv.weight, cls, **extra)
    deconv.weight.copy_(weight_convolution(conv.weight, scale, groups=groups))
    if conv.bias is not None:
        deconv.bias.copy_(conv.bias)
    return deconv


def bias_kind(deconv: Deconv2d) -> str:
    """``"none"``, ``"per-channel"`` or ``"periodic"``: how the deconvolution adds its bias."""
    if deconv.bias is None:
        return "none"
    return "periodic" if deconv.bias.ndim == 3 else "per-channel"

