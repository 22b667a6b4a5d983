"""The cost model's closed-form counts equal instrumented loop nests, which compute the right
output. Then: where the exact counts differ from the authors' table (METHOD.md), and why."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import upconv
from upconv.cost import count, count_conv, count_deconv
from upconv.cost.counts import deconv_geometry
from upconv.cost.instrument import run_conv, run_deconv, run_resize_conv, run_sub_pixel_conv
from upconv.shapes import conv_same_padding4

small = st.integers(1, 2)
side = st.integers(1, 3)
scale = st.integers(1, 3)
kernel = st.integers(1, 3)
dtypes = st.sampled_from(["float32", "float16", "int8"])


def _layer(draw):
    return dict(n=draw(small), cin=draw(small), c=draw(small), kh=draw(kernel), kw=draw(kernel),
                rh=draw(scale), rw=draw(scale), h=draw(side), w=draw(side), dtype=draw(dtypes))


layers = st.composite(lambda draw: _layer(draw))()


def _count(op, p, algorithm=None):
    return count(op, in_channels=p["cin"], out_channels=p["c"], kernel_size=(p["kh"], p["kw"]),
                 scale=(p["rh"], p["rw"]), height=p["h"], width=p["w"], batch=p["n"],
                 algorithm=algorithm, dtype=p["dtype"])


def _x(p, seed=0):
    return np.random.default_rng(seed).standard_normal((p["n"], p["cin"], p["h"], p["w"]))


@settings(max_examples=25, deadline=None)
@given(layers)
def test_trained_layers_counts_match_instrumentation(p):
    x, rng = _x(p), np.random.default_rng(1)
    pad = conv_same_padding4("same", (p["kh"], p["kw"]))
    rs = (p["rh"], p["rw"])
    w_sp = rng.standard_normal((p["c"] * p["rh"] * p["rw"], p["cin"], p["kh"], p["kw"]))
    y, counted = run_sub_pixel_conv(x, w_sp, rs, pad, p["dtype"])
    want = upconv.sub_pixel_conv2d(torch.from_numpy(x), torch.from_numpy(w_sp), None, rs)
    np.testing.assert_allclose(y, want.numpy(), atol=1e-9)
    assert counted == _count("C-SP", p)

    w_nn = rng.standard_normal((p["c"], p["cin"], p["kh"], p["kw"]))
    y, counted = run_resize_conv(x, w_nn, rs, pad, p["dtype"])
    want = upconv.resize_conv2d(torch.from_numpy(x), torch.from_numpy(w_nn), None, rs)
    np.testing.assert_allclose(y, want.numpy(), atol=1e-9)
    assert counted == _count("C-NN", p)


@settings(max_examples=20, deadline=None)
@given(layers, st.sampled_from(["D-SP", "D-NN"]))
def test_converted_layers_counts_match_instrumentation(p, op):
    g = deconv_geometry(op, (p["kh"], p["kw"]), (p["rh"], p["rw"]))
    x = _x(p)
    w = np.random.default_rng(2).standard_normal((p["cin"], p["c"], *g.kernel_size))
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    if g.symmetric_padding is not None:
        want = F.conv_transpose2d(xt, wt, stride=g.stride, padding=g.symmetric_padding)
    else:  # even kernels: per-side crops; the reference is checked against torch elsewhere
        want = upconv.deconv2d(xt, wt, None, g.stride, g.padding, algorithm="stdd")
    for algorithm in upconv.ALGORITHMS:
        y, counted = run_deconv(x, w, g.stride, g.padding, algorithm=algorithm,
                                dtype=p["dtype"], op=op)
        np.testing.assert_allclose(y, want.numpy(), atol=1e-9, err_msg=algorithm)
        assert counted == _count(op, p, algorithm), algorithm


@settings(max_examples=20, deadline=None)
@given(small, small, small, st.integers(1, 3), st.integers(1, 3), st.integers(1, 5),
       st.integers(1, 5), st.lists(st.integers(0, 4), min_size=4, max_size=4), side, side,
       st.data())
def test_any_deconvolution_counts_match_instrumentation(n, cin, c, sh, sw, kh, kw, pads, h, w,
                                                        data):
    op = (data.draw(st.integers(0, sh - 1)), data.draw(st.integers(0, sw - 1)))
    oh = (h - 1) * sh + kh - pads[0] - pads[1] + op[0]
    ow = (w - 1) * sw + kw - pads[2] - pads[3] + op[1]
    rng = np.random.default_rng(3)
    x, wt = rng.standard_normal((n, cin, h, w)), rng.standard_normal((cin, c, kh, kw))
    args = dict(in_channels=cin, out_channels=c, kernel_size=(kh, kw), stride=(sh, sw),
                padding=tuple(pads), output_padding=op, height=h, width=w, batch=n)
    if oh < 1 or ow < 1:
        with pytest.raises(ValueError, match="crops away"):
            count_deconv(**args)
        return
    full = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(wt), stride=(sh, sw))
    # output padding extends the full output with zeros, then the crops apply (two steps: a
    # crop may exceed the full output when output padding makes up for it)
    full = F.pad(full, (0, op[1], 0, op[0]))
    want = full[..., pads[0]:full.shape[2] - pads[1], pads[2]:full.shape[3] - pads[3]]
    for algorithm in upconv.ALGORITHMS:
        y, counted = run_deconv(x, wt, (sh, sw), tuple(pads), op, algorithm=algorithm)
        np.testing.assert_allclose(y, want.numpy(), atol=1e-9, err_msg=algorithm)
        assert counted == count_deconv(algorithm=algorithm, **args), algorithm


@settings(max_examples=15, deadline=None)
@given(small, st.sampled_from([(2, 2), (2, 4), (4, 4)]), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 2), st.integers(1, 2), st.lists(st.integers(0, 2), min_size=4, max_size=4),
       st.integers(2, 5), st.integers(2, 5))
def test_plain_conv_counts_match_instrumentation(n, chans, kh, kw, stride, dil, pads, h, w):
    groups = 2 if chans[0] == chans[1] == 4 else 1
    cin, cout = chans
    if h + pads[0] + pads[1] < dil * (kh - 1) + 1 or w + pads[2] + pads[3] < dil * (kw - 1) + 1:
        return
    rng = np.random.default_rng(4)
    x, wt = rng.standard_normal((n, cin, h, w)), rng.standard_normal((cout, cin // groups, kh, kw))
    y, counted = run_conv(x, wt, (stride, 1), tuple(pads), (1, dil), groups)
    want = F.conv2d(F.pad(torch.from_numpy(x), (pads[2], pads[3], pads[0], pads[1])),
                    torch.from_numpy(wt), stride=(stride, 1), dilation=(1, dil), groups=groups)
    np.testing.assert_allclose(y, want.numpy(), atol=1e-9)
    assert counted == count_conv(in_channels=cin, out_channels=cout, kernel_size=(kh, kw),
                                 height=h, width=w, stride=(stride, 1), padding=tuple(pads),
                                 dilation=(1, dil), groups=groups, batch=n)


# --- exact counts against the authors' table (METHOD.md) --------------------------------

ESPCN_UP = dict(in_channels=32, out_channels=1, kernel_size=3, scale=3, height=40, width=50)
HW, CIN, C, R, K = 40 * 50, 32, 1, 3, 3


def test_table_rows_that_hold_exactly():
    csp = count("C-SP", **ESPCN_UP)
    assert csp.macs == R**2 * K**2 * CIN * C * HW
    assert csp.weight_reads == R**2 * K**2 * CIN * C
    assert csp.activation_traffic == (CIN + R**2 * C) * HW
    assert csp.transform_traffic == 2 * R**2 * C * HW
    stdd = count("D-SP", algorithm="stdd", **ESPCN_UP)
    assert stdd.macs == R**2 * K**2 * CIN * C * HW and stdd.transform_traffic == 0
    kd = K + R - 1
    assert count("D-NN", algorithm="stdd", **ESPCN_UP).macs == kd**2 * CIN * C * HW
    for op, k_d in (("D-SP", R * K), ("D-NN", kd)):
        strd = count(op, algorithm="strd", **ESPCN_UP)
        assert strd.macs == R**2 * k_d**2 * CIN * C * HW
        assert strd.weight_reads == k_d**2 * CIN * C
        tdc = count(op, algorithm="tdc", **ESPCN_UP)
        assert tdc.weight_reads == math.ceil(k_d / R) ** 2 * R**2 * CIN * C  # "TDC stores"
        for algorithm in upconv.ALGORITHMS:  # A is (Cin + r²C)·HW for every deconvolution
            got = count(op, algorithm=algorithm, **ESPCN_UP).activation_traffic
            assert got == (CIN + R**2 * C) * HW, (op, algorithm)


def test_where_exact_counts_differ_from_the_table():
    # REVD / REVD2 skip the taps that would read zero padding, so they do exactly the useful
    # MACs of the sub-pixel conv (the table counts the padded border too).
    csp = count("C-SP", **ESPCN_UP)
    for algorithm in ("revd", "revd2"):
        d = count("D-SP", algorithm=algorithm, **ESPCN_UP)
        assert d.macs == csp.useful_macs < csp.macs and d.zero_macs == 0
    # STRD's useful MACs are REVD's; the rest multiply inserted or padding zeros.
    revd = count("D-NN", algorithm="revd", **ESPCN_UP)
    strd = count("D-NN", algorithm="strd", **ESPCN_UP)
    assert strd.useful_macs == revd.macs and strd.zero_macs > 0.8 * strd.macs
    # C-NN: same A + P total as the table, split differently (we call the resize's read of x
    # the layer's activation read and the conv's read of the resized map transform traffic).
    cnn = count("C-NN", **ESPCN_UP)
    table_a, table_p = R**2 * (CIN + C) * HW, (1 + R**2) * CIN * HW
    assert cnn.activation_traffic + cnn.transform_traffic == table_a + table_p
    assert cnn.activation_traffic != table_a
    # The table omits partial sums: REVD accumulates once per tap, STDD goes through columns.
    assert count("D-SP", algorithm="revd", **ESPCN_UP).partial_sum_traffic == 2 * C * (
        count("D-SP", algorithm="revd2", **ESPCN_UP).macs // CIN // C)
    assert count("D-SP", algorithm="stdd", **ESPCN_UP).partial_sum_traffic > 4 * R**2 * K**2 * HW
    for algorithm in ("revd2", "strd", "tdc"):
        assert count("D-SP", algorithm=algorithm, **ESPCN_UP).partial_sum_traffic == 0
    # TDC as run here convolves the padded input ((H + T - 1) per axis) and materialises the
    # interleave, which the table's P = 0 leaves out; STRD builds its zero-inserted map.
    tdc = count("D-SP", algorithm="tdc", **ESPCN_UP)
    assert tdc.macs == R**2 * K**2 * CIN * C * (40 + K - 1) * (50 + K - 1)
    assert tdc.transform_traffic > 0 and count("D-SP", algorithm="strd",
                                               **ESPCN_UP).transform_traffic > 0
    assert count("D-NN", algorithm="tdc", **ESPCN_UP).zero_macs > 0  # 3 ∤ 5: zero taps
    assert count("D-SP", algorithm="revd2", **ESPCN_UP).temporary_bytes == 0


def test_batch_and_dtype_scale_what_they_should():
    one, four = count("D-SP", **ESPCN_UP), count("D-SP", batch=4, **ESPCN_UP)
    assert four.macs == 4 * one.macs and four.activation_traffic == 4 * one.activation_traffic
    assert four.weight_reads == one.weight_reads  # the batch shares the weights
    for op, algorithm in (("C-SP", None), ("C-NN", None), *(("D-NN", a) for a in
                                                             upconv.ALGORITHMS)):
        batched = count(op, batch=3, algorithm=algorithm, **ESPCN_UP)
        assert batched.per_image() == count(op, algorithm=algorithm, **ESPCN_UP)
    f32 = count("C-SP", **ESPCN_UP)
    i8 = count("C-SP", dtype="int8", **ESPCN_UP)
    assert i8.macs == f32.macs and i8.temporary_bytes * 4 == f32.temporary_bytes
    stdd8 = count("D-SP", algorithm="stdd", dtype="int8", **ESPCN_UP)
    assert stdd8.temporary_bytes == count("D-SP", algorithm="stdd", **ESPCN_UP).temporary_bytes


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(op="C-XX"), "op must be one of"),
    (dict(op="C-SP", algorithm="revd2"), "takes no algorithm"),
    (dict(op="D-SP", algorithm="fast"), "algorithm must be one of"),
    (dict(op="D-SP", dtype="float64"), "dtype must be one of"),
    (dict(op="D-SP", height=0), "height must be >= 1"),
    (dict(op="D-SP", in_channels=2.5), "in_channels must be an integer"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    args = dict(ESPCN_UP, **{k: v for k, v in kwargs.items() if k != "op"})
    with pytest.raises((ValueError, TypeError), match=match):
        count(kwargs["op"], **args)
