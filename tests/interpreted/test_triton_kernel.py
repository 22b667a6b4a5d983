"""The REVD2 Triton kernel in Triton's CPU interpreter (TRITON_INTERPRET=1) against PyTorch.

These run in their own process, started by ``tests/test_triton_interpret.py`` with
``TRITON_INTERPRET=1`` set before anything imports Triton: Triton decides at import and
decoration time whether its functions (its own ``tl.zeros`` ... included) are interpreted,
and PyTorch's Dynamo imports Triton, so the mode cannot be switched inside a test session.
Shapes are tiny: the interpreter runs each program in numpy.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import conv_transpose2d_oracle
from strategies import deconv_problems, upsampling_problems

import upconv
from upconv.functional import check_deconv, resize_conv2d, sub_pixel_conv2d
from upconv.kernels import triton_plan as tp
from upconv.kernels import triton_revd2 as tr
from upconv.kernels import triton_tune as tt
from upconv.shapes import resize_deconv_geometry, subpixel_deconv_geometry

#: dtype → (rtol, atol): float32 as the CPU engine; fp16 / bf16 within a few output roundings
#: (fp32 accumulation, one rounding of the stored result: 2^-11 and 2^-8 relative).
DTYPES = {torch.float32: (1e-4, 1e-4), torch.float16: (2e-3, 1e-3),
          torch.bfloat16: (1.6e-2, 1e-2)}


if os.environ.get("TRITON_INTERPRET") != "1":
    raise RuntimeError("run these tests with TRITON_INTERPRET=1 set before Python starts "
                       "(tests/test_triton_interpret.py does)")


def make(p: dict, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(p["n"], p["cin"], p["h"], p["w"], generator=g)
    w = torch.randn(p["cin"], p["c"], p["kh"], p["kw"], generator=g)
    b = {"none": None, "channel": torch.randn(p["c"], generator=g),
         "periodic": torch.randn(p["c"], *p["period"], generator=g)}[p["bias"]]
    return x.to(dtype), w.to(dtype), None if b is None else b.to(dtype)


def assert_matches(got, want, dtype):
    """``got`` (kernel, ``dtype``) against ``want`` (float64 from the same rounded inputs)."""
    rtol, atol = DTYPES[dtype]
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), want, rtol=rtol, atol=atol)


def oracle(x, w, b, stride, padding, output_padding=(0, 0)):
    return conv_transpose2d_oracle(x.double(), w.double(), None if b is None else b.double(),
                                   stride, padding, output_padding)


def configs_for(call, wide: bool = False) -> list[tp.Config]:
    cin, c, kh, kw = call.weight.shape
    slots = tp.slot_count(c, (kh, kw), call.stride, call.padding, call.out_size)
    mixed = tp.mixed_taps((kh, kw), call.stride, call.padding, call.out_size)
    shuffle = tp.shuffle_phases((kh, kw), call.stride, call.padding, call.out_size)
    nchw = call.x.is_contiguous() and not call.x.is_contiguous(memory_format=torch.channels_last)
    return tt.candidate_configs(call.x.dtype, cin, slots, 1000 if wide else 8, mixed, shuffle,
                                nchw)


def layout(x, name: str):
    return x.contiguous(memory_format=torch.channels_last) if name == "channels_last" else x


@settings(max_examples=35, deadline=None)
@given(p=deconv_problems(), dtype=st.sampled_from(list(DTYPES)),
       fmt=st.sampled_from(["nchw", "channels_last"]), pick=st.integers(0, 15))
def test_kernel_equals_conv_transpose2d(p, dtype, fmt, pick):
    """Any stride, kernel, per-side crops, output padding, bias kind, batch, layout, dtype and
    candidate configuration (dot / FMA, merged / split phases)."""
    x, w, b = make(p, dtype)
    x = layout(x, fmt)
    call = check_deconv(x, w, b, p["stride"], p["padding"], p["output_padding"])
    configs = configs_for(call, wide=pick % 2 == 1)
    config = configs[pick % len(configs)]
    got = tr.run_config(call.x, call.weight, call.bias, call.stride, call.padding,
                        call.out_size, config)
    assert_matches(got, oracle(x, w, b, p["stride"], p["padding"], p["output_padding"]), dtype)


@st.composite
def small_upsampling_problems(draw):
    """:func:`strategies.upsampling_problems` with scales and kernels up to 4 (interpreter
    time grows with the slots, C·rh·rw)."""
    p = draw(upsampling_problems())
    kh, kw = (min(k, 4) for k in p["kernel"])
    if p["padding"] != "same":
        top, left = min(p["padding"][0], kh - 1), min(p["padding"][2], kw - 1)
        p["padding"] = (top, kh - 1 - top, left, kw - 1 - left)
    return {**p, "kernel": (kh, kw), "scale": tuple(min(r, 4) for r in p["scale"])}


@settings(max_examples=20, deadline=None)
@given(p=small_upsampling_problems(), dtype=st.sampled_from(list(DTYPES)),
       fmt=st.sampled_from(["nchw", "channels_last"]))
def test_trained_layers_through_deconv2d_triton(p, dtype, fmt):
    """D-SP (weight shuffle, periodic bias) and D-NN (weight convolution: phases with unequal
    tap counts) through the public entry point (its default configuration), rh ≠ rw and
    asymmetric padding included: float32 equals the trained sub-pixel / resize convolution;
    every dtype equals conv_transpose2d on the same (rounded) deconvolution weights."""
    g = torch.Generator().manual_seed(1)
    (kh, kw), (rh, rw) = p["kernel"], p["scale"]
    x = layout(torch.randn(p["n"], p["cin"], p["h"], p["w"], generator=g), fmt)
    wc = torch.randn(p["c"] * rh * rw, p["cin"], kh, kw, generator=g)
    bc = torch.randn(p["c"] * rh * rw, generator=g) if p["bias"] else None
    wn = torch.randn(p["c"], p["cin"], kh, kw, generator=g)
    bn = torch.randn(p["c"], generator=g) if p["bias"] else None
    layers = [
        (upconv.weight_shuffle(wc, (rh, rw)), None if bc is None else upconv.bias_shuffle(
            bc, (rh, rw)), subpixel_deconv_geometry((kh, kw), (rh, rw), p["padding"]),
         sub_pixel_conv2d(x, wc, bc, (rh, rw), p["padding"])),
        (upconv.weight_convolution(wn, (rh, rw)), bn,
         resize_deconv_geometry((kh, kw), (rh, rw), p["padding"]),
         resize_conv2d(x, wn, bn, (rh, rw), p["padding"])),
    ]
    for wd, bd, geo, trained in layers:
        xd, wd = x.to(dtype), wd.to(dtype)
        bd = None if bd is None else bd.to(dtype)
        call = check_deconv(xd, wd, bd, geo.stride, geo.padding)
        got = tr.deconv2d_revd2_triton(call.x, call.weight, call.bias, call.stride,
                                       call.padding, call.output_padding, call.out_size)
        if dtype == torch.float32:
            torch.testing.assert_close(got, trained, rtol=1e-4, atol=1e-4)
        assert_matches(got, oracle(xd, wd, bd, geo.stride, geo.padding), dtype)


# the benchmark layers' channel counts at tiny sizes: (Cin, C, r, N, H, W)
ZOO = {"L1-like x3": (32, 1, 3, 1, 2, 3), "G2-like x4": (64, 3, 4, 1, 2, 2),
       "two slot blocks x2": (32, 40, 2, 1, 2, 2), "G4-like batch": (16, 3, 2, 2, 2, 3),
       "Cin 80 (two K steps)": (80, 2, 2, 1, 2, 2)}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_candidate_configurations_on_zoo_channels(name):
    """The configurations the tuner weighs for these channel counts: wide and narrow tiles,
    tensor-core and FMA paths, one and several slot blocks and K steps, merged and split
    phases; D-SP in float16 on NCHW, D-NN in float32 on channels_last."""
    cin, c, r, n, h, w = ZOO[name]
    g = torch.Generator().manual_seed(7)
    x = torch.randn(n, cin, h, w, generator=g)
    wc = torch.randn(c * r * r, cin, 3, 3, generator=g) / (3 * cin**0.5)
    bc = torch.randn(c * r * r, generator=g)
    wn = torch.randn(c, cin, 3, 3, generator=g) / (3 * cin**0.5)
    bn = torch.randn(c, generator=g)
    cases = [(upconv.weight_shuffle(wc, r), upconv.bias_shuffle(bc, r),
              subpixel_deconv_geometry(3, r), torch.float16, "nchw"),
             (upconv.weight_convolution(wn, r), bn, resize_deconv_geometry(3, r),
              torch.float32, "channels_last")]
    for wd, bd, geo, dtype, fmt in cases:
        xd, wd, bd = x.to(dtype), wd.to(dtype), bd.to(dtype)
        call = check_deconv(layout(xd, fmt), wd, bd, geo.stride, geo.padding)
        want = oracle(xd, wd, bd, geo.stride, geo.padding)
        for config in dict.fromkeys(configs_for(call) + configs_for(call, wide=True)):
            got = tr.run_config(call.x, call.weight, call.bias, call.stride, call.padding,
                                call.out_size, config)
            assert_matches(got, want, dtype)


@pytest.mark.parametrize("r,c,crop,bias,fmt", [
    ((2, 2), 1, None, "slot", "nchw"), ((4, 4), 3, None, "slot", "channels_last"),
    ((2, 2), 5, (3, 2, 1, 4), "gather", "nchw"), ((2, 1), 2, (2, 3, 0, 1), "none", "nchw"),
    ((1, 4), 3, (1, 1, 5, 2), "slot", "channels_last")])
def test_shuffled_store_writes_whole_output_rows(r, c, crop, bias, fmt):
    """The tile rearranged into output rows before the store: channels padding a block,
    per-side crops that cut tiles at every edge, a periodic bias gathered per output, row- or
    column-only strides, channels_last input, a batch, fp16 and float32."""
    rh, rw = r
    g = torch.Generator().manual_seed(rh * 7 + rw + c)
    x = layout(torch.randn(2, 20, 3, 20, generator=g), fmt)
    w = torch.randn(20, c, 3 * rh, 3 * rw, generator=g) / 8
    b = {"none": None, "slot": torch.randn(c, rh, rw, generator=g),
         "gather": torch.randn(c, 3, 2, generator=g)}[bias]
    padding = crop or (rh, rh, rw, rw)
    for dtype in (torch.float16, torch.float32):
        xd, wd, bd = x.to(dtype), w.to(dtype), None if b is None else b.to(dtype)
        call = check_deconv(xd, wd, bd, r, padding)
        shuffle = tp.shuffle_phases((3 * rh, 3 * rw), call.stride, call.padding, call.out_size)
        assert shuffle == r
        bn = max(16, rh * rw)
        configs = [tp.Config(2, 16, bn, 16, True, shuffle=True),
                   tp.Config(4, 16, 2 * bn, 32, True, num_stages=3, flat=True, shuffle=True)]
        for config in configs[: 2 if dtype == torch.float16 else 1]:
            got = tr.run_config(call.x, call.weight, call.bias, call.stride, call.padding,
                                call.out_size, config)
            assert_matches(got, oracle(xd, wd, bd, r, padding), dtype)
            (_, _, meta), = tr.prepare(call.x, call.weight, call.bias, call.stride,
                                       call.padding, call.out_size, config)
            # 16-byte row starts wherever the width allows one (vector stores on a GPU)
            assert (meta["ALIGN"] > 1) == (call.out_size[1] % (16 // dtype.itemsize) == 0)
    with pytest.raises(ValueError, match="whole output rows"):
        call = check_deconv(x, torch.randn(20, c, 9, 9), None, 3, 3)
        tr.run_config(call.x, call.weight, None, call.stride, call.padding, call.out_size,
                      tp.Config(2, 16, 16, 16, True, shuffle=True))


def test_out_argument_any_strides_and_untouched_surroundings():
    """``out`` may be a strided view (a window of a bigger tensor, channels_last): exactly the
    output's elements are written, once."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 4, 5, generator=g)
    w = torch.randn(3, 2, 6, 6, generator=g)
    b = torch.randn(2, 2, 2, generator=g)
    call = check_deconv(x, w, b, 2, (2, 1, 3, 2))
    want = oracle(x, w, b, (2, 2), (2, 1, 3, 2))
    big = torch.full((2, 4, call.out_size[0] + 3, call.out_size[1] + 5), 7.0)
    view = big[:, 1:3, 2:2 + call.out_size[0], 4:4 + call.out_size[1]]
    got = tr.deconv2d_revd2_triton(call.x, call.weight, call.bias, call.stride, call.padding,
                                   call.output_padding, call.out_size, out=view)
    assert got is view
    assert_matches(view, want, torch.float32)
    rest = big.clone()
    rest[:, 1:3, 2:2 + call.out_size[0], 4:4 + call.out_size[1]] = 7.0
    assert bool((rest == 7.0).all())
    cl = torch.empty(2, 2, *call.out_size).contiguous(memory_format=torch.channels_last)
    tr.deconv2d_revd2_triton(call.x, call.weight, call.bias, call.stride, call.padding,
                             call.output_padding, call.out_size, out=cl)
    assert_matches(cl, want, torch.float32)
    with pytest.raises(ValueError, match="out must be"):
        tr.deconv2d_revd2_triton(call.x, call.weight, call.bias, call.stride, call.padding,
                                 call.output_padding, call.out_size,
                                 out=torch.empty(2, 2, 3, 3))


def test_output_follows_the_input_memory_format():
    x = torch.randn(1, 4, 3, 5).contiguous(memory_format=torch.channels_last)
    w = torch.randn(4, 3, 4, 4)
    call = check_deconv(x, w, None, 2, 1)
    y = tr.deconv2d_revd2_triton(call.x, call.weight, None, call.stride, call.padding,
                                 call.output_padding, call.out_size)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    assert_matches(y, oracle(x, w, None, (2, 2), (1, 1, 1, 1)), torch.float32)
    y = tr.deconv2d_revd2_triton(x.contiguous(), w, None, call.stride, call.padding,
                                 call.output_padding, call.out_size)
    assert y.is_contiguous()


def test_weight_updates_are_seen_and_packing_is_cached():
    """Packed weights live with the weight tensor and follow in-place updates."""
    x = torch.randn(1, 3, 4, 4)
    w = torch.randn(3, 2, 4, 4)
    call = check_deconv(x, w, None, 2, 1)
    args = (call.x, w, None, call.stride, call.padding, call.output_padding, call.out_size)
    first = tr.deconv2d_revd2_triton(*args)
    assert tt.prepared_call(x, w, None, call.stride, call.padding, call.out_size) is \
        tt.prepared_call(x, w, None, call.stride, call.padding, call.out_size)
    with torch.no_grad():
        w.mul_(2)
    second = tr.deconv2d_revd2_triton(*args)
    torch.testing.assert_close(second, 2 * first)
    bias = torch.randn(2, 2, 2)
    with_bias = tr.deconv2d_revd2_triton(x, w, bias, *args[3:])
    with torch.no_grad():
        bias.add_(1)
    torch.testing.assert_close(tr.deconv2d_revd2_triton(x, w, bias, *args[3:]), with_bias + 1)


def test_tuner_skips_failing_and_wrong_candidates(monkeypatch):
    """The tuner times only candidates that run and agree with PyTorch's TDC, and picks the
    fastest of those (timings faked: the interpreter has no device clock)."""
    x = torch.randn(1, 4, 3, 5)
    w = torch.randn(4, 2, 4, 4)
    b = torch.randn(2, 2, 2)
    call = check_deconv(x, w, b, 2, 1)
    good = tp.Config(4, 16, 16, 16, True)
    fast_but_wrong = tp.Config(8, 16, 16, 16, True)
    broken = tp.Config(4, 16, 16, 16, False, num_warps=8)
    slower = tp.Config(4, 32, 16, 4, False)
    real_prepare = tr.prepare

    def prepare(x, weight, bias, stride, padding, out_size, config):
        if config == broken:
            raise RuntimeError("out of resources (simulated)")
        prepared = real_prepare(x, weight, bias, stride, padding, out_size, config)
        if config == fast_but_wrong:  # swap the phase rows of the slots: a mapping bug
            (grid, args, meta), = prepared
            args = list(args)
            args[3] = args[3].flip(0)
            prepared = [(grid, tuple(args), meta)]
        return prepared

    monkeypatch.setattr(tr, "prepare", prepare)
    seconds = iter([3e-3, 2e-3])  # timed in order: slower, good (the others never are)

    def timer(fn):
        fn()
        return next(seconds)

    choice, timings = tt.tune(call.x, w, b, call.stride, call.padding, call.out_size,
                              [broken, fast_but_wrong, slower, good], timer)
    assert choice == good
    assert "simulated" in timings[broken.label()]
    assert timings[fast_but_wrong.label()].startswith("wrong output")
    assert timings[good.label()] == 2.0 and timings[slower.label()] == 3.0


def test_tuner_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("UPCONV_CACHE_DIR", str(tmp_path))
    config = tp.Config(2, 64, 16, 32, True, merged=False, num_warps=8, num_stages=3)
    tt._to_disk("k", config, {"a": 1.0})
    assert tt._from_disk("k") == config
    assert tt._from_disk("other") is None
    assert (tmp_path / tt.CACHE_FILE).is_file()


def test_unsupported_reasons(monkeypatch):
    x, w = torch.randn(1, 2, 3, 3), torch.randn(2, 2, 3, 3)
    assert tr.unsupported_reason(x, w, None) is None  # the interpreter runs CPU tensors
    assert "float32, float16 or bfloat16" in tr.unsupported_reason(x.double(), w.double(), None)
    assert "differ" in tr.unsupported_reason(x, w.half(), None)
    assert "32-bit" in tr.unsupported_reason(x, w, None, out_size=(2**16, 2**16))
    wg = w.clone().requires_grad_()
    assert "autograd" in tr.unsupported_reason(x, wg, None)
    with torch.no_grad():
        assert tr.unsupported_reason(x, wg, None) is None
    assert "meta" in tr.unsupported_reason(x.to("meta"), w.to("meta"), None)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "CPU" in tr.unsupported_reason(x, w, None)


@pytest.mark.parametrize("r,bias,crop", [((2, 2), "periodic", None), ((3, 3), "channel", None),
                                         ((2, 3), "none", (2, 1, 0, 3))])
def test_nchw_input_read_through_a_channels_last_copy(r, bias, crop):
    """The ``nhwc_input`` candidates: offered for NCHW inputs only; the launch copies the input
    to channels_last (the input itself untouched) and computes the same result."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 16, 5, 9, generator=g, dtype=torch.float16)
    w = torch.randn(16, 3, 2 * r[0], 2 * r[1], generator=g, dtype=torch.float16)
    b = {"none": None, "channel": torch.randn(3, generator=g, dtype=torch.float16),
         "periodic": torch.randn(3, *r, generator=g, dtype=torch.float16)}[bias]
    padding = crop or (r[0] // 2, r[0] // 2, r[1] // 2, r[1] // 2)
    call = check_deconv(x, w, b, r, padding)
    via = [c for c in configs_for(call) if c.nhwc_input]
    assert via and all("via-nhwc" in c.label() for c in via)
    cl = check_deconv(x.contiguous(memory_format=torch.channels_last), w, b, r, padding)
    assert not any(c.nhwc_input for c in configs_for(cl))
    want = oracle(x, w, b, r, padding)
    before = x.clone()
    for config in via:
        prepared = tr.prepare(x, w, b, call.stride, call.padding, call.out_size, config)
        assert all(tuple(args[-4:]) == tr.channels_last_strides(x.shape)
                   for _, args, _ in prepared)
        got = tr.run_config(x, w, b, call.stride, call.padding, call.out_size, config)
        assert got.is_contiguous()  # the output keeps the input's layout
        assert_matches(got, want, torch.float16)
    assert torch.equal(x, before)
