"""Pure functions: the deconvolution entry point and the trained layers' forward passes.

The nn.Modules in :mod:`upconv.layers` are thin wrappers around these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from .algorithms import ALGORITHMS, REFERENCES
from .algorithms._common import depth_to_space
from .shapes import (
    DeconvGeometry,
    IntPair,
    Pad4,
    PaddingLike,
    ScaleLike,
    conv_same_padding4,
    padding4,
    pair,
    scale_pair,
)


@dataclass(frozen=True)
class DeconvCall:
    """A validated deconvolution: tensors plus normalised geometry and the output size."""

    x: Tensor
    weight: Tensor
    bias: Tensor | None
    stride: IntPair
    padding: Pad4
    output_padding: IntPair
    out_size: IntPair

    @property
    def geometry(self) -> DeconvGeometry:
        return DeconvGeometry(self.stride, self.padding, tuple(self.weight.shape[-2:]),
                              self.output_padding)


def _require_tensor(t: object, name: str, ndims: Sequence[int]) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim not in ndims:
        want = " or ".join(str(d) for d in ndims)
        raise ValueError(f"{name} must have {want} dimensions, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    return t


AUTO = "auto"


def check_algorithm(algorithm: str, extra: Sequence[str] = (AUTO,)) -> str:
    """Return ``algorithm`` if it is in :data:`ALGORITHMS` (or ``extra``), else a ValueError."""
    valid = (*ALGORITHMS, *extra)
    if algorithm not in valid:
        names = ", ".join(map(repr, valid))
        raise ValueError(f"algorithm must be one of {names}; got {algorithm!r}")
    return algorithm


def check_deconv(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    groups: int = 1,
) -> DeconvCall:
    """Validate :func:`deconv2d`'s arguments; raise ValueError/TypeError naming the rule."""
    x = _require_tensor(x, "x", (4,))
    weight = _require_tensor(weight, "weight", (4,))
    if groups != 1:
        raise ValueError(
            f"groups={groups} is not supported yet: upconv's deconvolutions handle groups=1 only"
        )
    if x.shape[1] != weight.shape[0]:
        raise ValueError(
            f"x has {x.shape[1]} channels but weight (Cin, C, Kh, Kw) = {tuple(weight.shape)} "
            f"expects Cin = {weight.shape[0]}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if t.dtype != x.dtype:
            raise TypeError(f"{name} dtype {t.dtype} does not match x dtype {x.dtype}")
        if t.device != x.device:
            raise ValueError(f"{name} is on {t.device} but x is on {x.device}")
    c = weight.shape[1]
    if bias is not None:
        bias = _require_tensor(bias, "bias", (1, 3))
        if bias.shape[0] != c or min(bias.shape) < 1:
            raise ValueError(
                f"bias must be (C,) or periodic (C, bh, bw) with C = {c}, got {tuple(bias.shape)}"
            )
    s = pair(stride, "stride", minimum=1)
    pad = padding4(padding)
    op = pair(output_padding, "output_padding", minimum=0)
    if op[0] >= s[0] or op[1] >= s[1]:
        raise ValueError(f"output_padding {op} must be smaller than stride {s} on each axis")
    geometry = DeconvGeometry(s, pad, (weight.shape[2], weight.shape[3]), op)
    out_size = geometry.output_size(x.shape[2], x.shape[3])
    if min(out_size) < 1:
        raise ValueError(
            f"padding {pad} crops away the whole output: input {tuple(x.shape[2:])}, "
            f"stride {s} and kernel {tuple(weight.shape[2:])} give output size {out_size}"
        )
    return DeconvCall(x, weight, bias, s, pad, op, out_size)


def deconv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    algorithm: str = "revd2",
    groups: int = 1,
) -> Tensor:
    """Transposed convolution with PyTorch's ``conv_transpose2d`` semantics.

    x: ``(N, Cin, H, W)``; weight: ``(Cin, C, Kh, Kw)``; bias: ``(C,)`` or periodic
    ``(C, bh, bw)`` (adds ``B[c, o_h mod bh, o_w mod bw]``). ``padding`` is an int, a pair,
    or per-side crops ``(top, bottom, left, right)``. Returns ``(N, C, H_out, W_out)`` with
    ``H_out = (H-1)·sh + Kh - top - bottom + output_padding_h``.
    ``algorithm`` is one of :data:`upconv.ALGORITHMS`, or ``"auto"``.
    """
    call = check_deconv(x, weight, bias, stride, padding, output_padding, groups)
    impl = implementation(call, check_algorithm(algorithm))
    return impl(call.x, call.weight, call.bias, call.stride, call.padding,
                call.output_padding, call.out_size)


def implementation(call: DeconvCall, algorithm: str) -> Callable[..., Tensor]:
    """The function that runs ``call`` with ``algorithm``.

    ``"revd2"``: the compiled kernel (:mod:`upconv.kernels`) for float32 CPU inference, the
    Triton kernel (:mod:`upconv.kernels.triton_revd2`) for CUDA inference, the readable
    reference otherwise (other dtypes or devices, autograd). ``"tdc"``: PyTorch
    ``conv2d`` + pixel shuffle. ``"auto"``: the fastest of those (TDC in NCHW and NHWC),
    PyTorch's ``conv_transpose2d`` and, for inference, ONNX Runtime's ``ConvTranspose``,
    timed once per shape and thread count (:mod:`upconv.autotune`). ``"stdd"``, ``"strd"``,
    ``"revd"``: their references.
    """
    if algorithm == AUTO:
        from .autotune import resolve

        return resolve(call)
    if algorithm == "revd2" and call.x.is_cuda:  # the Triton kernel, else the reference
        from .kernels import triton_revd2

        why = triton_revd2.unsupported_reason(call.x, call.weight, call.bias, call.out_size)
        if why is None:
            return triton_revd2.deconv2d_revd2_triton
        triton_revd2.record_fallback(why)
    elif algorithm == "revd2":
        from .kernels import deconv2d_revd2_compiled, unsupported_reason

        if unsupported_reason(call.x, call.weight, call.bias) is None:
            return deconv2d_revd2_compiled
    if algorithm == "tdc":
        from .kernels.torch_paths import deconv2d_tdc_torch

        return deconv2d_tdc_torch
    return REFERENCES[algorithm]


def pixel_shuffle(x: Tensor, scale: ScaleLike) -> Tensor:
    """``(N, C·rh·rw, H, W)`` → ``(N, C, rh·H, rw·W)``; PyTorch's channel order, rh ≠ rw allowed."""
    rh, rw = scale_pair(scale)
    if x.shape[-3] % (rh * rw):
        raise ValueError(f"x has {x.shape[-3]} channels, not divisible by rh·rw = {rh * rw}")
    return F.pixel_shuffle(x, rh) if rh == rw else depth_to_space(x, (rh, rw))


def _same_conv(x: Tensor, weight: Tensor, bias: Tensor | None, padding: PaddingLike) -> Tensor:
    top, bottom, left, right = conv_same_padding4(padding, weight.shape[-2:])
    if top == bottom and left == right:
        return F.conv2d(x, weight, bias, padding=(top, left))
    return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias)


def sub_pixel_conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None, scale: ScaleLike, padding: PaddingLike = "same"
) -> Tensor:
    """C-SP: same-padded conv to ``C·rh·rw`` channels, then pixel shuffle.

    x ``(N, Cin, H, W)``, weight ``(C·rh·rw, Cin, Kh, Kw)`` → ``(N, C, rh·H, rw·W)``.
    """
    return pixel_shuffle(_same_conv(x, weight, bias, padding), scale)


def resize_conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None, scale: ScaleLike, padding: PaddingLike = "same"
) -> Tensor:
    """C-NN: nearest-neighbour resize by ``(rh, rw)``, then a same-padded conv.

    x ``(N, Cin, H, W)``, weight ``(C, Cin, Kh, Kw)`` → ``(N, C, rh·H, rw·W)``.
    """
    rh, rw = scale_pair(scale)
    up = F.interpolate(x, scale_factor=(float(rh), float(rw)), mode="nearest")
    return _same_conv(up, weight, bias, padding)


__all__ = [
    "DeconvCall",
    "check_algorithm",
    "check_deconv",
    "deconv2d",
    "implementation",
    "pixel_shuffle",
    "resize_conv2d",
    "sub_pixel_conv2d",
]
