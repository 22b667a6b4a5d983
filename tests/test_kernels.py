"""The compiled REVD2 engine and the PyTorch-backed paths equal PyTorch's conv_transpose2d."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import deconv_problems

import upconv
from upconv.algorithms import REFERENCES
from upconv.algorithms._common import add_bias
from upconv.functional import check_deconv, implementation
from upconv.kernels import deconv2d_revd2_compiled, unsupported_reason
from upconv.kernels._simd import MAX_ACCUMULATORS, UNROLL_TAPS, decode_taps, encode_taps
from upconv.kernels.revd2 import NB_CHOICES, _block_shape, plan_for
from upconv.kernels.torch_paths import (
    deconv2d_convtranspose_torch,
    deconv2d_tdc_torch,
    deconv2d_tdc_torch_nhwc,
)

TOL = dict(rtol=1e-4, atol=1e-4)
FAST_PATHS = {
    "revd2-numba": deconv2d_revd2_compiled,
    "tdc-torch": deconv2d_tdc_torch,
    "tdc-torch-nhwc": deconv2d_tdc_torch_nhwc,
    "stdd-torch": deconv2d_convtranspose_torch,
}


def oracle(x, w, b, stride, padding, output_padding):
    """conv_transpose2d on a zero-padded output, cropped per side, plus (periodic) bias."""
    top, bottom, left, right = padding
    y = F.conv_transpose2d(x, w, None, stride, 0, output_padding)
    full_h, full_w = y.shape[-2:]
    y = y[..., top: full_h - bottom, left: full_w - right]
    return add_bias(y, b)


def problem(p: dict, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(p["n"], p["cin"], p["h"], p["w"], generator=g)
    w = torch.randn(p["cin"], p["c"], p["kh"], p["kw"], generator=g)
    b = {"none": None, "channel": torch.randn(p["c"], generator=g),
         "periodic": torch.randn(p["c"], *p["period"], generator=g)}[p["bias"]]
    return x, w, b


def run(impl, x, w, b, stride, padding, output_padding=(0, 0)):
    call = check_deconv(x, w, b, stride, padding, output_padding)
    return impl(call.x, call.weight, call.bias, call.stride, call.padding, call.output_padding,
                call.out_size)


@pytest.mark.parametrize("name", sorted(FAST_PATHS))
@settings(max_examples=18, deadline=None)
@given(p=deconv_problems())
def test_fast_paths_equal_conv_transpose2d(name, p):
    x, w, b = problem(p)
    want = oracle(x, w, b, p["stride"], p["padding"], p["output_padding"])
    got = run(FAST_PATHS[name], x, w, b, p["stride"], p["padding"], p["output_padding"])
    torch.testing.assert_close(got, want, **TOL)


@settings(max_examples=8, deadline=None)
@given(p=deconv_problems(max_kernel=9, max_stride=4))
def test_compiled_equals_reference_on_wider_rows(p):
    """Rows wide enough for multi-vector strips and masked tails, against REVD2's reference."""
    p = {**p, "w": p["w"] + 37, "cin": p["cin"] + 3}
    x, w, b = problem(p, seed=1)
    want = run(REFERENCES["revd2"], x, w, b, p["stride"], p["padding"], p["output_padding"])
    got = run(deconv2d_revd2_compiled, x, w, b, p["stride"], p["padding"], p["output_padding"])
    torch.testing.assert_close(got, want, **TOL)


@settings(max_examples=10, deadline=None)
@given(p=deconv_problems())
def test_compiled_on_channels_last_inputs(p):
    """channels_last inputs go through the per-thread row staging; batches and every row
    order a thread can walk must still give conv_transpose2d's answer."""
    p = {**p, "w": p["w"] + 21, "h": p["h"] + 5}  # strips of several vectors, rows per thread
    x, w, b = problem(p, seed=3)
    want = oracle(x, w, b, p["stride"], p["padding"], p["output_padding"])
    cl = x.contiguous(memory_format=torch.channels_last)
    got = run(deconv2d_revd2_compiled, cl, w, b, p["stride"], p["padding"], p["output_padding"])
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("kw,sw,width", [(40, 1, 50), (40, 1, 5), (33, 2, 70), (3, 1, 1),
                                         (9, 4, 16), (6, 2, 47)])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_edge_strips(kw, sw, width, layout):
    """Columns whose taps leave the input run as masked edge strips: kernels wider than a
    SIMD vector (several left-edge strips), inputs narrower than the kernel (no interior),
    and row ends that fall inside, at or past a vector boundary."""
    g = torch.Generator().manual_seed(kw + width)
    x = torch.randn(2, 3, 4, width, generator=g)
    w = torch.randn(3, 2, 3, kw, generator=g)
    b = torch.randn(2, generator=g)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    for padding in ((0, 0, 0, 0), (1, 0, kw // 2, kw // 3)):
        want = oracle(x, w, b, (1, sw), padding, (0, 0))
        got = run(deconv2d_revd2_compiled, x, w, b, (1, sw), padding)
        torch.testing.assert_close(got, want, **TOL)


def test_channels_last_and_strided_inputs():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, 9, 40, generator=g)
    w = torch.randn(5, 3, 6, 6, generator=g)
    b = torch.randn(3, 2, 2, generator=g)
    want = oracle(x, w, b, (2, 2), (2, 2, 2, 2), (0, 0))
    cl = x.to(memory_format=torch.channels_last)
    torch.testing.assert_close(run(deconv2d_revd2_compiled, cl, w, b, 2, 2), want, **TOL)
    wide = torch.randn(2, 5, 9, 80, generator=g)
    wide[..., ::2] = x.repeat_interleave(2, -1)[..., ::2]
    sliced = wide[..., ::2]  # column stride 2, not a copy
    want = oracle(sliced, w, b, (2, 2), (2, 2, 2, 2), (0, 0))
    torch.testing.assert_close(run(deconv2d_revd2_compiled, sliced, w, b, 2, 2), want, **TOL)


# the benchmark zoo at reduced size: (Cin, C, r, N, H, W)
ZOO = {"L1": (32, 1, 3, 1, 21, 33), "L2": (32, 1, 2, 1, 18, 40), "L3": (32, 1, 4, 1, 9, 20),
       "L4": (64, 3, 4, 1, 8, 8), "L5": (64, 64, 2, 1, 6, 6), "L6": (16, 3, 2, 4, 9, 20)}


@pytest.mark.parametrize("layer", sorted(ZOO))
def test_benchmark_layers_at_reduced_size(layer):
    cin, c, r, n, h, w = ZOO[layer]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, cin, h, w, generator=g)
    wc = torch.randn(c * r * r, cin, 3, 3, generator=g) * 0.1
    bc = torch.randn(c * r * r, generator=g)
    y = upconv.sub_pixel_conv2d(x, wc, bc, r)
    geo = upconv.subpixel_deconv_geometry(3, r)
    dsp = upconv.deconv2d(x, upconv.weight_shuffle(wc, r), upconv.bias_shuffle(bc, r),
                          geo.stride, geo.padding, algorithm="revd2")
    torch.testing.assert_close(dsp, y, **TOL)
    wn = torch.randn(c, cin, 3, 3, generator=g) * 0.1
    bn = torch.randn(c, generator=g)
    y = upconv.resize_conv2d(x, wn, bn, r)
    geo = upconv.resize_deconv_geometry(3, r)
    dnn = upconv.deconv2d(x, upconv.weight_convolution(wn, r), bn, geo.stride, geo.padding,
                          algorithm="revd2")
    torch.testing.assert_close(dnn, y, **TOL)


def test_revd2_dispatch_uses_the_kernel_only_where_it_applies():
    x, w = torch.randn(1, 2, 4, 4), torch.randn(2, 1, 4, 4)
    call = check_deconv(x, w, None, 2, 1)
    assert implementation(call, "revd2") is deconv2d_revd2_compiled
    assert implementation(call, "tdc") is deconv2d_tdc_torch
    call64 = check_deconv(x.double(), w.double(), None, 2, 1)
    assert unsupported_reason(call64.x, call64.weight, None) == "dtype is not float32"
    assert implementation(call64, "revd2") is REFERENCES["revd2"]
    wg = w.clone().requires_grad_()
    callg = check_deconv(x, wg, None, 2, 1)
    assert implementation(callg, "revd2") is REFERENCES["revd2"]
    with torch.no_grad():
        assert implementation(callg, "revd2") is deconv2d_revd2_compiled


def test_gradients_flow_through_the_fallback():
    x = torch.randn(1, 2, 4, 5, requires_grad=True)
    w = torch.randn(2, 1, 4, 4, requires_grad=True)
    upconv.deconv2d(x, w, None, 2, 1, algorithm="revd2").sum().backward()
    gx, gw = torch.autograd.grad(F.conv_transpose2d(x, w, None, 2, 1).sum(), (x, w))
    torch.testing.assert_close(x.grad, gx)
    torch.testing.assert_close(w.grad, gw)


def test_kernel_runs_on_torch_threads(monkeypatch):
    """Each parallel region asks for torch.get_num_threads() threads and every one of them
    enters the body (PyTorch's OpenMP team where there is one)."""
    import ctypes

    from upconv.kernels import parallel, revd2

    seen = []
    real_run = parallel.run

    def spy(body, block, threads):
        real_run(body, block, threads)
        seen.append((threads, ctypes.c_int64.from_address(block).value))  # B_THREAD

    monkeypatch.setattr(revd2.parallel, "run", spy)
    x, w = torch.randn(1, 3, 16, 20), torch.randn(3, 1, 6, 6)
    before = torch.get_num_threads()
    try:
        for threads in sorted({1, 2, before}):
            torch.set_num_threads(threads)
            seen.clear()
            run(deconv2d_revd2_compiled, x, w, None, 2, 2)
            assert seen and all(s == (threads, threads) for s in seen)
    finally:
        torch.set_num_threads(before)
    if "OpenMP" in torch.__config__.parallel_info():
        assert parallel.torch_openmp() is not None
        assert "gomp" in parallel.backend() or "omp" in parallel.backend()


def test_python_thread_fallback(monkeypatch):
    """Without an OpenMP runtime the bodies run on Python threads, with the same result."""
    from upconv.kernels import parallel

    x, w, b = torch.randn(2, 5, 13, 17), torch.randn(5, 2, 6, 6), torch.randn(2, 2, 2)
    want = run(deconv2d_revd2_compiled, x, w, b, 2, 2)
    monkeypatch.setattr(parallel, "torch_openmp", lambda: None)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        got = run(deconv2d_revd2_compiled, x, w, b, 2, 2)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(got, want)
    assert parallel.backend() == "python-threads"


def test_no_feature_map_sized_allocations():
    """Torch allocates only the output; inside the kernel numba allocates nothing (its arrays
    are views of the caller's memory: any buffer allocated in the kernel's loops would count
    one per row task)."""
    from numba.core.runtime import _nrt_python, rtsys

    x, w = torch.randn(2, 8, 30, 50), torch.randn(8, 1, 9, 9)
    b = torch.randn(1, 3, 3)
    run(deconv2d_revd2_compiled, x, w, b, 3, 3)  # compile and plan outside the measurement
    was_enabled = _nrt_python.memsys_stats_enabled()
    _nrt_python.memsys_enable_stats()
    try:
        before = rtsys.get_allocation_stats()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                    profile_memory=True) as prof:
            y = run(deconv2d_revd2_compiled, x, w, b, 3, 3)
        after = rtsys.get_allocation_stats()
    finally:
        if not was_enabled:
            _nrt_python.memsys_disable_stats()
    allocated = sum(e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0)
    assert allocated == y.numel() * y.element_size()
    assert after.alloc - before.alloc == 0


def test_block_shapes_stay_in_registers():
    for slots in range(1, 300):
        nb, nv = _block_shape(slots, 1000)
        chunks = -(-slots // nb)
        assert nb * nv <= MAX_ACCUMULATORS and nb in NB_CHOICES
        assert chunks * nb - slots < nb  # only the last chunk pads
    if MAX_ACCUMULATORS == 24:
        assert _block_shape(9, 1000) == (9, 2)  # ESPCN ×3: nine phases, no padding slots
    assert _block_shape(9, 10)[1] == 1


def test_small_uniform_tap_windows_are_unrolled():
    """Every slot reaching the same window: unrolled (a per-slot code) up to UNROLL_TAPS taps,
    runtime loops (the empty code) beyond; mixed windows are always per slot."""
    assert decode_taps(encode_taps([(3, 3)] * 4)) == [(3, 3)] * 4
    assert encode_taps([(5, 5)] * 4) == "" and UNROLL_TAPS < 25
    assert decode_taps(encode_taps([(2, 2), (2, 1)])) == [(2, 2), (2, 1)]
    g = torch.Generator().manual_seed(9)
    x = torch.randn(1, 4, 7, 40, generator=g)
    for k in (3, 5):  # sub-pixel windows of 3×3 (unrolled) and 5×5 (loops) taps
        w, b = torch.randn(4, 3, 2 * k, 2 * k, generator=g), torch.randn(3, 2, 2, generator=g)
        plan = plan_for(w, (2, 2), (k - 1,) * 4, (14, 80), (7, 40))  # out: 2·in
        assert all((grp.taps == "") == (k == 5) for grp in plan.groups)
        torch.testing.assert_close(run(deconv2d_revd2_compiled, x, w, b, 2, k - 1),
                                   oracle(x, w, b, (2, 2), (k - 1,) * 4, (0, 0)), **TOL)


@pytest.mark.parametrize("r,c", [(2, 3), (3, 2), (4, 1), (5, 1)])
def test_resize_phases_share_one_input_pass(r, c):
    """A resize conv's phases reach 1 or 2 taps per axis; they are still computed in one pass
    (one group, or one per piece of a channel's phases when those overflow a register block)
    and equal conv_transpose2d."""
    from upconv.shapes import resize_deconv_geometry
    from upconv.transforms import weight_convolution

    g = torch.Generator().manual_seed(7)
    x, w = torch.randn(2, 5, 11, 45, generator=g), torch.randn(c, 5, 3, 3, generator=g)
    wd, geo = weight_convolution(w, r), resize_deconv_geometry(3, r)
    b = torch.randn(c, generator=g)
    call = check_deconv(x, wd, b, r, geo.padding)
    plan = plan_for(wd, call.stride, call.padding, call.out_size, (11, 45))
    uniform = r == 2  # K + r − 1 = 4 taps over stride 2: every phase reaches 2 × 2
    assert all((len(set(decode_taps(grp.taps))) == 1) == uniform for grp in plan.groups)
    assert len(plan.groups) == (2 if r * r > MAX_ACCUMULATORS else 1)
    assert sorted(int(s) for grp in plan.groups for s in grp.slots.flat if s >= 0) == list(
        range(c * r * r))  # every slot exactly once
    want = oracle(x, wd, b, call.stride, call.padding, (0, 0))
    torch.testing.assert_close(run(deconv2d_revd2_compiled, x, wd, b, r, geo.padding), want,
                               **TOL)


@pytest.mark.parametrize("stride", [(2, 2), (3, 3), (4, 4), (3, 2), (1, 3), (2, 5)])
@pytest.mark.parametrize("taps", [3, "resize"])
@pytest.mark.parametrize("crop", [(1, 2, 3, 1), (4, 0, 7, 5)])
@pytest.mark.parametrize("bias", ["channel", "phase", "odd"])
def test_column_phases_stored_together(stride, taps, crop, bias):
    """A channel's column phases sit side by side in a chunk and are written as one contiguous
    run (2 to 4 phases; wider strides and broken sets go slot by slot): every crop, a bias
    constant per phase, one that steps along a row (period 3 across stride 2), chunks that
    split a channel (7 channels), rows whose first and last columns leave the output."""
    sh, sw = stride
    kh, kw = (3 * sh, 3 * sw) if taps == 3 else (2 + sh, 2 + sw)
    g = torch.Generator().manual_seed(sh * 10 + sw)
    x = torch.randn(2, 5, 6, 41, generator=g)
    w = torch.randn(5, 7, kh, kw, generator=g)
    b = {"none": None, "channel": torch.randn(7, generator=g),
         "phase": torch.randn(7, sh, sw, generator=g),
         "odd": torch.randn(7, 2, 3, generator=g)}[bias]
    want = oracle(x, w, b, stride, crop, (0, 0))
    got = run(deconv2d_revd2_compiled, x, w, b, stride, crop)
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("stride", [(2, 2), (3, 3), (4, 4), (3, 2)])
@pytest.mark.parametrize("cin", [5, 40])  # one block of input channels, and two (IC_BLOCK 32)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_micro_kernel_stores_phase_sets_itself(stride, cin, layout, monkeypatch):
    """Sub-pixel layers (column strides 2-4) skip the row buffer: the last block of input
    channels interleaves each phase set in registers and stores it into the output, masking
    the columns and skipping the rows that leave it (crops on every side), with a padded last
    chunk, a batch of two, into a given ``out=`` (NaN-filled: every element must be written);
    the row-buffer path gives the same."""
    from upconv.kernels import revd2

    sh, sw = stride
    g = torch.Generator().manual_seed(sh * 10 + sw + cin)
    x = torch.randn(2, cin, 5, 37, generator=g)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(cin, 7, 3 * sh, 3 * sw, generator=g) / cin**0.5
    b = torch.randn(7, sh, sw, generator=g)
    crop = (1, 1, 3, 1)  # the first row phase's first row and the last one's last row leave
    call = check_deconv(x, w, b, stride, crop)
    plan = plan_for(w, call.stride, call.padding, call.out_size, (5, 37))
    assert [grp.direct for grp in plan.groups] == [sw]
    assert (plan.groups[0].sets[-1, -1] == (-1, 0)).all()  # the last chunk ends in padding
    want = oracle(x, w, b, stride, crop, (0, 0))
    torch.testing.assert_close(run(deconv2d_revd2_compiled, x, w, b, stride, crop), want, **TOL)
    out = torch.full_like(want, float("nan"))
    deconv2d_revd2_compiled(call.x, call.weight, call.bias, call.stride, call.padding,
                            call.output_padding, call.out_size, out=out)
    torch.testing.assert_close(out, want, **TOL)
    if layout == "nchw":  # (one layout: each path is a compiled variant of its own)
        monkeypatch.setattr(revd2, "_direct_bias", lambda grp, *a: (0, revd2.np.zeros(
            grp.slots.shape, revd2.np.float32)))
        torch.testing.assert_close(run(deconv2d_revd2_compiled, x, w, b, stride, crop), want,
                                   **TOL)


def test_direct_stores_only_where_each_slot_has_one_bias_and_sets_are_whole():
    """The row buffer stays for what direct stores cannot do: a bias whose period does not
    divide the stride (it steps along a phase's row), column strides outside 2-4, chunks
    whose positions do not form whole phase sets."""
    import numpy as np

    from upconv.kernels import revd2

    w = torch.randn(4, 3, 6, 6)
    call = check_deconv(torch.randn(1, 4, 5, 9), w, None, 2, 2)
    plan = plan_for(w, call.stride, call.padding, call.out_size, (5, 9))
    grp = plan.groups[0]
    assert grp.direct == 2
    ok = np.zeros((3, 1, 1), np.float32)
    assert revd2._direct_bias(grp, plan, ok, (2, 2), (2, 2, 2, 2))[0] == 2
    steps = np.zeros((3, 2, 3), np.float32)
    assert revd2._direct_bias(grp, plan, steps, (2, 2), (2, 2, 2, 2))[0] == 0
    c, fh, fw = (np.array(v) for v in ([0, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 1]))
    assert revd2.direct_sets(np.array([[0, 1, 2, 3]]), c, fh, fw, 2, 10).tolist() == [
        [[0, 0], [10, 0]]]
    assert revd2.direct_sets(np.array([[0, 1, 2, -1]]), c, fh, fw, 2, 10) is None  # half a set
    assert revd2.direct_sets(np.array([[1, 0, 2, 3]]), c, fh, fw, 2, 10) is None  # out of order
    assert revd2.direct_sets(np.array([[0, 1, 2, 3]]), c, fh, fw, 1, 10) is None
    assert revd2.direct_sets(np.array([[0, 1, 2, 3]]), c, fh, fw, 5, 10) is None


@pytest.mark.parametrize("stride,kernel", [(3, 5), (4, 6), (3, 2)])
def test_no_slot_multiplies_a_tap_it_does_not_reach(stride, kernel):
    """An infinite input must reach exactly the outputs its real taps reach: a product with a
    padded (zero) weight would turn an unreached output into NaN."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(1, 3, 9, 40, generator=g)
    x[0, 1, 4, 17] = float("inf")
    w = torch.rand(3, 2, kernel, kernel, generator=g) + 0.5  # positive: inf never meets -inf
    got = run(deconv2d_revd2_compiled, x, w, None, stride, 1)
    want = oracle(x, w, None, (stride, stride), (1, 1, 1, 1), (0, 0))
    assert torch.equal(torch.isfinite(got), torch.isfinite(want))
    assert not torch.isnan(got).any()


def test_concurrent_calls_from_python_threads():
    """Each Python thread launches with its own prepared blocks, counters and buffers."""
    from concurrent.futures import ThreadPoolExecutor

    g = torch.Generator().manual_seed(4)
    xs = [torch.randn(1, 3, 7, 30, generator=g) for _ in range(6)]
    w, b = torch.randn(3, 2, 6, 6, generator=g), torch.randn(2, 2, 2, generator=g)
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda x: run(deconv2d_revd2_compiled, x, w, b, 2, 2), xs))
    for x, y in zip(xs, got, strict=True):
        torch.testing.assert_close(y, oracle(x, w, b, (2, 2), (2, 2, 2, 2), (0, 0)), **TOL)


def test_prepared_launches_follow_inputs_bias_weights_and_threads(monkeypatch):
    """A call at a known geometry reuses this thread's launch blocks and buffers: new input
    and output memory, in-place and replaced biases, updated weights and another thread count
    all give the right result; a new geometry prepares anew, and the cache stays bounded."""
    from upconv.kernels import revd2

    prepared = []
    real = revd2._prepare
    monkeypatch.setattr(revd2, "_prepare", lambda *a: prepared.append(a[2]) or real(*a))
    g = torch.Generator().manual_seed(7)
    w, b = torch.randn(4, 2, 6, 6, generator=g), torch.randn(2, 2, 2, generator=g)

    def check(x, w, b):
        torch.testing.assert_close(run(deconv2d_revd2_compiled, x, w, b, 2, 2),
                                   oracle(x, w, b, (2, 2), (2, 2, 2, 2), (0, 0)), **TOL)

    for _ in range(3):  # new input and output memory each call, one preparation
        check(torch.randn(1, 4, 9, 21, generator=g), w, b)
    assert len(prepared) == 1
    x = torch.randn(1, 4, 9, 21, generator=g)
    with torch.no_grad():
        b.mul_(-3)  # in place: the version changes
    check(x, w, b)
    b.data = torch.randn(2, 2, 2, generator=g)  # new memory
    check(x, w, b)
    with torch.no_grad():
        w.add_(1)  # a new plan
    check(x, w, b)
    check(x, w, None)
    check(x.to(memory_format=torch.channels_last), w, b)  # other strides: staged blocks
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        check(x, w, b)
    finally:
        torch.set_num_threads(before)
    assert len(prepared) == 7
    for width in range(10, 10 + revd2.MAX_LAUNCHES + 3):
        check(torch.randn(1, 4, 5, width, generator=g), w, b)
    assert len(revd2._LOCAL.launches) <= revd2.MAX_LAUNCHES
    del w  # its plan goes with it: a new weight (perhaps at the same id) prepares anew
    w2 = torch.randn(4, 2, 6, 6, generator=g)
    n = len(prepared)
    check(x, w2, b)
    assert len(prepared) == n + 1


@pytest.mark.parametrize("name", ["tdc-torch", "tdc-torch-nhwc"])
def test_tdc_paths_train_and_see_weight_updates(name):
    """Cached phase kernels follow in-place weight updates and never cache autograd graphs."""
    x = torch.randn(1, 2, 5, 6)
    w = torch.randn(2, 3, 4, 4, requires_grad=True)
    for _ in range(2):  # a second backward would fail on a cached graph
        y = run(FAST_PATHS[name], x, w, None, 2, 1)
        (gw,) = torch.autograd.grad(y.square().sum(), w)
        (want,) = torch.autograd.grad(F.conv_transpose2d(x, w, None, 2, 1).square().sum(), w)
        torch.testing.assert_close(gw, want, **TOL)
    with torch.no_grad():
        before = run(FAST_PATHS[name], x, w, None, 2, 1)
        w.mul_(2)  # in place: bumps the version the cache is keyed on
        torch.testing.assert_close(run(FAST_PATHS[name], x, w, None, 2, 1), 2 * before, **TOL)
        w2 = w.detach().clone()
        revd2_before = run(deconv2d_revd2_compiled, x, w2, None, 2, 1)
        w2.add_(1)
        torch.testing.assert_close(run(deconv2d_revd2_compiled, x, w2, None, 2, 1),
                                   oracle(x, w2, None, (2, 2), (1, 1, 1, 1), (0, 0)), **TOL)
        assert not torch.allclose(revd2_before, run(deconv2d_revd2_compiled, x, w2, None, 2, 1))


@pytest.mark.parametrize("name", ["tdc-torch", "tdc-torch-nhwc"])
def test_tdc_folds_a_bias_once_for_inference_and_every_call_for_training(name, monkeypatch):
    """The periodic bias folded into conv2d's bias is kept with the bias tensor (indexing a
    CUDA bias by Python lists syncs with the device every call); it follows in-place updates,
    and with autograd it is rebuilt each call so its gradient reaches the bias."""
    from upconv.kernels import torch_paths

    calls = []
    fold = torch_paths._folded_bias
    monkeypatch.setattr(torch_paths, "_folded_bias", lambda *a: calls.append(1) or fold(*a))
    x, w = torch.randn(1, 2, 5, 6), torch.randn(2, 3, 4, 4)
    b = torch.randn(3, 2, 2, requires_grad=True)
    with torch.no_grad():
        first = run(FAST_PATHS[name], x, w, b, 2, 1)
        run(FAST_PATHS[name], x, w, b, 2, 1)
        assert len(calls) == 1
        b.add_(1)
        torch.testing.assert_close(run(FAST_PATHS[name], x, w, b, 2, 1), first + 1, **TOL)
        assert len(calls) == 2
    for _ in range(2):
        (gb,) = torch.autograd.grad(run(FAST_PATHS[name], x, w, b, 2, 1).sum(), b)
        torch.testing.assert_close(gb, torch.full_like(b, 30.0))  # 10 × 12 outputs / 2 × 2
    assert len(calls) == 4


def test_transpose_tile_and_staging_of_channels_last_rows():
    """The in-register tile transpose, and staged channels_last rows equal to the NCHW rows
    (tile part and the element-wise remainder: widths and channel counts off the tile)."""
    import numba
    import numpy as np

    from upconv.kernels._simd import LANES, transpose_tile
    from upconv.kernels.revd2 import _stage_rows, staged_pitch

    @numba.njit
    def tile(src, dst, copy):
        transpose_tile(src, 3, LANES + 2, dst, 5, LANES + 1, copy)

    src = np.random.default_rng(0).random(3 + LANES * (LANES + 2)).astype(np.float32)
    dst = np.zeros(5 + 2 * LANES * (LANES + 1) + 64, np.float32)
    tile(src, dst, LANES * (LANES + 1))
    a = src[3:3 + LANES * (LANES + 2)].reshape(LANES, LANES + 2)[:, :LANES]
    b = dst[5:5 + LANES * (LANES + 1)].reshape(LANES, LANES + 1)[:, :LANES]
    c = dst[5 + LANES * (LANES + 1):5 + 2 * LANES * (LANES + 1)].reshape(LANES, LANES + 1)
    np.testing.assert_array_equal(b, a.T)
    np.testing.assert_array_equal(c[:, :LANES], a.T)
    for cin, h, w in ((LANES * 2, 3, LANES * 3), (LANES + 3, 2, LANES + 5), (3, 2, 7)):
        x = torch.randn(2, cin, h, w).contiguous(memory_format=torch.channels_last)
        depth, line = 2, staged_pitch(w)
        ring = np.full(2 * depth * cin * line, np.nan, np.float32)
        state = np.full(3, -1)
        flat = x.permute(0, 2, 3, 1).reshape(-1).numpy()
        s = x.stride()
        at = _stage_rows(flat, s[0], s[1], s[2], s[3], cin, h, w, 1, 1, depth, ring, state)
        for i in (0, 1):  # rows 1 and 0 of image 1, one row stride apart below row 1's offset
            want = x[1, :, 1 - i].numpy()
            got = ring[at - i * cin * line:at - i * cin * line + cin * line].reshape(cin, line)
            np.testing.assert_array_equal(got[:, :w], want)


@pytest.mark.parametrize("depth,rows_per_tap", [(3, 2), (2, 2), (1, 2), (3, 1), (4, 3)])
def test_staging_ring_walks_rows_and_moves_what_it_keeps(depth, rows_per_tap):
    """A thread walking rows (and restarting, and changing image) always finds the rows a
    task reads, one row stride apart below the returned offset; rows are written once, and
    when the ring is full the rows still needed move to its front."""
    import numpy as np

    from upconv.kernels.revd2 import _stage_rows, staged_pitch

    cin, h, w = 5, 11, 9
    x = torch.randn(2, cin, h, w).contiguous(memory_format=torch.channels_last)
    flat, s, line = x.permute(0, 2, 3, 1).reshape(-1).numpy(), x.stride(), staged_pitch(w)
    ring = np.full(rows_per_tap * depth * cin * line, np.nan, np.float32)
    state = np.full(3, -1)
    walk = [(0, q) for q in range(h + depth)] + [(0, 4), (0, 5), (1, 2), (1, 3), (0, 9)]
    for n, qh in walk:
        at = _stage_rows(flat, s[0], s[1], s[2], s[3], cin, h, w, n, qh, depth, ring, state)
        for t in range(depth):
            if 0 <= qh - t < h:
                got = ring[at - t * cin * line:at - (t - 1) * cin * line].reshape(cin, line)
                np.testing.assert_array_equal(got[:, :w], x[n, :, qh - t].numpy())


def test_channels_last_with_phases_no_tap_reaches():
    """Kernel 1 at stride 5: four of five phases per axis get no tap (bias only). Their group
    stages no rows (it once divided by its zero tap depth on channels_last inputs)."""
    x = torch.randn(1, 2, 6, 22).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(2, 1, 1, 1), torch.randn(1)
    want = oracle(x, w, b, (5, 5), (0, 0, 0, 0), (0, 0))
    torch.testing.assert_close(run(deconv2d_revd2_compiled, x, w, b, 5, 0), want, **TOL)


def test_numba_cache_follows_the_micro_kernel_sources():
    """numba hashes only ``revd2.py`` to validate its cached machine code; the digest it holds
    of ``_simd.py`` and ``parallel.py`` (whose generated code it inlines) must be current, or a
    changed micro-kernel would silently keep running from the old cache."""
    import hashlib
    from pathlib import Path

    from upconv.kernels import revd2

    here = Path(revd2.__file__).parent
    digest = hashlib.sha256((here / "_simd.py").read_bytes()
                            + (here / "parallel.py").read_bytes()).hexdigest()
    assert digest == revd2.KERNEL_SOURCES_SHA256, (
        f"set upconv.kernels.revd2.KERNEL_SOURCES_SHA256 = {digest!r}")


_NARROW_CHECK = """
import torch
import torch.nn.functional as F
from upconv.kernels import _simd, deconv2d_revd2_compiled
from upconv.functional import check_deconv
from upconv.kernels.revd2 import plan_for
from upconv.algorithms._common import add_bias
assert _simd.LANES == 8 and _simd.MAX_ACCUMULATORS == 12
g = torch.Generator().manual_seed(3)
x = torch.randn(2, 40, 5, 29, generator=g).contiguous(memory_format=torch.channels_last)
w = torch.randn(40, 7, 9, 6, generator=g) / 40**0.5
b = torch.randn(7, 3, 2, generator=g)
call = check_deconv(x, w, b, (3, 2), (1, 1, 3, 1))
assert [grp.direct for grp in plan_for(w, call.stride, call.padding, call.out_size,
                                       (5, 29)).groups] == [2]
y = deconv2d_revd2_compiled(call.x, call.weight, call.bias, call.stride, call.padding,
                            call.output_padding, call.out_size)
full = F.conv_transpose2d(x, w, None, (3, 2))
want = add_bias(full[..., 1:full.shape[-2] - 1, 3:full.shape[-1] - 1], b)
torch.testing.assert_close(y, want, rtol=1e-4, atol=1e-4)
print("ok")
"""


def test_eight_lane_kernels(tmp_path):
    """AVX2 machines (most laptops) run 8-lane kernels with 12 accumulators; this machine and
    CI have AVX-512. ``UPCONV_SIMD_LANES=8`` (with a numba cache of its own) compiles the
    narrow variant here: channels_last staging, two channel blocks, direct stores of a
    (3, 2)-strided layer with crops, against ``conv_transpose2d``."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, UPCONV_SIMD_LANES="8", NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", _NARROW_CHECK], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_lane_override_needs_its_own_numba_cache():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["UPCONV_SIMD_LANES"] = "8"
    done = subprocess.run([sys.executable, "-c", "import upconv.kernels._simd"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "NUMBA_CACHE_DIR" in done.stderr


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 4), sh=st.integers(1, 4), sw=st.integers(1, 4),
       h=st.integers(1, 6), w=st.integers(1, 6))
def test_depth_to_space_channels_last_is_a_pixel_shuffle(n, c, sh, sw, h, w):
    from upconv.algorithms._common import depth_to_space, depth_to_space_channels_last

    z = torch.randn(n, c * sh * sw, h, w).contiguous(memory_format=torch.channels_last)
    got = depth_to_space_channels_last(z, (sh, sw))
    assert torch.equal(got, depth_to_space(z.contiguous(), (sh, sw)))
    if sh == sw:
        assert torch.equal(got, F.pixel_shuffle(z.contiguous(), sh))
    assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", ["tdc-torch", "tdc-torch-nhwc"])
def test_tdc_writes_a_channels_last_result_in_one_copy(name, monkeypatch):
    """Where the operator returns channels_last (a channels_last CUDA input), TDC shuffles
    straight into that layout: the result needs no second, transposing copy."""
    from upconv.kernels import torch_paths

    x = torch.randn(2, 5, 7, 6).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(5, 3, 6, 6), torch.randn(3, 2, 2)
    want = oracle(x, w, b, (2, 2), (2, 2, 2, 2), (0, 0))
    with torch.no_grad():
        plain = run(FAST_PATHS[name], x, w, b, 2, 2)  # a CPU input: pixel_shuffle, as before
        monkeypatch.setattr(torch_paths, "output_memory_format",
                            lambda t: torch.channels_last)
        shuffles = []
        one_copy = torch_paths.depth_to_space_channels_last
        monkeypatch.setattr(torch_paths, "depth_to_space_channels_last",
                            lambda *a: shuffles.append(1) or one_copy(*a))
        got = run(FAST_PATHS[name], x, w, b, 2, 2)
        assert shuffles  # not pixel_shuffle's NCHW result (off the CPU) copied once more
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(plain, want, **TOL)
    assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()
    assert got.contiguous(memory_format=torch.channels_last).data_ptr() == got.data_ptr()


@pytest.mark.parametrize("span", [None, (-1, 0), (0, 0), (3, 700), (0, 10_000)])
def test_strip_prefetch_hint_changes_no_sum(span):
    """The strip micro-kernel's ``ahead`` span is a prefetch hint only: with it pointing into
    an array of NaNs (or nowhere, or past that array's end: a hint never faults), the sums
    equal a plain numpy reference, for every channel count the hints are spread over; with
    ``ahead=None`` (inputs read in place) the kernel compiles without the hints."""
    import numba
    import numpy as np

    from upconv.kernels._simd import LANES, strip_fma

    nb, th, tw, w_in = 2, 2, 3, 2 * LANES + 4

    @numba.njit
    def strip(x, cin, wts, buf, ahead, lo, hi):
        none_i = np.zeros((1, 1, 2), np.int64)
        none_f = np.zeros((1, 2), np.float32)
        y = np.zeros(1, np.float32)
        # one full strip of one vector at column tw (all taps inside the row), rows 1 and 0
        strip_fma(x, w_in + tw, w_in * 2, w_in, cin, wts, 0, 0, th, th, tw, LANES, buf, 0,
                  LANES, False, tw, w_in, 2, 1, False, "", 0, False, y, 0, 0, 0, 1, 1,
                  none_i, 0, none_f, 0, ahead, lo, hi)

    rng = np.random.default_rng(1)
    for cin in (1, 3, 7):
        x = rng.random(cin * 2 * w_in).astype(np.float32)
        wts = rng.random(cin * th * tw * nb).astype(np.float32).reshape(1, cin, th, tw, nb)
        buf = np.zeros(nb * LANES, np.float32)
        ahead = np.full(512, np.nan, np.float32) if span else None
        strip(x, cin, wts, buf, ahead, *(span or (-1, 0)))
        xs = x.reshape(cin, 2, w_in)
        for p in range(nb):
            want = sum(wts[0, ic, t, u, p] * xs[ic, 1 - t, tw - u:tw - u + LANES]
                       for ic in range(cin) for t in range(th) for u in range(tw))
            np.testing.assert_allclose(buf[p * LANES:(p + 1) * LANES], want, rtol=1e-5)
