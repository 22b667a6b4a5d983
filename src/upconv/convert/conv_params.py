"""A trained convolution's parameters, checked for the sub-pixel / resize → deconv rewrites.

The PyTorch and the ONNX rewrites describe the convolution they found as
:class:`ConvParams`; :func:`same_padding_or_reason` says whether it qualifies.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..shapes import Pad4, PaddingLike, conv_same_padding4, pair


class Unsupported(Exception):
    """Raised inside a rewrite to leave a candidate alone; ``str()`` is the report's reason."""


@dataclass(frozen=True)
class ConvParams:
    """weight ``(Cout, Cin, Kh, Kw)``, bias ``(Cout,)`` or None, and the conv's settings."""

    weight: Tensor
    bias: Tensor | None
    stride: int | tuple[int, ...] = 1
    padding: PaddingLike = 0
    dilation: int | tuple[int, ...] = 1
    groups: int = 1
    padding_mode: str = "zeros"

    @property
    def kernel_size(self) -> tuple[int, int]:
        return (int(self.weight.shape[2]), int(self.weight.shape[3]))


def same_padding_or_reason(conv: ConvParams) -> Pad4:
    """The conv's per-side padding ``(top, bottom, left, right)`` if it is a plain same-size conv.

    Raises :class:`Unsupported` naming the first rule it breaks: 2-D weight, groups 1,
    stride 1, dilation 1, zero padding mode, padding that keeps the size.
    """
    if conv.weight.ndim != 4:
        raise Unsupported(f"not a 2-D convolution (weight shape {tuple(conv.weight.shape)})")
    if conv.groups != 1:
        raise Unsupported(f"groups={conv.groups} (only groups=1 converts)")
    if pair(conv.stride, "stride") != (1, 1):
        raise Unsupported(f"stride {pair(conv.stride, 'stride')} (only stride 1 keeps the size)")
    if pair(conv.dilation, "dilation") != (1, 1):
        raise Unsupported(f"dilation {pair(conv.dilation, 'dilation')} (only dilation 1 converts)")
    if conv.padding_mode != "zeros":
        raise Unsupported(f"padding_mode={conv.padding_mode!r} (only zero padding converts)")
    try:
        return conv_same_padding4(conv.padding, conv.kernel_size)
    except ValueError as err:
        raise Unsupported(f"padding does not keep size: {err}") from None
