"""``upconv.convert``: rewrite a whole PyTorch model's upsampling layers into deconvolutions."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..functional import check_algorithm
from .fx_layers import rewrite_upconv_layers
from .fx_nodes import trace
from .fx_resize import rewrite_resize
from .fx_subpixel import rewrite_subpixel
from .report import ConversionReport
from .sequential import rewrite_sequentials
from .verify import VerificationError, output_errors, tolerance

DEFAULT_SPATIAL = (32, 32)


def default_input(model: nn.Module) -> Tensor:
    """A random ``(1, Cin, 32, 32)`` input, ``Cin`` and dtype from the model's first conv."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(1, m.in_channels, *DEFAULT_SPATIAL, generator=gen,
                            dtype=m.weight.dtype)
            return x.to(m.weight.device)
    raise ValueError("cannot guess an input shape (the model has no Conv2d); "
                     "pass example_inputs=(tensor,)")


def _as_tuple(example_inputs: Tensor | Sequence[Tensor] | None, model: nn.Module) -> tuple:
    if example_inputs is None:
        return (default_input(model),)
    if isinstance(example_inputs, Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs)
    raise TypeError("example_inputs must be a Tensor or a tuple of Tensors, "
                    f"got {type(example_inputs).__name__}")


def _outputs(out: object) -> list[Tensor]:
    """Every tensor in a model's output (a tensor, or nested tuples / lists / dicts of them)."""
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _outputs(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _outputs(o)]
    raise TypeError(f"cannot verify a model output of type {type(out).__name__}; "
                    "return tensors (or tuples / lists / dicts of them), or pass verify=False")


@torch.no_grad()
def verify_models(original: nn.Module, converted: nn.Module, inputs: tuple,
                  report: ConversionReport) -> None:
    """Run both in eval mode on ``inputs``; record errors; raise if beyond float tolerance."""
    was_training = converted.training
    reference = copy.deepcopy(original).eval()
    converted.eval()
    try:
        refs, outs = _outputs(reference(*inputs)), _outputs(converted(*inputs))
    finally:
        converted.train(was_training)
    if len(refs) != len(outs):
        raise VerificationError(f"converted model returns {len(outs)} tensors, "
                                f"the original {len(refs)}", report)
    errors = [output_errors(r.double().cpu().numpy(), o.double().cpu().numpy())
              for r, o in zip(refs, outs, strict=True)]
    report.verified = True
    report.input_shape = tuple(inputs[0].shape) if isinstance(inputs[0], Tensor) else None
    report.max_abs_error = max((e[0] for e in errors), default=0.0)
    report.max_rel_error = max((e[1] for e in errors), default=0.0)
    tol = tolerance(refs[0].element_size() if refs else 4)
    if not report.max_rel_error <= tol:
        raise VerificationError(
            f"converted model differs from the original: max abs error {report.max_abs_error:.3g},"
            f" max rel error {report.max_rel_error:.3g} (tolerance {tol:.0e} relative to the "
            f"largest output magnitude)\n{report}", report)


def convert(
    model: nn.Module,
    example_inputs: Tensor | Sequence[Tensor] | None = None,
    algorithm: str = "auto",
    verify: bool = True,
) -> tuple[nn.Module, ConversionReport]:
    """Replace every sub-pixel and nearest-resize convolution of ``model`` by a ``Deconv2d``.

    Returns ``(converted, report)``; ``model`` itself is never modified. With torch.fx the
    converted model is a ``torch.fx.GraphModule``; when the model cannot be traced, adjacent
    ``nn.Sequential`` children are rewritten in a deep copy instead (``report.method`` says
    which). ``example_inputs`` (a tensor or tuple) drive shape propagation and verification;
    without them a random ``(1, Cin, 32, 32)`` input is used (``report.input_shape``).
    ``verify=True`` raises :class:`~upconv.convert.verify.VerificationError` (a ValueError)
    when outputs differ beyond float tolerance.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}; "
                        "for ONNX files use upconv.convert_onnx")
    check_algorithm(algorithm)
    inputs = _as_tuple(example_inputs, model)
    work = copy.deepcopy(model)
    try:
        gm = trace(work)
    except Exception as err:  # fx raises many kinds (TraceError, TypeError, ...)
        report = ConversionReport("nn.Sequential fallback",
                                  fallback_reason=f"{type(err).__name__}: {err}".splitlines()[0])
        rewrite_sequentials(work, algorithm, report)
        converted: nn.Module = work
    else:
        report = ConversionReport("torch.fx")
        gm.eval()  # shape propagation must not update BatchNorm statistics
        try:
            with torch.no_grad():
                ShapeProp(gm).propagate(*inputs)
        except Exception as err:
            shapes = [tuple(t.shape) for t in inputs if isinstance(t, Tensor)]
            raise ValueError(f"running the model on example inputs of shape {shapes} failed "
                             f"({type(err).__name__}: {err}); pass example_inputs the model "
                             "accepts") from err
        rewrite_upconv_layers(gm, algorithm, report)
        rewrite_subpixel(gm, algorithm, report)
        rewrite_resize(gm, algorithm, report)
        gm.graph.lint()
        gm.delete_all_unused_submodules()
        gm.recompile()
        converted = gm
    converted.train(model.training)
    if verify:
        verify_models(model, converted, inputs, report)
    return converted, report
