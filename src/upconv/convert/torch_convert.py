"""``upconv.convert``: rewrite a whole PyTorch model's upsampling layers into deconvolutions.

The model runs once, for real, on a throwaway copy under a recorder
(:mod:`upconv.convert.trace`); the sites of that forward (:mod:`upconv.convert.sites`) become
module swaps (:mod:`upconv.convert.plan`) in a second copy, which keeps the model's class,
methods and Python ``forward``. The model passed in is never run, never modified; example
inputs are cloned for every run; both verification runs start from the same RNG seed.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_map

from ..functional import check_algorithm
from .plan import UPCONV_LAYERS, apply_fx, apply_swaps, plan_rewrites
from .report import ConversionReport
from .sites import find_sites
from .trace import record
from .verify import VerificationError, output_errors, tolerance

METHOD = "real-tensor trace"
#: RNG seed both runs of a model start from (trace, and each side of the verification)
SEED = 0

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


def first_output(out: object) -> Tensor:
    """The first tensor of a model's output (models such as MMRealSR return a tuple)."""
    return _outputs(out)[0]


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


def clone_inputs(inputs: tuple) -> tuple:
    """A copy of ``inputs`` whose tensors are fresh clones (models may write into them)."""
    return tree_map(lambda t: t.clone() if isinstance(t, Tensor) else t, inputs)


def _devices(model: nn.Module, inputs: tuple) -> list[int]:
    tensors = [*model.parameters(), *model.buffers(),
               *(t for t in tree_flatten(list(inputs))[0] if isinstance(t, Tensor))]
    return sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})


def seeded_run(model: nn.Module, inputs: tuple, seed: int = SEED) -> object:
    """``model(*clones of inputs)`` without grad, from RNG seed ``seed``; the caller's RNG
    state is left as it was (random forwards, e.g. AuraSR's noise, compare equal)."""
    with torch.random.fork_rng(devices=_devices(model, inputs)), torch.no_grad():
        torch.manual_seed(seed)
        return model(*clone_inputs(inputs))


def verify_models(original: nn.Module, converted: nn.Module, inputs: tuple,
                  report: ConversionReport) -> None:
    """Run copies of ``original`` and ``converted`` in eval mode on clones of ``inputs`` from
    the same RNG seed (neither model is run itself); record errors; raise if beyond float
    tolerance."""
    refs = _outputs(seeded_run(copy.deepcopy(original).eval(), inputs))
    outs = _outputs(seeded_run(copy.deepcopy(converted).eval(), inputs))
    if len(refs) != len(outs):
        raise VerificationError(f"converted model returns {len(outs)} tensors, "
                                f"the original {len(refs)}", report)
    errors = [output_errors(r.double().cpu().numpy(), o.double().cpu().numpy())
              for r, o in zip(refs, outs, strict=True) if r.is_floating_point()]
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

    Returns ``(converted, report)``: ``converted`` is a deep copy of ``model`` (same class,
    methods and ``forward``) with modules swapped (see :mod:`upconv.convert.plan`); ``model``
    itself is never run or modified. ``example_inputs`` (a tensor or a tuple of positional
    arguments) drive the recorded forward and verification; without them a random
    ``(1, Cin, 32, 32)`` input is used (``report.input_shape``). Every pixel shuffle, resize
    and transposed convolution the forward runs is in the report, converted or left alone
    with its reason. ``verify=True`` raises :class:`~upconv.convert.verify.VerificationError`
    (a ValueError) when outputs differ beyond float tolerance.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}; "
                        "for ONNX files use upconv.convert_onnx")
    check_algorithm(algorithm)
    inputs = _as_tuple(example_inputs, model)
    # building layers draws initial weights: keep the caller's RNG state as it was
    with torch.random.fork_rng(devices=_devices(model, inputs)):
        return _convert(model, inputs, algorithm, verify)


def _convert(model: nn.Module, inputs: tuple, algorithm: str,
             verify: bool) -> tuple[nn.Module, ConversionReport]:
    throwaway = copy.deepcopy(model).eval()
    try:
        torch.manual_seed(SEED)
        trace, _ = record(throwaway, clone_inputs(inputs), leaf_types=UPCONV_LAYERS)
    except Exception as err:  # whatever the model's forward raises
        shapes = [tuple(t.shape) for t in inputs if isinstance(t, Tensor)]
        raise ValueError(f"running the model on example inputs of shape {shapes} failed "
                         f"({type(err).__name__}: {err}); pass example_inputs the model "
                         "accepts") from err
    plan = plan_rewrites(trace, find_sites(trace), algorithm)
    del throwaway, trace
    converted = apply_fx(apply_swaps(copy.deepcopy(model), plan.swaps), plan)
    converted.train(model.training)
    report = ConversionReport(METHOD, plan.converted, plan.skipped)
    if verify:
        verify_models(model, converted, inputs, report)
    return converted, report
