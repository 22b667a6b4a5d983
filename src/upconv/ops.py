"""``torch.ops.upconv``: the deconvolution as a registered PyTorch operator.

* ``upconv::deconv2d(Tensor x, Tensor weight, Tensor? bias, int[2] stride, int[4] padding,
  int[2] output_padding, int groups, str algorithm) -> Tensor``
* ``upconv::deconv2d_out(..., str algorithm, Tensor(a!) out) -> ()``: the same, written into
  a preallocated ``out`` (inference).

Arguments are :func:`upconv.deconv2d`'s, normalised: ``padding`` is the per-side crops
``(top, bottom, left, right)``, ``weight`` is ``(Cin, C/groups, Kh, Kw)``, ``bias`` is ``(C,)``
or periodic ``(C, bh, bw)``. Registered with

* an eager kernel for every backend (:func:`upconv.functional.run`: validation, then the
  chosen algorithm; ``"auto"`` is resolved when the kernel runs, so it holds under
  ``torch.compile`` too);
* a fake (meta) kernel, so ``torch.compile(fullgraph=True)`` and ``torch.export`` trace the op
  without running it, dynamic sizes included;
* the tag ``torch.Tag.flexible_layout``: Inductor passes the input in whatever strides its
  producer wrote (a compiled trunk's channels_last), with no copy to NCHW first;
* an autograd formula (the adjoint of a transposed convolution is a convolution:
  ``aten.convolution_backward``; a periodic bias sums its output phases), so a converted model
  can be fine-tuned;
* a decomposition into standard aten ops (:func:`upconv.functional.deconv2d_standard_ops`:
  ``conv_transpose2d`` + slice + periodic-bias add) in ``torch._decomp``'s table, which the
  ONNX exporter consults (``ConvTranspose`` + tiled ``Add``), and from
  :func:`export_decompositions` for ``ExportedProgram.run_decompositions``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import functional as UF

_SCHEMA = ("(Tensor x, Tensor weight, Tensor? bias, int[2] stride, int[4] padding, "
           "int[2] output_padding, int groups, str algorithm")

#: Inductor may hand the op its input in any strides (``torch.Tag.flexible_layout``): the
#: kernels take any (channels_last rows are staged, transposed in registers). Without the
#: tag Inductor copies a custom op's input to the strides eager tracing saw, so a trunk it
#: computed channels_last was transposed into a fresh NCHW buffer before the operator (6 ms
#: per call on ESPCN ×3 at 321×481, more than the upsampler saved).
_TAGS = tuple(t for t in (getattr(torch.Tag, "flexible_layout", None),) if t is not None)

_LIB = torch.library.Library("upconv", "DEF")
_LIB.define("deconv2d" + _SCHEMA + ") -> Tensor", tags=_TAGS)
_LIB.define("deconv2d_out" + _SCHEMA + ", Tensor(a!) out) -> ()", tags=_TAGS)


def _call(x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int],
          padding: list[int], output_padding: list[int], groups: int) -> UF.DeconvCall:
    return UF.check_deconv(x, weight, bias, stride, padding, output_padding, groups)


def _deconv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int],
              padding: list[int], output_padding: list[int], groups: int, algorithm: str
              ) -> Tensor:
    call = _call(x, weight, bias, stride, padding, output_padding, groups)
    return UF.run(call, UF.check_algorithm(algorithm))


def _deconv2d_out(x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int],
                  padding: list[int], output_padding: list[int], groups: int, algorithm: str,
                  out: Tensor) -> None:
    call = _call(x, weight, bias, stride, padding, output_padding, groups)
    UF.run(call, UF.check_algorithm(algorithm), out)


# One Python kernel serves every backend: it dispatches by device itself (implementation()).
_LIB.impl("deconv2d", _deconv2d, "CompositeExplicitAutograd")
_LIB.impl("deconv2d_out", _deconv2d_out, "CompositeExplicitAutograd")


@torch.library.register_fake("upconv::deconv2d")
def _deconv2d_fake(x, weight, bias, stride, padding, output_padding, groups, algorithm):
    call = _call(x, weight, bias, stride, padding, output_padding, groups)
    return torch.empty(call.out_shape, dtype=x.dtype, device=x.device,
                       memory_format=UF.output_memory_format(x))


@torch.library.register_fake("upconv::deconv2d_out")
def _deconv2d_out_fake(x, weight, bias, stride, padding, output_padding, groups, algorithm,
                       out):
    call = _call(x, weight, bias, stride, padding, output_padding, groups)
    UF._check_out(out, call)


# --- autograd ---------------------------------------------------------------------------


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, stride, padding, output_padding, groups, _ = inputs
    ctx.save_for_backward(x, weight)
    ctx.geometry = (tuple(stride), tuple(padding), tuple(output_padding), groups)
    ctx.bias_shape = None if bias is None else tuple(bias.shape)


def _backward(ctx, grad: Tensor):
    x, weight = ctx.saved_tensors
    (sh, sw), (top, bottom, left, right), (oph, opw), groups = ctx.geometry
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    grad_x = grad_w = grad_b = None
    if need_x or need_w:
        # back to the uncropped transposed convolution: ((H-1)·s + K) rows, no output padding
        full = F.pad(grad, (left, right - opw, top, bottom - oph))
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            full, x, weight, None, [sh, sw], [0, 0], [1, 1], True, [0, 0], groups,
            [need_x, need_w, False])
    if need_b:
        grad_b = _bias_grad(grad, ctx.bias_shape)
    return grad_x, grad_w, grad_b, None, None, None, None, None


def _bias_grad(grad: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum of ``grad (N, C, H, W)`` over the outputs each bias value is added to."""
    if len(shape) == 1:
        return grad.sum((0, 2, 3))
    c, bh, bw = shape
    g = grad.sum(0)
    h, w = g.shape[-2:]
    g = F.pad(g, (0, -w % bw, 0, -h % bh))  # whole periods: the padding adds zeros
    return g.reshape(c, g.shape[1] // bh, bh, g.shape[2] // bw, bw).sum((1, 3))


torch.library.register_autograd("upconv::deconv2d", _backward, setup_context=_setup_context)


# --- decomposition into aten ops ---------------------------------------------------------


def _decompose(x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int],
               padding: list[int], output_padding: list[int], groups: int, algorithm: str
               ) -> Tensor:
    """The op in standard aten ops, laid out as the kernel lays out its result
    (:func:`~upconv.functional.output_memory_format`). FakeTensor runs this decomposition
    instead of the fake kernel when sizes are symbolic (``torch.compile(dynamic=True)``):
    ``conv_transpose2d`` alone would keep a channels_last input's layout, and Inductor then
    expected channels_last strides from the CPU kernel, which writes NCHW."""
    y = UF.deconv2d_standard_ops(x, weight, bias, tuple(stride), tuple(padding),
                                 tuple(output_padding), groups)
    return y.contiguous(memory_format=UF.output_memory_format(x))


torch._decomp.register_decomposition(torch.ops.upconv.deconv2d.default)(_decompose)


def export_decompositions() -> dict:
    """``torch.export``'s default decompositions plus upconv's: for
    ``exported_program.run_decompositions(upconv.export_decompositions())``, which leaves a
    graph of core aten ops only (``convolution`` for the deconvolution), for backends that
    take nothing else (ExecuTorch, other AOT compilers)."""
    table = torch.export.default_decompositions()
    table[torch.ops.upconv.deconv2d.default] = _decompose
    return table


__all__ = ["export_decompositions"]
