"""Whole-model conversion: every sub-pixel / nearest-resize convolution → a deconvolution.

:func:`convert` rewrites PyTorch models (torch.fx, or an ``nn.Sequential`` fallback);
:func:`convert_onnx` rewrites ONNX graphs. Both return ``(converted, ConversionReport)``.
"""

from .report import ConversionReport, ConvertedSite, SkippedSite
from .torch_convert import convert
from .verify import VerificationError

__all__ = ["ConversionReport", "ConvertedSite", "SkippedSite", "VerificationError", "convert"]
