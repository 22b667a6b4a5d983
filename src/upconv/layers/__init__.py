"""nn.Module wrappers: the trained upsampling layers and the deconvolution they become."""

from .deconv import Deconv2d
from .resize import ResizeConv2d
from .subpixel import SubPixelConv2d

__all__ = ["Deconv2d", "ResizeConv2d", "SubPixelConv2d"]
