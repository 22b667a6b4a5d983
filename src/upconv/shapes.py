"""Shape arithmetic: the one place that knows how sizes, paddings and scales relate.

Every other module asks this one; nothing re-derives a stride, a crop or an output size.

Conventions (PyTorch's ``conv_transpose2d``, generalised to per-side crops):

* A deconvolution with stride ``s``, kernel ``Kd`` and crops ``(P_before, P_after)`` on an
  axis of input length ``H`` produces the *full* length ``(H - 1)·s + Kd``, drops
  ``P_before`` samples at the start and ``P_after`` at the end, then appends
  ``output_padding`` samples:  ``O = (H - 1)·s + Kd - P_before - P_after + output_padding``.
  Output index ``o`` therefore sits at full index ``o + P_before``.
* 4-value paddings are ``(top, bottom, left, right)``, as in the public API.
* "Same" convolution padding for a kernel ``K`` is ``(before, after)`` with
  ``before + after = K - 1``; PyTorch's ``padding="same"`` uses ``before = (K - 1) // 2``.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from dataclasses import dataclass

IntPair = tuple[int, int]
Pad4 = tuple[int, int, int, int]
ScaleLike = int | Sequence[int]
PaddingLike = int | str | Sequence[int]


def as_int(value: object, name: str) -> int:
    """An int (or an integral float such as 2.0); anything else is a TypeError/ValueError."""
    if type(value) is int:  # the common case, without the abstract-class checks below
        return value
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got a bool ({value!r})")
    if isinstance(value, numbers.Integral):
        return int(value)
    if hasattr(value, "__index__"):  # 0-d integer tensors (sizes seen while tracing)
        try:
            return operator.index(value)
        except TypeError:
            pass
    if isinstance(value, numbers.Real):
        if float(value).is_integer():
            return int(value)
        raise ValueError(f"{name} must be an integer, got {value!r}")
    raise TypeError(f"{name} must be an integer, got {type(value).__name__} ({value!r})")


def pair(value: int | Sequence[int], name: str, *, minimum: int | None = None) -> IntPair:
    """Normalise an int or a 2-sequence to ``(height, width)``, checking ``>= minimum``."""
    # tuples and lists first: the abstract-class check below costs more than the rest
    if type(value) in (tuple, list) or (isinstance(value, Sequence)
                                        and not isinstance(value, (str, bytes))):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {len(value)} values")
        out = (as_int(value[0], name), as_int(value[1], name))
    elif isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    else:
        v = as_int(value, name)
        out = (v, v)
    if minimum is not None and min(out) < minimum:
        raise ValueError(f"{name} must be >= {minimum} on both axes, got {tuple(out)}")
    return out


def scale_pair(scale: ScaleLike, name: str = "scale") -> IntPair:
    """An upsampling scale ``r`` or ``(rh, rw)``: positive integers."""
    try:
        return pair(scale, name, minimum=1)
    except ValueError as err:
        raise ValueError(f"{err} (scales are integers >= 1)") from None


def padding4(padding: int | Sequence[int], name: str = "padding") -> Pad4:
    """Normalise a deconvolution padding to per-side crops ``(top, bottom, left, right)``.

    ``p`` means ``(p, p, p, p)``; ``(ph, pw)`` means ``(ph, ph, pw, pw)``.
    """
    is_seq = type(padding) in (tuple, list) or (  # tuples and lists without the ABC check
        isinstance(padding, Sequence) and not isinstance(padding, (str, bytes)))
    if is_seq and len(padding) == 4:
        out = tuple(as_int(p, name) for p in padding)
    else:
        ph, pw = pair(padding, name)
        out = (ph, ph, pw, pw)
    if min(out) < 0:
        raise ValueError(f"{name} must be non-negative, got {out}")
    return out  # type: ignore[return-value]


def same_padding(kernel_size: int | Sequence[int]) -> Pad4:
    """PyTorch's ``padding="same"`` as ``(top, bottom, left, right)``: before = (K - 1) // 2."""
    kh, kw = pair(kernel_size, "kernel_size", minimum=1)
    return ((kh - 1) // 2, kh - 1 - (kh - 1) // 2, (kw - 1) // 2, kw - 1 - (kw - 1) // 2)


def conv_same_padding4(padding: PaddingLike, kernel_size: int | Sequence[int]) -> Pad4:
    """A convolution's padding as per-side ``(top, bottom, left, right)``, checked to keep size.

    Accepts ``"same"``, an int, ``(ph, pw)`` or a 4-tuple. A stride-1 convolution keeps the
    size exactly when ``top + bottom == Kh - 1`` and ``left + right == Kw - 1``.
    """
    kh, kw = pair(kernel_size, "kernel_size", minimum=1)
    if isinstance(padding, str):
        if padding != "same":
            raise ValueError(f"padding must be 'same', an int, a pair or 4 ints, got {padding!r}")
        pad = same_padding((kh, kw))
    else:
        pad = padding4(padding)
    top, bottom, left, right = pad
    if top + bottom != kh - 1 or left + right != kw - 1:
        raise ValueError(
            f"padding {pad} (top, bottom, left, right) does not keep the size for kernel "
            f"{(kh, kw)}: top + bottom must be {kh - 1} and left + right {kw - 1}; "
            "use padding='same'"
        )
    return pad


def deconv_output_length(
    length: int, stride: int, kernel: int, pad_before: int, pad_after: int, output_padding: int = 0
) -> int:
    """``(length - 1)·stride + kernel - pad_before - pad_after + output_padding``."""
    return (length - 1) * stride + kernel - pad_before - pad_after + output_padding


def taps_per_phase(kernel: int, stride: int) -> int:
    """Taps of a ``kernel``-tap deconvolution reaching one output phase: ``ceil(kernel/stride)``."""
    return math.ceil(kernel / stride)


@dataclass(frozen=True)
class DeconvGeometry:
    """Stride, per-side crops and kernel size of a deconvolution.

    ``padding`` is ``(top, bottom, left, right)``; :attr:`symmetric_padding` gives the
    ``(ph, pw)`` pair PyTorch's ``conv_transpose2d`` takes, or ``None`` when crops differ.
    """

    stride: IntPair
    padding: Pad4
    kernel_size: IntPair
    output_padding: IntPair = (0, 0)

    @property
    def symmetric_padding(self) -> IntPair | None:
        t, b, le, r = self.padding
        return (t, le) if (t == b and le == r) else None

    def output_size(self, height: int, width: int) -> IntPair:
        """Output ``(H_out, W_out)`` for an input of ``(height, width)``."""
        (sh, sw), (kh, kw) = self.stride, self.kernel_size
        t, b, le, r = self.padding
        oph, opw = self.output_padding
        return (
            deconv_output_length(height, sh, kh, t, b, oph),
            deconv_output_length(width, sw, kw, le, r, opw),
        )


def subpixel_deconv_geometry(
    kernel_size: int | Sequence[int], scale: ScaleLike, padding: PaddingLike = "same"
) -> DeconvGeometry:
    """Deconvolution equal to a same-padded conv (``kernel_size``, ``padding``) + pixel shuffle.

    Stride ``(rh, rw)``, kernel ``(rh·Kh, rw·Kw)``. The kernel is flipped by the weight
    shuffle, so a conv padding ``(top, bottom)`` becomes crops ``(rh·bottom, rh·top)``: the
    sides swap. Symmetric (odd-kernel) padding ``p`` gives the paper's ``P = r·p``.
    """
    rh, rw = scale_pair(scale)
    kh, kw = pair(kernel_size, "kernel_size", minimum=1)
    top, bottom, left, right = conv_same_padding4(padding, (kh, kw))
    return DeconvGeometry(
        stride=(rh, rw),
        padding=(rh * bottom, rh * top, rw * right, rw * left),
        kernel_size=(rh * kh, rw * kw),
    )


def cropped_subpixel_deconv_geometry(
    kernel_size: int | Sequence[int], scale: ScaleLike, padding: int | Sequence[int] = 0,
    crop: int | Sequence[int] = 0,
) -> DeconvGeometry:
    """Deconvolution equal to conv (zero ``padding``, any amount) → crop → pixel shuffle.

    ``padding`` and ``crop`` are ``(top, bottom, left, right)`` (or an int / pair): the conv's
    zero padding, and how many of its output rows / columns are dropped before the shuffle.
    Output row ``i`` of the cropped conv reads input rows ``i + crop_top - pad_top + k``;
    the deconvolution has stride ``(rh, rw)``, kernel ``(rh·Kh, rw·Kw)`` and crops
    ``rh·(Kh - 1 - pad_top + crop_top)`` before and ``rh·(Kh - 1 - pad_bottom + crop_bottom)``
    after (likewise for width). With same padding and no crop this is
    :func:`subpixel_deconv_geometry`. Raises ValueError when a crop would be negative
    (padding wider than the kernel reaches).
    """
    rh, rw = scale_pair(scale)
    kh, kw = pair(kernel_size, "kernel_size", minimum=1)
    pt, pb, pl, pr = padding4(padding, "padding")
    ct, cb, cl, cr = padding4(crop, "crop")
    crops = (rh * (kh - 1 - pt + ct), rh * (kh - 1 - pb + cb),
             rw * (kw - 1 - pl + cl), rw * (kw - 1 - pr + cr))
    if min(crops) < 0:
        raise ValueError(f"padding {(pt, pb, pl, pr)} with crop {(ct, cb, cl, cr)} reaches "
                         f"beyond kernel {(kh, kw)}: the deconvolution would need negative "
                         f"crops {crops}")
    return DeconvGeometry(stride=(rh, rw), padding=crops, kernel_size=(rh * kh, rw * kw))


def resize_deconv_geometry(
    kernel_size: int | Sequence[int], scale: ScaleLike, padding: PaddingLike = "same"
) -> DeconvGeometry:
    """Deconvolution equivalent to a nearest resize by ``scale`` + same-padded conv.

    Stride ``(rh, rw)``, kernel ``(Kh + rh - 1, Kw + rw - 1)``; a conv padding
    ``(top, bottom)`` becomes crops ``(bottom, top)`` (the weight convolution flips the kernel).
    """
    rh, rw = scale_pair(scale)
    kh, kw = pair(kernel_size, "kernel_size", minimum=1)
    top, bottom, left, right = conv_same_padding4(padding, (kh, kw))
    return DeconvGeometry(
        stride=(rh, rw),
        padding=(bottom, top, right, left),
        kernel_size=(kh + rh - 1, kw + rw - 1),
    )


# --- index arithmetic of the deconvolution loop orders (one axis at a time) ---------------
#
# With crops P (before) and stride s, output o sits at full index n = o + P. Write
# n = f + s·q with phase f = n mod s. Tap k = f + s·t reaches output (f, q) from input
# j = q - t. REVD walks taps, REVD2 walks phases; both use the two helpers below.


def phase_outputs(phase: int, stride: int, pad_before: int, out_len: int) -> tuple[int, int, int]:
    """Outputs of one phase: ``(o_first, q_first, count)``.

    The outputs ``o = o_first + stride·i`` for ``i < count`` are exactly those in
    ``[0, out_len)`` with ``(o + pad_before) mod stride == phase``; ``q = q_first + i``.
    """
    q_first = -((phase - pad_before) // stride)  # ceil((pad_before - phase) / stride)
    q_last = (out_len - 1 + pad_before - phase) // stride
    count = max(0, q_last - q_first + 1)
    return phase + stride * q_first - pad_before, q_first, count


def tap_window(q_first: int, count: int, tap_row: int, in_len: int) -> tuple[int, int, int]:
    """Where tap row ``t`` meets the input, for outputs ``q_first .. q_first+count-1``.

    Returns ``(i_first, j_first, n)``: outputs ``i_first .. i_first+n-1`` (relative to
    ``q_first``) read inputs ``j_first .. j_first+n-1`` (``j = q - t`` in ``[0, in_len)``).
    """
    i_first = max(0, tap_row - q_first)
    i_end = min(count, in_len + tap_row - q_first)
    n = max(0, i_end - i_first)
    return i_first, q_first + i_first - tap_row, n
