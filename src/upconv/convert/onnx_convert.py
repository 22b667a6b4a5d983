"""``upconv.convert_onnx``: rewrite an ONNX model's upsampling layers into ``ConvTranspose``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, shape_inference

from .onnx_graph import GraphEditor
from .onnx_resize import rewrite_resize
from .onnx_subpixel import rewrite_subpixel
from .report import ConversionReport
from .verify import VerificationError, output_errors, tolerance

DEFAULT_SPATIAL = 32


def load_model(model_or_path: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    """A copy of ``model_or_path`` (a ModelProto or a path to an ``.onnx`` file)."""
    if isinstance(model_or_path, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model_or_path)
        return copy
    if isinstance(model_or_path, (str, os.PathLike)):
        path = Path(model_or_path)
        if not path.is_file():
            raise ValueError(f"ONNX file not found: {path}")
        try:
            return onnx.load(str(path))
        except Exception as err:
            raise ValueError(f"{path} is not a readable ONNX model: {err}") from None
    raise TypeError("model_or_path must be an onnx.ModelProto or a path to an .onnx file, "
                    f"got {type(model_or_path).__name__}; for torch models use upconv.convert")


def tensor_shapes(model: onnx.ModelProto) -> dict[str, tuple]:
    """Inferred shapes by tensor name: ints where static, dim names (or None) where not."""
    inferred = shape_inference.infer_shapes(model)
    out = {}
    g = inferred.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            out[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                                 for d in vi.type.tensor_type.shape.dim)
    return out


Feeds = Mapping[str, object] | Sequence[object]


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph inputs that are fed at run time (not initializers)."""
    init = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in init]


def _np_type(vi: onnx.ValueInfoProto) -> np.dtype:
    elem = vi.type.tensor_type.elem_type
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem))
    except Exception:
        raise ValueError(f"input {vi.name!r} has type "
                         f"{onnx.TensorProto.DataType.Name(elem)}, which cannot be fed "
                         "from numpy") from None


def _declared(vi: onnx.ValueInfoProto) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in vi.type.tensor_type.shape.dim]


def random_inputs(model: onnx.ModelProto, input_shape: tuple[int, ...] | None = None,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Verification inputs for every graph input.

    Float tensors are standard normal, their dynamic dims 1 (batch) or ``DEFAULT_SPATIAL``;
    ``input_shape`` sets the shape of the first float input of that rank. Scalars (and
    one-element tensors) of any type are 1, the default a knob like RealCUGAN's ``alpha`` is
    exported with; any other non-float input needs a real value: a ValueError says so.
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    shaped = None
    for vi in graph_inputs(model):
        dtype, dims = _np_type(vi), _declared(vi)
        if dtype.kind == "f" and input_shape is not None and shaped is None \
                and len(dims) == len(input_shape):
            shaped = vi.name
            feeds[vi.name] = rng.standard_normal(tuple(int(d) for d in input_shape)).astype(dtype)
            continue
        if all(isinstance(d, int) and d == 1 for d in dims):  # scalar / one element
            feeds[vi.name] = np.ones([int(d) for d in dims], dtype)
            continue
        if dtype.kind != "f":
            raise ValueError(
                f"cannot make a verification input for {vi.name!r} ({dtype}, shape {dims}): "
                f"pass it with inputs={{{vi.name!r}: array}}")
        shape = tuple(d if isinstance(d, int) and d > 0 else (1 if i == 0 else DEFAULT_SPATIAL)
                      for i, d in enumerate(dims))
        feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
    if input_shape is not None and shaped is None:
        declared = [(vi.name, _declared(vi)) for vi in graph_inputs(model)]
        raise ValueError(f"input_shape {tuple(input_shape)} fits no floating-point input of "
                         f"the model (inputs: {declared})")
    return feeds


def verification_inputs(model: onnx.ModelProto, inputs: Feeds | None,
                        input_shape: tuple[int, ...] | None = None) -> dict[str, np.ndarray]:
    """Feeds for every graph input: ``inputs`` (a dict name → array, or arrays in graph-input
    order; numpy arrays, torch tensors or nested lists), the rest from :func:`random_inputs`.

    Arrays are converted to the input's declared type when the kinds agree (float → float,
    int → int); a wrong name, count, kind or rank is a ValueError naming the input.
    """
    declared = graph_inputs(model)
    by_name = {vi.name: vi for vi in declared}
    if inputs is None:
        return random_inputs(model, input_shape)
    if isinstance(inputs, Mapping):
        given = dict(inputs)
        unknown = sorted(set(given) - set(by_name))
        if unknown:
            raise ValueError(f"inputs names {unknown} are not graph inputs; the model's inputs "
                             f"are {list(by_name)}")
    elif isinstance(inputs, Sequence) and not isinstance(inputs, (str, bytes)):
        if len(inputs) > len(declared):
            raise ValueError(f"{len(inputs)} inputs given, the model has {len(declared)}: "
                             f"{list(by_name)}")
        given = {vi.name: v for vi, v in zip(declared, inputs, strict=False)}
    else:
        raise TypeError("inputs must be a dict name -> array or a sequence of arrays in graph "
                        f"input order (a single array: [array]), got {type(inputs).__name__}")
    feeds = {}
    for name, value in given.items():
        vi = by_name[name]
        dtype = _np_type(vi)
        array = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
        kinds = {"f": "f", "i": "iu", "u": "iu", "b": "b"}
        if array.dtype.kind not in kinds.get(dtype.kind, dtype.kind):
            raise ValueError(f"input {name!r} must be {dtype}, got an array of {array.dtype}")
        dims = _declared(vi)
        if dims and array.ndim != len(dims):
            raise ValueError(f"input {name!r} must have rank {len(dims)} (declared {dims}), got "
                             f"shape {array.shape}")
        feeds[name] = np.ascontiguousarray(array, dtype)
    missing = onnx.ModelProto()
    missing.CopyFrom(model)
    rest = [vi for vi in declared if vi.name not in feeds]
    if rest:
        missing.graph.ClearField("input")
        missing.graph.input.extend(rest)
        feeds.update(random_inputs(missing, input_shape))
    return {vi.name: feeds[vi.name] for vi in declared}  # in graph-input order


def run_onnx(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs of ``model`` on ``feeds`` with ONNX Runtime (CPU, one thread)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4  # failures are raised (and explained), not logged as well
    session = ort.InferenceSession(model.SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _describe(feeds: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in feeds.items())


def _run_original(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    try:
        return run_onnx(model, feeds)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"the original model does not run in ONNX Runtime on the verification input "
            f"({_describe(feeds)}): {first}. Pass real inputs with inputs={{name: array}} or "
            "another input_shape, or verify=False") from None


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def convert_onnx(
    model_or_path: onnx.ModelProto | str | os.PathLike,
    verify: bool = True,
    input_shape: tuple[int, ...] | None = None,
    inputs: Feeds | None = None,
) -> tuple[onnx.ModelProto, ConversionReport]:
    """Rewrite every sub-pixel conv (``Conv → DepthToSpace`` or its Reshape/Transpose form) and
    nearest resize conv (``Resize`` / ``Upsample → Conv``) into ``ConvTranspose``.

    Returns ``(converted ModelProto, report)``; the input is never modified. The result passes
    ``onnx.checker`` and strict shape inference. ``verify=True`` runs both models in ONNX
    Runtime on ``inputs`` (dict name → array, or arrays in graph-input order; inputs not given
    are generated: random floats of ``input_shape`` or the declared shape with dynamic dims 1
    / 32, scalars 1) and raises :class:`~upconv.convert.verify.VerificationError` (a
    ValueError) when outputs differ beyond float tolerance, or a ValueError naming the inputs
    and ONNX Runtime's message when the original model itself does not run on them.
    """
    original = load_model(model_or_path)
    try:
        onnx.checker.check_model(original)
    except onnx.checker.ValidationError as err:
        raise ValueError(f"the input model fails onnx.checker, fix it first: {err}") from None
    feeds = verification_inputs(original, inputs, input_shape) if verify else None
    refs = _run_original(original, feeds) if verify else None
    model = load_model(original)
    report = ConversionReport("onnx graph")
    editor = GraphEditor(model.graph, tensor_shapes(model), _opset(model))
    rewrite_subpixel(editor, report)
    editor.commit()
    editor.set_shapes(tensor_shapes(model))
    rewrite_resize(editor, report)
    editor.commit()
    onnx.checker.check_model(model)
    model = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    if verify:
        try:
            outs = run_onnx(model, feeds)
        except Exception as err:
            raise VerificationError(f"the converted ONNX model does not run on "
                                    f"{_describe(feeds)}: {err}\n{report}", report) from err
        _compare(refs, outs, feeds, report)
    return model, report


def _compare(refs: list[np.ndarray], outs: list[np.ndarray], feeds: dict[str, np.ndarray],
             report: ConversionReport) -> None:
    """Fill the report's errors; VerificationError beyond the float outputs' tolerance."""
    pairs = [(r, o) for r, o in zip(refs, outs, strict=True)
             if np.asarray(r).dtype.kind == "f"]
    exact = [(r, o) for r, o in zip(refs, outs, strict=True) if np.asarray(r).dtype.kind != "f"]
    errors = [output_errors(np.asarray(r), np.asarray(o)) for r, o in pairs] or [(0.0, 0.0)]
    report.verified = True
    first = next((v for v in feeds.values() if v.dtype.kind == "f"), None)
    report.input_shape = None if first is None else tuple(first.shape)
    report.max_abs_error = max(e[0] for e in errors)
    report.max_rel_error = max(e[1] for e in errors)
    if any(not np.array_equal(r, o) for r, o in exact):
        report.max_abs_error = report.max_rel_error = float("inf")
    tol = min((tolerance(np.asarray(r).dtype.itemsize) for r, _ in pairs), default=1e-4)
    if not report.max_rel_error <= tol:
        raise VerificationError(
            f"converted ONNX model differs from the original: max abs error "
            f"{report.max_abs_error:.3g}, max rel error {report.max_rel_error:.3g} "
            f"(tolerance {tol:.0e})\n{report}", report)
