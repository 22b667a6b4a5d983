"""Pure functions: the deconvolution entry point and the trained layers' forward passes.

The nn.Modules in :mod:`upconv.layers` are thin wrappers around these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
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
    as_int,
    conv_same_padding4,
    padding4,
    pair,
    scale_pair,
)


@dataclass(frozen=True)
class DeconvCall:
    """A validated deconvolution: tensors plus normalised geometry and the output size.

    ``weight`` is ``(Cin, C/groups, Kh, Kw)`` (``conv_transpose2d``'s layout); the output has
    ``C = weight.shape[1]·groups`` channels.
    """

    x: Tensor
    weight: Tensor
    bias: Tensor | None
    stride: IntPair
    padding: Pad4
    output_padding: IntPair
    out_size: IntPair
    groups: int = 1

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        """``(N, C, H_out, W_out)``."""
        return (self.x.shape[0], self.weight.shape[1] * self.groups, *self.out_size)

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
    groups = as_int(groups, "groups")
    if groups < 1 or weight.shape[0] % groups:
        raise ValueError(f"groups must be a positive divisor of Cin = {weight.shape[0]} "
                         f"(weight (Cin, C/groups, Kh, Kw) = {tuple(weight.shape)}), got {groups}")
    if x.shape[1] != weight.shape[0]:
        raise ValueError(
            f"x has {x.shape[1]} channels but weight (Cin, C/groups, Kh, Kw) = "
            f"{tuple(weight.shape)} expects Cin = {weight.shape[0]}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if t.dtype != x.dtype:
            raise TypeError(f"{name} dtype {t.dtype} does not match x dtype {x.dtype}")
        if t.device != x.device:
            raise ValueError(f"{name} is on {t.device} but x is on {x.device}")
    c = weight.shape[1] * groups
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
    return DeconvCall(x, weight, bias, s, pad, op, out_size, groups)


def deconv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    algorithm: str = "revd2",
    groups: int = 1,
    *,
    out: Tensor | None = None,
) -> Tensor:
    """Transposed convolution with PyTorch's ``conv_transpose2d`` semantics.

    x: ``(N, Cin, H, W)``; weight: ``(Cin, C/groups, Kh, Kw)``; bias: ``(C,)`` or periodic
    ``(C, bh, bw)`` (adds ``B[c, o_h mod bh, o_w mod bw]``). ``padding`` is an int, a pair,
    or per-side crops ``(top, bottom, left, right)``. Returns ``(N, C, H_out, W_out)`` with
    ``H_out = (H-1)·sh + Kh - top - bottom + output_padding_h``.
    ``algorithm`` is one of :data:`upconv.ALGORITHMS`, or ``"auto"``. ``out``: a preallocated
    ``(N, C, H_out, W_out)`` tensor to write into and return (inference only; repeated calls at
    one shape then skip the output's allocation and page faults).

    Runs the operator ``torch.ops.upconv.deconv2d`` (``deconv2d_out`` with ``out``), so
    ``torch.compile`` and ``torch.export`` see one op (:mod:`upconv.ops`). Under
    ``torch.jit.trace`` (TorchScript, and the ONNX exporter built on it) it records standard
    ops instead (:func:`deconv2d_standard_ops`): a TorchScript file runs where upconv's Python
    kernels are not loaded.
    """
    tracing = torch.jit.is_tracing()
    # plain: what the operator's kernel would run (no dispatcher round trip needed)
    plain = not tracing and _plain_eager_call(x, weight, bias, out)
    if plain and out is None:  # validation kept per call signature
        known = _known_geometry(x, weight, bias, stride, padding, output_padding, groups,
                                algorithm)
        if known is not None:
            return run(DeconvCall(x, weight, bias, *known, groups), algorithm)
    s = pair(stride, "stride", minimum=1)
    pad = padding4(padding)
    op = pair(output_padding, "output_padding", minimum=0)
    groups = as_int(groups, "groups")
    check_algorithm(algorithm)
    if tracing:
        if out is not None:
            raise ValueError("out= cannot be traced by torch.jit.trace; call without out")
        return deconv2d_standard_ops(x, weight, bias, s, pad, op, groups)
    if plain:
        return run(check_deconv(x, weight, bias, s, pad, op, groups), algorithm, out)
    if out is None:
        return torch.ops.upconv.deconv2d(x, weight, bias, s, pad, op, groups, algorithm)
    torch.ops.upconv.deconv2d_out(x, weight, bias, s, pad, op, groups, algorithm, out)
    return out


_PLAIN = (Tensor, torch.nn.Parameter)
#: Validated geometry ``(stride, padding, output_padding, out_size)`` per call signature
#: (shapes, strides, dtypes, devices, the geometry arguments as given, groups, algorithm):
#: a repeated call skips :func:`check_deconv` (~7 µs of a ~30 µs small call). Only calls
#: that passed validation are kept; bounded.
_KNOWN: dict[tuple, tuple[IntPair, Pad4, IntPair, IntPair]] = {}
_KNOWN_MAX = 256


def _exact_ints(v: object) -> bool:
    """An int, or a tuple of ints, by exact type (``True == 1``: a bool must not share a
    validated entry with an int)."""
    return type(v) is int or (type(v) is tuple and all(type(e) is int for e in v))


def _known_geometry(x: Tensor, weight: Tensor, bias: Tensor | None, stride: object,
                    padding: object, output_padding: object, groups: object, algorithm: str
                    ) -> tuple[IntPair, Pad4, IntPair, IntPair] | None:
    """The validated geometry of this call signature (validating it on first sight, which
    raises on bad input as :func:`check_deconv` does), or None where the arguments are not
    plain ints and tuples (then the caller validates as usual)."""
    if not (_exact_ints(stride) and _exact_ints(padding) and _exact_ints(output_padding)
            and type(groups) is int and type(algorithm) is str):
        return None
    key = (x.shape, x.stride(), x.dtype, x.device, weight.shape, weight.dtype, weight.device,
           None if bias is None else (bias.shape, bias.dtype, bias.device), stride, padding,
           output_padding, groups, algorithm)
    known = _KNOWN.get(key)
    if known is None:
        check_algorithm(algorithm)
        call = check_deconv(x, weight, bias, stride, padding, output_padding, groups)
        known = (call.stride, call.padding, call.output_padding, call.out_size)
        if len(_KNOWN) >= _KNOWN_MAX:
            _KNOWN.clear()
        _KNOWN[key] = known
    return known


def _private(path: str):
    """A private PyTorch function by dotted path under ``torch._C``, or None where this
    PyTorch lacks it (then :func:`deconv2d` always goes through the operator)."""
    obj = torch._C
    for name in path.split("."):
        obj = getattr(obj, name, None)
    return obj


_WRAPPED = _private("_functorch.is_functorch_wrapped_tensor")
_FUNCTION_MODE = _private("_is_torch_function_mode_enabled")
_DISPATCH_MODES = _private("_len_torch_dispatch_stack")
_PROFILING = _private("_autograd._profiler_enabled")
_CAN_SKIP = None not in (_WRAPPED, _FUNCTION_MODE, _DISPATCH_MODES, _PROFILING)


def _plain_eager_call(*tensors: Tensor | None) -> bool:
    """Whether the operator's dispatch would only hand these to its eager kernel: plain
    tensors, no autograd to record, no compiler, mode, functorch transform or profiler that
    wants to see the op. Then :func:`deconv2d` calls the kernel itself, saving the
    dispatcher's Python round trip (~40-60 µs a call, as much as a small layer takes on a
    GPU)."""
    if torch.compiler.is_compiling() or not _CAN_SKIP:  # first: Dynamo traces no further
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is None:
            continue
        if type(t) not in _PLAIN or (grad and t.requires_grad) or _WRAPPED(t):
            return False
    return not (_FUNCTION_MODE() or _DISPATCH_MODES() or _PROFILING())


def run(call: DeconvCall, algorithm: str, out: Tensor | None = None) -> Tensor:
    """Compute a validated ``call`` eagerly with ``algorithm`` (what the operator runs).

    Grouped calls run group by group (each an ordinary deconvolution on its channel slice).
    The result is laid out as :func:`output_memory_format` says; with ``out`` (checked: shape,
    dtype, device) it is ``out``.
    """
    if out is not None:
        _check_out(out, call)
    fmt = output_memory_format(call.x)
    if call.groups == 1:
        impl = implementation(call, algorithm)
        y = impl(call.x, call.weight, call.bias, call.stride, call.padding, call.output_padding,
                 call.out_size, **({"out": out} if out is not None and _takes_out(impl) else {}))
        if out is not None:
            if y is not out:
                out.copy_(y)
            return out
        return y.contiguous(memory_format=fmt)
    y = out if out is not None else torch.empty(call.out_shape, dtype=call.x.dtype,
                                                device=call.x.device, memory_format=fmt)
    for part, (lo, hi) in zip(group_calls(call), _group_spans(call), strict=True):
        y[:, lo:hi] = run(part, algorithm)
    return y


def output_memory_format(x: Tensor) -> torch.memory_format:
    """The operator's output layout: channels_last for a channels_last CUDA input (what cuDNN
    convolutions give, and what the Triton kernel writes directly: no copy to NCHW after
    it), NCHW otherwise (the CPU kernel writes NCHW; on a CPU a channels_last input is what
    Inductor hands the operator, and the next layer takes NCHW as well)."""
    if x.is_cuda and x.is_contiguous(memory_format=torch.channels_last) \
            and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _takes_out(impl: Callable[..., Tensor]) -> bool:
    return getattr(impl, "takes_out", False)


def _check_out(out: Tensor, call: DeconvCall) -> None:
    if not isinstance(out, Tensor):
        raise TypeError(f"out must be a torch.Tensor, got {type(out).__name__}")
    if tuple(out.shape) != call.out_shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, the output is {call.out_shape}")
    if out.dtype != call.x.dtype or out.device != call.x.device:
        raise ValueError(f"out is {out.dtype} on {out.device}; the output is {call.x.dtype} on "
                         f"{call.x.device}")
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                       for t in (call.x, call.weight, call.bias)):
        raise RuntimeError("out= does not support autograd (inputs require grad); call without "
                           "out, or under torch.no_grad() / torch.inference_mode()")


def _group_spans(call: DeconvCall) -> list[IntPair]:
    cg = call.weight.shape[1]
    return [(g * cg, (g + 1) * cg) for g in range(call.groups)]


def group_calls(call: DeconvCall) -> list[DeconvCall]:
    """A grouped ``call`` as ``groups`` ungrouped calls on its channel slices (in order).

    The weight's slices are cached per weight (:mod:`upconv.kernels.weight_cache`) so that
    plans packed for them survive from call to call.
    """
    from .kernels.weight_cache import derived

    g, cin_g = call.groups, call.weight.shape[0] // call.groups

    def slices() -> tuple[Tensor, ...]:
        return tuple(call.weight[i * cin_g : (i + 1) * cin_g].contiguous() for i in range(g))

    needs_grad = torch.is_grad_enabled() and call.weight.requires_grad
    weights = slices() if needs_grad else derived(call.weight, ("groups", g), slices)
    return [DeconvCall(call.x[:, i * cin_g : (i + 1) * cin_g], weights[i],
                       None if call.bias is None else call.bias[lo:hi], call.stride,
                       call.padding, call.output_padding, call.out_size)
            for i, (lo, hi) in enumerate(_group_spans(call))]


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


def deconv2d_standard_ops(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: IntPair,
    padding: Pad4,
    output_padding: IntPair,
    groups: int = 1,
) -> Tensor:
    """:func:`deconv2d`'s result from ``F.conv_transpose2d``, a slice and an add (any dtype,
    device and autograd; arguments normalised as :func:`deconv2d` does).

    What the operator decomposes into (:mod:`upconv.ops`) and what ``torch.jit.trace`` records.
    Exports to ONNX as ``ConvTranspose`` (+ ``Slice`` for asymmetric crops) and, for a periodic
    bias ``(C, bh, bw)``, a ``Tile`` of the bias to the output size + ``Add``; sizes come from
    the input's shape, so dynamic batch and spatial dimensions survive.
    """
    top, bottom, left, right = padding
    ph, pw = min(top, bottom), min(left, right)
    periodic = bias is not None and bias.ndim == 3
    y = F.conv_transpose2d(x, weight, None if periodic else bias, stride, (ph, pw),
                           output_padding, groups)
    # Asymmetric crops: conv_transpose2d cropped min(before, after); drop the rest per side.
    top, bottom, left, right = top - ph, bottom - ph, left - pw, right - pw
    if top or bottom or left or right:
        y = y[:, :, top : y.shape[2] - bottom, left : y.shape[3] - right]
    if periodic:
        _, bh, bw = bias.shape
        out_h, out_w = y.shape[2], y.shape[3]
        tiled = bias.repeat(1, (out_h + bh - 1) // bh, (out_w + bw - 1) // bw)
        y = y + tiled[:, :out_h, :out_w]
    return y


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
    "deconv2d_standard_ops",
    "group_calls",
    "implementation",
    "pixel_shuffle",
    "resize_conv2d",
    "run",
    "sub_pixel_conv2d",
]
