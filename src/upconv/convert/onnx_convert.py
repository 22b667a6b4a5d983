"""``upconv.convert_onnx``: rewrite an ONNX model's upsampling layers into ``ConvTranspose``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference

from .onnx_graph import GraphEditor
from .onnx_resize import rewrite_resize
from .onnx_subpixel import rewrite_subpixel
from .report import ConversionReport
from .verify import VerificationError, output_errors, tolerance

DEFAULT_SPATIAL = 32

_NP_TYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64,
             onnx.TensorProto.FLOAT16: np.float16}


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


def random_inputs(model: onnx.ModelProto, input_shape: tuple[int, ...] | None = None,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Random float inputs; dynamic dims become 1 (batch) or ``DEFAULT_SPATIAL``.

    ``input_shape`` overrides the shape of the (single) graph input.
    """
    init = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = {}
    graph_inputs = [i for i in model.graph.input if i.name not in init]
    for vi in graph_inputs:
        tt = vi.type.tensor_type
        if tt.elem_type not in _NP_TYPES:
            raise ValueError(f"cannot make a random input for {vi.name!r} "
                             f"(type {onnx.TensorProto.DataType.Name(tt.elem_type)})")
        if input_shape is not None:
            if len(graph_inputs) != 1:
                raise ValueError("input_shape needs a model with exactly one input")
            shape = tuple(int(d) for d in input_shape)
        else:
            shape = tuple(d.dim_value if d.HasField("dim_value") else
                          (1 if i == 0 else DEFAULT_SPATIAL)
                          for i, d in enumerate(tt.shape.dim))
        feeds[vi.name] = rng.standard_normal(shape).astype(_NP_TYPES[tt.elem_type])
    return feeds


def run_onnx(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs of ``model`` on ``feeds`` with ONNX Runtime (CPU, one thread)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def convert_onnx(
    model_or_path: onnx.ModelProto | str | os.PathLike,
    verify: bool = True,
    input_shape: tuple[int, ...] | None = None,
) -> tuple[onnx.ModelProto, ConversionReport]:
    """Rewrite every ``Conv → DepthToSpace`` and nearest ``Resize → Conv`` into ``ConvTranspose``.

    Returns ``(converted ModelProto, report)``; the input is never modified. The result passes
    ``onnx.checker`` and strict shape inference. ``verify=True`` runs both models in ONNX
    Runtime on a random input (``input_shape``, else the graph's shape with dynamic dims set
    to 1 / 32) and raises :class:`~upconv.convert.verify.VerificationError` (a ValueError)
    when outputs differ beyond float tolerance.
    """
    original = load_model(model_or_path)
    try:
        onnx.checker.check_model(original)
    except onnx.checker.ValidationError as err:
        raise ValueError(f"the input model fails onnx.checker, fix it first: {err}") from None
    model = load_model(original)
    report = ConversionReport("onnx graph")
    editor = GraphEditor(model.graph)
    rewrite_subpixel(editor, report)
    editor.commit()
    rewrite_resize(editor, report, tensor_shapes(model))
    editor.commit()
    onnx.checker.check_model(model)
    model = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    if verify:
        feeds = random_inputs(original, input_shape)
        refs, outs = run_onnx(original, feeds), run_onnx(model, feeds)
        errors = [output_errors(r, o) for r, o in zip(refs, outs, strict=True)]
        report.verified = True
        report.input_shape = next(iter(feeds.values())).shape if feeds else None
        report.max_abs_error = max(e[0] for e in errors)
        report.max_rel_error = max(e[1] for e in errors)
        tol = tolerance(refs[0].dtype.itemsize)
        if not report.max_rel_error <= tol:
            raise VerificationError(
                f"converted ONNX model differs from the original: max abs error "
                f"{report.max_abs_error:.3g}, max rel error {report.max_rel_error:.3g} "
                f"(tolerance {tol:.0e})\n{report}", report)
    return model, report
