"""upconv: train sub-pixel / resize convolutions, run them as fast deconvolutions.

Colbert, Kreutz-Delgado & Das, "An Energy-Efficient Edge Computing Paradigm for
Convolution-Based Image Upsampling", IEEE Access 9 (2021), arXiv:2107.07647.
"""

from . import ops  # noqa: F401 (registers torch.ops.upconv)
from .algorithms import ALGORITHMS
from .convert import convert, convert_onnx
from .functional import deconv2d, pixel_shuffle, resize_conv2d, sub_pixel_conv2d
from .layers import Deconv2d, ResizeConv2d, SubPixelConv2d
from .load import LoadedModel, load_model
from .ops import export_decompositions
from .shapes import DeconvGeometry, resize_deconv_geometry, subpixel_deconv_geometry
from .transforms import bias_shuffle, weight_convolution, weight_shuffle

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS",
    "Deconv2d",
    "DeconvGeometry",
    "LoadedModel",
    "ResizeConv2d",
    "SubPixelConv2d",
    "__version__",
    "bias_shuffle",
    "convert",
    "convert_onnx",
    "deconv2d",
    "export_decompositions",
    "load_model",
    "pixel_shuffle",
    "resize_conv2d",
    "resize_deconv_geometry",
    "sub_pixel_conv2d",
    "subpixel_deconv_geometry",
    "weight_convolution",
    "weight_shuffle",
]
