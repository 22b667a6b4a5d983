"""Compiled deconvolution kernels (CPU, float32): the fast path behind ``algorithm="revd2"``.

:func:`deconv2d_revd2_compiled` has the same contract as the readable references in
:mod:`upconv.algorithms`; :func:`unsupported_reason` says when a call must use a reference
instead. Kernels compile on first use and are cached on disk by numba.
"""

from .revd2 import deconv2d_revd2_compiled, unsupported_reason

__all__ = ["deconv2d_revd2_compiled", "unsupported_reason"]
