"""A conv followed by a crop, as a same-size conv followed by a crop of its output.

Padding ``p`` then cropping ``c`` leaves ``p - c`` zero padding per side (negative: rows
dropped). Any ``p - c`` whose two sides sum to at most ``K - 1`` equals a same-padded conv
(sides summing to ``K - 1``) cropped further; that is what lets a valid conv, or a conv and
a ``Slice`` / negative ``Pad``, become a deconvolution with larger crops.
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
        if same_after < after or same_after < 0:
            raise Unsupported(f"padding minus crops {tuple(int(e) for e in effective)} makes the "
                              "conv output larger than its input")
        pad += [same_before, same_after]
        extra += [same_before - int(before), same_after - int(after)]
    return tuple(pad), tuple(extra)
