"""The five deconvolution algorithms as readable reference implementations.

Each ``deconv2d_<name>(x, weight, bias, stride, padding, output_padding, out_size)`` takes
arguments already validated and normalised by :func:`upconv.deconv2d` (``padding`` as
``(top, bottom, left, right)``) and equals ``torch.nn.functional.conv_transpose2d``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from .revd import deconv2d_revd
from .revd2 import deconv2d_revd2
from .stdd import deconv2d_stdd
from .strd import deconv2d_strd
from .tdc import deconv2d_tdc

ALGORITHMS: tuple[str, ...] = ("stdd", "strd", "revd", "revd2", "tdc")

ReferenceFn = Callable[..., Tensor]

REFERENCES: dict[str, ReferenceFn] = {
    "stdd": deconv2d_stdd,
    "strd": deconv2d_strd,
    "revd": deconv2d_revd,
    "revd2": deconv2d_revd2,
    "tdc": deconv2d_tdc,
}

__all__ = [
    "ALGORITHMS",
    "REFERENCES",
    "deconv2d_revd",
    "deconv2d_revd2",
    "deconv2d_stdd",
    "deconv2d_strd",
    "deconv2d_tdc",
]
