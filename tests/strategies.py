"""Hypothesis strategies for deconvolution and upsampling problems (small shapes)."""

from __future__ import annotations

from hypothesis import strategies as st

small = st.integers(min_value=1, max_value=4)
scales = st.integers(min_value=1, max_value=8)


@st.composite
def deconv_problems(draw, max_kernel: int = 7, max_stride: int = 5):
    """``dict(n, cin, c, h, w, kh, kw, stride, padding4, output_padding, bias_kind)``."""
    kh = draw(st.integers(1, max_kernel))
    kw = draw(st.integers(1, max_kernel))
    sh = draw(st.integers(1, max_stride))
    sw = draw(st.integers(1, max_stride))
    h = draw(st.integers(1, 6))
    w = draw(st.integers(1, 6))
    full_h, full_w = (h - 1) * sh + kh, (w - 1) * sw + kw
    # crops leave at least one output row/column
    top = draw(st.integers(0, full_h - 1))
    bottom = draw(st.integers(0, full_h - 1 - top))
    left = draw(st.integers(0, full_w - 1))
    right = draw(st.integers(0, full_w - 1 - left))
    if draw(st.booleans()):
        bottom, right = top, left  # PyTorch-style symmetric padding, when it fits
        if top + bottom > full_h - 1 or left + right > full_w - 1:
            bottom, right = 0, 0
            top, left = min(top, full_h - 1), min(left, full_w - 1)
    oph = draw(st.integers(0, sh - 1))
    opw = draw(st.integers(0, sw - 1))
    return dict(
        n=draw(small), cin=draw(small), c=draw(small), h=h, w=w, kh=kh, kw=kw,
        stride=(sh, sw), padding=(top, bottom, left, right), output_padding=(oph, opw),
        bias=draw(st.sampled_from(["none", "channel", "periodic"])),
        period=(draw(st.integers(1, 4)), draw(st.integers(1, 4))),
    )


@st.composite
def upsampling_problems(draw):
    """A same-padded conv for C-SP / C-NN: kernel, scale (rh ≠ rw allowed), padding, sizes."""
    kh = draw(st.integers(1, 6))
    kw = draw(st.integers(1, 6))
    rh = draw(scales)
    rw = draw(scales)
    if draw(st.booleans()):
        padding = "same"
    else:  # any same-size split, asymmetric included
        top = draw(st.integers(0, kh - 1))
        left = draw(st.integers(0, kw - 1))
        padding = (top, kh - 1 - top, left, kw - 1 - left)
    return dict(
        n=draw(st.integers(1, 3)), cin=draw(small), c=draw(st.integers(1, 3)),
        h=draw(st.integers(1, 6)), w=draw(st.integers(1, 6)),
        kernel=(kh, kw), scale=(rh, rw), padding=padding, bias=draw(st.booleans()),
    )
