"""Whole-model conversion: every sub-pixel / nearest-resize convolution → a deconvolution.

:func:`convert` rewrites PyTorch models (a recorded real forward, module swaps);
:func:`convert_onnx` rewrites ONNX graphs. Both return ``(converted, ConversionReport)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .report import ConversionReport, ConvertedSite, SkippedSite
from .torch_convert import convert
from .verify import VerificationError

if TYPE_CHECKING:
    import onnx


def convert_onnx(
    model_or_path: onnx.ModelProto | str | os.PathLike,
    verify: bool = True,
    input_shape: tuple[int, ...] | None = None,
    inputs: Mapping[str, object] | Sequence[object] | None = None,
) -> tuple[onnx.ModelProto, ConversionReport]:
    """Rewrite an ONNX model's sub-pixel convs (``Conv → DepthToSpace`` or the legacy
    ``Reshape → Transpose → Reshape``) and nearest resize convs (``Resize`` / ``Upsample →
    Conv``) into ``ConvTranspose``, with activations, scalar multiplies and crops between the
    pair; see :func:`upconv.convert.onnx_convert.convert_onnx`.

    (Imports onnx on first use, so ``import upconv`` stays light.)
    """
    from .onnx_convert import convert_onnx as _convert_onnx

    return _convert_onnx(model_or_path, verify=verify, input_shape=input_shape, inputs=inputs)


__all__ = ["ConversionReport", "ConvertedSite", "SkippedSite", "VerificationError", "convert",
           "convert_onnx"]
