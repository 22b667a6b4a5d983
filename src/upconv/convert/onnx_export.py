"""Export a PyTorch model to ONNX with dynamic batch and spatial axes.

The TorchScript exporter (``dynamo=False``) is tried first: it is fast and emits
``DepthToSpace`` / ``Resize`` for pixel shuffle / nearest resize, which
:func:`~upconv.convert.convert_onnx` rewrites. Ops it cannot export (e.g. ``nearest-exact``)
fall back to the dynamo exporter (``torch.export``; it emits ``nearest-exact`` as a
``GatherND``, which is not a ``Resize`` and so is not converted at the ONNX level).
"""

from __future__ import annotations

import io
import warnings

import onnx
import torch
from torch import Tensor, nn

OPSET = 17


def export_onnx(model: nn.Module, example: Tensor, dynamic: bool = True) -> onnx.ModelProto:
    """``model`` (one 4-D input ``x``, one output ``y``) as an ONNX ModelProto, in its current
    train/eval mode (call ``.eval()`` first for inference).

    With ``dynamic`` the batch, height and width of ``x`` are symbolic (``N``, ``H``, ``W``).
    """
    axes = {"x": {0: "N", 2: "H", 3: "W"}} if dynamic else None
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), buf, dynamo=False, input_names=["x"],
                              output_names=["y"], dynamic_axes=axes, opset_version=OPSET)
        return onnx.load_from_string(buf.getvalue())
    except Exception as legacy_error:  # any failure: try the other exporter
        shapes = {"x": {0: "N", 2: "H", 3: "W"}} if dynamic else None
        try:
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=["x"],
                                        output_names=["y"], dynamic_shapes=shapes,
                                        verbose=False)
        except Exception as err:
            raise ValueError(f"cannot export {type(model).__name__} to ONNX: TorchScript "
                             f"exporter: {legacy_error}; dynamo exporter: {err}") from err
        return program.model_proto
