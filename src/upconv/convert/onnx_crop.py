"""A conv followed by a crop, as a same-size conv followed by a crop of its output.

Padding ``p`` then cropping ``c`` leaves ``e = p - c`` zero padding per side (negative: rows
dropped). When the positive parts of ``e`` sum to at most ``K - 1`` per axis, that equals a
same-padded conv (sides ``s ≥ e`` summing to ``K - 1``) cropped by ``s - e``: that is what
lets a valid conv, or a conv and a ``Slice`` / negative ``Pad``, become a deconvolution with
larger crops.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .conv_params import ConvParams, Unsupported, same_padding_or_reason


def same_padding_and_crop(params: ConvParams, crop: np.ndarray
                           ) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """The conv as a same conv ``pad`` followed by a crop ``extra`` (both top, bottom, left,
    right): padding ``p`` then cropping ``c`` keeps ``p - c`` per side of zero padding."""
    same_padding_or_reason(dataclasses.replace(params, groups=1, padding="same"))  # stride …
    kh, kw = params.kernel_size
    effective = np.asarray(params.padding, np.int64) - crop
    pad, extra = [], []
    for (before, after), k in zip((effective[:2], effective[2:]), (kh, kw), strict=True):
        same_before = max(int(before), 0)
        same_after = k - 1 - same_before
        if same_after < max(int(after), 0):
            raise Unsupported(f"padding minus crops {tuple(int(e) for e in effective)} "
                              f"(top, bottom, left, right) pads more than a same conv does "
                              f"(positive parts summing to at most {k - 1} per axis)")
        pad += [same_before, same_after]
        extra += [same_before - int(before), same_after - int(after)]
    return tuple(pad), tuple(extra)
