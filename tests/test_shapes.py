"""Shape arithmetic: the one module every other one asks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from upconv import shapes


@given(h=st.integers(1, 20), s=st.integers(1, 6), k=st.integers(1, 9), data=st.data())
def test_output_length_matches_pytorch(h, s, k, data):
    p = data.draw(st.integers(0, ((h - 1) * s + k - 1) // 2))
    op = data.draw(st.integers(0, s - 1))
    y = F.conv_transpose1d(torch.zeros(1, 1, h), torch.zeros(1, 1, k), stride=s, padding=p,
                           output_padding=op)
    assert shapes.deconv_output_length(h, s, k, p, p, op) == y.shape[-1]


@given(s=st.integers(1, 6), p=st.integers(0, 12), o_len=st.integers(1, 30), data=st.data())
def test_phase_outputs_enumerates_exactly_one_phase(s, p, o_len, data):
    f = data.draw(st.integers(0, s - 1))
    o0, q0, n = shapes.phase_outputs(f, s, p, o_len)
    got = [o0 + s * i for i in range(n)]
    assert got == [o for o in range(o_len) if (o + p) % s == f]
    for i, o in enumerate(got):
        assert o + p == f + s * (q0 + i)


@given(q0=st.integers(-5, 10), count=st.integers(0, 12), t=st.integers(0, 6),
       in_len=st.integers(1, 10))
def test_tap_window_keeps_inputs_in_range(q0, count, t, in_len):
    i0, j0, n = shapes.tap_window(q0, count, t, in_len)
    got = [(i0 + m, j0 + m) for m in range(n)]
    want = [(i, q0 + i - t) for i in range(count) if 0 <= q0 + i - t < in_len]
    assert got == want


def test_same_padding_is_pytorchs():
    for k in range(1, 8):
        x = torch.randn(1, 1, 9, 9)
        w = torch.randn(1, 1, k, k)
        top, bottom, left, right = shapes.same_padding(k)
        torch.testing.assert_close(F.conv2d(F.pad(x, (left, right, top, bottom)), w),
                                   F.conv2d(x, w, padding="same"))


def test_taps_per_phase():
    assert shapes.taps_per_phase(9, 3) == 3
    assert shapes.taps_per_phase(5, 3) == 2
    assert shapes.taps_per_phase(1, 4) == 1
